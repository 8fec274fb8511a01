"""Invertible transforms, one family per module (see ``docs/design.md``)."""

from flowforge.transforms.autoregressive import MaskedAutoregressive, SlowDirectionWarning
from flowforge.transforms.base import (
    Compose,
    Inverse,
    InverseDidNotConverge,
    InverseNotAvailable,
    Transform,
)
from flowforge.transforms.continuous import CNF, ConcatSquashMLP, ExactTrace, HutchinsonTrace
from flowforge.transforms.coupling import Coupling, alternating_mask, half_mask
from flowforge.transforms.elementwise import DiagonalScaling, ElementwiseAffine, Logit, Sigmoid
from flowforge.transforms.linear import LULinear
from flowforge.transforms.logdet import (
    BackwardInForward,
    ExactLogDet,
    NeumannLogDet,
    PowerSeriesLogDet,
    RouletteLogDet,
)
from flowforge.transforms.normalization import BatchNorm
from flowforge.transforms.permutation import Permutation, RandomPermutation, ReversePermutation
from flowforge.transforms.polynomial import SumOfSquaresPolynomial
from flowforge.transforms.residual import LipschitzConvNet, LipschitzMLP, ResidualBlock
from flowforge.transforms.spline import RationalQuadraticSpline
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
    "MaskedAutoregressive",
    "Permutation",
    "RandomPermutation",
    "RationalQuadraticSpline",
    "ReversePermutation",
    "Sigmoid",
    "SlowDirectionWarning",
    "SumOfSquaresPolynomial",
    "Transform",
    "Transformer",
    "alternating_mask",
    "half_mask",
]
from flowforge.transforms.planar import Planar  # noqa: E402
from flowforge.transforms.radial import Radial  # noqa: E402

__all__ += ["Planar", "Radial"]
from flowforge.transforms.coupling import MaskedCoupling, checkerboard_mask  # noqa: E402
from flowforge.transforms.dequantization import (  # noqa: E402
    UniformDequantization,
    VariationalDequantization,
    quantize,
)
from flowforge.transforms.linear import InvertibleConv1x1  # noqa: E402
from flowforge.transforms.normalization import ActNorm  # noqa: E402
from flowforge.transforms.prior import ContextAffine  # noqa: E402
from flowforge.transforms.reshape import (  # noqa: E402
    FactorOut,
    Flatten,
    MultiScale,
    Squeeze,
    Unsqueeze,
)

__all__ += ["ActNorm", "ContextAffine", "FactorOut", "Flatten", "InvertibleConv1x1"]
__all__ += ["MaskedCoupling", "MultiScale", "Squeeze", "UniformDequantization", "Unsqueeze"]
__all__ += ["VariationalDequantization", "checkerboard_mask", "quantize"]
__all__ += ["BackwardInForward", "CNF", "ConcatSquashMLP", "ExactLogDet", "ExactTrace"]
__all__ += ["HutchinsonTrace", "LipschitzConvNet", "LipschitzMLP", "NeumannLogDet"]
__all__ += ["PowerSeriesLogDet", "ResidualBlock", "RouletteLogDet"]
