"""In-place activations: each network computes the same outputs and gradients as with every
activation out of place, so the saved allocation changes nothing but speed."""

import copy

import pytest
import torch
from torch import nn

from flowforge.nn.conv import ConvNet
from flowforge.nn.made import MADE
from flowforge.nn.mlp import ACTIVATIONS, INPLACE_SAFE, MLP, make_activation
from flowforge.nn.resnet import ResNet


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_make_activation_is_in_place_only_where_the_backward_allows(name):
    act = make_activation(name, inplace=True)
    assert getattr(act, "inplace", False) is (name in INPLACE_SAFE)
    assert not getattr(make_activation(name), "inplace", False)


def _out_of_place(net: nn.Module) -> nn.Module:
    twin = copy.deepcopy(net)
    for m in twin.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return twin


NETWORKS = {
    "mlp": (lambda a: MLP(3, 4, (16, 16), a, context_features=2), (5, 3), (5, 2)),
    "made": (lambda a: MADE(4, 2, (16, 16), "random", 0, a, context_features=2), (5, 4), (5, 2)),
    "made-residual": (lambda a: MADE(4, 2, (16,), "natural", 2, a), (5, 4), None),
    "convnet": (lambda a: ConvNet(2, 4, 8, a, context_features=1), (3, 2, 4, 4), (3, 1)),
    "resnet-bn": (lambda a: ResNet(2, 4, 8, 2, a, batch_norm=True), (3, 2, 4, 4), None),
    "resnet-no-bn": (lambda a: ResNet(2, 4, 8, 2, a, batch_norm=False), (3, 2, 4, 4), None),
}


@pytest.mark.parametrize("activation", ["relu", "elu"])
@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_in_place_network_matches_out_of_place(kind, activation):
    make, x_shape, ctx_shape = NETWORKS[kind]
    torch.manual_seed(0)
    net = make(activation).double()
    for p in net.parameters():  # undo the zero-initialised output layer
        nn.init.normal_(p, std=0.5)
    assert any(getattr(m, "inplace", False) for m in net.modules())
    twin = _out_of_place(net)
    x = torch.randn(x_shape, dtype=torch.float64)
    ctx = None if ctx_shape is None else torch.randn(ctx_shape, dtype=torch.float64)
    outputs, grads = [], []
    for model in (net, twin):
        xi = x.clone().requires_grad_()
        out = model(xi) if ctx is None else model(xi, ctx)
        (out**2).sum().backward()
        outputs.append(out.detach())
        grads.append([xi.grad, *(p.grad for p in model.parameters())])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-9, atol=1e-10)
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
