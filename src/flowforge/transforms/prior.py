r"""Learned (class-conditional) Gaussian priors written as transforms.

Glow (Kingma and Dhariwal 2018, https://arxiv.org/abs/1807.03039, section 5 and its code's
``prior``) learns the mean and log-scale of the top latent, and for class-conditional models
makes them a linear function of the one-hot label. With a standard-normal base, the prior
:math:`\mathcal{N}(\mu(c), \sigma(c)^2)` is the same model as the affine map
:math:`\varepsilon = (z - \mu(c)) / \sigma(c)` followed by :math:`\mathcal{N}(0, I)`, which is
what :class:`ContextAffine` is; sampling at temperature ``T`` then gives
:math:`z = \mu(c) + \sigma(c) T \varepsilon`, Glow's temperature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.transforms.base import Transform, sum_except_batch

__all__ = ["ContextAffine"]


class ContextAffine(Transform):
    r"""Element-wise affine map with per-entry parameters, optionally linear in the context.

    .. math::
        z = (x - \mu(c)) \, e^{-s(c)}, \qquad (\mu(c), s(c)) = (\mu_0, s_0) + A c, \qquad
        \log|\det J| = -\textstyle\sum_i s_i(c)

    ``mu_0``, ``s_0`` have the event shape and ``A`` maps the context to ``2 * prod(event)``
    numbers; all start at zero, so the map starts as the identity.

    Arguments:
        event_shape: shape of one event, e.g. ``(C, H, W)``.
        context_features: size of the context (0: unconditional, a learned diagonal prior).
    """

    def __init__(self, event_shape: Sequence[int], context_features: int = 0) -> None:
        super().__init__()
        shape = tuple(int(s) for s in event_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"'event_shape' should be positive sizes, got {event_shape}")
        if context_features < 0:
            raise ValueError(f"'context_features' should be >= 0, got {context_features}")
        self.event_shape = shape
        self.context_features = context_features
        self.loc = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.linear = None
        if context_features:
            self.linear = nn.Linear(context_features, 2 * self.loc.numel())
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def _params(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        loc, log_scale = self.loc.unsqueeze(0), self.log_scale.unsqueeze(0)  # (1, *event)
        if self.linear is not None:
            if context is None:
                raise ValueError("this ContextAffine expects a 'context'")
            out = self.linear(context).reshape(context.shape[0], 2, *self.event_shape)
            loc, log_scale = loc + out[:, 0], log_scale + out[:, 1]  # (B, *event)
        return loc, log_scale.expand(x.shape[0], *self.event_shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        loc, log_scale = self._params(x, context)
        return (x - loc) * torch.exp(-log_scale), -sum_except_batch(log_scale)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        loc, log_scale = self._params(z, context)
        return z * torch.exp(log_scale) + loc, sum_except_batch(log_scale)

    def extra_repr(self) -> str:
        features = 0 if self.linear is None else self.linear.in_features
        return f"event_shape={self.event_shape}, context_features={features}"
