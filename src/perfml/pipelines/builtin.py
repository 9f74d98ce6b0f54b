"""perfml's built-in pipelines: importing this module registers them in the default catalog."""

from perfml.pipelines import backfill, scoring, training

__all__ = ["backfill", "scoring", "training"]
