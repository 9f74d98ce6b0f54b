"""perfml on Kubernetes: the objects of ``perfml export k8s`` and the operator's values.

:func:`render` turns ``perfml.yaml`` and :class:`DeployValues` into every Kubernetes object
(:mod:`perfml.deploy.k8s`); :func:`export_k8s` writes them for ``kubectl apply -k``.
"""

from perfml.deploy.k8s import cluster_settings, export_k8s, render
from perfml.deploy.security import InlineSecretError
from perfml.deploy.values import DeployValues, ValuesError, effective_settings, load_values

__all__ = [
    "DeployValues",
    "InlineSecretError",
    "ValuesError",
    "cluster_settings",
    "effective_settings",
    "export_k8s",
    "load_values",
    "render",
]
