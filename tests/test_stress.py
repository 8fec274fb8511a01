"""Stress mode of the conformance kit (flowforge.testing.stress): a fast subset.

The layers fixed in issue 19, item 10 stay within tolerance under hard parameters, and the
table reports a named error as such. The full sweep is ``benchmarks/stress.py``."""

import math

import pytest
import torch

from flowforge.testing.stress import StressResult, format_stress, stress


@pytest.mark.parametrize(
    ("name", "tol"),
    [("coupling/spline", 1e-3), ("autoregressive/spline", 1e-2), ("recipe/iresnet_2d", 1e-4)],
)
def test_fixed_layers_stay_within_tolerance(name, tol):
    results = stress([name], perturbations=(0.3, 0.5), input_scales=(1.0, 4.0))
    assert len(results) == 2 * 2 * 2
    for r in results:
        assert r.error is None and r.nonfinite == 0, r
        limit = tol if r.dtype == "float32" else 1e-6
        assert r.round_trip <= limit and r.log_det <= 10 * limit, r


def test_sos_far_from_the_data_is_named_in_the_table():
    results = stress(
        ["recipe/sos_2d"], perturbations=(0.1,), input_scales=(1e3,), dtypes=(torch.float32,)
    )
    (r,) = results
    assert r.error == "FloatRangeError" and r.named and math.isnan(r.round_trip)
    assert "named FloatRangeError" in format_stress(results)


def test_table_marks_crashes_and_filters_by_pattern():
    crash = StressResult("x/y", "float32", 0.3, 1.0, error="RuntimeError", named=False)
    ok = StressResult("x/y", "float32", 0.5, 1.0, round_trip=1e-7, log_det=2e-7)
    table = format_stress([crash, ok])
    assert "CRASH RuntimeError" in table and "1.0e-07/2.0e-07" in table
    names = {r.case for r in stress("^coupling/spline", perturbations=(0.1,), input_scales=(1.0,))}
    assert names == {"coupling/spline", "coupling/spline_context"}
    with pytest.raises(ValueError, match="unknown"):
        stress(["no/such_case"])
