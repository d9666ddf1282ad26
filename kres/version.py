"""The version of kres."""

__version__ = "0.1.0"
