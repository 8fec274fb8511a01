r"""Element-wise transformers: the univariate bijections inside coupling and autoregressive layers.

A coupling or autoregressive layer is a conditioner network, which outputs ``params_per_dim``
numbers for every transformed dimension, plus one of these transformers, which maps each
dimension with its own parameters. Writing a new transformer never needs a new layer class.

Contract: ``forward(x, params)`` and ``inverse(y, params)`` take ``x`` of shape ``(*,)`` and
``params`` of shape ``(*, params_per_dim)`` and return the output and the **element-wise**
log-derivative, both of shape ``(*,)``. All-zero ``params`` give the identity, so a conditioner
that starts at output 0 (``MLP``/``MADE`` with ``zero_init``, see :mod:`flowforge.nn.init`) starts
every layer at the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LOG_SCALE_BUDGET", "Additive", "Affine", "Transformer", "depth_scale_bound"]

LOG_SCALE_BUDGET = 40.0
"""Default total log-scale, in nats per dimension, that a deep affine flow may spend."""


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


def depth_scale_bound(
    layers_per_dim: int, budget: float = LOG_SCALE_BUDGET, cap: float = 5.0
) -> float:
    r"""The per-layer log-scale bound that keeps a deep affine flow finite in float32.

    With ``n`` affine layers acting on a dimension, each log-scale bounded by ``b``, the flow can
    stretch that dimension by at most :math:`e^{n b}`. Far from the data a ReLU conditioner's
    raw log-scale grows with :math:`|x|`, so every layer saturates at :math:`\pm b`: with
    ``b = 5`` a 100-layer RealNVP could stretch by :math:`e^{250}`, far past float32's
    :math:`3.4 \times 10^{38}`. Bounding the *total* instead,

    .. math:: b = \min(\text{cap}, B / n), \qquad |\log \det| \le B \text{ per dimension},

    keeps :math:`|z| \lesssim e^{B} |x|` and :math:`-\tfrac12 z^2` finite for
    :math:`|x| \le 10^3` with the default ``B = 40`` (:math:`e^{40} \approx 2 \times 10^{17}`).
    Shallow flows (``n <= B / cap = 8``) keep the full ``cap``.

    Arguments:
        layers_per_dim: affine layers that transform each dimension (a coupling flow with
            alternating masks: half its couplings, rounded up; MAF/IAF: its layers).
        budget: the total bound ``B``.
        cap: the largest per-layer bound.
    """
    if layers_per_dim < 1:
        raise ValueError(f"'layers_per_dim' should be positive, got {layers_per_dim}")
    if not (budget > 0 and cap > 0):
        raise ValueError(f"'budget' and 'cap' should be positive, got {budget} and {cap}")
    return min(cap, budget / layers_per_dim)
