"""Deep flows in float32 invert accurately and stay finite far from the data.

A 100-layer RealNVP and a 32-layer MAF, with weights moved off their identity initialisation
(as after some training), invert standard-normal inputs to relative error <= 1e-4, and give
finite log-densities for inputs up to |x| = 1e3: their recipes split a total log-scale budget
over the depth (:func:`depth_scale_bound`). The same flows with the shallow-flow bound of 5 per
layer overflow there, which is what the budget is for. See docs/reliability.md.
"""

import pytest
import torch

from flowforge.models import maf, realnvp
from flowforge.testing import perturb_parameters
from flowforge.transforms import LOG_SCALE_BUDGET, Affine, depth_scale_bound


def deep_realnvp(scale_bound=None):
    return realnvp(8, couplings=100, hidden=(32, 32), scale_bound=scale_bound)


def deep_maf(scale_bound=None):
    return maf(8, layers=32, hidden=(32, 32), batch_norm=False, scale_bound=scale_bound)


DEEP = pytest.mark.parametrize("make", [deep_realnvp, deep_maf], ids=["realnvp100", "maf32"])


def far_inputs(n=512, radius=1e3):
    """Points spread over the cube [-radius, radius]^8, corners included."""
    x = (torch.rand(n, 8) * 2 - 1) * radius
    x[:2] = torch.tensor([radius, -radius]).repeat_interleave(8).view(2, 8)
    return x


@DEEP
@pytest.mark.filterwarnings("ignore::flowforge.transforms.SlowDirectionWarning")
def test_deep_flow_float32_round_trip(make):
    torch.manual_seed(0)
    flow = make()
    perturb_parameters(flow, 0.005)
    flow.eval()
    x = torch.randn(256, 8)
    with torch.no_grad():
        z, _ = flow.transform(x)
        x2, _ = flow.transform.inverse(z)
    rel = ((x2 - x).norm(dim=1) / x.norm(dim=1)).max().item()
    assert rel <= 1e-4, rel


@DEEP
@pytest.mark.parametrize("scale", [0.005, 0.05])
def test_deep_flow_finite_far_from_the_data(make, scale):
    torch.manual_seed(0)
    flow = make()
    perturb_parameters(flow, scale)
    flow.eval()
    with torch.no_grad():
        for radius in (10.0, 1e2, 1e3):
            log_p = flow.log_prob(far_inputs(radius=radius))
            assert torch.isfinite(log_p).all(), (radius, log_p[~torch.isfinite(log_p)][:5])


@DEEP
def test_per_layer_bound_of_five_overflows_deep_flows(make):
    """Without the depth budget the far-away log-density is not finite: the budget is needed."""
    torch.manual_seed(0)
    flow = make(scale_bound=5.0)
    perturb_parameters(flow, 0.005)
    flow.eval()
    with torch.no_grad():
        assert not torch.isfinite(flow.log_prob(far_inputs())).all()


def test_depth_scale_bound_splits_the_budget():
    assert depth_scale_bound(1) == depth_scale_bound(8) == 5.0  # shallow flows keep the cap
    assert depth_scale_bound(50) == pytest.approx(LOG_SCALE_BUDGET / 50)
    assert depth_scale_bound(10, budget=20.0, cap=1.0) == 1.0
    with pytest.raises(ValueError, match="layers_per_dim"):
        depth_scale_bound(0)
    bounds = {m.scale_bound for m in deep_realnvp().modules() if isinstance(m, Affine)}
    assert bounds == {LOG_SCALE_BUDGET / 50}  # each dimension sees 50 of the 100 couplings
    bounds = {m.scale_bound for m in deep_maf().modules() if isinstance(m, Affine)}
    assert bounds == {LOG_SCALE_BUDGET / 32}
    bounds = {m.scale_bound for m in realnvp(4, couplings=5).modules() if isinstance(m, Affine)}
    assert bounds == {5.0}


def test_sos_float32_far_from_the_data_is_a_named_error_not_nan():
    """Issue 19, item 10.2: a float32 SOS flow, weights perturbed by 0.1, gave NaN log_prob at
    |x| = 100 (the expanded derivative sum_n g_n x^n was inf - inf). Now T' is a sum of squares
    (never NaN), T is Horner's rule, and a T(x) outside float32 is a FloatRangeError."""
    from flowforge.models import sos
    from flowforge.transforms import FloatRangeError

    torch.manual_seed(0)
    flow = sos(2, layers=2, hidden=(16, 16), batch_norm=False)
    perturb_parameters(flow, 0.1)
    flow.eval()
    signs = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    with torch.no_grad():
        near = flow.log_prob(signs)
        assert torch.isfinite(near).all()
        with pytest.raises(FloatRangeError, match="float32"):
            flow.log_prob(100 * signs)
        # float64 holds T(100) and T(T(100)): a finite answer, no error
        assert not torch.isnan(flow.double().log_prob(100 * signs.double())).any()
