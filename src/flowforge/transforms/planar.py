r"""Planar flow (Rezende and Mohamed 2015, https://arxiv.org/abs/1505.05770, section 4.1).

.. math::
    f(z) = z + \hat u \, h(w^\top z + b), \qquad h = \tanh, \qquad
    \log|\det J_f(z)| = \log|1 + h'(w^\top z + b)\, w^\top \hat u|

(the matrix determinant lemma). ``f`` is invertible when :math:`w^\top \hat u \ge -1`
(appendix A of the paper); the raw ``u`` is reparameterised as

.. math:: \hat u = u + \bigl(m(w^\top u) - w^\top u\bigr) \frac{w}{\|w\|^2}, \qquad
    m(x) = -1 + \mathrm{softplus}(x + \log(e - 1))

so that :math:`w^\top \hat u = m(w^\top u) > -1`. The paper's ``m`` is shifted by
``log(e - 1)`` so that ``m(0) = 0``: with the initial ``u = 0``, ``u_hat = 0`` and the layer
starts at the identity.

Directions. :meth:`Planar.forward` is the paper's cheap map ``f`` (one pass), the one used to
*sample* in variational inference. :meth:`Planar.inverse` has no closed form: writing
``a = w^T x + b`` for the pre-activation of the point ``x = f^{-1}(y)``, ``a`` solves the 1-D
monotone equation

.. math:: g(a) = a + s \tanh(a) - (w^\top y + b) = 0, \qquad s = w^\top \hat u > -1,

whose root lies in ``[c - |s|, c + |s|]`` (``c = w^T y + b``). It is found by Newton's method
safeguarded by bisection on that bracket, with tolerance ``tol`` and at most ``max_iter``
iterations (:class:`InverseDidNotConverge` at the cap); then ``x = y - u_hat tanh(a)``.
Gradients of the inverse come from one differentiable Newton step at the root (the implicit
function theorem). A flow that samples with ``f`` places ``Inverse(Planar(...))`` in its
transform (see :func:`flowforge.models.planar_radial.planar`), so ``Flow.sample`` and
``Flow.sample_and_log_prob`` are one pass and ``Flow.log_prob`` of external points uses the
root solve.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from flowforge.transforms.amortized import ParameterHead
from flowforge.transforms.base import InverseDidNotConverge, Transform, check_event

__all__ = ["Planar", "constrain_u"]

_SHIFT = math.log(math.e - 1)  # softplus(_SHIFT) = 1, so m(0) = 0


def constrain_u(u: Tensor, w: Tensor) -> Tensor:
    r"""The reparameterised ``u_hat`` with :math:`w^\top \hat u = m(w^\top u) > -1`.

    ``u``, ``w``: ``(batch, D)``; returns ``(batch, D)``.
    """
    wu = (w * u).sum(-1, keepdim=True)  # (B, 1)
    m = -1 + F.softplus(wu + _SHIFT)
    return u + (m - wu) * w / w.pow(2).sum(-1, keepdim=True)


class Planar(Transform):
    r"""One planar layer :math:`f(z) = z + \hat u \tanh(w^\top z + b)` over ``(batch, D)``.

    ``forward`` is ``f`` (one pass); ``inverse`` is a bounded 1-D root solve (see the module
    docstring). With ``context_features > 0`` the parameters ``(u, w, b)`` are amortised: a
    zero-initialised linear map of the context is added to the global ones.

    Arguments:
        features: the dimension ``D``.
        context_features: size of a context vector that predicts the parameters (0: global).
        tol: tolerance on the pre-activation ``a`` of the inverse, relative to ``1 + |a|`` and
            floored at 16 machine epsilons of the input's dtype.
        max_iter: iteration cap of the inverse's root solve.
    """

    fast_forward = True
    fast_inverse = False

    def __init__(
        self, features: int, context_features: int = 0, tol: float = 1e-9, max_iter: int = 100
    ) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        if not tol > 0:
            raise ValueError(f"'tol' should be positive, got {tol}")
        if max_iter < 1:
            raise ValueError(f"'max_iter' should be positive, got {max_iter}")
        self.features, self.tol, self.max_iter = features, float(tol), int(max_iter)
        w = torch.randn(features) / math.sqrt(features)
        init = torch.cat([torch.zeros(features), w, torch.zeros(1)])  # (u, w, b)
        self.params = ParameterHead(init, context_features)

    def _unpack(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        check_event(x, (self.features,))
        d = self.features
        theta = self.params(x.shape[0], context)  # (B, 2D + 1)
        u, w, b = theta[:, :d], theta[:, d : 2 * d], theta[:, 2 * d]
        return constrain_u(u, w), w, b

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u, w, b = self._unpack(x, context)
        h = torch.tanh((w * x).sum(-1) + b)  # (B,)
        z = x + u * h[:, None]
        # 1 + h'(a) w^T u_hat > 0 because w^T u_hat > -1 and 0 < h' <= 1
        return z, torch.log1p((1 - h.pow(2)) * (w * u).sum(-1))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u, w, b = self._unpack(z, context)
        s = (w * u).sum(-1)  # (B,), > -1
        c = (w * z).sum(-1) + b  # (B,)
        with torch.no_grad():
            root = self._solve(s, c)
        # one Newton step at the root carries the implicit-function gradients to s and c
        t = torch.tanh(root)
        a = root - (root + s * t - c) / (1 + s * (1 - t.pow(2)))
        h = torch.tanh(a)
        return z - u * h[:, None], -torch.log1p((1 - h.pow(2)) * s)

    def _solve(self, s: Tensor, c: Tensor) -> Tensor:
        """The root of ``a + s tanh(a) = c`` by bisection-safeguarded Newton, ``(B,)``."""
        lo, hi = c - s.abs(), c + s.abs()
        a = c.clone()
        floor = 16 * torch.finfo(c.dtype).eps
        for _ in range(self.max_iter):
            t = torch.tanh(a)
            g = a + s * t - c
            lo = torch.where(g < 0, a, lo)
            hi = torch.where(g > 0, a, hi)
            newton = a - g / (1 + s * (1 - t.pow(2)))
            inside = (newton >= lo) & (newton <= hi)
            new = torch.where(inside, newton, (lo + hi) / 2)
            moved = (new - a).abs() > max(self.tol, floor) * (1 + new.abs())
            a = new
            if not bool(moved.any()):
                return a
        raise InverseDidNotConverge(
            f"Planar inverse: {int(moved.sum())} of {a.numel()} samples did not reach "
            f"tol={self.tol} in max_iter={self.max_iter} iterations"
        )

    def extra_repr(self) -> str:
        return f"features={self.features}, tol={self.tol}, max_iter={self.max_iter}"
