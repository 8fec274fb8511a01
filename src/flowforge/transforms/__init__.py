"""Invertible transforms, one family per module (see ``docs/design.md``)."""

from flowforge.transforms.base import (
    Compose,
    Inverse,
    InverseDidNotConverge,
    InverseNotAvailable,
    Transform,
)
from flowforge.transforms.coupling import Coupling, alternating_mask, half_mask
from flowforge.transforms.elementwise import DiagonalScaling, ElementwiseAffine, Logit, Sigmoid
from flowforge.transforms.linear import LULinear
from flowforge.transforms.normalization import BatchNorm
from flowforge.transforms.permutation import Permutation, RandomPermutation, ReversePermutation
from flowforge.transforms.univariate import Additive, Affine, Transformer

__all__ = [
    "Additive",
    "Affine",
    "BatchNorm",
    "Compose",
    "Coupling",
    "DiagonalScaling",
    "ElementwiseAffine",
    "Inverse",
    "InverseDidNotConverge",
    "InverseNotAvailable",
    "LULinear",
    "Logit",
    "Permutation",
    "RandomPermutation",
    "ReversePermutation",
    "Sigmoid",
    "Transform",
    "Transformer",
    "alternating_mask",
    "half_mask",
]
from flowforge.transforms.planar import Planar  # noqa: E402
from flowforge.transforms.radial import Radial  # noqa: E402

__all__ += ["Planar", "Radial"]
