"""The version of the coffer package."""

__version__ = "0.1.0"
