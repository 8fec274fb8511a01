r"""Base distributions of flows: standard normal, learnable diagonal normal, standard logistic.

Each is an ``nn.Module`` over an event shape with ``log_prob(z, context=None) -> (batch,)`` and
``sample(n, context=None, temperature=1.0) -> (n, *event_shape)``. Sampling at temperature
``T`` scales the base noise by ``T`` (Glow, Kingma and Dhariwal 2018, section 6); ``T = 1`` is
the model itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["BaseDistribution", "DiagonalNormal", "StandardLogistic", "StandardNormal"]

_LOG_2PI = math.log(2 * math.pi)


class BaseDistribution(nn.Module):
    """A base density over ``event_shape``; subclasses implement ``log_prob`` and ``sample``."""

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__()
        shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"'event_shape' should be positive sizes, got {event_shape}")
        self.event_shape = torch.Size(shape)
        # Gives the module a device and dtype even when it has no parameters.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def _check(self, z: Tensor) -> None:
        if tuple(z.shape[1:]) != tuple(self.event_shape) or z.dim() != len(self.event_shape) + 1:
            raise ValueError(
                f"'z' should have shape (batch, {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(z.shape)}"
            )

    def _noise(self, n: int) -> Tensor:
        return torch.randn(
            n, *self.event_shape, dtype=self._anchor.dtype, device=self._anchor.device
        )

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"


class StandardNormal(BaseDistribution):
    r""":math:`\mathcal{N}(0, I)`: :math:`\log p(z) = -\tfrac12 \|z\|^2 - \tfrac{D}{2}\log 2\pi`."""

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(z)
        d = self.event_shape.numel()
        return -0.5 * z.reshape(z.shape[0], -1).pow(2).sum(1) - 0.5 * d * _LOG_2PI

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        return self._noise(n) * temperature


class DiagonalNormal(BaseDistribution):
    r""":math:`\mathcal{N}(\mu, \mathrm{diag}(\sigma^2))` with learned ``loc`` and ``log_scale``."""

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__(event_shape)
        self.loc = nn.Parameter(torch.zeros(self.event_shape))
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(z)
        u = (z - self.loc) * torch.exp(-self.log_scale)
        d = self.event_shape.numel()
        flat = (-0.5 * u.pow(2) - self.log_scale).reshape(z.shape[0], -1)
        return flat.sum(1) - 0.5 * d * _LOG_2PI

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        return self.loc + self._noise(n) * temperature * torch.exp(self.log_scale)


class StandardLogistic(BaseDistribution):
    r"""The standard logistic, NICE's prior (Dinh et al. 2014, section 3.4):
    :math:`\log p(z) = -\sum_i \left(\mathrm{softplus}(z_i) + \mathrm{softplus}(-z_i)\right)`."""

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._check(z)
        f = nn.functional.softplus
        return -(f(z) + f(-z)).reshape(z.shape[0], -1).sum(1)

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        shape = (n, *self.event_shape)
        u = torch.rand(shape, dtype=self._anchor.dtype, device=self._anchor.device)
        u = u.clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps)
        return (torch.log(u) - torch.log1p(-u)) * temperature
