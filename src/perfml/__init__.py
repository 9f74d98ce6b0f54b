"""perfml: operate anomaly-detection services for the performance metrics of a fleet.

The lifecycle reads in the package's folders: ``sources`` and ``featurestore`` hold the data,
later parts train, register, serve, monitor and retrain models over it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("perfml")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = ["__version__"]
