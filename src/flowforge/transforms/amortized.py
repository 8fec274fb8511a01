r"""Parameters of a transform that are global, or predicted per sample from a context.

Planar and radial flows in a VAE are *amortised* (Rezende and Mohamed 2015,
https://arxiv.org/abs/1505.05770, section 4): the inference network outputs each sample's flow
parameters. :class:`ParameterHead` gives a transform its raw parameters ``theta`` of shape
``(batch, P)``:

.. math:: \theta(c) = \theta_0 + W c + v

with a learned global ``theta_0`` and, when ``context_features > 0``, a linear map of the
context whose weights start at zero (so every sample starts from ``theta_0``).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ParameterHead"]


class ParameterHead(nn.Module):
    """Raw per-sample parameters ``(batch, P)`` from a global vector and an optional context.

    Arguments:
        init: the initial global parameters ``theta_0``, shape ``(P,)``.
        context_features: size of the context vector (0: the parameters are global).
    """

    def __init__(self, init: Tensor, context_features: int = 0) -> None:
        super().__init__()
        if init.dim() != 1:
            raise ValueError(f"'init' should be a vector (P,), got shape {tuple(init.shape)}")
        if context_features < 0:
            raise ValueError(f"'context_features' should be >= 0, got {context_features}")
        self.value = nn.Parameter(init.clone())
        self.context_features = context_features
        self.context_map = None
        if context_features:
            self.context_map = nn.Linear(context_features, init.numel())
            nn.init.zeros_(self.context_map.weight)
            nn.init.zeros_(self.context_map.bias)

    def forward(self, batch: int, context: Tensor | None = None) -> Tensor:
        """Returns the raw parameters of each of ``batch`` samples: ``(batch, P)``."""
        theta = self.value.expand(batch, -1)
        if self.context_map is None:
            return theta
        if context is None or context.shape != (batch, self.context_features):
            got = None if context is None else tuple(context.shape)
            raise ValueError(
                f"'context' should have shape ({batch}, {self.context_features}), got {got}"
            )
        return theta + self.context_map(context)

    def extra_repr(self) -> str:
        return f"params={self.value.numel()}, context_features={self.context_features}"
