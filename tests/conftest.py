from fixtures.metadata import open_part

__all__ = ["open_part"]
