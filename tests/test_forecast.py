"""Forecasting a series with a conditional flow (flowforge.forecast, docs/flows-over-time.md):
the Gaussian VAR baseline against a simulated VAR(1) and an independent Gaussian formula, the
CRPS against its closed form and its integral, ancestral paths against the VAR's own
forecasts, and a tiny run through the trainer (resume, eval, load, forecast without data)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import flowforge
from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.data.series import window_pairs
from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.forecast import (
    GaussianVAR,
    crps_gaussian,
    crps_samples,
    fit_var,
    sample_paths,
    select_var,
    window_of,
)
from flowforge.runs import train_run
from flowforge.transforms import LinearStandardize
from helpers import final_parameters, stop_at_step_and_resume

A1 = np.array([[0.5, 0.1], [-0.2, 0.3]])
NU = np.array([0.1, -0.2])
SIGMA = np.array([[1.0, 0.3], [0.3, 0.5]])


def simulate_var1(t: int, seed: int = 0) -> np.ndarray:
    """``t`` values of the VAR(1) ``x_t = NU + A1 x_{t-1} + e_t``, ``e_t ~ N(0, SIGMA)``."""
    g = np.random.default_rng(seed)
    noise = g.multivariate_normal(np.zeros(2), SIGMA, size=t + 100)
    x = np.zeros((t + 100, 2))
    for i in range(1, t + 100):
        x[i] = NU + A1 @ x[i - 1] + noise[i]
    return x[100:]  # burn-in dropped


# -- the VAR baseline ---------------------------------------------------------------------------


def test_the_var_recovers_a_simulated_var1():
    y, context = window_pairs(simulate_var1(20000), window=3)
    var = fit_var(y, context, order=1)
    assert var.order == 1 and var.dim == 2
    np.testing.assert_allclose(var.coefs[0], A1, atol=0.02)
    np.testing.assert_allclose(var.intercept, NU, atol=0.03)
    np.testing.assert_allclose(var.cov, SIGMA, atol=0.03)
    # a second lag is (nearly) zero
    np.testing.assert_allclose(fit_var(y, context, order=2).coefs[1], 0, atol=0.03)


def test_the_order_is_chosen_on_validation():
    y, context = window_pairs(simulate_var1(3000, seed=1), window=4)
    var, scores = select_var(y[:2000], context[:2000], y[2000:], context[2000:], window=4)
    assert sorted(scores) == [0, 1, 2, 3, 4]
    assert var.order == max(scores, key=scores.get)
    assert scores[1] > scores[0] + 0.1  # dynamics matter: VAR(1) well above one Gaussian
    assert var.order >= 1


def test_the_var_nll_is_the_gaussian_formula():
    y, context = window_pairs(simulate_var1(500, seed=2), window=2)
    var = fit_var(y, context, order=2)
    a1, a2 = var.coefs
    # x_{t-1} is the newest (last) value of the window, x_{t-2} the one before it
    mean = var.intercept + context[:, 2:] @ a1.T + context[:, :2] @ a2.T
    expected = [
        stats.multivariate_normal(m, var.cov).logpdf(x) for m, x in zip(mean, y, strict=True)
    ]
    np.testing.assert_allclose(var.log_prob(y, context), expected, rtol=1e-10)


def test_the_multi_step_moments_match_a_simulation_of_the_var():
    var = GaussianVAR(NU, A1[None], SIGMA)
    window = np.array([[2.0, -1.0]])
    means, covs = var.moments(window, horizon=3)
    g = np.random.default_rng(3)
    x = np.repeat(window, 200_000, 0)
    for h in range(3):
        x = NU + x @ A1.T + g.multivariate_normal(np.zeros(2), SIGMA, size=len(x))
        np.testing.assert_allclose(x.mean(0), means[0, h], atol=0.01)
        np.testing.assert_allclose(np.cov(x.T), covs[h], atol=0.02)
    np.testing.assert_allclose(covs[0], SIGMA)


# -- the CRPS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mu, s, y", [(0.0, 1.0, 0.3), (1.5, 0.4, -0.2), (-2.0, 3.0, 4.0)])
def test_the_gaussian_crps_is_its_defining_integral(mu, s, y):
    cdf = stats.norm(mu, s).cdf
    left = integrate.quad(lambda z: cdf(z) ** 2, -np.inf, y)[0]
    right = integrate.quad(lambda z: (1 - cdf(z)) ** 2, y, np.inf)[0]
    assert crps_gaussian(mu, s, y) == pytest.approx(left + right, rel=1e-6)


def test_the_sample_crps_is_the_pairwise_formula_and_converges_to_the_closed_form():
    g = np.random.default_rng(4)
    x, y = g.normal(size=(7, 3)), g.normal(size=3)
    pairs = np.abs(x[:, None] - x[None]).sum((0, 1)) / (2 * 7 * 6)
    np.testing.assert_allclose(crps_samples(x, y), np.abs(x - y).mean(0) - pairs)
    mu, s, y = np.array([0.0, 1.0]), np.array([1.0, 0.5]), np.array([0.7, -0.4])
    big = mu + s * g.normal(size=(200_000, 2))
    np.testing.assert_allclose(crps_samples(big, y), crps_gaussian(mu, s, y), rtol=0.01)
    # fair: unbiased for any sample size, even two
    two = mu[0] + s[0] * g.normal(size=(2, 100_000))
    exact = crps_gaussian(mu[0], s[0], y[0])
    assert crps_samples(two, np.full(100_000, y[0])).mean() == pytest.approx(exact, rel=0.02)


# -- forecast paths -------------------------------------------------------------------------------


def var_as_flow(var: GaussianVAR, window: int) -> Flow:
    """The VAR as a flow over x_t given its window (oldest first): a LinearStandardize with
    weights [A_k, ..., A_1] and a standard-normal base."""
    d = var.dim
    weight = np.zeros((d, window * d))
    for j in range(var.order):  # A_{j+1} multiplies x_{t-j-1}, block window - 1 - j
        weight[:, (window - 1 - j) * d : (window - j) * d] = var.coefs[j]
    transform = LinearStandardize(
        torch.tensor(var.intercept),
        torch.linalg.cholesky(torch.tensor(var.cov)),
        torch.tensor(weight),
    )
    return Flow(transform, StandardNormal((d,)), context_features=window * d).double()


def test_paths_of_a_linear_gaussian_flow_are_the_var_forecasts():
    var = GaussianVAR(NU, np.stack([A1, 0.2 * np.eye(2)]), SIGMA)
    flow = var_as_flow(var, window=3)
    assert window_of(flow) == (3, 2)
    y, context = window_pairs(simulate_var1(50, seed=5), window=3)
    np.testing.assert_allclose(
        flow.log_prob(torch.tensor(y), torch.tensor(context)).numpy(), var.log_prob(y, context)
    )
    history = torch.tensor(context[:4].reshape(4, 3, 2))
    means, covs = var.moments(context[:4], horizon=4)
    torch.manual_seed(0)
    mean_path = sample_paths(flow, history, 4, samples=1, temperature=0.0)[0]
    np.testing.assert_allclose(mean_path.numpy(), means, atol=1e-12)
    paths = sample_paths(flow, history[:1], 4, samples=40_000)[:, 0].numpy()  # (S, H, D)
    np.testing.assert_allclose(paths.mean(0), means[0], atol=0.03)
    for h in range(4):
        np.testing.assert_allclose(np.cov(paths[:, h].T), covs[h], atol=0.06)


def test_paths_read_only_the_last_window_of_the_history():
    flow = var_as_flow(GaussianVAR(NU, A1[None], SIGMA), window=2)
    history = torch.randn(3, 6, 2, dtype=torch.float64)
    torch.manual_seed(1)
    base = sample_paths(flow, history, 3, samples=5)
    older = history.clone()
    older[:, :4] += 10.0  # before the window: no effect
    torch.manual_seed(1)
    assert torch.equal(sample_paths(flow, older, 3, samples=5), base)
    newer = history.clone()
    newer[:, -1] += 1.0  # inside the window: the forecast moves
    torch.manual_seed(1)
    assert not torch.equal(sample_paths(flow, newer, 3, samples=5), base)
    assert sample_paths(flow, history[0], 3, samples=5).shape == (5, 3, 2)
    with pytest.raises(ValueError, match="history"):
        sample_paths(flow, history[:, :1], 3, samples=5)


def test_a_flow_without_a_window_is_refused():
    flow = Flow(LinearStandardize(torch.zeros(2), torch.eye(2)), StandardNormal((2,)))
    with pytest.raises(ValueError, match="forecasting flow"):
        window_of(flow)


# -- through the trainer --------------------------------------------------------------------------


def series_config(tmp_path, steps=20):
    path = tmp_path / "series.csv"
    values = simulate_var1(240, seed=6)
    lines = ["day,a,b"] + [f"{i},{u:.6f},{v:.6f}" for i, (u, v) in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return {
        "name": "series",
        "data": {
            "name": "series",
            "path": str(path),
            "features": ["a", "b"],
            "n_train": 1000,
            "n_val": 40,
            "n_test": 60,
            "window": 3,
            "horizon": 4,
            "samples": 20,
        },
        "model": {"name": "maf", "layers": 2, "hidden": [8, 8], "batch_norm": False},
        "train": {"steps": steps, "batch_size": 32, "eval_every": 5},
    }


def test_a_tiny_run_scores_against_the_var_resumes_and_forecasts_without_data(
    tmp_path, monkeypatch, capsys
):
    cfg = series_config(tmp_path)
    whole = train_run(
        parse_config({**cfg, "output_dir": str(tmp_path / "a")}), progress=False, plots=True
    )
    summary = whole.summary
    forecast = summary["forecast"]
    assert forecast["n"] == 60 and forecast["horizon"] == 4 and forecast["samples"] == 20
    assert forecast["baseline"] == f"Gaussian VAR({forecast['var_order']})"
    metrics = forecast["metrics"]
    assert set(metrics) == {"nll", "crps_sum", "crps_sum_4"}
    assert metrics["nll"]["flow"]["value"] == pytest.approx(summary["test_nll"])
    assert metrics["crps_sum_4"]["n"] == 15  # origins 0, 4, ..., 56
    for m in metrics.values():
        for key in ("diff", "diff_stderr"):
            assert math.isfinite(m[key])
        assert m["verdict"] in ("beats", "ties", "loses")
    names = [m["name"] for m in summary["measures"]]
    assert names == ["test CRPS-sum, 1 step ahead", "test CRPS-sum, 4 steps ahead"]
    assert (whole.run_dir / "plots" / "forecast.png").is_file()

    resumed = stop_at_step_and_resume(
        parse_config({**cfg, "output_dir": str(tmp_path / "b")}), 12, monkeypatch
    )
    a, b = final_parameters(whole.run_dir), final_parameters(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert main(["eval", str(whole.run_dir)]) == 0
    out = capsys.readouterr().out
    evaluated = json.loads(out[out.index("{") :])
    assert evaluated["forecast"]["metrics"] == metrics  # the same draws: the same numbers

    from flowforge.data import registry

    monkeypatch.setattr(registry, "DATASETS", {})  # no data set: the flow alone forecasts
    flow = flowforge.load(whole.run_dir)
    assert window_of(flow) == (3, 2)
    paths = sample_paths(flow, torch.zeros(5, 2), horizon=6, samples=7)
    assert paths.shape == (7, 6, 2) and bool(torch.isfinite(paths).all())


def test_yardstick_off_leaves_the_comparison_out(tmp_path):
    cfg = series_config(tmp_path, steps=2)
    cfg["objective"] = {"name": "mle", "yardstick": "off"}
    summary = train_run(
        parse_config({**cfg, "output_dir": str(tmp_path)}), progress=False, plots=False
    ).summary
    assert "forecast" not in summary and "yardstick" not in summary
