"""Conformance cases, one module per family; importing this package registers them all."""

from flowforge.testing.cases import core  # noqa: F401
