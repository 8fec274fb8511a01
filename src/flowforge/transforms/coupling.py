r"""Coupling layers: a mask, a conditioner network and an element-wise transformer.

With a binary mask splitting dimension 1 into a conditioning part ``a`` (mask = 1) and a
transformed part ``b`` (mask = 0), a coupling layer (Dinh et al. 2014 and 2016) is

.. math::
    z_a = x_a, \qquad z_b = \tau(x_b; \theta(x_a, c)), \qquad
    \log|\det J| = \textstyle\sum_{i \in b} \log \tau'(x_i; \theta_i)

where ``theta`` is the conditioner (any network from ``(B, n_a, *)`` and the context to
``(B, n_b * P, *)``) and ``tau`` an element-wise :class:`~flowforge.transforms.univariate.
Transformer` with ``P = params_per_dim``. Both directions cost one conditioner pass. NICE is
the additive transformer, RealNVP the affine one; splines and polynomials plug in the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowforge.transforms.base import Transform, sum_except_batch
from flowforge.transforms.univariate import Transformer

__all__ = ["Coupling", "alternating_mask", "half_mask"]


def half_mask(features: int, first: bool = True) -> Tensor:
    """Mask whose first (``first=True``) or second half conditions the other half."""
    mask = torch.zeros(features, dtype=torch.bool)
    half = (features + 1) // 2 if first else features // 2
    if first:
        mask[:half] = True
    else:
        mask[features - half :] = True
    return mask


def alternating_mask(features: int, parity: int = 0) -> Tensor:
    """Mask of the even (``parity=0``) or odd (``parity=1``) indices: NICE's odd/even split."""
    return torch.arange(features) % 2 == parity


class Coupling(Transform):
    """A coupling layer over dimension 1.

    Arguments:
        mask: boolean tensor ``(features,)``; ``True`` entries condition, ``False`` entries are
            transformed. Both parts must be non-empty.
        conditioner: a factory ``(in_features, out_features) -> nn.Module`` or a module already
            built for ``n_a`` inputs and ``n_b * params_per_dim`` outputs, called as
            ``conditioner(x_a, context)``.
        transformer: the element-wise transformer.
    """

    def __init__(
        self,
        mask: Tensor,
        conditioner: nn.Module | Callable[[int, int], nn.Module],
        transformer: Transformer,
    ) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.dim() != 1:
            raise ValueError(f"'mask' should be 1-D (features,), got shape {tuple(mask.shape)}")
        n_a = int(mask.sum())
        if n_a == 0 or n_a == mask.numel():
            raise ValueError("'mask' should have both True (conditioning) and False entries")
        self.register_buffer("mask", mask)
        self.register_buffer("idx_a", torch.nonzero(mask).flatten())
        self.register_buffer("idx_b", torch.nonzero(~mask).flatten())
        self.transformer = transformer
        n_b = mask.numel() - n_a
        if not isinstance(conditioner, nn.Module):
            conditioner = conditioner(n_a, n_b * transformer.params_per_dim)
        self.conditioner = conditioner

    def _params(self, x_a: Tensor, context: Tensor | None) -> Tensor:
        out = self.conditioner(x_a, context)
        n_b, p = self.idx_b.numel(), self.transformer.params_per_dim
        # (B, n_b * P, *pos) -> (B, n_b, *pos, P)
        return out.reshape(out.shape[0], n_b, p, *out.shape[2:]).movedim(2, -1)

    def _couple(
        self, x: Tensor, context: Tensor | None, step: Callable[[Tensor, Tensor], tuple]
    ) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, self.idx_a], x[:, self.idx_b]
        y_b, ladj = step(x_b, self._params(x_a, context))
        y = torch.empty_like(x)
        y[:, self.idx_a] = x_a
        y[:, self.idx_b] = y_b
        return y, sum_except_batch(ladj)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x, context, self.transformer.forward)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(z, context, self.transformer.inverse)

    def extra_repr(self) -> str:
        m = self.mask.int().tolist()
        return f"mask={m if len(m) <= 16 else m[:16] + ['...']}"


def checkerboard_mask(event_shape: tuple[int, int, int], parity: int = 0) -> Tensor:
    """RealNVP's checkerboard mask over ``(C, H, W)``: ``True`` (conditioning) where
    ``(row + column) % 2 == parity``, the same pattern in every channel."""
    if len(event_shape) != 3 or any(s < 1 for s in event_shape):
        raise ValueError(f"'event_shape' should be positive (C, H, W), got {event_shape}")
    if parity not in (0, 1):
        raise ValueError(f"'parity' should be 0 or 1, got {parity}")
    c, h, w = event_shape
    board = (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == parity  # (H, W)
    return board.expand(c, h, w).clone()


class MaskedCoupling(Transform):
    r"""A coupling layer whose mask has the full event shape, e.g. RealNVP's checkerboard.

    .. math::
        z = b \odot x + (1 - b) \odot \tau\big(x; \theta(b \odot x, c)\big)

    (Dinh et al. 2016, https://arxiv.org/abs/1605.08803, section 3.4). Unlike :class:`Coupling`,
    which gathers dimension 1, the conditioner sees the whole masked input ``b * x`` of shape
    ``(B, C, *)`` and returns ``(B, C * P, *)``; only the entries where ``b`` is ``False`` are
    transformed and counted in the log-determinant.

    Arguments:
        mask: boolean tensor of the event shape, e.g. :func:`checkerboard_mask`.
        conditioner: a factory ``(in_channels, out_channels) -> nn.Module``, called with
            ``(C, C * params_per_dim)``, or a module built for them.
        transformer: the element-wise transformer.
    """

    def __init__(
        self,
        mask: Tensor,
        conditioner: nn.Module | Callable[[int, int], nn.Module],
        transformer: Transformer,
    ) -> None:
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.dim() < 2:
            raise ValueError(
                f"'mask' should have the event shape (C, *), got shape {tuple(mask.shape)}"
            )
        if not bool(mask.any()) or bool(mask.all()):
            raise ValueError("'mask' should have both True (conditioning) and False entries")
        super().__init__()
        self.register_buffer("mask", mask)
        self.transformer = transformer
        channels = mask.shape[0]
        if not isinstance(conditioner, nn.Module):
            conditioner = conditioner(channels, channels * transformer.params_per_dim)
        self.conditioner = conditioner

    def _couple(
        self, x: Tensor, context: Tensor | None, step: Callable[[Tensor, Tensor], tuple]
    ) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != tuple(self.mask.shape):
            raise ValueError(
                f"'x' should have shape (batch, {', '.join(map(str, self.mask.shape))}), "
                f"got {tuple(x.shape)}"
            )
        mask = self.mask.to(x.dtype)
        out = self.conditioner(x * mask, context)  # (B, C * P, *)
        p = self.transformer.params_per_dim
        params = out.reshape(out.shape[0], x.shape[1], p, *out.shape[2:]).movedim(2, -1)
        y, ladj = step(x, params)  # (B, C, *) each
        y = torch.where(self.mask, x, y)
        return y, sum_except_batch(ladj * (1 - mask))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x, context, self.transformer.forward)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(z, context, self.transformer.inverse)

    def extra_repr(self) -> str:
        return f"mask_shape={tuple(self.mask.shape)}"
