"""The root of the deploy part's failures: values, inline credentials, the ytt templates."""

from __future__ import annotations

from perfml.errors import PerfmlError


class DeployError(PerfmlError):
    """The root of the deploy failures (the package's values, a credential written inline, a
    ytt template that cannot be written or rendered)."""
