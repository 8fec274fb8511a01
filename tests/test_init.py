"""The conditioners' antisymmetric start (flowforge.nn.init): output 0 for every input, so the
flow starts at the identity, with gradients that reach the hidden layers."""

import pytest
import torch

from flowforge.distributions import StandardNormal
from flowforge.models import maf, realnvp
from flowforge.nn import MADE, MLP
from flowforge.nn.init import unit_pairs

NETS = {
    "mlp": lambda: MLP(3, 6, (16, 16)),
    "mlp-one-hidden": lambda: MLP(3, 6, (7,)),
    "made": lambda: MADE(5, 3, (20, 20), "random"),
    "made-residual": lambda: MADE(5, 3, (21,), residual_blocks=2),
    "made-context": lambda: MADE(4, 2, (9, 9), context_features=2),
}


def _call(net, n=64):
    width = net.features if isinstance(net, MADE) else 3
    context = torch.randn(n, net.context_features) if net.context_features else None
    return net(torch.randn(n, width) * 3, context)


@pytest.mark.parametrize("name", sorted(NETS))
def test_starts_at_zero_with_live_gradients(name):
    torch.manual_seed(0)
    net = NETS[name]()
    out = _call(net)
    assert out.abs().max() <= 1e-6  # zero to the rounding of the paired products
    (out - 1).square().sum().backward()
    last = net.output if isinstance(net, MADE) else net.net[-1]
    assert last.weight.abs().sum() > 0  # not a zero layer
    assert last.weight.grad.abs().sum() > 1e-3
    # the layer that writes the paired units gets a gradient at the very first step
    writer = [m for m in net.modules() if isinstance(m, torch.nn.Linear) and m is not last][-1]
    assert writer.weight.grad.abs().sum() > 1e-3


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_layer_learns_from_the_second_step(name):
    torch.manual_seed(0)
    net = NETS[name]()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        (_call(net) - 1).square().sum().backward()
        opt.step()
    dead = [n for n, p in net.named_parameters() if p.grad.abs().sum() <= 1e-6]
    assert not dead, f"no gradient after the first step: {dead}"


def test_plain_layers_without_hidden_units_start_at_zero():
    net = MLP(3, 4, ())
    assert torch.equal(net(torch.randn(5, 3)), torch.zeros(5, 4))


def test_the_start_draws_no_extra_random_numbers():
    torch.manual_seed(1)
    MADE(6, 2, (32, 32), zero_init=True)
    MLP(3, 4, (16,), zero_init=True)
    after_zero = torch.rand(3)
    torch.manual_seed(1)
    MADE(6, 2, (32, 32), zero_init=False)
    MLP(3, 4, (16,), zero_init=False)
    assert torch.equal(after_zero, torch.rand(3))


def test_unit_pairs_have_equal_degrees_and_are_disjoint():
    degrees = torch.tensor([1, 2, 1, 3, 2, 1, 1, 2])
    pairs = unit_pairs(degrees)
    units = [u for pair in pairs for u in pair]
    assert len(units) == len(set(units)) == 6  # degree 2 has one unit left over
    assert all(degrees[a] == degrees[b] for a, b in pairs)


@pytest.mark.parametrize(
    "build",
    [
        lambda: maf(4, layers=3, hidden=(16, 16), batch_norm=False),
        lambda: realnvp(4, couplings=4, hidden=(16, 16)),
    ],
)
def test_recipes_start_at_the_identity(build):
    torch.manual_seed(0)
    flow = build()
    x = torch.randn(50, 4)
    expected = StandardNormal(4).log_prob(x)
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-5)
