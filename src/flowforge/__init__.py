"""flowforge: flow-based deep generative models in PyTorch.

Everything is a :class:`~flowforge.transforms.Transform` (data to latent, with its
log-determinant); a :class:`Flow` is a transform plus a base distribution; models are recipes.
"""

from flowforge.distributions import DiagonalNormal, StandardLogistic, StandardNormal
from flowforge.flows import Flow
from flowforge.version import __version__

__all__ = ["DiagonalNormal", "Flow", "StandardLogistic", "StandardNormal", "__version__", "load"]


def __getattr__(name: str) -> object:
    """``flowforge.load`` (:func:`flowforge.runs.load`), imported on first use so that the
    core (transforms, nn, flows) loads without the run machinery."""
    if name == "load":
        from flowforge.runs import load

        return load
    raise AttributeError(f"module 'flowforge' has no attribute {name!r}")
