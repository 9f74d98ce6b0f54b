"""Where series come from: readers of public corpora and generators of realistic fleets."""
