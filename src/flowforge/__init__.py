"""flowforge: flow-based deep generative models in PyTorch.

Everything is a :class:`~flowforge.transforms.Transform` (data to latent, with its
log-determinant); a :class:`Flow` is a transform plus a base distribution; models are recipes.

The names below, and the subpackages, are imported on first use, so that ``import flowforge``
costs nothing beyond this file (the ``flowforge`` command answers ``--help`` without loading
torch) and the core (transforms, nn, flows) loads without the run machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from flowforge.version import __version__

if TYPE_CHECKING:
    from flowforge.distributions import DiagonalNormal, StandardLogistic, StandardNormal
    from flowforge.flows import Flow
    from flowforge.runs import load

__all__ = ["DiagonalNormal", "Flow", "StandardLogistic", "StandardNormal", "__version__", "load"]

# each public name, and the module it is imported from on first use
_HOMES = {
    "DiagonalNormal": "flowforge.distributions",
    "StandardLogistic": "flowforge.distributions",
    "StandardNormal": "flowforge.distributions",
    "Flow": "flowforge.flows",
    "load": "flowforge.runs",
}


def __getattr__(name: str) -> object:
    """A public name (:data:`__all__`; ``flowforge.load`` is :func:`flowforge.runs.load`) or a
    subpackage (``flowforge.transforms``), imported on first use."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value  # later lookups do not come here
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"flowforge.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"flowforge.{name}":  # the subpackage exists, a dependency is missing
                raise
    raise AttributeError(f"module 'flowforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
