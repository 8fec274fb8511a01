r"""Rational-quadratic spline transformer with linear tails (neural spline flows).

Durkan, Bekasov, Murray and Papamakarios 2019, "Neural Spline Flows",
https://arxiv.org/abs/1906.04032, section 3.1 and Appendix A.

On ``[-B, B]`` the map is a monotone rational-quadratic spline through ``K + 1`` knots
:math:`(x^{(k)}, y^{(k)})` with positive derivatives :math:`\delta^{(k)}`; in bin ``k``, with
:math:`s_k = (y^{(k+1)} - y^{(k)}) / (x^{(k+1)} - x^{(k)})` and
:math:`\xi = (x - x^{(k)}) / (x^{(k+1)} - x^{(k)})`,

.. math::
    y = y^{(k)} + \frac{(y^{(k+1)} - y^{(k)}) \left(s_k \xi^2 + \delta^{(k)} \xi (1 - \xi)
    \right)}{s_k + (\delta^{(k+1)} + \delta^{(k)} - 2 s_k) \xi (1 - \xi)}, \qquad
    \frac{dy}{dx} = \frac{s_k^2 \left(\delta^{(k+1)} \xi^2 + 2 s_k \xi (1 - \xi) + \delta^{(k)}
    (1 - \xi)^2\right)}{\left(s_k + (\delta^{(k+1)} + \delta^{(k)} - 2 s_k) \xi (1 - \xi)
    \right)^2}.

The end knots are ``(-B, -B)`` and ``(B, B)`` with derivative 1, so outside the interval the
map continues as the identity (the paper's linear tails) with log-derivative 0. Inputs out of
bounds, on the bounds, or huge are clamped before the spline is evaluated and then replaced by
the identity with :func:`torch.where`, so neither the value nor any gradient sees a NaN or an
infinity from the unused branch.

Parameters per dimension: ``K`` bin widths, ``K`` bin heights (softmax-normalised, each at
least ``min_bin_width`` / ``min_bin_height`` of the interval) and ``K - 1`` interior
derivatives (``min_derivative + softplus``), shifted so that **all-zero parameters give equal
bins and unit derivatives: the identity**.

**Conditioning.** Every raw parameter :math:`a` is first soft-bounded to :math:`(-L, L)`,

.. math:: a \leftarrow \frac{a}{1 + |a| / L}, \qquad L = \tfrac12 \ln 10^3 \text{ by default}

(zuko's ``MonotonicRQSTransform`` does the same to its widths and heights), which leaves
:math:`a` unchanged near 0 (zero still gives the identity) and keeps any two bin widths, or
heights, within a factor :math:`e^{2L} = 10^3` and the derivatives within
``min_derivative + softplus(shift +- L)`` (about 0.05 to 4). Without it a conditioner with
large outputs makes bins with :math:`s_k \approx 10^{-3}` and knot derivatives of 10 or more,
where the spline's slope falls to :math:`2 s_k^2 / \delta \approx 10^{-7}` in mid-bin; a
float32 output then only holds :math:`x` to :math:`\epsilon |y| / y' \approx 1`, in any
inverse formula (measured: the float64 inverse of the float32 output is as far off). See
``docs/reliability.md``, "Numerics under hard parameters".
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from flowforge.transforms.univariate import Transformer

__all__ = ["RationalQuadraticSpline"]


#: soft bounds up to this keep ``exp`` of a bounded parameter far inside float32's range, so
#: the bin sizes need no shift by the maximum and the derivatives' softplus can reuse the ``exp``
_SAFE_EXP = 30.0


class _SoftBound(torch.autograd.Function):
    r""":math:`a / (1 + |a| / L)` with its derivative :math:`1 / (1 + |a| / L)^2` written out:
    half the operations of autograd through the formula (it runs on every spline parameter at
    every step)."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        scale = a.abs().div_(bound).add_(1)
        ctx.save_for_backward(scale)
        return a / scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (scale,) = ctx.saved_tensors
        return grad / scale.square(), None


class RationalQuadraticSpline(Transformer):
    """Monotone rational-quadratic spline on ``[-bound, bound]``, identity outside.

    Arguments:
        bins: number of bins ``K``.
        bound: half-width ``B`` of the spline's interval (NSF uses 3 on tabular data).
        min_bin_width: smallest bin width, as a fraction of the interval.
        min_bin_height: smallest bin height, as a fraction of the interval.
        min_derivative: smallest derivative at a knot.
        raw_bound: the soft bound ``L`` on every raw parameter (``None``: unbounded, the
            behaviour before the bound, for checkpoints trained with it).
    """

    def __init__(
        self,
        bins: int = 8,
        bound: float = 3.0,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
        raw_bound: float | None = 0.5 * math.log(1e3),
    ) -> None:
        super().__init__()
        if bins < 1:
            raise ValueError(f"'bins' should be positive, got {bins}")
        if not bound > 0:
            raise ValueError(f"'bound' should be positive, got {bound}")
        for name, value in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
            if not 0 <= value * bins < 1:
                raise ValueError(f"'{name}' should be in [0, 1 / bins), got {value}")
        if not 0 <= min_derivative < 1:
            raise ValueError(f"'min_derivative' should be in [0, 1), got {min_derivative}")
        if raw_bound is not None and not raw_bound > 0:
            raise ValueError(f"'raw_bound' should be positive or None, got {raw_bound}")
        self.raw_bound = None if raw_bound is None else float(raw_bound)
        self.bins, self.bound = bins, float(bound)
        self.min_bin_width, self.min_bin_height = float(min_bin_width), float(min_bin_height)
        self.min_derivative = float(min_derivative)
        # softplus(shift) + min_derivative = 1: zero parameters give unit derivatives
        self._derivative_shift = math.log(math.expm1(1 - min_derivative))
        self._derivative_scale = math.expm1(1 - min_derivative)  # exp(shift)
        self.params_per_dim = 3 * bins - 1

    def _knots(self, weights: Tensor, minimum: float) -> Tensor:
        """Knot positions ``(*, K + 1)`` from positive unnormalised bin sizes ``(*, K)`` (the
        ``exp`` of the raw ones: a softmax)."""
        sizes = minimum + (1 - minimum * self.bins) * (weights / weights.sum(-1, keepdim=True))
        knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
        knots = 2 * self.bound * knots - self.bound
        # exact end points, whatever the rounding of the cumulative sum
        return torch.cat(
            [
                knots.new_full(knots.shape[:-1] + (1,), -self.bound),
                knots[..., 1:-1],
                knots.new_full(knots.shape[:-1] + (1,), self.bound),
            ],
            dim=-1,
        )

    def _spline(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""Knots ``xs``, ``ys`` and derivatives ``ds``, each ``(*, K + 1)``.

        With the soft bound, one ``exp`` over all ``3K - 1`` parameters at once (a contiguous
        tensor; on slices of a few entries PyTorch's CPU ``exp`` is several times slower per
        entry) gives the widths' and heights' softmax weights and the derivatives'
        :math:`\mathrm{softplus}(a + c) = \log(1 + e^{c} e^{a})`. Unbounded parameters take the
        softmax shifted by the (detached) maximum and ``softplus`` instead, which cannot
        overflow.
        """
        k = self.bins
        if params.shape[-1] != self.params_per_dim:
            raise ValueError(
                f"'params' should have {self.params_per_dim} entries in its last dimension "
                f"(3 * bins - 1), got {params.shape[-1]}"
            )
        if self.raw_bound is not None:
            params = _SoftBound.apply(params, self.raw_bound)
        if self.raw_bound is not None and self.raw_bound <= _SAFE_EXP:
            # one split: its backward is one concatenation, not zero-filled slice gradients
            e_w, e_h, e_d = torch.exp(params).split([k, k, k - 1], dim=-1)
            inner = self.min_derivative + torch.log1p(e_d * self._derivative_scale)
        else:
            raw_w, raw_h, raw_d = params.split([k, k, k - 1], dim=-1)
            # the max is detached: a softmax does not depend on the shift
            e_w = torch.exp(raw_w - raw_w.detach().amax(-1, keepdim=True))
            e_h = torch.exp(raw_h - raw_h.detach().amax(-1, keepdim=True))
            inner = self.min_derivative + F.softplus(raw_d + self._derivative_shift)
        xs = self._knots(e_w, self.min_bin_width)
        ys = self._knots(e_h, self.min_bin_height)
        ds = F.pad(inner, (1, 1), value=1.0)
        return xs, ys, ds

    @staticmethod
    def _bin(knots: Tensor, v: Tensor) -> Tensor:
        """Index ``(*, 1)`` of the bin of ``v`` (``(*,)``, inside the interval) among ``knots``."""
        return (v[..., None] >= knots[..., 1:-1]).sum(-1, keepdim=True)

    @staticmethod
    def _log_derivative(s: Tensor, d0: Tensor, d1: Tensor, xi: Tensor, denom: Tensor) -> Tensor:
        """:math:`\\log dy/dx` at ``xi`` of the bins, given the map's denominator ``denom``
        :math:`s + (\\delta^{(k+1)} + \\delta^{(k)} - 2 s)\\xi(1 - \\xi)`."""
        one_minus = 1 - xi
        numer = d1 * xi**2 + 2 * s * xi * one_minus + d0 * one_minus**2
        return 2 * torch.log(s) + torch.log(numer) - 2 * torch.log(denom)

    @staticmethod
    def _gather(
        xs: Tensor, ys: Tensor, ds: Tensor, idx: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Left knot, width, height and end derivatives of the bins ``idx`` (``(*, 1)``), each
        ``(*,)``: one gather (and one scatter in the backward pass) for all six."""
        table = torch.stack([xs, ys, ds], dim=-2)  # (*, 3, K + 1)
        ends = torch.cat([idx, idx + 1], dim=-1).unsqueeze(-2).expand(*idx.shape[:-1], 3, 2)
        (x0, x1), (y0, y1), (d0, d1) = (t.unbind(-1) for t in table.gather(-1, ends).unbind(-2))
        return x0, x1 - x0, y0, y1 - y0, d0, d1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        xs, ys, ds = self._spline(params)
        inside = (x >= -self.bound) & (x <= self.bound)
        xc = x.clamp(-self.bound, self.bound)
        x0, w, y0, h, d0, d1 = self._gather(xs, ys, ds, self._bin(xs, xc))
        s = h / w
        xi = ((xc - x0) / w).clamp(0, 1)
        xi_one_minus = xi * (1 - xi)
        denom = s + (d1 + d0 - 2 * s) * xi_one_minus
        y = y0 + h * (s * xi**2 + d0 * xi_one_minus) / denom
        logd = self._log_derivative(s, d0, d1, xi, denom)
        return torch.where(inside, y, x), torch.where(inside, logd, torch.zeros_like(logd))

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        xs, ys, ds = self._spline(params)
        inside = (y >= -self.bound) & (y <= self.bound)
        yc = y.clamp(-self.bound, self.bound)
        x0, w, y0, h, d0, d1 = self._gather(xs, ys, ds, self._bin(ys, yc))
        s = h / w
        dy = yc - y0
        curv = d1 + d0 - 2 * s
        a = h * (s - d0) + dy * curv
        b = h * d0 - dy * curv
        c = -s * dy
        disc = (b**2 - 4 * a * c).clamp_min(0)
        # the root in [0, 1], in the form that is stable when a is near 0
        xi = (2 * c / (-b - torch.sqrt(disc))).clamp(0, 1)
        x = x0 + xi * w
        logd = -self._log_derivative(s, d0, d1, xi, s + curv * xi * (1 - xi))
        return torch.where(inside, x, y), torch.where(inside, logd, torch.zeros_like(logd))

    def extra_repr(self) -> str:
        return f"bins={self.bins}, bound={self.bound}, raw_bound={self.raw_bound}"
