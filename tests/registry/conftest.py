from fixtures.registry import database, make_artifact, registry, registry_url

__all__ = ["database", "make_artifact", "registry", "registry_url"]
