"""Continuous normalizing flows: trace estimators, solver accuracy, adjoint gradients, RNODE."""

import math

import pytest
import torch
from torch import nn

from flowforge.testing import perturb_parameters
from flowforge.transforms.continuous import (
    CNF,
    ConcatSquashMLP,
    ExactTrace,
    HutchinsonTrace,
    regularization,
)


def _dynamics(features=2, context=0, seed=0, scale=0.5):
    torch.manual_seed(seed)
    f = ConcatSquashMLP(features, (8, 8), "tanh", context).double()
    perturb_parameters(f, scale=scale, seed=seed)  # away from the zero (identity) start
    return f


def _trace_samples(estimator, f, z):
    z = z.clone().requires_grad_(True)
    dz = f(torch.tensor(0.3, dtype=torch.float64), z)
    probe = None
    if estimator.needs_probe:
        from flowforge.transforms.logdet import hutchinson_probe

        probe = hutchinson_probe(z, estimator.noise)
    return estimator(dz, z, probe, False)


def test_exact_trace_matches_the_jacobian_trace():
    f = _dynamics(features=3)
    z = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    expected = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda v: f(t, v.unsqueeze(0))[0], zi).trace()
            for zi in z
        ]
    )
    assert torch.allclose(_trace_samples(ExactTrace(), f, z), expected, atol=1e-12)


def test_hutchinson_traces_are_unbiased_and_rademacher_has_lower_variance():
    f = _dynamics(features=3)
    z = torch.randn(1, 3, dtype=torch.float64).expand(20000, -1)
    exact = _trace_samples(ExactTrace(), f, z[:1]).item()
    torch.manual_seed(0)
    variances = {}
    for noise in ("gaussian", "rademacher"):
        s = _trace_samples(HutchinsonTrace(noise), f, z)
        stderr = s.std().item() / math.sqrt(s.numel())
        assert abs(s.mean().item() - exact) < 4 * stderr
        variances[noise] = s.var().item()
    assert variances["gaussian"] > 0.1  # the test has power: single probes are noisy
    assert variances["rademacher"] < variances["gaussian"]


def test_cnf_training_log_det_is_unbiased_for_the_exact_one():
    cnf = CNF(_dynamics(), method="rk4", step_size=0.25).double()
    x = torch.randn(1, 2, dtype=torch.float64)
    with torch.no_grad():
        exact = cnf.eval()(x)[1].item()
        cnf.train()
        torch.manual_seed(1)
        s = cnf(x.expand(4000, -1))[1]  # one probe per sample, held along the path
    stderr = s.std().item() / math.sqrt(s.numel())
    assert s.std().item() > 0.05
    assert abs(s.mean().item() - exact) < 4 * stderr


def test_ffjord_exact_train_uses_the_exact_trace_in_training():
    from flowforge.models import ffjord

    torch.manual_seed(0)
    x = torch.randn(6, 2, dtype=torch.float64)
    log_probs = {}
    for exact_train in (False, True):
        flow = ffjord(2, hidden=(8, 8), method="rk4", step_size=0.25, exact_train=exact_train)
        perturb_parameters(flow.double(), scale=0.5, seed=0)
        with torch.no_grad():
            log_probs[exact_train] = [flow.train().log_prob(x), flow.eval().log_prob(x)]
    train, evaluation = log_probs[True]
    torch.testing.assert_close(train, evaluation, rtol=0, atol=1e-10)  # no estimator noise
    train, evaluation = log_probs[False]
    assert (train - evaluation).abs().max() > 1e-3  # the Hutchinson default is noisy


@pytest.mark.parametrize("tol", [1e-4, 1e-7])
def test_round_trip_within_solver_tolerance(tol):
    cnf = CNF(_dynamics(scale=1.0), atol=tol, rtol=tol).double().eval()
    x = torch.randn(8, 2, dtype=torch.float64) * 2
    with torch.no_grad():
        z, ladj = cnf(x)
        x2, ladj2 = cnf.inverse(z)
    assert (z - x).abs().max() > 0.1  # the dynamics move the points
    err = (x2 - x).abs().max().item()
    assert err < 100 * tol
    assert torch.allclose(ladj2, -ladj, atol=100 * tol)


def test_adjoint_and_direct_gradients_agree():
    results = []
    x = torch.randn(4, 2, dtype=torch.float64)
    c = torch.randn(4, 3, dtype=torch.float64)
    for adjoint in (False, True):
        cnf = CNF(_dynamics(context=3), atol=1e-8, rtol=1e-8, adjoint=adjoint).double().train()
        xs, cs = x.clone().requires_grad_(True), c.clone().requires_grad_(True)
        torch.manual_seed(2)  # the same Hutchinson probe
        z, ladj = cnf(xs, cs)
        loss = (0.5 * z.pow(2).sum(1) - ladj).mean()
        results.append(torch.autograd.grad(loss, [xs, cs, *cnf.parameters()]))
    for direct, adjoint in zip(*results, strict=True):
        assert torch.allclose(direct, adjoint, atol=1e-6, rtol=1e-5)
    assert max(g.abs().max().item() for g in results[0]) > 1e-2


class _Linear(nn.Module):
    """f(t, z) = a z: z(t) = z0 e^{a t}, trace a D."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, t, z, context=None):
        return self.a * z


def test_rnode_penalties_match_closed_forms():
    a, end, d = 0.7, 0.5, 3
    cnf = CNF(
        _Linear(a), end_time=end, atol=1e-9, rtol=1e-9, estimator=ExactTrace(), kinetic_energy=1.0
    ).train()
    x = torch.randn(5, d, dtype=torch.float64)
    z, ladj = cnf(x)
    assert torch.allclose(z, x * math.exp(a * end), atol=1e-8)
    assert torch.allclose(ladj, torch.full((5,), a * d * end, dtype=torch.float64), atol=1e-8)
    # kinetic energy: int_0^T a^2 |x|^2 e^{2at} dt = a |x|^2 (e^{2aT} - 1) / 2
    expected = (a * x.pow(2).sum(1) * math.expm1(2 * a * end) / 2).mean()
    penalty = regularization(cnf)
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-5)
    assert regularization(cnf) is None  # popped
    (grad,) = torch.autograd.grad(penalty, cnf.dynamics.a)
    assert grad.abs().item() > 0

    # Jacobian norm: E |eps^T a I|^2 T = a^2 D T, one Gaussian probe per sample
    cnf = CNF(_Linear(a), end_time=end, jacobian_norm=1.0).train()
    torch.manual_seed(3)
    cnf(torch.randn(5000, d, dtype=torch.float64))
    value = regularization(cnf).item()
    assert value == pytest.approx(a * a * d * end, rel=0.05)  # about 4 standard errors


def test_no_penalty_in_eval_mode():
    cnf = CNF(_Linear(0.3), kinetic_energy=1.0).eval()
    cnf(torch.randn(4, 2, dtype=torch.float64))
    assert regularization(cnf) is None


def test_arguments_are_validated():
    f = ConcatSquashMLP(2)
    with pytest.raises(ValueError, match="'step_size'"):
        CNF(f, method="rk4")
    with pytest.raises(ValueError, match="'method'"):
        CNF(f, method="leapfrog")
    with pytest.raises(ValueError, match="'end_time'"):
        CNF(f, end_time=0.0)
    with pytest.raises(ValueError, match="'noise'"):
        HutchinsonTrace("uniform")


def test_solver_names_match_torchdiffeqs_table():
    """The CNF names torchdiffeq's solvers without importing it; the names must stay true."""
    from torchdiffeq._impl.odeint import SOLVERS
    from torchdiffeq._impl.solvers import FixedGridODESolver

    from flowforge.transforms.continuous import FIXED_STEP
    from flowforge.transforms.continuous import SOLVERS as OURS

    assert set(OURS) == set(SOLVERS)
    assert set(FIXED_STEP) == {k for k, v in SOLVERS.items() if issubclass(v, FixedGridODESolver)}
