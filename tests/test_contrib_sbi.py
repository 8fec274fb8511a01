"""flowforge.contrib.sbi: a recipe as sbi's ConditionalDensityEstimator (shapes, standardisation,
named errors) and NPE with it on simulators with known posteriors (benchmarks/sbi_npe.py)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("sbi", reason="sbi is in the 'sbi' and 'test' extras")
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator  # noqa: E402

from flowforge.contrib.sbi import FlowEstimator, estimator_options, flowforge_nn  # noqa: E402
from flowforge.models import nsf  # noqa: E402

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


def _parameters(module):
    return sum(p.numel() for p in module.parameters())


def test_flowforge_nn_sizes_the_flow_from_the_simulations():
    # nsf with the recipe's defaults was 2.76M parameters for 2 parameters and 2 data: now the
    # sizes `flowforge train --data` picks for 1000 rows, with the recipe's normal base.
    torch.manual_seed(0)
    theta, x = torch.randn(1000, 2), torch.randn(1000, 2)
    est = flowforge_nn("nsf")(theta, x)
    sized = {"kind": "autoregressive", "layers": 4, "hidden": 32, "residual_blocks": 1, "bins": 8}
    assert est.options == sized == estimator_options("nsf", 2, 2, 1000)
    assert _parameters(est) == _parameters(nsf(2, context_features=2, **sized)) < 20_000
    assert type(est.flow.base).__name__ == "StandardNormal"
    assert flowforge_nn("nsf", hidden=24, bins=4)(theta, x).options == {
        **sized,
        "hidden": 24,
        "bins": 4,
    }
    assert flowforge_nn("nsf", sized=False)(theta, x).options == {}  # the paper's sizes
    assert estimator_options("nsf", 2, 2, 100_000)["hidden"] == 256  # grows with the rows


def test_the_hidden_width_is_at_least_the_conditioners_input():
    theta, x = torch.randn(100, 3), torch.randn(100, 40)  # 16 units from the rows alone
    assert flowforge_nn("maf")(theta, x).options["hidden"] == [64, 64]
    assert estimator_options("nsf", 3, 40, 100)["hidden"] == 64
    assert estimator_options("realnvp", 3, 2, 100)["hidden"] == [16, 16]
    assert estimator_options("nsf", 3, 1000, 100)["hidden"] == 256  # capped as --data caps

    def recipe(features, context_features=0, layers=1):
        return nsf(features, layers=layers, hidden=8, context_features=context_features)

    assert flowforge_nn(recipe, layers=2)(theta, x).options == {"layers": 2}  # not sized


def test_estimator_densities_do_not_depend_on_the_batch_in_training_mode():
    # sbi trains in training mode; its posterior calls log_prob and sample. With batch norm
    # (the maf recipe's own default), a density stays per point and the statistics unchanged;
    # the loss is the training path and uses (and updates) the batch statistics.
    theta, x = _batch(200)
    est = flowforge_nn("maf", layers=2, batch_norm=True)(theta, x).train()
    with torch.no_grad():
        est.loss(theta, x)  # move the running statistics away from their start
    before = {n: b.clone() for n, b in est.named_buffers()}
    together = est.log_prob(theta[:5], x[:5])[0]
    alone = torch.cat([est.log_prob(theta[i : i + 1], x[i : i + 1])[0] for i in range(5)])
    assert torch.allclose(together, alone, rtol=1e-5, atol=1e-4)
    s, lp = est.sample_and_log_prob((3,), x[:2])
    assert torch.allclose(lp, est.log_prob(s, x[:2]), rtol=1e-4, atol=1e-3)
    est.sample((4,), x[:2])
    assert all(torch.equal(b, before[n]) for n, b in est.named_buffers())
    assert est.training and est.flow.training
    est.loss(theta[:50] + 3, x[:50])
    assert any(not torch.equal(b, before[n]) for n, b in est.named_buffers())


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
