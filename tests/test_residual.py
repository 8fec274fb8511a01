"""Invertible residual blocks: Lipschitz control, log-det estimators, inverse and its gradient."""

import math

import pytest
import torch
from torch import nn

from flowforge.nn.lipschitz import LipSwish, SpectralNormConv2d, SpectralNormLinear
from flowforge.transforms import InverseDidNotConverge
from flowforge.transforms.logdet import (
    BackwardInForward,
    ExactLogDet,
    NeumannLogDet,
    PowerSeriesLogDet,
    RouletteLogDet,
    rowwise_jacobian,
)
from flowforge.transforms.residual import LipschitzMLP, ResidualBlock


def _contractive_g(features=2, coeff=0.9, seed=0, activation="lipswish"):
    """A Lipschitz MLP with weights scaled up, so that the normalisation is active."""
    torch.manual_seed(seed)
    g = LipschitzMLP(features, (16,), coeff=coeff, activation=activation, tol=1e-8)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, SpectralNormLinear):
                m.weight.normal_(0, 3.0)
                m.bias.normal_(0, 0.5)
    g.double().train()
    g(torch.zeros(1, features, dtype=torch.float64))  # power iterations converge
    return g.eval()


class _TanhContraction(nn.Module):
    """g(x) = M tanh(x + b), M positive definite with ||M||_2 = ``norm``: Lip(g) = ``norm``,
    reached at x = -b; every term of the log-det series has the same sign, so truncation
    biases are large and the series converges as slowly as the estimator tests need."""

    def __init__(self, features=2, norm=0.6, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn(features, features, generator=gen, dtype=torch.float64)
        m = a @ a.T + 0.5 * torch.eye(features, dtype=torch.float64)  # positive definite
        self.m = nn.Parameter(m * norm / torch.linalg.matrix_norm(m, 2))
        self.b = nn.Parameter(torch.randn(features, generator=gen, dtype=torch.float64) * 0.1)

    def forward(self, x, context=None):
        return torch.tanh(x + self.b) @ self.m.T


def _jacobian(g, x):
    return torch.autograd.functional.jacobian(lambda v: g(v.unsqueeze(0)).squeeze(0), x)


def test_spectral_norm_linear_bounds_the_spectral_norm():
    torch.manual_seed(0)
    layer = SpectralNormLinear(6, 5, coeff=0.7, tol=1e-8, max_iterations=500).double()
    with torch.no_grad():
        layer.weight.mul_(10)
    assert torch.linalg.matrix_norm(layer.weight, 2) > 1.0  # the bound has work to do
    layer.train()
    layer(torch.zeros(1, 6, dtype=torch.float64))
    layer.eval()
    sigma = torch.linalg.matrix_norm(layer.normalised_weight(), 2).item()
    assert sigma == pytest.approx(0.7, rel=1e-4)


def test_spectral_norm_leaves_small_weights_alone():
    layer = SpectralNormLinear(4, 4, coeff=0.9, tol=1e-8, max_iterations=500).double()
    with torch.no_grad():
        layer.weight.copy_(torch.eye(4) * 0.5)
    layer.train()
    layer(torch.zeros(1, 4, dtype=torch.float64))
    assert torch.allclose(layer.normalised_weight(), layer.weight)


def test_spectral_norm_conv_bounds_the_operator_norm():
    torch.manual_seed(0)
    conv = SpectralNormConv2d(2, 3, 3, (4, 4), coeff=0.8, tol=1e-8, max_iterations=1000)
    conv = conv.double()
    with torch.no_grad():
        conv.weight.mul_(5)
    conv.train()
    conv(torch.zeros(1, 2, 4, 4, dtype=torch.float64))
    conv.eval()

    def linear_part(v):
        return conv(v.reshape(1, 2, 4, 4)).flatten() - conv.bias.repeat_interleave(16)

    matrix = torch.autograd.functional.jacobian(linear_part, torch.zeros(32, dtype=torch.float64))
    assert torch.linalg.matrix_norm(matrix, 2).item() == pytest.approx(0.8, rel=1e-4)


@pytest.mark.parametrize("hidden", [(), (16, 16)])
def test_lipschitz_mlp_jacobian_norm_below_coeff(hidden):
    torch.manual_seed(0)
    g = LipschitzMLP(3, hidden, coeff=0.9, activation="relu", tol=1e-10, max_iterations=1000)
    g = g.double()
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, SpectralNormLinear):
                m.weight.normal_(0, 3.0)
    g.train()
    g(torch.zeros(1, 3, dtype=torch.float64))
    g.eval()
    norms = [
        torch.linalg.matrix_norm(_jacobian(g, x), 2).item()
        for x in torch.randn(50, 3, dtype=torch.float64) * 3
    ]
    assert max(norms) <= 0.9 * (1 + 1e-6)
    if not hidden:  # one linear layer: the bound is reached
        assert max(norms) == pytest.approx(0.9, rel=1e-6)


def test_lipswish_derivative_is_at_most_one_for_any_beta():
    z = torch.linspace(-20, 20, 40001, dtype=torch.float64, requires_grad=True)
    for beta in (0.1, 0.5, 2.0, 10.0):
        act = LipSwish().double()
        with torch.no_grad():
            act.raw_beta.fill_(math.log(math.expm1(beta)))
        (d,) = torch.autograd.grad(act(z).sum(), z)
        assert d.abs().max().item() <= 1.0
        assert d.abs().max().item() > 0.99  # and tight: 1.0998 / 1.1


def _logdet_samples(estimator, g, x, calls, copies):
    """Per-call means over ``copies`` copies of ``x`` (one roulette draw per call)."""
    batch = x.expand(copies, -1)
    with torch.no_grad():
        return torch.stack([estimator(g, batch)[1].mean() for _ in range(calls)])


@pytest.mark.parametrize("estimator", [RouletteLogDet(), NeumannLogDet(n_exact_terms=1, p=0.4)])
def test_unbiased_estimators_match_exact_logdet_within_stderr(estimator):
    # Lip(g) = 0.6: the roulette's variance is finite when Lip(g)^2 / (1 - p) < 1
    g = _TanhContraction(norm=0.6)
    x = torch.tensor([[0.3, -0.5]], dtype=torch.float64)
    with torch.no_grad():
        exact = ExactLogDet()(g, x)[1].item()
    torch.manual_seed(1)
    samples = _logdet_samples(estimator, g, x, calls=200, copies=64)
    stderr = samples.std().item() / math.sqrt(samples.numel())
    assert abs(samples.mean().item() - exact) < 4 * stderr
    # the test has power: the one-term series is off by many standard errors
    biased = _logdet_samples(PowerSeriesLogDet(n_terms=1), g, x, calls=200, copies=64)
    assert abs(biased.mean().item() - exact) > 10 * stderr


def test_power_series_bias_shrinks_with_more_terms():
    g = _TanhContraction(norm=0.9)
    x = -g.b.detach().unsqueeze(0)  # where J = M: eigenvalues up to 0.9
    with torch.no_grad():
        exact = ExactLogDet()(g, x)[1].item()
    torch.manual_seed(2)
    bias, stderr = {}, {}
    for n in (1, 2, 4, 16):
        with torch.no_grad():  # the number of terms is fixed: every probe is independent
            s = PowerSeriesLogDet(n_terms=n, noise="rademacher")(g, x.expand(20000, -1))[1]
        bias[n] = abs(s.mean().item() - exact)
        stderr[n] = s.std().item() / math.sqrt(s.numel())
    for a, b in ((1, 2), (2, 4), (4, 16)):
        assert bias[a] - bias[b] > 3 * (stderr[a] + stderr[b])
    assert bias[16] < 4 * stderr[16] + 0.05 * bias[1]


def _grads(module, loss):
    grads = torch.autograd.grad(loss, list(module.parameters()), materialize_grads=True)
    return torch.cat([g.flatten() for g in grads])


def test_neumann_gradient_matches_exact_gradient_in_expectation():
    g = _TanhContraction(norm=0.6)
    x = torch.tensor([[0.3, -0.5]], dtype=torch.float64)
    exact = _grads(g, ExactLogDet()(g, x)[1].sum())
    torch.manual_seed(3)
    batch = x.expand(64, -1)
    samples = torch.stack([_grads(g, NeumannLogDet()(g, batch)[1].mean()) for _ in range(150)])
    mean, stderr = samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])
    assert exact.abs().max() > 0.05  # a non-trivial gradient
    assert ((mean - exact).abs() <= 4 * stderr + 1e-3).all()


def test_backward_in_forward_gives_the_wrapped_estimators_gradients():
    g = _contractive_g(features=3)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for estimator in (NeumannLogDet(), BackwardInForward(NeumannLogDet())):
        torch.manual_seed(4)
        gx, logdet = estimator(g, x)
        loss = (gx**2).sum() + logdet.mean()
        results.append(torch.autograd.grad(loss, [x, *g.parameters()]))
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_backward_in_forward_rejects_per_sample_weights():
    g = _contractive_g()
    x = torch.randn(4, 2, dtype=torch.float64)
    _, logdet = BackwardInForward(NeumannLogDet())(g, x)
    with pytest.raises(ValueError, match="same upstream gradient"):
        (logdet * torch.arange(4.0, dtype=torch.float64)).sum().backward()


class _Expanding(nn.Module):
    """g(x) = -scale * x: Lipschitz constant ``scale``."""

    def __init__(self, scale):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x, context=None):
        return -self.scale * x


def test_inverse_raises_when_g_is_not_contractive():
    block = ResidualBlock(_Expanding(1.5), max_iterations=50).eval()
    with pytest.raises(InverseDidNotConverge, match="50 iterations"):
        block.inverse(torch.randn(3, 2))


def test_inverse_raises_at_the_iteration_cap():
    block = ResidualBlock(_contractive_g(), max_iterations=2).eval()
    with pytest.raises(InverseDidNotConverge):
        block.inverse(torch.randn(3, 2, dtype=torch.float64))


def test_float32_inverse_of_a_nearly_non_contractive_block_converges():
    torch.manual_seed(0)
    g = LipschitzMLP(2, (32, 32), coeff=0.99, activation="elu", tol=1e-6, max_iterations=500)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, SpectralNormLinear):
                m.weight.normal_(0, 3.0)
    block = ResidualBlock(g)
    block.train()
    block(torch.zeros(1, 2))  # power iterations
    block.eval()
    x = torch.randn(256, 2) * 3
    x[:8] *= 1e-4  # points near 0, where only the relative-to-z part of the test can hold
    with torch.no_grad():
        z, _ = block(x)
        x2, _ = block.inverse(z)
    assert torch.allclose(x2, x, atol=1e-4)


def test_inverse_gradients_are_those_of_the_implicit_function():
    block = ResidualBlock(_contractive_g(), atol=1e-12, rtol=1e-12).eval()
    z = torch.tensor([0.7, -0.2], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: block.inverse(v.unsqueeze(0))[0][0], z)
    x = block.inverse(z.unsqueeze(0))[0].detach()[0]
    expected = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + _jacobian(block.g, x))
    assert torch.allclose(jac, expected, atol=1e-8)
    # and to a parameter, against central differences
    p = block.g.net[0].bias

    def loss():
        xs, ladj = block.inverse(z.unsqueeze(0))
        return xs.pow(2).sum() + ladj.sum()

    (grad,) = torch.autograd.grad(loss(), p)
    eps = 1e-6
    fd = torch.zeros_like(p)
    with torch.no_grad():
        for i in range(p.numel()):
            p[i] += eps
            up = loss()
            p[i] -= 2 * eps
            down = loss()
            p[i] += eps
            fd[i] = (up - down) / (2 * eps)
    assert torch.allclose(grad, fd, atol=1e-6)


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="'coeff'"):
        SpectralNormLinear(2, 2, coeff=1.0)
    with pytest.raises(ValueError, match="'activation'"):
        LipschitzMLP(2, activation="gelu")
    with pytest.raises(ValueError, match="'p'"):
        RouletteLogDet(p=1.0)
    with pytest.raises(ValueError, match="'noise'"):
        PowerSeriesLogDet(noise="uniform")
    with pytest.raises(ValueError, match="'max_iterations'"):
        ResidualBlock(LipschitzMLP(2), max_iterations=0)


def test_resflow_exact_training_log_det_is_the_exact_one_with_gradients():
    from flowforge.models import resflow

    torch.manual_seed(0)
    flow = resflow(2, blocks=2, hidden=(16,), exact_train=True).double()
    blocks = [m for m in flow.modules() if isinstance(m, ResidualBlock)]
    assert blocks and all(isinstance(b.estimator, ExactLogDet) for b in blocks)
    flow.train()
    x = torch.randn(32, 2, dtype=torch.float64)
    train_lp = flow.log_prob(x)
    flow.eval()  # the exact evaluator: the training value must agree to rounding
    assert torch.allclose(train_lp, flow.log_prob(x).detach(), atol=1e-10)
    flow.train()
    flow.log_prob(x).mean().backward()
    assert all(p.grad is not None for p in flow.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="'exact_train'"):
        resflow(33, exact_train=True)


def test_resflow_input_scale_is_a_counted_change_of_units():
    """At initialisation the scaled flow is the unscaled one applied to ``s * x``, with the
    scaling's log-det ``D log s`` added: log p_s(x) = log p(s x) + D log s."""
    from flowforge.models import resflow

    s, x = 7.0, torch.randn(64, 2, dtype=torch.float64)
    torch.manual_seed(0)
    scaled = resflow(2, blocks=3, hidden=(16,), exact_train=True, input_scale=s).double().eval()
    torch.manual_seed(0)
    plain = resflow(2, blocks=3, hidden=(16,), exact_train=True).double().eval()
    expected = plain.log_prob(s * x) + 2 * math.log(s)
    assert torch.allclose(scaled.log_prob(x), expected, atol=1e-10)
    assert (scaled.log_prob(x) - plain.log_prob(x)).abs().max() > 0.1  # not the same model
    for bad in (0.0, -2.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="'input_scale'"):
            resflow(2, input_scale=bad)


@pytest.mark.parametrize("activation", ["lipswish", "elu", "relu", "tanh", "leaky_relu"])
@pytest.mark.parametrize("context_features", [0, 3])
def test_jacobian_from_the_forward_pass_is_the_autograd_one(activation, context_features):
    """``LipschitzMLP.forward_with_jacobian`` (which ``ExactLogDet`` uses) against the
    row-by-row autograd Jacobian: the values, and the gradients of ``log det(I + J)`` with
    respect to the input and every parameter."""
    torch.manual_seed(0)
    g = LipschitzMLP(3, (16, 16), 0.9, activation, context_features).double()
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.5)
    g.eval()  # frozen power-iteration vectors: both paths see the same function
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(7, context_features, dtype=torch.float64) if context_features else None
    gx, jac = g.forward_with_jacobian(x, c)
    gx_ref, jac_ref = rowwise_jacobian(g, x, c, create_graph=True)
    assert torch.allclose(gx, gx_ref, atol=1e-12)
    assert torch.allclose(jac, jac_ref, atol=1e-12)
    assert jac.abs().amax() > 0.01  # not the trivial zero Jacobian (each layer normalised to 0.9)
    eye = torch.eye(3, dtype=torch.float64)
    fast = torch.linalg.slogdet(eye + jac)[1]
    ref = torch.linalg.slogdet(eye + jac_ref)[1]
    assert torch.allclose(ExactLogDet()(g, x, c)[1], ref, atol=1e-12)
    inputs = [x, *g.parameters()]
    # (the last bias does not enter the Jacobian: zero gradients on both sides)
    grads = torch.autograd.grad(fast.sum(), inputs, materialize_grads=True)
    grads_ref = torch.autograd.grad(ref.sum(), inputs, materialize_grads=True)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(grads, grads_ref, strict=True))


@pytest.mark.parametrize(
    "name",
    [
        "recipe/iresnet_2d",
        "residual/mlp_power_series_elu",
        "residual/mlp_context_backward_in_forward",
    ],
)
def test_eval_after_editing_weights_refreshes_the_spectral_norm(name):
    """Issue 19, item 10.3: weights loaded (load_state_dict) with a perturbation of 0.5 after
    the last power iteration. The stale estimate let Lip(g) exceed 1 and the inverse failed
    (InverseDidNotConverge) or drifted; the eval-mode re-check restores the bound."""
    import copy

    from flowforge.testing import perturb_parameters
    from flowforge.testing.registry import all_cases

    case = all_cases()[name]
    torch.manual_seed(0)
    t = case.make_transform().double()
    x, context = case.inputs()
    t.train()
    with torch.no_grad():
        t(x, context)
    t.eval()
    edited = copy.deepcopy(t)
    perturb_parameters(edited, 0.5)
    t.load_state_dict(edited.state_dict())
    with torch.no_grad():
        z, ladj = t(x, context)
        x2, ladj_inv = t.inverse(z, context)
    assert torch.allclose(x2, x, atol=1e-5), (x2 - x).abs().max()
    assert torch.allclose(ladj_inv, -ladj, atol=1e-5)
    # once refreshed, eval mode is a fixed function again
    with torch.no_grad():
        assert torch.equal(t(x, context)[0], z)
