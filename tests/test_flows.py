"""Flow, base distributions and the torch.distributions view."""

import math

import pytest
import torch

from flowforge import DiagonalNormal, Flow, StandardLogistic, StandardNormal
from flowforge.models import nice, realnvp
from flowforge.testing import perturb_parameters


def test_standard_normal_matches_torch():
    z = torch.randn(7, 3)
    expected = torch.distributions.Normal(0, 1).log_prob(z).sum(1)
    assert torch.allclose(StandardNormal(3).log_prob(z), expected, atol=1e-6)


def test_diagonal_normal_matches_torch():
    base = DiagonalNormal(3)
    perturb_parameters(base, 0.5)
    z = torch.randn(7, 3)
    ref = torch.distributions.Normal(base.loc, base.log_scale.exp()).log_prob(z).sum(1)
    assert torch.allclose(base.log_prob(z), ref, atol=1e-5)


def test_logistic_matches_torch():
    z = torch.randn(7, 3) * 3
    logistic = torch.distributions.TransformedDistribution(
        torch.distributions.Uniform(0.0, 1.0),
        [torch.distributions.SigmoidTransform().inv],
    )
    assert torch.allclose(StandardLogistic(3).log_prob(z), logistic.log_prob(z).sum(1), atol=1e-5)


def test_temperature_scales_base_noise():
    torch.manual_seed(0)
    z = StandardNormal(2).sample(200000, temperature=0.5)
    assert abs(z.std().item() - 0.5) < 0.01


def test_sample_and_log_prob_agrees_with_log_prob():
    torch.manual_seed(0)
    flow = realnvp(3, couplings=3)
    perturb_parameters(flow, 0.2)
    flow.eval()
    x, lp = flow.sample_and_log_prob(16)
    assert torch.allclose(lp, flow.log_prob(x), atol=1e-4)


def test_rsample_carries_gradients_and_sample_does_not():
    flow = realnvp(2, couplings=2)
    perturb_parameters(flow, 0.2)
    assert flow.rsample(4).requires_grad
    assert not flow.sample(4).requires_grad


def test_conditional_sampling_context_shapes():
    flow = realnvp(2, couplings=2, context_features=3)
    assert flow.sample(5, torch.randn(3)).shape == (5, 2)
    assert flow.sample(5, torch.randn(5, 3)).shape == (5, 2)
    with pytest.raises(ValueError, match="context"):
        flow.sample(5, torch.randn(4, 3))
    with pytest.raises(ValueError, match="context"):
        flow.log_prob(torch.randn(5, 2))  # context required but missing


def test_log_prob_rejects_wrong_shape_with_clear_error():
    flow = nice(4, hidden=(8,))
    with pytest.raises(ValueError, match=r"'x' should have shape \(batch, 4\)"):
        flow.log_prob(torch.randn(3, 5))


def test_distribution_view():
    torch.manual_seed(0)
    flow = realnvp(2, couplings=2)
    perturb_parameters(flow, 0.2)
    flow.eval()
    d = flow.as_distribution()
    assert isinstance(d, torch.distributions.Distribution)
    x = d.sample((3, 4))
    assert x.shape == (3, 4, 2)
    assert d.log_prob(x).shape == (3, 4)
    assert torch.allclose(d.log_prob(x).reshape(-1), flow.log_prob(x.reshape(-1, 2)))
    assert d.rsample((5,)).requires_grad


def test_flow_rejects_non_transform():
    with pytest.raises(TypeError, match="transform"):
        Flow(torch.nn.Linear(2, 2), StandardNormal(2))


def test_untrained_flow_is_the_base():
    flow = realnvp(2)  # zero-initialised couplings: the identity
    x = torch.randn(10, 2)
    expected = -0.5 * x.pow(2).sum(1) - math.log(2 * math.pi)
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-6)


def test_wrong_dtype_and_device_are_named():
    flow = realnvp(2, couplings=2)
    message = r"'x' has dtype torch.float64 but the flow has torch.float32"
    with pytest.raises(ValueError, match=message):
        flow.log_prob(torch.randn(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="'x' is on meta"):
        flow.log_prob(torch.randn(3, 2, device="meta"))


@pytest.mark.parametrize("n", [(4,), 2.0, 0, -1, True])
def test_sample_count_is_validated(n):
    flow = realnvp(2, couplings=2, hidden=(4,))
    with pytest.raises(ValueError, match="'n' should be a positive int"):
        flow.sample(n)
