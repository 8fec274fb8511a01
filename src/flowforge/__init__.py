"""flowforge: flow-based deep generative models in PyTorch.

Everything is a :class:`~flowforge.transforms.Transform` (data to latent, with its
log-determinant); a :class:`Flow` is a transform plus a base distribution; models are recipes.
"""

from flowforge.distributions import DiagonalNormal, StandardLogistic, StandardNormal
from flowforge.flows import Flow

__version__ = "0.1.0"

__all__ = ["DiagonalNormal", "Flow", "StandardLogistic", "StandardNormal", "__version__"]
