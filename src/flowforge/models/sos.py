"""SOS flow: autoregressive layers with sum-of-squares polynomial transformers.

Jaini, Selby and Yu 2019, "Sum-of-Squares Polynomial Flow", https://arxiv.org/abs/1905.02325.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.models._autoregressive import autoregressive_stack
from flowforge.transforms import Compose, SumOfSquaresPolynomial

__all__ = ["sos"]


def sos(
    features: int,
    layers: int = 8,
    polynomials: int = 3,
    degree: int = 2,
    hidden: Sequence[int] = (100, 100),
    activation: str = "relu",
    order: str = "alternate",
    batch_norm: bool = True,
    context_features: int = 0,
) -> Flow:
    """Builds an SOS flow over vectors of ``features`` dimensions.

    Each layer maps ``z_i = T_i(x_i)`` with ``T_i`` a strictly increasing polynomial of degree
    ``2 degree + 1``, the integral of a sum of ``polynomials`` squared polynomials of degree
    ``degree`` whose coefficients come from a MADE
    (:class:`~flowforge.transforms.polynomial.SumOfSquaresPolynomial`). Density: one pass per
    layer; sampling: one MADE sweep of ``D`` steps per layer, each solving the polynomial by
    bisection.

    Paper: a stack of SOS blocks with MADE conditioners and the order reversed between blocks,
    with ``k`` polynomials of degree ``r`` small (the paper's per-data-set ``k`` and ``r`` could
    not be verified; zuko's SOSPF uses 3 polynomials of degree 4). The defaults here, 3
    polynomials of degree 2 with batch norm between layers, keep the degree-5 maps numerically
    tame on standardised data.

    Arguments:
        features: data dimension.
        layers: number of SOS layers.
        polynomials: squared polynomials ``k`` per dimension.
        degree: degree ``r`` of each squared polynomial.
        hidden: MADE hidden sizes.
        activation: MADE activation.
        order: ``"alternate"``, ``"natural"`` or ``"random"``.
        batch_norm: batch norm between layers.
        context_features: size of the conditioning vector (0: unconditional).
    """
    stack = autoregressive_stack(
        features,
        layers,
        lambda: SumOfSquaresPolynomial(polynomials, degree),
        hidden,
        order,
        0,
        activation,
        batch_norm,
        context_features,
    )
    return Flow(Compose(stack), StandardNormal(features))
