"""Conformance cases of the planar and radial layers (with their inverses) and recipes."""

from __future__ import annotations

from flowforge.models.planar_radial import planar, radial
from flowforge.testing.registry import Case, register, vector_inputs
from flowforge.transforms import Inverse, Planar, Radial

# Planar's inverse is a root solve (tolerance 1e-9 on the pre-activation): slightly looser.
_ROOT = {"atol": 1e-7, "rtol": 1e-6}

register(Case("planar/layer", lambda: Planar(5), vector_inputs(5), **_ROOT))
register(Case("planar/layer_1d", lambda: Planar(1), vector_inputs(1), **_ROOT))
register(Case("planar/inverted", lambda: Inverse(Planar(3)), vector_inputs(3), **_ROOT))
register(
    Case(
        "planar/context",
        lambda: Planar(4, context_features=3),
        vector_inputs(4, context=3),
        **_ROOT,
    )
)
register(Case("radial/layer", lambda: Radial(5), vector_inputs(5)))
register(Case("radial/layer_1d", lambda: Radial(1), vector_inputs(1)))
register(Case("radial/context", lambda: Radial(4, context_features=3), vector_inputs(4, context=3)))
register(Case("recipe/planar_2d", lambda: planar(2, layers=4), vector_inputs(2), **_ROOT))
register(Case("recipe/radial_2d", lambda: radial(2, layers=4), vector_inputs(2)))
register(
    Case(
        "recipe/planar_context",
        lambda: planar(3, layers=3, base="normal", context_features=2),
        vector_inputs(3, context=2),
        **_ROOT,
    )
)
