"""Family tests of the planar and radial layers beyond the conformance kit."""

import pytest
import torch
from torch.func import functional_call

from flowforge.models.planar_radial import planar, radial
from flowforge.testing import perturb_parameters
from flowforge.transforms import Inverse, InverseDidNotConverge, Planar, Radial
from flowforge.transforms.planar import constrain_u


def test_constrained_u_keeps_wu_above_minus_one():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1000, 3, generator=g, dtype=torch.float64)
    u = -torch.rand(1000, 1, generator=g, dtype=torch.float64) * 50 * w  # w^T u down to -50|w|^2
    u = u + torch.randn(1000, 3, generator=g, dtype=torch.float64)
    s = (w * constrain_u(u, w)).sum(-1)
    assert bool((s > -1 - 1e-10).all())  # up to float rounding of softplus and the projection
    # m(0) = 0: u = 0 gives u_hat = 0 (the identity)
    assert torch.equal(constrain_u(torch.zeros_like(w), w), torch.zeros_like(w))


@pytest.mark.parametrize("layer", [Planar(4), Radial(4)], ids=["planar", "radial"])
def test_layers_start_at_the_identity(layer):
    x = torch.randn(6, 4)
    z, ladj = layer(x)
    assert torch.equal(z, x)
    assert torch.allclose(ladj, torch.zeros(6))


def _strong_planar(max_iter=100):
    torch.manual_seed(0)
    t = Planar(3, max_iter=max_iter).double()
    with torch.no_grad():  # a sharp fold: w^T u_hat close to -1, large |w|
        t.params.value.copy_(torch.tensor([-4.0, -4.0, 0.0, 2.0, 2.0, 0.0, 0.3]))
    return t


def test_planar_inverse_round_trip_on_a_sharp_fold():
    t = _strong_planar()
    x = torch.randn(200, 3, dtype=torch.float64) * 3
    z, ladj = t(x)
    x2, ladj_inv = t.inverse(z)
    assert torch.allclose(x2, x, atol=1e-8)
    assert torch.allclose(ladj_inv, -ladj, atol=1e-8)


def test_planar_inverse_raises_at_the_iteration_cap():
    t = _strong_planar(max_iter=1)
    z = t(torch.randn(50, 3, dtype=torch.float64) * 3)[0]
    with pytest.raises(InverseDidNotConverge, match="max_iter=1"):
        t.inverse(z)


def test_planar_inverse_converges_in_float32():
    t = _strong_planar().float()
    x = torch.randn(200, 3) * 3
    x2, _ = t.inverse(t(x)[0])
    assert torch.allclose(x2, x, atol=1e-4)


@pytest.mark.parametrize("make", [lambda: Planar(3), lambda: Radial(3)], ids=["planar", "radial"])
def test_inverse_gradients_to_parameters_match_finite_differences(make):
    torch.manual_seed(0)
    inv = Inverse(make()).double()
    perturb_parameters(inv, scale=0.5)
    y = torch.randn(5, 3, dtype=torch.float64)
    value = inv.transform.params.value.detach().clone().requires_grad_(True)

    def solve(v):
        x, ladj = functional_call(inv, {"transform.params.value": v}, (y,))
        return x, ladj

    assert torch.autograd.gradcheck(solve, (value,), atol=1e-6)


def test_radial_extreme_contraction_stays_invertible():
    t = Radial(2).double()
    with torch.no_grad():  # alpha = softplus(3), beta ~ -alpha: a strong pull towards z0
        t.params.value.copy_(torch.tensor([0.5, -0.5, 3.0, -20.0], dtype=torch.float64))
    x = torch.randn(100, 2, dtype=torch.float64) * 4
    z, ladj = t(x)
    x2, ladj_inv = t.inverse(z)
    assert torch.isfinite(ladj).all()
    assert torch.allclose(x2, x, atol=1e-8)
    assert torch.allclose(ladj_inv, -ladj, atol=1e-8)


@pytest.mark.parametrize("recipe", [planar, radial])
def test_sampling_uses_the_cheap_map_and_agrees_with_log_prob(recipe):
    torch.manual_seed(0)
    flow = recipe(2, layers=3).double()
    perturb_parameters(flow, scale=0.3)
    x, log_q = flow.sample_and_log_prob(64)
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-7)
    assert all(isinstance(t, Inverse) for t in flow.transform)
    assert flow.transform.fast_inverse  # sampling is one pass


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="'features'"):
        Planar(0)
    with pytest.raises(ValueError, match="'tol'"):
        Planar(2, tol=0)
    with pytest.raises(ValueError, match="'max_iter'"):
        Planar(2, max_iter=0)
    with pytest.raises(ValueError, match="'features'"):
        Radial(0)
    with pytest.raises(ValueError, match="'context'"):
        Planar(2, context_features=3)(torch.randn(4, 2))
    with pytest.raises(ValueError, match="'x'"):
        Radial(2)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="'layers'"):
        planar(2, layers=0)
    with pytest.raises(ValueError, match="'base'"):
        radial(2, base="laplace")
