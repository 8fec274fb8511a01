"""The package version, in one place (pyproject.toml and ``flowforge.__version__`` read it)."""

__version__ = "0.1.0"
