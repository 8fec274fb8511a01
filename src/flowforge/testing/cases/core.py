"""Conformance cases of the core transforms and of the NICE and RealNVP recipes."""

from __future__ import annotations

import torch
from torch import Tensor

from flowforge.models import nice, realnvp
from flowforge.nn import MLP
from flowforge.testing.registry import Case, register, vector_inputs
from flowforge.transforms import (
    Additive,
    Affine,
    BatchNorm,
    Compose,
    Coupling,
    DiagonalScaling,
    ElementwiseAffine,
    Inverse,
    LinearStandardize,
    Logit,
    LULinear,
    RandomPermutation,
    ReversePermutation,
    Sigmoid,
    Standardize,
    alternating_mask,
    half_mask,
)


def _unit_interval() -> tuple[Tensor, None]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 5, generator=g, dtype=torch.float64) * 0.98 + 0.01, None


def _image_inputs() -> tuple[Tensor, None]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, 2, 2, generator=g, dtype=torch.float64), None


def _mlp(context: int = 0):  # noqa: ANN202
    return lambda a, b: MLP(a, b, (16, 16), "tanh", context)


register(Case("elementwise/affine", lambda: ElementwiseAffine(5), vector_inputs(5)))
register(Case("elementwise/affine_image", lambda: ElementwiseAffine(4), _image_inputs))
register(Case("elementwise/diagonal_scaling", lambda: DiagonalScaling(5), vector_inputs(5)))
register(
    Case(
        "elementwise/standardize",
        lambda: Standardize(torch.tensor([1.0, -2, 0, 3, 50]), torch.tensor([0.5, 2, 1, 3, 40])),
        vector_inputs(5),
    )
)


def _linear_standardize(context: int) -> LinearStandardize:
    g = torch.Generator().manual_seed(4)
    scale = torch.tril(torch.randn(5, 5, generator=g)) * 0.5 + torch.diag(
        torch.rand(5, generator=g) + 0.5
    )
    weight = torch.randn(5, context, generator=g) if context else None
    return LinearStandardize(torch.randn(5, generator=g), scale, weight)


register(Case("linear/standardize", lambda: _linear_standardize(0), vector_inputs(5)))
register(
    Case(
        "linear/standardize_context",
        lambda: _linear_standardize(3),
        vector_inputs(5, context=3),
    )
)
register(Case("elementwise/logit", lambda: Logit(), _unit_interval))
register(Case("elementwise/logit_alpha", lambda: Logit(alpha=0.05), _unit_interval))
register(Case("elementwise/sigmoid", lambda: Sigmoid(), vector_inputs(5)))
register(Case("permutation/reverse", lambda: ReversePermutation(5), vector_inputs(5)))
register(Case("permutation/random", lambda: RandomPermutation(5, seed=3), vector_inputs(5)))
register(Case("permutation/random_image", lambda: RandomPermutation(4), _image_inputs))
register(Case("linear/lu", lambda: LULinear(5), vector_inputs(5)))
register(Case("linear/lu_identity_init", lambda: LULinear(5, init="identity"), vector_inputs(5)))
register(Case("linear/lu_1x1_image", lambda: LULinear(4), _image_inputs))
register(Case("normalization/batchnorm", lambda: BatchNorm(5), vector_inputs(5)))
register(Case("normalization/batchnorm_image", lambda: BatchNorm(4), _image_inputs))
register(
    Case(
        "coupling/additive",
        lambda: Coupling(alternating_mask(5), _mlp(), Additive()),
        vector_inputs(5),
    )
)
register(
    Case("coupling/affine", lambda: Coupling(half_mask(5), _mlp(), Affine()), vector_inputs(5))
)
register(
    Case(
        "coupling/affine_context",
        lambda: Coupling(half_mask(5, first=False), _mlp(context=3), Affine()),
        vector_inputs(5, context=3),
    )
)
register(
    Case(
        "compose/inverse_mixture",
        lambda: Compose(
            [LULinear(5), Inverse(Coupling(half_mask(5), _mlp(), Affine())), BatchNorm(5)]
        ),
        vector_inputs(5),
    )
)
register(Case("recipe/nice_2d", lambda: nice(2, hidden=(16, 16)), vector_inputs(2)))
register(Case("recipe/nice_6d", lambda: nice(6, couplings=6, hidden=(16,)), vector_inputs(6)))
register(Case("recipe/realnvp_2d", lambda: realnvp(2), vector_inputs(2)))
register(
    Case("recipe/realnvp_glow_steps", lambda: realnvp(3, couplings=3, glow=True), vector_inputs(3))
)
register(
    Case(
        "recipe/realnvp_bn_context",
        lambda: realnvp(5, couplings=4, batch_norm=True, mask="half", context_features=2),
        vector_inputs(5, context=2),
    )
)
register(
    Case(
        "elementwise/diagonal_scaling_data_init",
        lambda: DiagonalScaling(5, data_init=True),
        vector_inputs(5),
    )
)
