r"""Element-wise transformers: the univariate bijections inside coupling and autoregressive layers.

A coupling or autoregressive layer is a conditioner network, which outputs ``params_per_dim``
numbers for every transformed dimension, plus one of these transformers, which maps each
dimension with its own parameters. Writing a new transformer never needs a new layer class.

Contract: ``forward(x, params)`` and ``inverse(y, params)`` take ``x`` of shape ``(*,)`` and
``params`` of shape ``(*, params_per_dim)`` and return the output and the **element-wise**
log-derivative, both of shape ``(*,)``. All-zero ``params`` give the identity, so a conditioner
with a zero-initialised last layer starts every layer at the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Additive", "Affine", "Transformer"]


class Transformer(nn.Module):
    """A monotone element-wise bijection whose parameters come from a conditioner."""

    params_per_dim: int = 1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(y, log dy/dx)`` element-wise."""
        raise NotImplementedError

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(x, log dx/dy)`` element-wise."""
        raise NotImplementedError


class Additive(Transformer):
    r"""Additive transformer of NICE (Dinh et al. 2014, https://arxiv.org/abs/1410.8516).

    .. math:: y = x + t, \qquad \log \frac{dy}{dx} = 0
    """

    params_per_dim = 1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return x + params[..., 0], torch.zeros_like(x)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return y - params[..., 0], torch.zeros_like(y)


class Affine(Transformer):
    r"""Affine transformer of RealNVP (Dinh et al. 2016, https://arxiv.org/abs/1605.08803).

    .. math:: y = x \, e^{s} + t, \qquad s = b \tanh(a / b)

    The raw log-scale ``a`` is soft-bounded to ``(-b, b)`` with ``b = scale_bound``, which keeps
    deep flows from blowing up while leaving ``s = a`` near zero. ``params = (a, t)``.

    Arguments:
        scale_bound: the bound ``b`` on the log-scale.
    """

    params_per_dim = 2

    def __init__(self, scale_bound: float = 5.0) -> None:
        super().__init__()
        if not scale_bound > 0:
            raise ValueError(f"'scale_bound' should be positive, got {scale_bound}")
        self.scale_bound = float(scale_bound)

    def log_scale(self, a: Tensor) -> Tensor:
        """The bounded log-scale ``b tanh(a / b)``."""
        return self.scale_bound * torch.tanh(a / self.scale_bound)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        s = self.log_scale(params[..., 0])
        return x * torch.exp(s) + params[..., 1], s

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        s = self.log_scale(params[..., 0])
        return (y - params[..., 1]) * torch.exp(-s), -s

    def extra_repr(self) -> str:
        return f"scale_bound={self.scale_bound}"
