r"""Element-wise transforms with their own parameters: affine, diagonal scaling, logit, sigmoid.

All act on each entry of ``(batch, *event)`` independently, so their Jacobian is diagonal and
the log-determinant is the sum of the element-wise log-derivatives. Learned parameters have the
shape of dimension 1 (features, or channels of an image) and broadcast over the rest.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowforge.nn.data_start import has_started, mark_started, track_start
from flowforge.transforms.base import Inverse, Transform, sum_except_batch

__all__ = ["DiagonalScaling", "ElementwiseAffine", "Logit", "Sigmoid"]


def _channel_view(p: Tensor, x: Tensor) -> Tensor:
    """Reshapes a per-feature parameter ``(C,)`` to broadcast over ``x`` of shape ``(B, C, *)``."""
    return p.reshape(1, -1, *([1] * (x.dim() - 2)))


def _positions(x: Tensor) -> int:
    """How many positions share one per-feature parameter (``H * W`` for images, 1 for vectors)."""
    return math.prod(x.shape[2:])


def feature_std(x: Tensor, owner: str) -> Tensor:
    """Standard deviation ``(C,)`` of each feature of dimension 1 over the batch and positions:
    the data-dependent start of :class:`DiagonalScaling` and ``ActNorm``, named in the error."""
    if x.shape[0] * _positions(x) < 2:
        raise ValueError(f"{owner} initialisation needs more than one value per feature")
    return x.std(dim=[0, *range(2, x.dim())], unbiased=False)


class ElementwiseAffine(Transform):
    r"""A learned element-wise affine map over dimension 1.

    .. math:: z = x \, e^{s} + t, \qquad \log|\det J| = \textstyle\sum_i s_i

    Arguments:
        features: size of dimension 1 (vector features or image channels).
        shift: learn the shift ``t`` (otherwise ``t = 0``).
    """

    def __init__(self, features: int, shift: bool = True) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.shift = nn.Parameter(torch.zeros(features)) if shift else None

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s = _channel_view(self.log_scale, x)
        z = x * torch.exp(s)
        if self.shift is not None:
            z = z + _channel_view(self.shift, x)
        ladj = self.log_scale.sum() * _positions(x)
        return z, ladj.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.shift is not None:
            z = z - _channel_view(self.shift, z)
        x = z * torch.exp(-_channel_view(self.log_scale, z))
        ladj = -self.log_scale.sum() * _positions(z)
        return x, ladj.expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"features={self.log_scale.numel()}, shift={self.shift is not None}"


class Standardize(Transform):
    r"""A fixed element-wise standardisation over dimension 1, fitted on training data.

    .. math:: z = (x - \mu) / \sigma, \qquad \log|\det J| = -\textstyle\sum_i \log \sigma_i

    In front of a flow it lets the flow see standardised data while ``log_prob`` stays in the
    data's own units (its log-determinant is part of the density) and samples come back in
    them. ``loc`` and ``scale`` are buffers: saved with the model, never trained.

    Arguments:
        loc: per-feature means ``(features,)``.
        scale: per-feature standard deviations ``(features,)``, positive and finite.
    """

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        super().__init__()
        loc, scale = torch.as_tensor(loc).flatten(), torch.as_tensor(scale).flatten()
        if loc.shape != scale.shape or loc.numel() < 1:
            raise ValueError(
                f"'loc' and 'scale' should be equal-length vectors, got {tuple(loc.shape)} and "
                f"{tuple(scale.shape)}"
            )
        if not bool(torch.isfinite(loc).all()) or not bool(
            ((scale > 0) & torch.isfinite(scale)).all()
        ):
            raise ValueError("'loc' should be finite and 'scale' positive and finite")
        self.register_buffer("loc", loc.clone())
        self.register_buffer("scale", scale.clone())

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = (x - _channel_view(self.loc, x)) / _channel_view(self.scale, x)
        ladj = -torch.log(self.scale).sum() * _positions(x)
        return z, ladj.expand(x.shape[0]).to(x.dtype)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = z * _channel_view(self.scale, z) + _channel_view(self.loc, z)
        ladj = torch.log(self.scale).sum() * _positions(z)
        return x, ladj.expand(z.shape[0]).to(z.dtype)

    def extra_repr(self) -> str:
        return f"features={self.loc.numel()}"


class DiagonalScaling(ElementwiseAffine):
    r"""NICE's last layer: a learned diagonal scaling :math:`z = e^{s} \odot x`, the only volume
    change of a NICE model (Dinh et al. 2014, https://arxiv.org/abs/1410.8516, section 3.3).

    Arguments:
        features: size of dimension 1.
        data_init: the first training-mode forward sets :math:`s = -\log(\mathrm{std} +
            \varepsilon)` of its batch per feature (ActNorm's scale without its shift), so the
            output starts at unit scale; after that ``s`` is an ordinary parameter and the flag
            lives in the buffer ``initialized``. The paper does not say how ``s`` starts; from
            ``s = 0`` Adam moves it about ``lr`` per step, while dequantized 8-bit background
            pixels need ``s`` near ``ln 886`` (6.8).
        eps: added to the standard deviation at initialisation.
    """

    def __init__(self, features: int, data_init: bool = False, eps: float = 1e-6) -> None:
        super().__init__(features, shift=False)
        self.data_init, self.eps = data_init, float(eps)
        if data_init:
            track_start(self)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.data_init and self.training and not has_started(self):
            with torch.no_grad():
                std = feature_std(x, "DiagonalScaling")
                self.log_scale.copy_(-torch.log(std + self.eps))
                mark_started(self)
        return super().forward(x, context)

    def extra_repr(self) -> str:
        return f"features={self.log_scale.numel()}, data_init={self.data_init}"


class Logit(Transform):
    r"""The logit map from the unit interval to the real line, with RealNVP's ``alpha``.

    .. math::
        s = \alpha + (1 - 2\alpha) x, \qquad z = \log s - \log(1 - s), \qquad
        \log \frac{dz}{dx} = \log(1 - 2\alpha) - \log s - \log(1 - s)

    (Dinh et al. 2016, https://arxiv.org/abs/1605.08803, section 4.1.) With ``alpha > 0`` the
    end points 0 and 1 map to finite values; with ``alpha = 0`` they are outside the domain.

    Arguments:
        alpha: the squeeze ``alpha`` in ``[0, 0.5)``.
    """

    def __init__(self, alpha: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"'alpha' should be in [0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        lo_ok = x >= 0 if self.alpha > 0 else x > 0
        hi_ok = x <= 1 if self.alpha > 0 else x < 1
        if not bool((lo_ok & hi_ok).all()):
            bad = x[~(lo_ok & hi_ok)]
            interval = "[0, 1]" if self.alpha > 0 else "(0, 1) (alpha = 0)"
            raise ValueError(
                f"Logit: input 'x' should lie in {interval}; got {bad.numel()} values outside, "
                f"e.g. {bad.flatten()[:3].tolist()}"
            )
        s = self.alpha + (1 - 2 * self.alpha) * x
        log_s, log_1ms = torch.log(s), torch.log1p(-s)
        ladj = math.log1p(-2 * self.alpha) - log_s - log_1ms
        return log_s - log_1ms, sum_except_batch(ladj)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s = torch.sigmoid(z)
        x = (s - self.alpha) / (1 - 2 * self.alpha)
        # log ds/dz = log s + log(1 - s) = -softplus(-z) - softplus(z), stable for large |z|
        ladj = -nn.functional.softplus(-z) - nn.functional.softplus(z) - math.log1p(-2 * self.alpha)
        return x, sum_except_batch(ladj)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(Inverse):
    """The logistic sigmoid from the real line to the unit interval: the inverse of :class:`Logit`
    with ``alpha = 0``."""

    def __init__(self) -> None:
        super().__init__(Logit(alpha=0.0))
