"""perfml: operate anomaly-detection services for the performance metrics of a fleet.

The lifecycle reads in the package's folders: ``sources`` and ``featurestore`` hold the data,
``detectors`` and ``evaluation`` make and judge models, ``pipelines`` trains them, and
``registry`` versions and promotes them.
"""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # The version is looked up on first use: importing importlib.metadata costs tens of
    # milliseconds, paid by every pipeline job's process otherwise.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("perfml")
        except PackageNotFoundError:  # running from a source tree without an install
            found = "0.0.0"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'perfml' has no attribute {name!r}")
