"""Every registered transform and recipe through the conformance kit, in float64."""

import pytest
import torch

from flowforge.flows import Flow
from flowforge.testing import assert_conforms, check_flow_2d, check_transform, perturb_parameters
from flowforge.testing.registry import all_cases

CASES = all_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_transform_conforms(name):
    case = CASES[name]
    x, context = case.inputs()
    results = check_transform(case.make_transform, x, context, case.atol, case.rtol)
    assert {r.name for r in results} >= {
        "round_trip",
        "log_det",
        "inverse_log_det",
        "gradients",
        "state_dict",
        "repr",
    }
    assert_conforms(results)


FLOW_2D = [
    n for n, c in CASES.items() if isinstance(c.make(), Flow) and c.make().event_shape == (2,)
]


@pytest.mark.parametrize("name", FLOW_2D)
def test_2d_flow_density_integrates_and_matches_samples(name):
    torch.manual_seed(0)
    flow = CASES[name].make()
    perturb_parameters(flow, scale=0.1)
    x, _ = CASES[name].inputs()
    flow.train()
    with torch.no_grad():
        flow.log_prob(x.float())  # data-dependent state, as in the transform checks
    assert_conforms(check_flow_2d(flow, bounds=CASES[name].bounds))
