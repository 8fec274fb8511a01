"""Invertible transforms, one family per module (see ``docs/design.md``)."""

from flowforge.transforms.autoregressive import MaskedAutoregressive, SlowDirectionWarning
from flowforge.transforms.base import (
    Compose,
    EmptyBatchError,
    FloatRangeError,
    Inverse,
    InverseDidNotConverge,
    InverseNotAvailable,
    Transform,
)
from flowforge.transforms.continuous import CNF, ConcatSquashMLP, ExactTrace, HutchinsonTrace
from flowforge.transforms.conv1x1 import InvertibleConv1x1
from flowforge.transforms.coupling import (
    Coupling,
    MaskedCoupling,
    alternating_mask,
    checkerboard_mask,
    half_mask,
)
from flowforge.transforms.dequantization import (
    UniformDequantization,
    VariationalDequantization,
    quantize,
)
from flowforge.transforms.elementwise import (
    DiagonalScaling,
    ElementwiseAffine,
    Logit,
    Sigmoid,
    Standardize,
)
from flowforge.transforms.linear import LinearStandardize, LULinear
from flowforge.transforms.logdet import (
    BackwardInForward,
    ExactLogDet,
    NeumannLogDet,
    PowerSeriesLogDet,
    RouletteLogDet,
)
from flowforge.transforms.normalization import ActNorm, BatchNorm
from flowforge.transforms.permutation import Permutation, RandomPermutation, ReversePermutation
from flowforge.transforms.planar import Planar
from flowforge.transforms.polynomial import SumOfSquaresPolynomial
from flowforge.transforms.prior import ContextAffine
from flowforge.transforms.radial import Radial
from flowforge.transforms.reshape import FactorOut, Flatten, MultiScale, Squeeze, Unsqueeze
from flowforge.transforms.residual import LipschitzConvNet, LipschitzMLP, ResidualBlock
from flowforge.transforms.spline import RationalQuadraticSpline
from flowforge.transforms.temporal import FrameWise, TemporalAffine
from flowforge.transforms.univariate import (
    LOG_SCALE_BUDGET,
    Additive,
    Affine,
    Transformer,
    depth_scale_bound,
)

__all__ = [
    "LOG_SCALE_BUDGET",
    "ActNorm",
    "Additive",
    "Affine",
    "BackwardInForward",
    "BatchNorm",
    "CNF",
    "Compose",
    "ConcatSquashMLP",
    "ContextAffine",
    "Coupling",
    "DiagonalScaling",
    "ElementwiseAffine",
    "EmptyBatchError",
    "ExactLogDet",
    "ExactTrace",
    "FactorOut",
    "Flatten",
    "FrameWise",
    "FloatRangeError",
    "HutchinsonTrace",
    "Inverse",
    "InverseDidNotConverge",
    "InverseNotAvailable",
    "InvertibleConv1x1",
    "LULinear",
    "LinearStandardize",
    "LipschitzConvNet",
    "LipschitzMLP",
    "Logit",
    "MaskedAutoregressive",
    "MaskedCoupling",
    "MultiScale",
    "NeumannLogDet",
    "Permutation",
    "Planar",
    "PowerSeriesLogDet",
    "Radial",
    "RandomPermutation",
    "RationalQuadraticSpline",
    "ResidualBlock",
    "ReversePermutation",
    "RouletteLogDet",
    "Sigmoid",
    "Standardize",
    "SlowDirectionWarning",
    "Squeeze",
    "SumOfSquaresPolynomial",
    "TemporalAffine",
    "Transform",
    "Transformer",
    "UniformDequantization",
    "Unsqueeze",
    "VariationalDequantization",
    "alternating_mask",
    "checkerboard_mask",
    "depth_scale_bound",
    "half_mask",
    "quantize",
]
