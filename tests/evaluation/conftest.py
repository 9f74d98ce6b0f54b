from fixtures.registry import database, registry, registry_url

__all__ = ["database", "registry", "registry_url"]
