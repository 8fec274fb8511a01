"""Conformance cases of the autoregressive family: MADE layers with affine, spline and SOS
transformers, IAF, spline and polynomial couplings, and the MAF, IAF, NSF and SOS recipes
(conditional ones included)."""

from __future__ import annotations

import torch

from flowforge.distributions import MADEMoG, StandardNormal
from flowforge.flows import Flow
from flowforge.models import iaf, maf, nsf, sos
from flowforge.nn import MLP
from flowforge.testing.registry import Case, register, vector_inputs
from flowforge.transforms import (
    Affine,
    Compose,
    Coupling,
    Inverse,
    MaskedAutoregressive,
    RationalQuadraticSpline,
    SumOfSquaresPolynomial,
    half_mask,
)

_H = (16, 16)


def _wide_inputs(features: int, context: int = 0):  # noqa: ANN202
    """Inputs spread over +-6, so spline cases see both the interval and the tails."""
    base = vector_inputs(features, batch=6, context=context, seed=1)

    def inputs():  # noqa: ANN202
        x, c = base()
        return 3 * x, c

    return inputs


def _layer(name: str, make, inputs, **kw) -> None:  # noqa: ANN001
    register(Case(f"autoregressive/{name}", make, inputs, **kw))


_layer("affine", lambda: MaskedAutoregressive(5, Affine(), _H), vector_inputs(5))
_layer(
    "affine_reversed_residual",
    lambda: MaskedAutoregressive(5, Affine(), (16,), "reversed", residual_blocks=2),
    vector_inputs(5),
)
_layer(
    "affine_context",
    lambda: MaskedAutoregressive(4, Affine(), _H, "random", context_features=3, seed=2),
    vector_inputs(4, context=3),
)
_layer("iaf_affine", lambda: Inverse(MaskedAutoregressive(5, Affine(), _H)), vector_inputs(5))
_layer(
    "iaf_context",
    lambda: Inverse(MaskedAutoregressive(3, Affine(), _H, "random", context_features=2)),
    vector_inputs(3, context=2),
)
_layer(
    "spline",
    lambda: MaskedAutoregressive(4, RationalQuadraticSpline(5, bound=2.0), _H, "random"),
    _wide_inputs(4),
)
_layer(
    "spline_context",
    lambda: MaskedAutoregressive(
        3, RationalQuadraticSpline(4), (16,), residual_blocks=1, context_features=2
    ),
    _wide_inputs(3, context=2),
)
_layer(
    "sos",
    lambda: MaskedAutoregressive(4, SumOfSquaresPolynomial(3, 2), _H),
    vector_inputs(4),
    atol=1e-5,
)
_layer(
    "sos_context",
    lambda: MaskedAutoregressive(3, SumOfSquaresPolynomial(2, 3), _H, context_features=2),
    vector_inputs(3, context=2),
    atol=1e-5,
)


def _mlp(context: int = 0):  # noqa: ANN202
    return lambda a, b: MLP(a, b, _H, "tanh", context)


register(
    Case(
        "coupling/spline",
        lambda: Coupling(half_mask(5), _mlp(), RationalQuadraticSpline(6, bound=2.5)),
        _wide_inputs(5),
    )
)
register(
    Case(
        "coupling/spline_context",
        lambda: Coupling(half_mask(4, first=False), _mlp(2), RationalQuadraticSpline(3)),
        _wide_inputs(4, context=2),
    )
)
register(
    Case(
        "coupling/sos",
        lambda: Coupling(half_mask(4), _mlp(), SumOfSquaresPolynomial(2, 2)),
        vector_inputs(4),
        atol=1e-5,
    )
)


def _recipe(name: str, make, inputs, **kw) -> None:  # noqa: ANN001
    register(Case(f"recipe/{name}", make, inputs, **kw))


_recipe("maf_2d", lambda: maf(2, layers=3, hidden=_H, batch_norm=False), vector_inputs(2))
_recipe(
    "maf_bn_context",
    lambda: maf(5, layers=3, hidden=_H, context_features=2),
    vector_inputs(5, batch=6, context=2),
)
_recipe(
    "maf_mog_2d",
    lambda: maf(2, 2, _H, batch_norm=False, base="mog", components=3),
    vector_inputs(2),
)
_recipe(
    "maf_mog_context",
    lambda: maf(4, 2, _H, order="random", base="mog", components=3, context_features=2),
    vector_inputs(4, batch=6, context=2),
)
_recipe("iaf_2d", lambda: iaf(2, layers=3, hidden=_H), vector_inputs(2))
_recipe(
    "iaf_spline_2d",
    lambda: iaf(2, layers=2, hidden=_H, transformer="spline", bins=4, bound=3.0),
    _wide_inputs(2),
)
_recipe(
    "iaf_context",
    lambda: iaf(4, layers=2, hidden=_H, context_features=3),
    vector_inputs(4, context=3),
)
_recipe(
    "nsf_ar_2d", lambda: nsf(2, layers=2, hidden=16, residual_blocks=1, bins=4), _wide_inputs(2)
)
_recipe(
    "nsf_coupling_2d",
    lambda: nsf(2, "coupling", layers=3, hidden=16, residual_blocks=1, bins=4),
    _wide_inputs(2),
)
_recipe(
    "nsf_ar_context",
    lambda: nsf(4, layers=2, hidden=16, residual_blocks=1, bins=4, context_features=2),
    _wide_inputs(4, context=2),
)
_recipe(
    "nsf_coupling_context",
    lambda: nsf(4, "coupling", layers=2, hidden=16, residual_blocks=0, context_features=2),
    _wide_inputs(4, context=2),
)
_recipe(
    "sos_2d", lambda: sos(2, layers=2, hidden=_H, batch_norm=False), vector_inputs(2), atol=1e-5
)
_recipe(
    "sos_context",
    lambda: sos(3, layers=2, polynomials=2, degree=2, hidden=_H, context_features=2),
    vector_inputs(3, batch=6, context=2),
    atol=1e-5,
)
register(
    Case(
        "recipe/made_mog_2d",
        lambda: Flow(Compose([]), MADEMoG(2, components=4, hidden=_H)),
        vector_inputs(2),
    )
)
register(
    Case(
        "recipe/made_gaussian_2d",
        lambda: Flow(MaskedAutoregressive(2, Affine(), _H), StandardNormal(2)),
        vector_inputs(2),
    )
)


def _mixture_started(flow: Flow) -> Flow:
    """``flow`` with its mixture base started on three fixed clusters (a 2-D flow)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    z = centres[torch.randint(3, (300,), generator=g)] + 0.5 * torch.randn(300, 2, generator=g)
    flow.base.start(z)
    return flow


_recipe(
    "nsf_mixture_base_2d",
    lambda: _mixture_started(nsf(2, layers=2, hidden=16, bins=4, base="mixture", components=4)),
    _wide_inputs(2),
)
_recipe(
    "maf_mixture_base_2d",
    lambda: _mixture_started(maf(2, 2, _H, batch_norm=False, base="mixture", components=4)),
    vector_inputs(2),
)
