"""A flowforge flow as a guide in Pyro's SVI (examples/pyro_guide.py) recovers a known posterior."""

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("pyro", reason="pyro-ppl is in the 'test' extra")

_spec = importlib.util.spec_from_file_location(
    "pyro_guide", Path(__file__).resolve().parents[1] / "examples" / "pyro_guide.py"
)
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


@pytest.mark.slow
def test_planar_guide_recovers_the_conjugate_posterior():
    torch.manual_seed(0)
    x = torch.tensor([1.0, -0.5]) + example.SIGMA * torch.randn(20, 2)
    flow = example.fit_guide(x, steps=600, lr=0.05, particles=1)
    z = flow.sample(20000)
    mean, std = example.exact_posterior(x)
    assert torch.allclose(z.mean(0), mean, atol=0.03), (z.mean(0), mean)
    assert torch.allclose(z.std(0), std, rtol=0.15), (z.std(0), std)


def test_cached_log_prob_equals_the_flows_density():
    torch.manual_seed(0)
    flow = example.planar(2, layers=3).double()
    d = example.as_pyro(flow)
    z = d.rsample((5,))
    cached = d.log_prob(z)
    assert torch.allclose(cached, flow.log_prob(z.detach().clone()), atol=1e-7)
    assert d.event_shape == (2,) and z.shape == (5, 2)
