"""The data-start flag (flowforge.nn.data_start): a buffer for checkpoints, mirrored in a Python
bool so that compiled training reads no tensor."""

import torch

from flowforge.distributions import GaussianMixture
from flowforge.nn.data_start import has_started
from flowforge.transforms import ActNorm


def test_the_mirror_follows_the_start_and_every_loaded_state():
    a = ActNorm(3)
    assert not has_started(a) and not bool(a.initialized)
    a.train()
    a(torch.randn(16, 3))
    assert has_started(a) and bool(a.initialized)
    fresh = torch.nn.Sequential(ActNorm(3))  # loading into a parent reaches the child's hook
    fresh.load_state_dict(torch.nn.Sequential(a).state_dict())
    assert has_started(fresh[0])
    fresh.load_state_dict(torch.nn.Sequential(ActNorm(3)).state_dict())
    assert not has_started(fresh[0])


def test_a_compiled_mixture_base_starts_once_and_breaks_no_graph():
    torch.manual_seed(0)
    mix = GaussianMixture(2, components=2).train()
    z = torch.cat([torch.randn(64, 2) - 3, torch.randn(64, 2) + 3])
    mix.log_prob(z)  # the eager start (as the trainer's warm-up call)
    assert has_started(mix)
    explained = torch._dynamo.explain(mix.log_prob)(z)
    assert explained.graph_break_count == 0, explained.break_reasons
