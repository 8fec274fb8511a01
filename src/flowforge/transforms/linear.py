r"""Learned invertible linear maps of dimension 1 (vector features, or image channels per pixel).

Applied to an image ``(B, C, H, W)`` the map acts on the channels of every pixel: this is Glow's
invertible 1x1 convolution (Kingma and Dhariwal 2018, https://arxiv.org/abs/1807.03039), and
its log-determinant is ``H * W`` times that of the ``C x C`` matrix. :class:`LULinear` is the
map in LU form (O(C) log-determinant); the plain one is
:class:`~flowforge.transforms.conv1x1.InvertibleConv1x1`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowforge.transforms.base import Transform

__all__ = ["LULinear", "LinearStandardize"]


def apply_channels(weight: Tensor, x: Tensor) -> Tensor:
    """``x @ weight.T`` along dimension 1 of ``x``: ``(B, C, *) -> (B, C, *)``."""
    if x.dim() == 2:
        return x @ weight.T
    return torch.einsum("ij,bj...->bi...", weight, x)


class LULinear(Transform):
    r"""An invertible linear map in LU form (Glow, section 3.2).

    .. math::
        z = W x + b, \qquad W = P L (U + \mathrm{diag}(\sigma \odot e^{s})), \qquad
        \log|\det J| = n_{pos} \textstyle\sum_i s_i

    ``P`` is a fixed permutation, ``L`` unit lower triangular, ``U`` strictly upper triangular,
    ``sigma`` fixed signs and ``s`` the learned log-magnitudes of the diagonal; ``n_pos`` is the
    number of positions sharing the map (``H * W`` for images, 1 for vectors). The log-det costs
    O(C) and the inverse two triangular solves.

    Arguments:
        features: size of dimension 1.
        bias: learn the offset ``b``.
        init: ``"orthogonal"`` starts from the LU factors of a random rotation, as Glow does;
            ``"identity"`` starts from ``W = I``.
    """

    def __init__(self, features: int, bias: bool = True, init: str = "orthogonal") -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        if init == "orthogonal":
            w = torch.linalg.qr(torch.randn(features, features, dtype=torch.float64))[0]
        elif init == "identity":
            w = torch.eye(features, dtype=torch.float64)
        else:
            raise ValueError(f"'init' should be 'orthogonal' or 'identity', got {init!r}")
        p, lower, upper = torch.linalg.lu(w)
        diag = torch.diagonal(upper)
        self.register_buffer("permutation", p.float())
        self.register_buffer("sign", torch.sign(diag).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(features, features), -1))
        self.lower = nn.Parameter((lower * self.lower_mask.double()).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_diag = nn.Parameter(torch.log(diag.abs()).float())
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.log_diag.numel(), dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_diag))
        return lower, upper

    def weight(self) -> Tensor:
        """The matrix ``W = P L U``, shape ``(features, features)``."""
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def _bias_view(self, x: Tensor) -> Tensor:
        return self.bias.reshape(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = apply_channels(self.weight(), x)
        if self.bias is not None:
            z = z + self._bias_view(x)
        ladj = self.log_diag.sum() * math.prod(x.shape[2:])
        return z, ladj.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.bias is not None:
            z = z - self._bias_view(z)
        lower, upper = self._factors()
        # W x = z  <=>  L U x = P^T z: solve with channels last, positions flattened into rows
        rows = z.movedim(1, -1).reshape(-1, z.shape[1])  # (B * positions, C)
        rhs = (rows @ self.permutation).T  # P^T z as columns: (C, B * positions)
        y = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper, y, upper=True).T
        x = x.reshape(*z.movedim(1, -1).shape).movedim(-1, 1)
        ladj = -self.log_diag.sum() * math.prod(z.shape[2:])
        return x, ladj.expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"features={self.log_diag.numel()}, bias={self.bias is not None}"


class LinearStandardize(Transform):
    r"""A fixed affine standardisation with a full covariance and a context-dependent mean.

    .. math::
        z = L(c)^{-1}\,(x - \mu - W c), \qquad \log|\det J| = -\textstyle\sum_i \log L(c)_{ii}

    with :math:`L` lower triangular (positive diagonal): one factor, or one per level of a
    one-hot context, :math:`L(c) = \sum_k c_k L_k` (a convex combination of such factors is one
    too, so any context of non-negative weights summing to one is valid). Fitted on training
    data (:mod:`flowforge.data.standardization`) as a linear-Gaussian regression of :math:`x`
    on :math:`c` (or a Gaussian per level), it makes the flow behind it start as that Gaussian:
    with the flow at the identity and a standard normal base,
    :math:`p(x \mid c) = \mathcal N(x;\ \mu + W c,\ L(c) L(c)^\top)`. Training then only has
    to learn what the Gaussian misses. ``loc``, ``scale`` and ``weight`` are buffers.

    Arguments:
        loc: ``(D,)`` offset :math:`\mu`.
        scale: ``(D, D)`` lower-triangular :math:`L` with a positive diagonal (entries above
            the diagonal are ignored), or ``(C, D, D)``: one per level of a one-hot context.
        weight: ``(D, C)`` context weights :math:`W`, or ``None`` (no context).
    """

    def __init__(self, loc: Tensor, scale: Tensor, weight: Tensor | None = None) -> None:
        super().__init__()
        loc, scale = torch.as_tensor(loc).flatten(), torch.tril(torch.as_tensor(scale))
        d = loc.numel()
        if d < 1 or scale.shape[-2:] != (d, d) or scale.dim() not in (2, 3):
            raise ValueError(
                f"'loc' should be (D,) and 'scale' (D, D) or (C, D, D), got {tuple(loc.shape)} "
                f"and {tuple(scale.shape)}"
            )
        diag = torch.diagonal(scale, dim1=-2, dim2=-1)
        if not bool(torch.isfinite(loc).all() and torch.isfinite(scale).all() and (diag > 0).all()):
            raise ValueError("'loc' and 'scale' should be finite, 'scale' with a positive diagonal")
        if weight is not None:
            weight = torch.as_tensor(weight)
            if weight.dim() != 2 or weight.shape[0] != d or not bool(torch.isfinite(weight).all()):
                raise ValueError(f"'weight' should be a finite ({d}, C) matrix")
        if scale.dim() == 3 and (weight is None or weight.shape[1] != scale.shape[0]):
            raise ValueError("a 'scale' per context level needs 'weight' (D, C) with C levels")
        self.register_buffer("loc", loc.clone())
        self.register_buffer("scale", scale.clone())
        self.register_buffer("weight", None if weight is None else weight.clone())
        self.context_features = 0 if weight is None else int(weight.shape[1])

    def _mean_scale(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """The mean ``(B, D)`` and the factor ``(D, D)`` or ``(B, D, D)`` of each row."""
        scale = self.scale.to(x.dtype)
        if self.weight is None:
            return self.loc.to(x.dtype).expand_as(x), scale
        if context is None:
            raise ValueError("LinearStandardize: this standardisation needs the context")
        c = context.to(x.dtype)
        mean = self.loc.to(x.dtype) + c @ self.weight.to(x.dtype).T
        if scale.dim() == 3:
            scale = torch.einsum("bk,kij->bij", c, scale)
        return mean, scale

    @staticmethod
    def _ladj(scale: Tensor, batch: int) -> Tensor:
        logdiag = torch.log(torch.diagonal(scale, dim1=-2, dim2=-1)).sum(-1)
        return logdiag.expand(batch) if logdiag.dim() == 0 else logdiag

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, scale = self._mean_scale(x, context)
        r = (x - mean).unsqueeze(-1)  # (B, D, 1)
        z = torch.linalg.solve_triangular(scale, r, upper=False).squeeze(-1)
        return z, -self._ladj(scale, x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, scale = self._mean_scale(z, context)
        x = (scale @ z.unsqueeze(-1)).squeeze(-1) + mean
        return x, self._ladj(scale, z.shape[0])

    def extra_repr(self) -> str:
        c = 0 if self.weight is None else self.weight.shape[1]
        per_level = ", a factor per level" if self.scale.dim() == 3 else ""
        return f"features={self.loc.numel()}, context_features={c}{per_level}"
