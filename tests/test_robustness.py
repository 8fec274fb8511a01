"""Hostile inputs: every registered transform gives finite outputs or a named error.

Property-based (hypothesis): inputs scaled up to |x| = 1e4, batches of 1 to 1024, both
directions. A silent NaN or inf, or an unnamed crash, fails.
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowforge.testing import perturb_parameters
from flowforge.testing.registry import all_cases
from flowforge.transforms import FloatRangeError, InverseDidNotConverge, InverseNotAvailable

CASES = all_cases()
NAMED_ERRORS = (ValueError, InverseNotAvailable, InverseDidNotConverge, FloatRangeError)


def _inputs(case, batch, scale, seed):
    x, context = case.inputs()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(x.shape[0], (batch,), generator=g)
    x = x[idx]
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype)
    x = x + noise * scale  # out of the training domain: scaled up to 1e4
    return x, None if context is None else context[idx]


def _finite_or_named_error(fn, *args):
    try:
        y, ladj = fn(*args)
    except NAMED_ERRORS:
        return
    assert torch.isfinite(ladj).all(), "non-finite log-determinant without an error"
    assert torch.isfinite(y).all(), "non-finite output without an error"


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    batch=st.sampled_from([1, 3, 1024]),
    log_scale=st.floats(min_value=-3, max_value=4),
    seed=st.integers(0, 2**16),
)
def test_extreme_inputs_give_finite_outputs_or_named_errors(name, batch, log_scale, seed):
    case = CASES[name]
    torch.manual_seed(0)
    t = case.make_transform().double()
    perturb_parameters(t, 0.1)
    x, context = _inputs(case, batch, 10.0**log_scale, seed)
    t.eval()
    with torch.no_grad():
        _finite_or_named_error(t, x, context)
        _finite_or_named_error(t.inverse, x, context)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nan_input_is_not_silently_finite(name):
    """NaN in gives NaN out or a named error: never a finite result that hides the NaN."""
    case = CASES[name]
    torch.manual_seed(0)
    t = case.make_transform().double().eval()
    x, context = case.inputs()
    x = x.clone()
    x.view(x.shape[0], -1)[0, 0] = math.nan
    try:
        with torch.no_grad():
            z, ladj = t(x, context)
    except NAMED_ERRORS:
        return
    assert not (torch.isfinite(z[0]).all() and torch.isfinite(ladj[0])), (
        "a NaN input produced a finite output"
    )
