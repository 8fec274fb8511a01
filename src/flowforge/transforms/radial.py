r"""Radial flow (Rezende and Mohamed 2015, https://arxiv.org/abs/1505.05770, section 4.1).

.. math::
    f(z) = z + \beta\, h(\alpha, r)\,(z - z_0), \qquad r = \|z - z_0\|, \qquad
    h(\alpha, r) = \frac{1}{\alpha + r}

    \log|\det J_f(z)| = (D - 1)\log(1 + \beta h)
        + \log\bigl(1 + \beta h + \beta h'(\alpha, r)\,r\bigr)
        = (D - 1)\log(1 + \beta h) + \log\Bigl(1 + \frac{\alpha\beta}{(\alpha + r)^2}\Bigr)

(the matrix determinant lemma on :math:`(1 + \beta h) I + \beta h' r\, \hat d \hat d^\top`).
``f`` is invertible when ``alpha > 0`` and ``beta >= -alpha`` (appendix A of the paper); the
raw parameters are mapped by ``alpha = softplus(a)`` and ``beta = -alpha + softplus(b)``, so the
all-zero initialisation gives ``beta = 0``, the identity.

Directions. :meth:`Radial.forward` is the paper's map ``f``, the one used to sample in
variational inference. The paper lists no inverse, but none needs a numerical solve: taking
norms of ``y - z_0 = (1 + beta h(r)) (z - z_0)`` gives ``r_y = r (alpha + beta + r) / (alpha + r)``,
a quadratic in ``r``,

.. math:: r^2 + (\alpha + \beta - r_y)\, r - \alpha r_y = 0,

whose roots have product ``-alpha r_y <= 0``, so exactly one is non-negative; it is computed
in the cancellation-free form, and ``z = z_0 + (y - z_0) / (1 + beta h(r))``. Both directions
are therefore exact and one pass (``fast_inverse = True``), unlike :class:`~flowforge.
transforms.planar.Planar`. Flows for variational inference still place ``Inverse(Radial(...))``
in the sampling slot, like planar layers.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from flowforge.transforms.amortized import ParameterHead
from flowforge.transforms.base import Transform, check_event

__all__ = ["Radial"]


class Radial(Transform):
    r"""One radial layer :math:`f(z) = z + \beta (z - z_0) / (\alpha + \|z - z_0\|)`.

    With ``context_features > 0`` the parameters ``(z_0, alpha, beta)`` are amortised: a
    zero-initialised linear map of the context is added to the global ones.

    Arguments:
        features: the dimension ``D``.
        context_features: size of a context vector that predicts the parameters (0: global).
    """

    def __init__(self, features: int, context_features: int = 0) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        self.features = features
        init = torch.cat([torch.randn(features), torch.zeros(2)])  # (z0, raw alpha, raw beta)
        self.params = ParameterHead(init, context_features)

    def _unpack(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        check_event(x, (self.features,))
        d = self.features
        theta = self.params(x.shape[0], context)  # (B, D + 2)
        alpha = F.softplus(theta[:, d])
        beta = -alpha + F.softplus(theta[:, d + 1])
        return theta[:, :d], alpha, beta

    def _ladj(self, r: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
        """``log|det J_f|`` at radius ``r`` (of the point ``f`` is applied to), ``(B,)``."""
        h = 1 / (alpha + r)
        return (self.features - 1) * torch.log1p(beta * h) + torch.log1p(alpha * beta * h * h)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z0, alpha, beta = self._unpack(x, context)
        d = x - z0  # (B, D)
        r = torch.linalg.vector_norm(d, dim=-1)  # (B,)
        z = x + (beta / (alpha + r))[:, None] * d
        return z, self._ladj(r, alpha, beta)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z0, alpha, beta = self._unpack(z, context)
        d = z - z0  # (B, D)
        r_y = torch.linalg.vector_norm(d, dim=-1)  # (B,)
        q = alpha + beta - r_y
        disc = torch.sqrt(q * q + 4 * alpha * r_y)
        # the non-negative root, without cancellation on either sign of q
        r = torch.where(q <= 0, (disc - q) / 2, 2 * alpha * r_y / (disc + q.clamp_min(0)))
        x = z0 + d / (1 + beta / (alpha + r))[:, None]
        return x, -self._ladj(r, alpha, beta)

    def extra_repr(self) -> str:
        return f"features={self.features}"
