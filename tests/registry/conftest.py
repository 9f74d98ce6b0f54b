from fixtures.registry import make_artifact, registry, registry_url

__all__ = ["make_artifact", "registry", "registry_url"]
