"""The yardstick: baselines fitted on a run's splits, paired with the flow (flowforge.yardstick),
and the linear-Gaussian standardisation that makes a flow start as the Gaussian baseline."""

import json
import math

import numpy as np
import pytest
import torch

from flowforge.data.standardization import fit_standardization
from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.transforms import Compose, LinearStandardize
from flowforge.yardstick import (
    fit_yardstick,
    paired,
    validated_mixture,
    verdict,
    yardstick_block,
    yardstick_sentence,
)

pytest.importorskip("sklearn")


def _gaussian(n, rng, d=3):
    a = np.array([[1.0, 0, 0], [0.8, 0.5, 0], [-0.3, 0.2, 2.0]])[:d, :d]
    return rng.standard_normal((n, d)) @ a.T + np.arange(d) * 10, a


def _splits(x, fractions=(0.6, 0.2)):
    n = len(x)
    a, b = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    return x[:a], x[a:b], x[b:]


def test_gaussian_baseline_reaches_the_true_entropy():
    rng = np.random.default_rng(0)
    x, a = _gaussian(3000, rng)
    out = {b.name: b for b in fit_yardstick(*_splits(x), seconds=30)}
    entropy = 0.5 * 3 * (1 + math.log(2 * math.pi)) + math.log(abs(np.linalg.det(a)))
    nll = -out["gaussian"].log_prob
    assert abs(nll.mean() - entropy) < 4 * nll.std() / math.sqrt(len(nll))
    for name in ("gmm", "kde"):  # the richer baselines are no better than the truth
        assert -out[name].log_prob.mean() > entropy - 0.05


def test_mixture_finds_the_clusters_and_beats_one_gaussian():
    rng = np.random.default_rng(1)
    centres = np.array([[-6.0, 0], [6, 0], [0, 8]])
    x = centres[rng.integers(3, size=3000)] + rng.standard_normal((3000, 2))
    out = {b.name: b for b in fit_yardstick(*_splits(x), seconds=30)}
    k = int(out["gmm"].chosen.split()[0])
    assert k >= 3, out["gmm"].chosen
    # the units (standardised or whitened) are chosen by each search's validation score
    assert out["gmm"].val < 0 and out["kde"].val < 0
    assert -out["gmm"].log_prob.mean() < -out["gaussian"].log_prob.mean() - 0.5


def _mixture_logpdf(x, w, mu, cov):
    parts = [
        np.log(w[k])
        + torch.distributions.MultivariateNormal(torch.as_tensor(mu[k]), torch.as_tensor(cov[k]))
        .log_prob(torch.as_tensor(x))
        .numpy()
        for k in range(len(w))
    ]
    return np.logaddexp.reduce(np.stack(parts, 1), axis=1)


def test_validated_mixture_is_the_yardsticks_mixture_in_the_datas_units():
    rng = np.random.default_rng(1)
    centres = np.array([[-6.0, 0, 100], [6, 0, 90], [0, 8, 110]])
    x = (centres[rng.integers(3, size=900)] + rng.standard_normal((900, 3))) * [1, 3, 0.1]
    train, val, test = _splits(x)
    gmm = {b.name: b for b in fit_yardstick(train, val, test, seconds=30)}["gmm"]
    w, mu, cov, chosen = validated_mixture(train, val, seconds=30)
    assert chosen == gmm.chosen and w.shape == (int(chosen.split()[0]),)
    assert mu.shape == (len(w), 3) and cov.shape == (len(w), 3, 3)
    # the same density on the test rows, evaluated independently of scikit-learn
    np.testing.assert_allclose(_mixture_logpdf(test, w, mu, cov), gmm.log_prob, atol=1e-8)


def test_numeric_context_gaussian_is_the_exact_conditional():
    """With a numeric context the Gaussian baseline is log N(x; a + B c, S): the joint fit
    conditioned; compare with the conditional computed from the true parameters' estimates."""
    rng = np.random.default_rng(2)
    c = rng.standard_normal((4000, 2))
    x = c @ np.array([[1.0, -2.0], [0.5, 0.0]]) + 0.3 * rng.standard_normal((4000, 2))
    xs, cs = _splits(x), _splits(c)
    out = {b.name: b for b in fit_yardstick(*xs, *cs, seconds=30)}
    train = np.concatenate([xs[0], cs[0]], 1)
    mean, cov = train.mean(0), np.cov(train, rowvar=False, bias=True)
    sxx, sxc, scc = cov[:2, :2], cov[:2, 2:], cov[2:, 2:]
    gain = sxc @ np.linalg.inv(scc)
    cond_cov = sxx - gain @ sxc.T
    r = xs[2] - (mean[:2] + (cs[2] - mean[2:]) @ gain.T)
    expected = -0.5 * np.einsum("ni,ij,nj->n", r, np.linalg.inv(cond_cov), r)
    expected -= 0.5 * np.log(np.linalg.det(2 * np.pi * cond_cov))
    np.testing.assert_allclose(
        out["gaussian"].log_prob, expected, atol=2e-3
    )  # the ridge of 1e-6 on the covariance
    assert "regression" in out["gaussian"].label


def test_categorical_context_fits_one_model_per_level():
    rng = np.random.default_rng(3)
    labels = rng.integers(3, size=3000)
    c = np.eye(3)[labels]
    x = np.array([[0.0, 0], [5, 5], [-5, 5]])[labels] + rng.standard_normal((3000, 2)) * (
        1 + labels[:, None]
    )
    out = {b.name: b for b in fit_yardstick(*_splits(x), *_splits(c), seconds=30)}
    assert out["gaussian"].label == "Gaussian per context value"
    # per level: the true conditional entropy, not the mixture's
    scales = np.array([1.0, 2, 3])[labels[2400:]]
    entropy = np.mean(2 * np.log(scales)) + (1 + math.log(2 * math.pi))
    assert abs(-out["gaussian"].log_prob.mean() - entropy) < 0.1


def test_large_files_are_subsampled_and_said_so():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((32000, 2))
    out = {b.name: b for b in fit_yardstick(*_splits(x, (0.8, 0.1)), seconds=5)}
    assert "of 25,600 training rows" in out["kde"].note
    assert "of 25,600 training rows" in out["gmm"].note
    assert out["gaussian"].note == ""


def test_paired_difference_and_verdict():
    flow = np.array([1.0, 2.0, 3.0, 4.0])
    other = flow + np.array([0.5, 0.4, 0.6, 0.5])
    d, se = paired(flow, other)
    assert d == pytest.approx(-0.5) and se == pytest.approx(
        np.std([0.5, 0.4, 0.6, 0.5], ddof=1) / 2
    )
    assert verdict(-0.5, 0.1) == "beats"
    assert verdict(0.05, 0.1) == "ties" and verdict(-0.05, 0.1) == "ties"
    assert verdict(0.5, 0.1) == "loses"
    # rounding between a flow started as a baseline and the baseline itself is a tie
    assert verdict(2e-5, 1e-6) == "ties" and verdict(-2e-5, 1e-6) == "ties"
    assert verdict(0.002, 1e-6) == "loses" and verdict(-0.002, 1e-6) == "beats"


def test_block_names_the_best_baseline_and_the_verdict():
    rng = np.random.default_rng(5)
    x, _ = _gaussian(1500, rng, d=2)
    baselines = fit_yardstick(*_splits(x), seconds=5)
    best = min(baselines, key=lambda b: -b.log_prob.mean())
    worse_flow = -best.log_prob + 1.0  # a "flow" one nat worse than the best baseline per row
    block = yardstick_block(worse_flow, baselines)
    assert block["best"] == best.name and block["verdict"] == "loses"
    assert block["margin"] == pytest.approx(1.0)
    json.dumps(block)  # summary.json material
    assert "LOSES" in yardstick_sentence(block)
    better = yardstick_block(
        -best.log_prob - 0.3 + 0.01 * rng.standard_normal(len(x) // 5), baselines
    )
    assert better["verdict"] == "beats" and "BEATS" in yardstick_sentence(better)
    assert yardstick_sentence({"skipped": "no sklearn"}) == "yardstick skipped: no sklearn"


@pytest.mark.parametrize("context", ["none", "numeric", "levels"])
def test_linear_standardisation_starts_the_flow_as_the_gaussian_baseline(context):
    """A flow = LinearStandardize + standard normal base has the linear-Gaussian density
    (per level for a one-hot context), the density the yardstick's Gaussian computes."""
    rng = np.random.default_rng(6)
    n = 2000
    labels = rng.integers(3, size=n)
    c = {"none": None, "numeric": rng.standard_normal((n, 2)), "levels": np.eye(3)[labels]}[context]
    x = rng.standard_normal((n, 3)) @ np.array([[1.0, 0, 0], [0.5, 2, 0], [0, -1, 0.3]])
    if c is not None:
        x = x + c @ rng.standard_normal((c.shape[1], 3)) * 3
    if context == "levels":
        x = x * (1 + labels[:, None])
    xs = _splits(x)
    cs = _splits(c) if c is not None else (None, None, None)
    st = fit_standardization(
        torch.from_numpy(xs[0]), None if c is None else torch.from_numpy(cs[0]), "linear"
    )
    flow = Flow(
        Compose([LinearStandardize(st["loc"], st["scale"], st.get("weight"))]), StandardNormal(3)
    )
    flow = flow.double()
    ctx = None if c is None else torch.from_numpy(cs[2])
    with torch.no_grad():
        lp = flow.log_prob(torch.from_numpy(xs[2]), ctx).numpy()
    gaussian = next(b for b in fit_yardstick(*xs, *cs, seconds=1) if b.name == "gaussian")
    # the same model up to the estimators' small differences (ridges, n - 1 vs n, shrinkage)
    assert abs(lp.mean() - gaussian.log_prob.mean()) < 0.02


def test_linear_standardisation_refuses_bad_parameters():
    with pytest.raises(ValueError, match="positive diagonal"):
        LinearStandardize(torch.zeros(2), torch.tensor([[1.0, 0], [0.3, 0.0]]))
    with pytest.raises(ValueError, match="needs 'weight'"):
        LinearStandardize(torch.zeros(2), torch.eye(2).expand(3, 2, 2))
    t = LinearStandardize(torch.zeros(2), torch.eye(2), torch.ones(2, 1))
    with pytest.raises(ValueError, match="needs the context"):
        t(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="standardize"):
        fit_standardization(torch.zeros(3, 2), None, "robust")


def _bimodal_csv(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(-3, 0.5, (n // 2, 2)), rng.normal(3, 1.0, (n - n // 2, 2))])
    np.savetxt(path, rng.permutation(x), delimiter=",", header="a,b", comments="")
    return path


def test_a_file_run_shows_the_yardstick_at_start_end_and_in_eval(tmp_path, capsys):
    from flowforge.cli import main

    path = _bimodal_csv(tmp_path / "two.csv")
    args = ["train", "--data", str(path), "--set", f"output_dir={tmp_path}", "--time", "30"]
    args += ["--set", "train.steps=40", "--set", "model.layers=1"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "training nsf (" in err and "240/30/30 rows (train/val/test)" in err
    assert "or 30 s" in err  # the time budget in the start line
    closing = out.splitlines()[-2]
    assert closing.startswith("yardstick (test NLL, same rows): Gaussian ")
    assert any(word in closing for word in ("BEATS", "TIES", "LOSES"))
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    block = summary["yardstick"]
    assert set(block["baselines"]) == {"gaussian", "gmm", "kde"}
    assert block["flow"]["nll"] == pytest.approx(summary["test_nll"])
    assert block["n"] == summary["n_test"] == 30
    assert block["verdict"] == verdict(block["margin"], block["margin_stderr"])
    assert main(["eval", str(tmp_path / "two")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["yardstick"]["baselines"]["gmm"]["nll"] == pytest.approx(
        block["baselines"]["gmm"]["nll"]
    )
    assert err.splitlines()[0].startswith("test NLL ")  # the headline, then the yardstick
    assert err.splitlines()[-1].startswith("yardstick (test NLL, same rows)")


def test_the_yardstick_is_for_data_whose_entropy_is_unknown(tmp_path):
    from flowforge.config import parse_config
    from flowforge.runs import train_run

    toy = {
        "name": "toy",
        "output_dir": str(tmp_path),
        "data": {"name": "moons", "n_train": 200, "n_val": 50, "n_test": 50},
        "model": {"name": "realnvp", "couplings": 2, "hidden": [8]},
        "train": {"steps": 5, "eval_every": 5},
    }
    summary = train_run(parse_config(toy), progress=False, plots=False).summary
    assert "yardstick" not in summary and "entropy" in summary
    path = _bimodal_csv(tmp_path / "f.csv")
    off = {**toy, "name": "off", "objective": {"name": "mle", "yardstick": "off"}}
    off["data"] = {"name": "file", "path": str(path), "n_train": 200, "n_val": 50, "n_test": 50}
    assert "yardstick" not in train_run(parse_config(off), progress=False, plots=False).summary


def test_noise_regularisation_is_fresh_per_step_and_reproducible():
    from flowforge.data.registry import Splits
    from flowforge.objectives.base import Setting
    from flowforge.objectives.mle import MaximumLikelihood

    x = torch.randn(64, 3) * torch.tensor([1.0, 10.0, 100.0])
    splits = Splits(train=x, val=x[:8], test=x[:8])

    def objective(noise):
        setting = Setting(seed=1, batch_size=16, eval_batch_size=16, device=torch.device("cpu"))
        setting.data = splits
        return MaximumLikelihood(setting, noise=noise)

    plain, noisy = objective(0.0), objective(0.1)
    a, b = noisy.batch(3)[0], noisy.batch(3)[0]
    assert torch.equal(a, b)  # a pure function of (seed, step): resume stays bit-identical
    assert not torch.equal(noisy.batch(4)[0] - plain.batch(4)[0], a - plain.batch(3)[0])
    diff = torch.cat([noisy.batch(s)[0] - plain.batch(s)[0] for s in range(40)])
    ratio = diff.std(0) / x.std(0)  # noise in each feature's own units
    assert torch.allclose(ratio, torch.full((3,), 0.1), rtol=0.15)
    with pytest.raises(ValueError, match="noise"):
        objective(-1.0)


def test_a_baseline_with_zero_density_on_a_test_row_is_named_not_infinite():
    from flowforge.yardstick import Baseline

    flow = np.array([1.0, 2.0, 3.0])
    good = Baseline("gaussian", "Gaussian", -np.array([1.5, 2.5, 3.5]))
    zero = Baseline("kde", "Kernel density", np.array([-1.0, -np.inf, -3.0]))
    block = yardstick_block(flow, [good, zero])
    json.dumps(block, allow_nan=False)  # valid JSON
    assert block["baselines"]["kde"]["nll"] is None
    assert "zero density on 1 test rows" in block["baselines"]["kde"]["note"]
    assert block["best"] == "gaussian" and block["verdict"] == "beats"
    assert "kernel density inf" in yardstick_sentence(block)
