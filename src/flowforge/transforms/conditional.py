r"""Image-conditioned Glow layers (c-Glow) and the transform that encodes the context image.

c-Glow (Lu and Huang 2020, "Structured Output Learning with Conditional Generative Flows",
AAAI, https://arxiv.org/abs/1905.13288) models :math:`p(y \mid x)` for an output image ``y``
given an input image ``x`` with a Glow whose every layer takes its parameters from ``x``:

- conditional actnorm: :math:`z = (y + b(x)) \odot e^{s(x)}`, per sample and channel,
  :math:`\log|\det J| = HW \sum_c s_c(x)`;
- conditional 1x1 convolution: :math:`z = W(x) y` per pixel with a per-sample ``C x C``
  matrix, :math:`\log|\det J| = HW \log|\det W(x)|`;
- conditional affine coupling: the coupling network sees the conditioning features
  concatenated to the conditioning half (:class:`~flowforge.nn.context_encoder.FeatureConvNet`).

Here the conditioning features come from one
:class:`~flowforge.nn.context_encoder.ContextEncoder` per flow (a
:class:`~flowforge.nn.context_encoder.FeaturePyramid`, see :class:`ImageConditioned`); the
actnorm and 1x1 heads average them over the pixels. The per-sample matrix is kept in LU
form, ``W(x) = P L(x) (U(x) + diag(sign * exp(s(x))))``, so it is invertible for every
context and its log-determinant is :math:`\sum_i s_i(x)` (the paper's network outputs ``W``
directly and takes its log-determinant, which need not exist).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.nn.context_encoder import (
    ContextEncoder,
    FeaturePyramid,
    GlobalFeatureHead,
    features_at,
)
from flowforge.nn.data_start import has_started, mark_started, track_start
from flowforge.transforms.base import Transform
from flowforge.transforms.linear import LULinear
from flowforge.transforms.normalization import actnorm_start

__all__ = [
    "ConditionalActNorm",
    "ConditionalLULinear",
    "ContextShapeError",
    "ImageConditioned",
    "check_context_image",
]


class ContextShapeError(ValueError):
    """A context image that is missing or whose shape is not the one the flow was built for."""


def check_context_image(
    context: Tensor | None, context_shape: Sequence[int], batch: int | None = None
) -> None:
    """Raises :class:`ContextShapeError` unless ``context`` is ``(batch, *context_shape)``."""
    shape = tuple(int(s) for s in context_shape)
    expected = f"(batch, {', '.join(map(str, shape))})"
    if context is None:
        raise ContextShapeError(
            f"this flow is conditioned on an image: give a 'context' {expected}"
        )
    if not isinstance(context, Tensor):
        raise ContextShapeError(
            f"'context' should be a tensor {expected}, got {type(context).__name__}"
        )
    if context.dim() != len(shape) + 1 or tuple(context.shape[1:]) != shape:
        raise ContextShapeError(
            f"'context' should be an image of shape {expected}, got {tuple(context.shape)}"
        )
    if batch is not None and context.shape[0] != batch:
        raise ContextShapeError(
            f"'context' has {context.shape[0]} images for a batch of {batch}: give one per input"
        )


def _view(p: Tensor, x: Tensor) -> Tensor:
    """``(B, C)`` -> ``(B, C, 1, ...)`` broadcasting over the positions of ``x``."""
    return p.reshape(*p.shape, *([1] * (x.dim() - 2)))


class ConditionalActNorm(Transform):
    r"""Actnorm whose per-channel scale and bias depend on the conditioning features.

    .. math::
        z = (x + b_0 + \Delta b(h)) \, e^{s_0 + \Delta s(h)}, \qquad
        \log|\det J| = n_{pos} \textstyle\sum_c (s_0 + \Delta s(h))_c

    ``h`` are the features of ``x``'s spatial size, ``Delta`` a zero-initialised head
    (:class:`~flowforge.nn.context_encoder.GlobalFeatureHead`); ``b_0, s_0`` get Glow's
    data-dependent initialisation on the first training batch (``initialized`` buffer), so
    the layer starts as Glow's actnorm. The log-determinant is per sample.

    Arguments:
        features: channels of ``x``.
        feature_channels: channels ``F`` of the conditioning features.
        eps: added to the standard deviation at initialisation.
    """

    def __init__(self, features: int, feature_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        self.eps = float(eps)
        self.bias = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.head = GlobalFeatureHead(feature_channels, 2 * features)
        track_start(self)

    def _params(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        delta = self.head(features_at(context, x))  # (B, 2C)
        db, ds = delta.chunk(2, dim=1)
        return self.bias + db, self.log_scale + ds  # (B, C) each

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Sets ``b_0`` and ``s_0`` from the statistics of the batch ``x`` ``(B, C, *)``."""
        bias, log_scale = actnorm_start(x, "ConditionalActNorm", self.eps)
        self.bias.copy_(bias)
        self.log_scale.copy_(log_scale)
        mark_started(self)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not has_started(self):
            self.initialize(x)
        b, s = self._params(x, context)
        z = (x + _view(b, x)) * _view(torch.exp(s), x)
        return z, s.sum(1) * math.prod(x.shape[2:])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, s = self._params(z, context)
        x = z * _view(torch.exp(-s), z) - _view(b, z)
        return x, -s.sum(1) * math.prod(z.shape[2:])

    def extra_repr(self) -> str:
        return f"features={self.bias.numel()}, initialized={bool(self.initialized)}"


class ConditionalLULinear(LULinear):
    r"""Invertible 1x1 convolution with a per-sample weight matrix in LU form.

    .. math::
        W(h) = P \, (L_0 + \Delta L(h)) \, (U_0 + \Delta U(h) + \mathrm{diag}(\sigma \odot
        e^{s_0 + \Delta s(h)})), \qquad \log|\det J| = n_{pos} \textstyle\sum_i (s_0 +
        \Delta s(h))_i

    ``L`` unit lower and ``U`` upper triangular, ``P`` a fixed permutation, ``sigma`` fixed
    signs (as :class:`~flowforge.transforms.linear.LULinear`, whose parameters are the
    context-free part); one zero-initialised head maps the pooled features to a ``C x C``
    array whose strict lower triangle is ``Delta L``, strict upper ``Delta U`` and diagonal
    ``Delta s``. Invertible for every context; the inverse is two batched triangular solves.

    Arguments:
        features: channels of ``x``.
        feature_channels: channels ``F`` of the conditioning features.
        init: ``"orthogonal"`` (Glow) or ``"identity"`` for the context-free part.
    """

    def __init__(self, features: int, feature_channels: int, init: str = "orthogonal") -> None:
        super().__init__(features, bias=True, init=init)
        self.head = GlobalFeatureHead(feature_channels, features * features)

    def _sample_factors(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample ``L (B, C, C)``, ``U (B, C, C)`` and log-diagonal ``(B, C)``."""
        c = self.log_diag.numel()
        delta = self.head(features_at(context, x)).reshape(-1, c, c)
        eye = torch.eye(c, dtype=x.dtype, device=x.device)
        lower = (self.lower + delta) * self.lower_mask + eye
        log_diag = self.log_diag + torch.diagonal(delta, dim1=1, dim2=2)
        upper = torch.triu(self.upper + delta, 1) + torch.diag_embed(self.sign * log_diag.exp())
        return lower, upper, log_diag

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        lower, upper, log_diag = self._sample_factors(x, context)
        weight = self.permutation @ lower @ upper  # (B, C, C)
        z = torch.einsum("bij,bj...->bi...", weight, x) + self._bias_view(x)
        return z, log_diag.sum(1) * math.prod(x.shape[2:])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        lower, upper, log_diag = self._sample_factors(z, context)
        rhs = (z - self._bias_view(z)).reshape(z.shape[0], z.shape[1], -1)  # (B, C, N)
        rhs = self.permutation.T @ rhs  # P^T z
        y = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper, y, upper=True).reshape(z.shape)
        return x, -log_diag.sum(1) * math.prod(z.shape[2:])


class ImageConditioned(Transform):
    """Runs ``inner`` conditioned on a context image through a conditioning network.

    ``forward(x, context)`` checks that ``context`` is ``(B, *context_shape)``, encodes it once
    (``encoder(context)``, a :class:`~flowforge.nn.context_encoder.FeaturePyramid`) and calls
    ``inner(x, pyramid)``; every conditional layer inside takes the map of its own spatial
    size. The gradient of the loss reaches the encoder through every layer.

    Arguments:
        encoder: the conditioning network, e.g.
            :class:`~flowforge.nn.context_encoder.ContextEncoder`.
        inner: the transform of ``x`` (a multi-scale flow of conditional steps).
        context_shape: ``(C_c, H, W)`` of one context image.
    """

    def __init__(self, encoder: nn.Module, inner: Transform, context_shape: Sequence[int]) -> None:
        super().__init__()
        shape = tuple(int(s) for s in context_shape)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ValueError(f"'context_shape' should be positive (C, H, W), got {context_shape}")
        if isinstance(encoder, ContextEncoder) and encoder.in_channels != shape[0]:
            raise ValueError(
                f"the encoder takes {encoder.in_channels} channels, the context has {shape[0]}"
            )
        self.encoder, self.inner, self.context_shape = encoder, inner, shape
        # speaks for its subtree (flowforge.flows.infer_context_features): the context's channels
        self.context_features = shape[0]

    @property
    def fast_forward(self) -> bool:  # type: ignore[override]
        return self.inner.fast_forward

    @property
    def fast_inverse(self) -> bool:  # type: ignore[override]
        return self.inner.fast_inverse

    def encode(self, context: Tensor | None, batch: int) -> FeaturePyramid:
        check_context_image(context, self.context_shape, batch)
        return FeaturePyramid(self.encoder(context))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.inner(x, self.encode(context, x.shape[0]))  # type: ignore[arg-type]

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.inner.inverse(z, self.encode(context, z.shape[0]))  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"context_shape={self.context_shape}"
