"""Deep flows in float32 invert accurately.

A 100-layer RealNVP and a 32-layer MAF, with weights moved slightly off their identity
initialisation (as after a little training), invert standard-normal inputs to relative error
<= 1e-4 and give finite log-densities on them and on inputs ten times larger. Far-away inputs
(|x| ~ 1e2 to 1e3) can still overflow: see docs/reliability.md.
"""

import pytest
import torch

from flowforge.models import maf, realnvp
from flowforge.testing import perturb_parameters


def deep_realnvp():
    return realnvp(8, couplings=100, hidden=(32, 32))


def deep_maf():
    return maf(8, layers=32, hidden=(32, 32), batch_norm=False)


@pytest.mark.parametrize("make", [deep_realnvp, deep_maf], ids=["realnvp100", "maf32"])
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
        assert torch.isfinite(flow.log_prob(x)).all()
        assert torch.isfinite(flow.log_prob(x * 10)).all()
