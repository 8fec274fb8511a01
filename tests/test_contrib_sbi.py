"""flowforge.contrib.sbi: a recipe as sbi's ConditionalDensityEstimator (shapes, standardisation,
named errors) and NPE with it on simulators with known posteriors (benchmarks/sbi_npe.py)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("sbi", reason="sbi is in the 'sbi' and 'test' extras")
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator  # noqa: E402

from flowforge.contrib.sbi import FlowEstimator, flowforge_nn  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "sbi_npe", Path(__file__).resolve().parents[1] / "benchmarks" / "sbi_npe.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _batch(n=64, seed=0):
    torch.manual_seed(seed)
    theta = torch.randn(n, 3) * torch.tensor([100.0, 0.01, 1.0]) + torch.tensor([5.0, -2.0, 0.0])
    x = torch.randn(n, 4) * 30 + 7
    return theta, x


def test_estimator_follows_sbis_shape_conventions():
    theta, x = _batch()
    est = flowforge_nn("realnvp", couplings=2, hidden=(8,))(theta, x)
    assert isinstance(est, ConditionalDensityEstimator) and isinstance(est, FlowEstimator)
    assert est.input_shape == (3,) and est.condition_shape == (4,)
    assert est.log_prob(theta[:5].unsqueeze(0).expand(7, 5, 3), x[:5]).shape == (7, 5)
    assert est.log_prob(theta[:5], x[:5]).shape == (1, 5)
    assert est.log_prob(theta[:5].unsqueeze(1), x[:2]).shape == (5, 2)  # (5, 1) vs batch 2
    assert est.loss(theta[:5], x[:5]).shape == (5,)
    samples = est.sample((6,), x[:2])
    assert samples.shape == (6, 2, 3)
    s, lp = est.sample_and_log_prob((4,), x[:2])
    assert s.shape == (4, 2, 3) and lp.shape == (4, 2)
    assert torch.allclose(lp, est.log_prob(s, x[:2]), atol=1e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="condition"):
        est.sample((2,), torch.randn(2, 5))


def test_theta_standardisation_is_inside_the_flow_with_its_log_det():
    # realnvp starts as the identity over N(0, I): the estimator is N(m, diag(s^2)) in theta's
    # units, m and s the batch's mean and standard deviation.
    theta, x = _batch()
    est = flowforge_nn("realnvp", couplings=2, hidden=(8,))(theta, x)
    m, s = theta.mean(0), theta.std(0)
    expected = torch.distributions.Normal(m, s).log_prob(theta[:10]).sum(-1)
    assert torch.allclose(est.log_prob(theta[:10], x[:10])[0], expected, rtol=1e-5, atol=1e-4)
    draws = est.sample((4000,), x[:1])[:, 0]
    assert torch.allclose(draws.mean(0), m, atol=(4 * s / math.sqrt(4000)).max().item())
    assert torch.allclose(draws.std(0), s, rtol=0.08)
    # and x is z-scored before it conditions
    z = est.embedding_net(x)
    assert torch.allclose(z.mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.std(0), torch.ones(4), atol=1e-4)
    raw = flowforge_nn("realnvp", z_score_theta="none", z_score_x="none", couplings=1)(theta, x)
    assert torch.allclose(raw.embedding_net(x), x)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(theta[:3]).sum(-1)
    assert torch.allclose(raw.log_prob(theta[:3], x[:3])[0], ref, rtol=1e-5)


def test_builder_errors_are_named():
    with pytest.raises(ValueError, match="'model' should be one of"):
        flowforge_nn("nope")
    with pytest.raises(ValueError, match=r"unknown options \['couplngs'\]"):
        flowforge_nn("realnvp", couplngs=2)
    with pytest.raises(ValueError, match="'z_score_x' should be one of"):
        flowforge_nn("maf", z_score_x="yes")
    theta, x = _batch()
    theta[3, 1] = math.nan
    with pytest.raises(ValueError, match="'theta' has 1 of 64 rows with non-finite values"):
        flowforge_nn("realnvp", couplings=1)(theta, x)


def test_embedding_net_sets_the_context_width():
    theta, x = _batch()
    est = flowforge_nn("maf", layers=1, hidden=(8,), embedding_net=torch.nn.Linear(4, 2))(theta, x)
    assert est.flow.context_features == 2
    assert est.sample((3,), x[:2]).shape == (3, 2, 3)


def _npe_errors(name, model, simulations, epochs, **options):
    theta, x = bench.simulate(name, simulations)
    posterior, _, _ = bench.run_npe(name, flowforge_nn(model, **options), theta, x, epochs)
    errors = []
    for i, x_o in enumerate(bench.observations(name, 3)):
        torch.manual_seed(100 + i)
        q = posterior.sample((4000,), x=x_o, show_progress_bars=False)
        errors.append(bench.moment_errors(q, bench.SIMULATORS[name][2](x_o)))
    return sum(e[0] for e in errors) / 3, sum(e[1] for e in errors) / 3  # as the table


# The benchmark's flowforge MAF (benchmarks/sbi_npe.py), at its budget: 2000 simulations.
MAF = {"layers": 5, "hidden": (50, 50), "batch_norm": False}


@pytest.mark.slow
def test_npe_linear_gaussian_matches_the_exact_posterior():
    err_mean, err_cov = _npe_errors("linear_gaussian", "maf", 2000, 100, **MAF)
    assert err_mean < MEAN_TOL and err_cov < COV_TOL, (err_mean, err_cov)


@pytest.mark.slow
def test_npe_normal_gamma_matches_the_exact_posterior():
    err_mean, err_cov = _npe_errors("normal_gamma", "maf", 2000, 100, **MAF)
    assert err_mean < MEAN_TOL and err_cov < COV_TOL, (err_mean, err_cov)


# Means over 3 observations, as in docs/clients.md's table (flowforge MAF: 0.15 and 0.2 on both
# simulators; sbi's MAF 0.1-0.13 and 0.15-0.33); prior sds are 1.6-5.5 posterior sds.
MEAN_TOL, COV_TOL = 0.3, 0.5
