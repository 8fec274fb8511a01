r"""Sum-of-squares (SOS) polynomial transformer.

Jaini, Selby and Yu 2019, "Sum-of-Squares Polynomial Flow", https://arxiv.org/abs/1905.02325.

.. math::
    T(x) = c + \int_0^x \Big( \sum_{\kappa=1}^{k} \big( \sum_{l=0}^{r} a_{l\kappa} u^l \big)^2
    + \epsilon \Big) du
    = c + \epsilon x + \sum_{n=0}^{2r} \frac{g_n}{n + 1} x^{n + 1}, \qquad
    T'(x) = \epsilon + \sum_{n=0}^{2r} g_n x^n \ge \epsilon > 0

with :math:`g_n = \sum_\kappa \sum_{l + m = n} a_{l\kappa} a_{m\kappa}`. The integrand is a sum of
squares, so ``T`` is increasing; the floor ``epsilon = min_derivative`` makes it *strictly*
increasing with a finite log-derivative everywhere. ``r = 0`` is an affine transformer.

Parameters per dimension: ``c`` and the ``k (r + 1)`` coefficients ``a``; the constant
coefficients are offset by :math:`\sqrt{(1 - \epsilon) / k}` so that **all-zero parameters
give** :math:`T(x) = x`.

The inverse has no closed form for ``r > 0``: it is solved by bisection inside a bracket that is
guaranteed to hold the root (:math:`|x - T^{-1}(c)|`-bound from :math:`T' \ge \epsilon`, found by
doubling), to a relative tolerance ``tol`` within ``max_iter`` halvings, raising
:class:`~flowforge.transforms.base.InverseDidNotConverge` otherwise. One final Newton step,
differentiable, gives exact first-order gradients of the root with respect to ``y`` and the
parameters (implicit function theorem: :math:`\partial x / \partial \theta = -(\partial T /
\partial \theta) / T'(x)`).

The polynomial grows like :math:`|x|^{2r + 1}`: keep the data standardised and ``r`` small.

**Evaluation.** :math:`T'` is computed as the sum of squares itself,
:math:`\epsilon + \sum_\kappa p_\kappa(x)^2` with each :math:`p_\kappa` by Horner's rule, not
from the expanded :math:`g_n`, whose terms of both signs cancel for large :math:`|x|` (in float32
with weights perturbed by 0.1, :math:`\sum_n g_n x^n` at :math:`|x| = 100` is a difference of
infinities: NaN). :math:`T` is Horner's rule on :math:`g_n / (n + 1)`. Where a finite input still
gives a :math:`T(x)` or :math:`T'(x)` outside the dtype's range (a degree-5 map of
:math:`|x| = 10^{8}` in float32, or a stack of them), :class:`~flowforge.transforms.base.
FloatRangeError` names the largest input, instead of returning an infinity that later layers
turn into NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowforge.transforms.base import FloatRangeError, InverseDidNotConverge
from flowforge.transforms.univariate import Transformer

__all__ = ["SumOfSquaresPolynomial"]


class SumOfSquaresPolynomial(Transformer):
    """Strictly increasing polynomial ``T(x)`` of degree ``2 r + 1`` (SOS flow).

    Arguments:
        polynomials: number ``k`` of squared polynomials.
        degree: degree ``r`` of each squared polynomial.
        min_derivative: the floor ``epsilon`` added to the integrand.
        tol: relative tolerance of the inverse, ``|hi - lo| <= tol (1 + |x|)`` (raised to
            ``8`` machine epsilons of the input's dtype when smaller).
        max_iter: iteration cap of the inverse (doublings of the bracket, then halvings).
    """

    def __init__(
        self,
        polynomials: int = 3,
        degree: int = 2,
        min_derivative: float = 1e-3,
        tol: float = 1e-10,
        max_iter: int = 200,
    ) -> None:
        super().__init__()
        if polynomials < 1:
            raise ValueError(f"'polynomials' should be positive, got {polynomials}")
        if degree < 0:
            raise ValueError(f"'degree' should be >= 0, got {degree}")
        if not 0 < min_derivative < 1:
            raise ValueError(f"'min_derivative' should be in (0, 1), got {min_derivative}")
        if not tol > 0:
            raise ValueError(f"'tol' should be positive, got {tol}")
        if max_iter < 1:
            raise ValueError(f"'max_iter' should be positive, got {max_iter}")
        self.polynomials, self.degree = polynomials, degree
        self.min_derivative, self.tol, self.max_iter = float(min_derivative), float(tol), max_iter
        self.params_per_dim = 1 + polynomials * (degree + 1)
        self._offset = math.sqrt((1 - min_derivative) / polynomials)
        # one-hot (r + 1, r + 1, 2 r + 1): a_l a_m contributes to the power n = l + m
        r = degree + 1
        idx = torch.arange(r)[:, None] + torch.arange(r)[None, :]
        self.register_buffer("_to_power", torch.nn.functional.one_hot(idx, 2 * r - 1).double())

    def _coefficients(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The shift ``c`` ``(*,)``, the squared polynomials' coefficients ``a``
        ``(*, k, r + 1)`` and the integral's coefficients ``g_n / (n + 1)`` ``(*, 2 r + 1)``."""
        if params.shape[-1] != self.params_per_dim:
            raise ValueError(
                f"'params' should have {self.params_per_dim} entries in its last dimension "
                f"(1 + polynomials * (degree + 1)), got {params.shape[-1]}"
            )
        a = params[..., 1:].unflatten(-1, (self.polynomials, self.degree + 1))
        a = torch.cat([a[..., :1] + self._offset, a[..., 1:]], dim=-1)
        gram = torch.einsum("...kl,...km->...lm", a, a)
        g = torch.einsum("...lm,lmn->...n", gram, self._to_power.to(params.dtype))
        n = torch.arange(g.shape[-1], device=g.device, dtype=g.dtype)
        return params[..., 0], a, g / (n + 1)

    @staticmethod
    def _horner(coefficients: Tensor, x: Tensor) -> Tensor:
        """``sum_n coefficients[..., n] x^n`` by Horner's rule (``x`` broadcast on the left)."""
        acc = coefficients[..., -1]
        for i in range(coefficients.shape[-1] - 2, -1, -1):
            acc = acc * x + coefficients[..., i]
        return acc

    def _evaluate(self, x: Tensor, c: Tensor, a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        """``T(x)`` and ``log T'(x)`` for coefficients from :meth:`_coefficients`."""
        squares = self._horner(a, x[..., None]).square().sum(-1)  # sum_k p_k(x)^2 >= 0
        value = c + x * (self.min_derivative + self._horner(g, x))
        return value, torch.log(self.min_derivative + squares)

    def _check_range(self, x: Tensor, *outputs: Tensor) -> None:
        finite = torch.isfinite(x)
        for out in outputs:
            finite = finite & torch.isfinite(out)
        if not bool(finite.all()):
            bad = x[~finite & torch.isfinite(x)]
            if bad.numel():
                raise FloatRangeError(
                    f"SumOfSquaresPolynomial: T(x) of degree {2 * self.degree + 1} leaves the "
                    f"range of {x.dtype} at |x| = {bad.abs().min().item():.3g} (largest input "
                    f"{bad.abs().max().item():.3g}); standardise the data or use float64"
                )

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        c, a, g = self._coefficients(params)
        value, logd = self._evaluate(x, c, a, g)
        self._check_range(x, value, logd)
        return value, logd

    def _bisect(self, y: Tensor, c: Tensor, a: Tensor, g: Tensor) -> Tensor:
        """The root of ``T(x) = y`` to the tolerance, without gradients."""
        tol = max(self.tol, 8 * torch.finfo(y.dtype).eps)
        # T' >= eps puts the root within |y - c| / eps of 0; double from 1 + |y - c| to find a
        # tighter bracket that still holds it.
        half = 1 + (y - c).abs()
        doublings = 0
        while doublings < self.max_iter:
            lo_ok = self._evaluate(-half, c, a, g)[0] <= y
            hi_ok = self._evaluate(half, c, a, g)[0] >= y
            if bool((lo_ok & hi_ok).all()):
                break
            half = torch.where(lo_ok & hi_ok, half, 2 * half)
            doublings += 1
        else:
            raise InverseDidNotConverge(
                f"SumOfSquaresPolynomial: no bracket after {self.max_iter} doublings"
            )
        lo, hi = -half, half.clone()
        for _ in range(doublings, self.max_iter):
            mid = (lo + hi) / 2
            if bool(((hi - lo) <= tol * (1 + mid.abs())).all()):
                return mid
            below = self._evaluate(mid, c, a, g)[0] < y
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        raise InverseDidNotConverge(
            f"SumOfSquaresPolynomial: bisection reached max_iter={self.max_iter} before "
            f"tol={tol:.1e} (largest bracket {(hi - lo).abs().max().item():.2e})"
        )

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        c, a, g = self._coefficients(params)
        with torch.no_grad():
            root = self._bisect(y.detach(), c.detach(), a.detach(), g.detach())
        # one Newton step: the value stays at the root, the gradients become the implicit ones
        value, logd = self._evaluate(root, c, a, g)
        x = root - (value - y) * torch.exp(-logd)
        return x, -self._evaluate(x, c, a, g)[1]

    def extra_repr(self) -> str:
        return (
            f"polynomials={self.polynomials}, degree={self.degree}, "
            f"min_derivative={self.min_derivative}, tol={self.tol}, max_iter={self.max_iter}"
        )
