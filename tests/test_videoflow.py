"""VideoFlow (issue 28, item 1): a frame flow and a conditional Gaussian prior over time.

Oracles: the factorised likelihood against per-frame terms computed frame by frame with the
prior's Gaussian written out; the frame flow's round trip and its log-determinant against
autograd's Jacobian; causality of the prior by gradients; conditional prediction keeps what
was observed. Then the run end to end through the one trainer on Moving MNIST drawn from a
synthetic ``mnist.npz`` (so no download is needed): resume bit-identical, load and sample
without data, predict, eval, figures.
"""

import json
import math
import signal

import numpy as np
import pytest
import torch
import yaml

import flowforge
from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.models import RECIPES, VideoFlow, videoflow
from flowforge.runs import train_run
from flowforge.testing import perturb_parameters
from helpers import (
    cli_process,
    final_parameters,
    kill_after,
    metrics_without_time,
    stop_at_step_and_resume,
)

LEVELS = 17


def tiny(frames=4, past=2, **kw):
    options = dict(
        scales=2,
        depth=1,
        hidden_channels=8,
        prior_hidden=8,
        prior_squeeze=1,
        levels=LEVELS,
        dequantization="centre",
    )
    torch.manual_seed(0)
    flow = videoflow((frames, 1, 4, 4), past=past, **{**options, **kw})
    flow.train()
    flow.log_prob(sequences(8, frames).float())  # actnorm's data-dependent start
    perturb_parameters(flow, 0.1)  # away from the identity start of the zero-initialised nets
    return flow.double().eval()


def sequences(n, frames, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, LEVELS, (n, frames, 1, 4, 4), generator=g).double()


def test_the_recipe_is_registered_and_checks_its_shape():
    assert RECIPES["videoflow"] is videoflow
    assert isinstance(videoflow((2, 1, 4, 4), scales=1, depth=1), VideoFlow)
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        videoflow((1, 4, 4))
    with pytest.raises(ValueError, match="prior_squeeze"):
        videoflow((2, 1, 4, 4), scales=1, prior_squeeze=3)


def test_the_likelihood_is_the_sum_of_per_frame_terms_computed_frame_by_frame():
    """log p(x_1..T) = sum_t [log N(z_t; mu_t, sigma_t) + log|det df/dx_t|], with z_t the frame
    flow of x_t alone and (mu_t, sigma_t) the prior's network on the past frames and their
    presence planes, stacked here by hand."""
    flow, past = tiny(frames=5, past=2), 2
    x = sequences(3, 5)
    frame_transform, prior = flow.frame_flow.transform, flow.prior
    with torch.no_grad():
        terms = []
        z = []
        for t in range(5):
            z_t, ladj_t = frame_transform(x[:, t])
            z.append(z_t)
            window = []
            for j in range(t - past, t):  # oldest first; zeros before the start
                window.append(z[j] if j >= 0 else torch.zeros_like(z_t))
            planes = [torch.full_like(z_t, float(j >= 0)) for j in range(t - past, t)]
            out = prior.conditioner(torch.cat(window + planes, dim=1))  # (B, 2C, H, W)
            a, shift = out[:, 0::2], out[:, 1::2]  # channel c * P + p: (log-scale, shift)
            scale = torch.exp(prior.transformer.log_scale(a))
            normal = torch.distributions.Normal(shift, scale)
            terms.append(normal.log_prob(z_t).flatten(1).sum(1) + ladj_t)
        expected = torch.stack(terms, 1)
        assert torch.allclose(flow.frame_log_probs(x), expected, atol=1e-9)
        assert torch.allclose(flow.log_prob(x), expected.sum(1), atol=1e-9)
        # the terms differ between frames: the test would see frames swapped or dropped
        assert expected.std(1).min() > 1e-3


def test_the_frame_flow_round_trips_and_its_log_det_matches_autograd():
    frame_transform = tiny().frame_flow.transform
    x = sequences(1, 1)[:, 0]  # one (1, 4, 4) frame
    z, ladj = frame_transform(x)
    back, inverse_ladj = frame_transform.inverse(z)
    assert torch.allclose(back, x, atol=1e-9) and torch.allclose(inverse_ladj, -ladj)
    jacobian = torch.autograd.functional.jacobian(lambda v: frame_transform(v)[0], x)
    expected = torch.linalg.slogdet(jacobian.reshape(16, 16))[1]
    assert torch.allclose(ladj[0], expected, atol=1e-8)


@pytest.mark.parametrize("past", [1, 2])
def test_the_prior_is_causal(past):
    """d log p(z_t | z_<t) / d z_s is zero for s > t and for s < t - past, non-zero for the
    frames the window sees."""
    prior = tiny(frames=5, past=past).prior
    z = torch.randn(2, 5, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    u, ladj = prior.frame_terms(z)
    log_p = -0.5 * u.pow(2).flatten(2).sum(2) + ladj  # (B, T), up to a constant
    for t in range(5):
        (grad,) = torch.autograd.grad(log_p[:, t].sum(), z, retain_graph=True)
        size = grad.abs().flatten(2).sum(2).sum(0)  # per frame s
        for s in range(5):
            if s > t or s < t - past:
                assert size[s] == 0, (t, s)
            else:
                assert size[s] > 0, (t, s)


def test_prediction_keeps_the_observed_frames():
    flow = tiny(frames=4)
    x = sequences(3, 4)
    torch.manual_seed(0)
    out = flow.predict(x[:, :2], temperature=0.7)
    assert out.shape == (3, 4, 1, 4, 4) and torch.equal(out[:, :2], x[:, :2])
    longer = flow.predict(x[:, :3], frames=7)  # past the trained length: the prior slides on
    assert longer.shape == (3, 7, 1, 4, 4) and torch.equal(longer[:, :3], x[:, :3])
    assert bool(torch.isfinite(longer).all())
    # temperature 0: the prior's means, the same prediction twice; they differ from T = 1
    cold = flow.predict(x[:, :2], temperature=0.0)
    assert torch.equal(cold, flow.predict(x[:, :2], temperature=0.0))
    assert not torch.equal(cold, flow.predict(x[:, :2], temperature=1.0))
    for bad, frames, match in (
        (x[:, :2, 0], None, "observed"),
        (x[:, :0], None, "T0 >= 1"),
        (x, None, "above the 4 observed"),
        (x[:, :2], 2, "above the 2 observed"),
    ):
        with pytest.raises(ValueError, match=match):
            flow.predict(bad, frames=frames)


def test_sampling_runs_the_prior_forward_in_time():
    flow = tiny(frames=3)
    u = torch.randn(4, 3, 1, 4, 4, dtype=torch.float64)
    z, ladj = flow.prior.inverse(u)
    again, forward_ladj = flow.prior(z)
    assert torch.allclose(again, u, atol=1e-10) and torch.allclose(ladj, -forward_ladj)
    # a frame's sample does not depend on later noise
    later = u.clone()
    later[:, 2] += 1
    assert torch.equal(flow.prior.inverse(later)[0][:, :2], z[:, :2])
    assert flow.sample(2, temperature=0.5).shape == (2, 3, 1, 4, 4)


# -- through the trainer ---------------------------------------------------------------------


def synthetic_mnist(folder):
    """A stand-in ``mnist.npz``: 120 training and 30 test "digits", random blobs of 28x28."""
    g = np.random.default_rng(0)

    def digits(n):
        x = np.zeros((n, 28, 28), np.uint8)
        for i in range(n):
            r, c = g.integers(4, 14, 2)
            x[i, r : r + 10, c : c + 10] = g.integers(60, 256, (10, 10))
        return x

    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "mnist.npz",
        x_train=digits(120),
        y_train=np.zeros(120, np.int64),
        x_test=digits(30),
        y_test=np.zeros(30, np.int64),
    )
    return str(folder)


def config(data_dir, steps=20):
    return {
        "name": "vf",
        "data": {
            "name": "moving_mnist",
            "n_train": 32,
            "n_val": 8,
            "n_test": 8,
            "frames": 4,
            "size": 8,
            "data_dir": data_dir,
        },
        "model": {
            "name": "videoflow",
            "scales": 2,
            "depth": 1,
            "hidden_channels": 8,
            "prior_hidden": 8,
            "prior_squeeze": 1,
        },
        "train": {"steps": steps, "batch_size": 8, "eval_every": 5, "eval_batch_size": 8},
    }


def test_a_tiny_run_trains_resumes_bit_identical_and_loads_without_data(
    tmp_path, monkeypatch, capsys
):
    cfg = config(synthetic_mnist(tmp_path / "mnist"))
    whole = train_run(
        parse_config({**cfg, "output_dir": str(tmp_path / "a")}), progress=False, plots=True
    )
    summary = whole.summary
    assert math.isfinite(summary["test_bpd"]) and 0 < summary["test_bpd"] < 8
    records = [json.loads(r) for r in (whole.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["val_bpd"]) for r in records if "val_bpd" in r)
    for figure in ("curves", "samples", "prediction", "frame_bits"):
        assert (whole.run_dir / "plots" / f"{figure}.png").is_file(), figure
    resumed = stop_at_step_and_resume(
        parse_config({**cfg, "output_dir": str(tmp_path / "b")}), 12, monkeypatch
    )
    a, b = final_parameters(whole.run_dir), final_parameters(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert main(["eval", str(whole.run_dir)]) == 0
    assert "bits/dim" in capsys.readouterr().out

    from flowforge.data import registry

    monkeypatch.setattr(registry, "DATASETS", {})  # no data set: load needs the spec only
    flow = flowforge.load(whole.run_dir)
    assert isinstance(flow, VideoFlow) and flow.event_shape == (4, 1, 8, 8)
    observed = torch.randint(0, 256, (2, 2, 1, 8, 8)).float()
    assert torch.equal(flow.predict(observed)[:, :2], observed)
    out = tmp_path / "s.npy"
    assert main(["sample", str(whole.run_dir), "-n", "3", "--out", str(out)]) == 0
    assert np.load(out).shape == (3, 4, 1, 8, 8)


@pytest.mark.slow
def test_sigkill_from_the_command_line_then_resume_is_bit_identical(tmp_path):
    """A tiny VideoFlow run killed with SIGKILL after three evaluations and resumed with
    ``flowforge train --resume`` ends with the parameters and records of an uninterrupted run
    (both one thread)."""
    cfg = config(synthetic_mnist(tmp_path / "mnist"), steps=40)
    path = tmp_path / "vf.yaml"
    path.write_text(yaml.safe_dump(cfg))
    whole = cli_process("train", str(path), "--quiet", "--set", "name=whole", cwd=tmp_path)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    run_dir = tmp_path / "runs" / "cut"
    proc = cli_process("train", str(path), "--quiet", "--set", "name=cut", cwd=tmp_path)
    assert kill_after(proc, run_dir, 3, signal.SIGKILL) == -signal.SIGKILL
    resumed = cli_process("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a, b = final_parameters(tmp_path / "runs" / "whole"), final_parameters(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_without_time(run_dir) == metrics_without_time(tmp_path / "runs" / "whole")
