"""The version of kres."""

__version__ = "0.2.0"
