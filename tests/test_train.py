"""Training runs end to end: results, files, resume, interruption, divergence, bad input."""

import json
import signal

import pytest
import torch

from flowforge.config import ConfigError, parse_config
from flowforge.data.registry import Splits, register_dataset
from flowforge.runs import train_run
from flowforge.train.checkpoint import load_checkpoint
from flowforge.train.trainer import Trainer, TrainingDiverged, clip_gradients
from helpers import (
    cli_process,
    final_parameters,
    kill_after,
    metrics_without_time,
    stop_at_step_and_resume,
)


def tiny(tmp_path, **train):
    return parse_config(
        {
            "name": "tiny",
            "output_dir": str(tmp_path),
            "data": {"name": "moons", "n_train": 1024, "n_val": 256, "n_test": 256},
            "model": {"name": "realnvp", "couplings": 2, "hidden": [16]},
            "train": {"steps": 40, "batch_size": 128, "eval_every": 10, **train},
        }
    )


@pytest.mark.slow
def test_default_experiment_reaches_the_parabola_entropy(tmp_path):
    """The classic RealNVP toy run, shortened: held-out NLL within 0.05 nats of the truth."""
    cfg = parse_config(
        {
            "output_dir": str(tmp_path),
            "train": {"steps": 400, "eval_every": 100},
            "data": {"n_train": 10000, "n_val": 2000, "n_test": 10000},
        }
    )
    result = train_run(cfg, progress=False)
    s = result.summary
    assert s["entropy"] == pytest.approx(4.2242, abs=1e-4)
    assert s["gap"] < 0.05, s
    assert s["gap"] > -4 * s["test_stderr"]  # a model cannot beat the true entropy
    files = {p.name for p in result.run_dir.rglob("*")}
    assert {"config.yaml", "metrics.jsonl", "summary.json", "best.pt", "last.pt"} <= files
    assert {"density.png", "samples.png", "latent.png", "curves.png"} <= files


def test_unique_run_directories(tmp_path):
    a = train_run(tiny(tmp_path), progress=False, plots=False).run_dir
    b = train_run(tiny(tmp_path), progress=False, plots=False).run_dir
    assert a != b and b.name == "tiny-2"


@register_dataset("test-nan-data")
def _nan_data(n_train: int, n_val: int, n_test: int, seed: int = 0) -> Splits:
    x = torch.randn(n_train + n_val + n_test, 2)
    x[n_train + 3, 1] = float("nan")
    return Splits(x[:n_train], x[n_train : n_train + n_val], x[n_train + n_val :])


def test_nan_in_data_is_named_and_leaves_no_run_directory(tmp_path):
    cfg = tiny(tmp_path)
    cfg.data.name = "test-nan-data"
    with pytest.raises(ConfigError, match=r"1 NaN or infinite values in the val split"):
        train_run(cfg, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_model_that_cannot_be_built_leaves_no_run_directory(tmp_path):
    cfg = tiny(tmp_path)
    cfg.model.options["couplings"] = 0
    with pytest.raises(ConfigError, match="couplings"):
        train_run(cfg, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_divergence_rolls_back_then_stops_with_the_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, max_bad_steps=3, max_rollbacks=2)
    calls = {"n": 0}
    original = Trainer.train_step

    def flaky(self):
        calls["n"] += 1
        if self.progress.step >= 15:
            return float("nan"), "loss"
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", flaky)
    with pytest.raises(TrainingDiverged, match=r"last good checkpoint is .*last.pt") as e:
        train_run(cfg, progress=False)
    assert "after 2 rollbacks (peak learning rates tried: 0.001, 0.0005, 0.00025)" in str(e.value)
    assert "--set train.lr=0.000125" in str(e.value)
    payload = load_checkpoint(tmp_path / "tiny" / "checkpoints" / "last.pt")
    assert payload["step"] == 10 and payload["rollbacks"] <= 2
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if v.is_floating_point())
    events = [json.loads(x) for x in (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert sum(e.get("event") == "rollback" for e in events) == 2


def _grads(*values):
    params = [torch.nn.Parameter(torch.zeros(len(v))) for v in values]
    for q, v in zip(params, values, strict=True):
        q.grad = torch.tensor(v)
    return params


def test_a_float32_norm_overflow_of_finite_gradients_is_clipped_in_float64():
    # 3e20 and 4e20 are finite in float32, but their squares are not: torch's norm says inf
    params = _grads([3e20, 4e20], [0.0])
    assert not torch.isfinite(torch.nn.utils.get_total_norm([q.grad for q in params]))
    total = clip_gradients(params, 5.0)
    assert total.item() == pytest.approx(5e20, rel=1e-6)
    assert params[0].grad.tolist() == pytest.approx([3.0, 4.0], rel=1e-5)
    # without clipping the overflow stays a divergence (Adam's squared average would overflow)
    params = _grads([3e20, 4e20], [0.0])
    assert not torch.isfinite(clip_gradients(params, float("inf")))
    assert params[0].grad.tolist() == pytest.approx([3e20, 4e20])


def test_clipping_scales_to_the_bound_and_a_non_finite_entry_stays_a_divergence():
    params = _grads([3.0, 4.0], [0.0])
    assert clip_gradients(params, 1.0).item() == pytest.approx(5.0)
    assert params[0].grad.tolist() == pytest.approx([0.6, 0.8], rel=1e-5)
    params = _grads([3.0, 4.0], [0.0])
    assert clip_gradients(params, 10.0).item() == pytest.approx(5.0)
    assert params[0].grad.tolist() == pytest.approx([3.0, 4.0])  # under the bound: unchanged
    params = _grads([3e20, float("nan")], [0.0])
    assert torch.isnan(clip_gradients(params, 5.0))


OVERRIDES = [
    "--quiet",
    "--set",
    "data.n_train=4096",
    "--set",
    "train.steps=400",
    "--set",
    "train.eval_every=20",
    "--set",
    "model.hidden=[32, 32]",
    "--set",
    "train.batch_size=256",
    "--set",
    "data.n_test=500",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    full = cli_process("train", *OVERRIDES, "--set", "name=full", cwd=root)
    assert full.wait(timeout=600) == 0, full.stderr.read()
    return root / "runs" / "full"


def _assert_identical(run_dir, reference):
    a, b = final_parameters(reference), final_parameters(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_without_time(run_dir) == metrics_without_time(reference)


@pytest.mark.slow
def test_run_killed_at_random_points_resumes_bit_identical(tmp_path, uninterrupted):
    """SIGKILL at three random moments, resuming after each: the end state is bit-identical."""
    import random

    rng = random.Random(1234)
    run_dir = tmp_path / "runs" / "cut"
    proc = cli_process("train", *OVERRIDES, "--set", "name=cut", cwd=tmp_path)
    evaluations = 0
    for _ in range(3):
        evaluations += rng.randint(1, 5)
        kill_after(proc, run_dir, evaluations, signal.SIGKILL)
        proc = cli_process("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    _assert_identical(run_dir, uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_and_prints_how_to_resume(tmp_path, uninterrupted):
    run_dir = tmp_path / "runs" / "cut"
    proc = cli_process("train", *OVERRIDES, "--set", "name=cut", cwd=tmp_path)
    assert kill_after(proc, run_dir, 3, signal.SIGTERM) == 130
    assert "Resume with: flowforge train --resume" in proc.stderr.read()
    resumed = cli_process("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    _assert_identical(run_dir, uninterrupted)


def test_rnode_penalty_enters_the_training_loss(tmp_path, monkeypatch):
    """With kinetic-energy regularisation on, the loop adds the CNF's penalty to the loss."""
    import flowforge.objectives.mle as loop

    seen = []
    original = loop.regularization

    def spy(module):
        penalty = original(module)
        seen.append(penalty)
        return penalty

    monkeypatch.setattr(loop, "regularization", spy)
    cfg = tiny(tmp_path, steps=2, eval_every=2)
    cfg.model.name = "ffjord"
    cfg.model.options = {"hidden": [8], "kinetic_energy": 0.1, "method": "rk4", "step_size": 0.25}
    train_run(cfg, progress=False, plots=False)
    assert seen and all(p is not None for p in seen)
    assert seen[-1].item() > 0  # zero at the identity start, positive once the field moves


def test_nan_gradient_is_detected_and_named(tmp_path):
    from flowforge.runs import RunDirectory
    from flowforge.runs.build import build_from_spec, load_data, make_objective, model_spec

    cfg = tiny(tmp_path)
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg))
    flow = build_from_spec(model_spec(cfg, objective))
    name, param = next(iter(flow.named_parameters()))
    param.register_hook(lambda g: g * float("nan"))
    run = Trainer(cfg, objective, flow, RunDirectory(tmp_path), {})
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    loss, diverged = run.train_step()
    assert diverged == f"gradient of {name}"
    assert all(torch.equal(before[k], v) for k, v in flow.state_dict().items())  # step skipped


def test_resume_reads_checkpoints_without_the_loss_accumulator(tmp_path):
    """Checkpoints written before the training-loss accumulator was saved still resume."""
    from flowforge.train.checkpoint import save_checkpoint

    cfg = tiny(tmp_path, steps=20)
    run_dir = train_run(cfg, progress=False, plots=False).run_dir
    last = run_dir / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    for key in ("loss_sum", "loss_n", "format"):
        payload.pop(key)
    payload["step"] = 10
    save_checkpoint(last, payload)
    cfg.train.steps = 30
    assert train_run(cfg, resume=run_dir, progress=False, plots=False).summary["steps"] == 30


@pytest.mark.slow
def test_compiled_training_step_matches_eager(tmp_path):
    """``train.compile`` trains the same model: the losses track the eager run's closely."""
    pytest.importorskip("torch._inductor")
    runs = {}
    for compiled in (False, True):
        cfg = tiny(tmp_path / str(compiled), steps=20, compile=compiled)
        result = train_run(cfg, progress=False, plots=False)
        records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
        runs[compiled] = [r["val_nll"] for r in records if "val_nll" in r]
    assert len(runs[True]) == len(runs[False]) >= 2
    assert runs[True] == pytest.approx(runs[False], abs=1e-3)


def test_time_budget_stops_evaluates_and_resumes(tmp_path, monkeypatch):
    """``train.max_seconds``: the run stops at the first step past the budget, evaluates and
    checkpoints there, writes its summary; a resume with a larger budget carries on."""
    monkeypatch.setattr(Trainer, "elapsed", lambda self: 10.0 * self.progress.step)  # 10 s a step
    cfg = tiny(tmp_path, max_seconds=125)
    result = train_run(cfg, progress=False, plots=False)
    assert result.summary["steps"] == 13
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [10, 13]
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["step"] == 13
    again = train_run(cfg, resume=result.run_dir, progress=False, plots=False)
    assert again.summary["steps"] == 13  # the budget is spent: no further step
    assert len((result.run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    cfg.train.max_seconds = 0.0
    resumed = train_run(cfg, resume=result.run_dir, progress=False, plots=False)
    assert resumed.summary["steps"] == 40


def test_a_slow_start_does_not_use_up_the_time_budget(tmp_path, monkeypatch):
    """The start of ``eval_at_start`` (here 1.5 s of a 1 s budget) is not training: the run
    still trains, and the start's seconds are the ``elapsed`` of its ``start`` record."""
    import time

    from flowforge.objectives.mle import MaximumLikelihood

    def slow_start(self, model):
        time.sleep(1.5)
        return "slow"

    monkeypatch.setattr(MaximumLikelihood, "start", slow_start)
    cfg = tiny(tmp_path, max_seconds=1.0, eval_at_start=True, steps=5)
    result = train_run(cfg, progress=False, plots=False)
    assert result.summary["steps"] == 5
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    start = next(r for r in records if r.get("event") == "start")
    assert start["chosen"] == "slow" and start["elapsed"] >= 1.5


def test_negative_time_budget_is_rejected():
    with pytest.raises(ConfigError, match=r"train.max_seconds: should be >= 0"):
        parse_config({"train": {"max_seconds": -1}})


def test_resume_refuses_an_optimizer_state_smaller_than_its_parameter(tmp_path):
    """A tampered last.pt (Adam's exp_avg cut short) would make the fused step write out of
    bounds; the trainer checks every tensor against what it loads into and names it."""
    from flowforge.train.checkpoint import CheckpointError, save_checkpoint

    cfg = tiny(tmp_path, steps=10)
    run_dir = train_run(cfg, progress=False, plots=False).run_dir
    last = run_dir / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    payload.pop("format")
    state = payload["optimizer"]["state"][0]
    state["exp_avg"] = state["exp_avg"].flatten()[:1].clone()
    save_checkpoint(last, payload)
    cfg.train.steps = 20
    with pytest.raises(CheckpointError, match="exp_avg"):
        train_run(cfg, resume=run_dir, progress=False, plots=False)


OPTIMIZERS = {
    "adamw": {},
    "adam": {"optimizer": "adam", "betas": [0.5, 0.999], "weight_decay": 1e-4},
    "rmsprop": {"optimizer": "rmsprop", "momentum": 0.5, "alpha": 0.9},
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_optimizer_trains_and_resumes_bit_identical(name, tmp_path, monkeypatch):
    """``train.optimizer`` with its own hyperparameters: the run learns, and one stopped at
    step 17 and resumed ends with the uninterrupted run's parameters and optimiser state."""
    options = OPTIMIZERS[name]
    whole = train_run(tiny(tmp_path / "whole", **options), progress=False, plots=False)
    resumed = stop_at_step_and_resume(tiny(tmp_path / "cut", **options), 17, monkeypatch)
    a, b = final_parameters(whole.run_dir), final_parameters(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["optimizer"]
    reference = load_checkpoint(whole.run_dir / "checkpoints" / "last.pt")["optimizer"]
    assert saved["param_groups"] == reference["param_groups"]
    for key, state in reference["state"].items():
        assert state.keys() == saved["state"][key].keys()
        assert all(torch.equal(v, saved["state"][key][k]) for k, v in state.items())
    group = reference["param_groups"][0]
    if name == "rmsprop":
        assert (group["momentum"], group["alpha"]) == (0.5, 0.9)
        assert {"square_avg", "momentum_buffer"} <= set(reference["state"][0])
    else:
        assert group["betas"] == tuple(options.get("betas", (0.9, 0.999)))
        assert group["decoupled_weight_decay"] == (name == "adamw")
    records = [json.loads(line) for line in (whole.run_dir / "metrics.jsonl").open()]
    assert records[-1]["val_nll"] < records[0]["val_nll"]  # it learns


def test_resume_with_another_optimizer_is_refused(tmp_path):
    """The checkpoint's moments belong to the optimiser that wrote them: a resume that
    switches ``train.optimizer`` is a named error, before any state is loaded."""
    from flowforge.train.checkpoint import CheckpointError

    run_dir = train_run(tiny(tmp_path, steps=10), progress=False, plots=False).run_dir
    with pytest.raises(
        CheckpointError, match=r"written with train.optimizer 'adamw', this run uses 'rmsprop'"
    ):
        train_run(
            resume=run_dir,
            overrides=["train.optimizer=rmsprop", "train.steps=20"],
            progress=False,
            plots=False,
        )


def test_resume_takes_the_configs_optimizer_hyperparameters(tmp_path):
    """The saved moments, this config's hyperparameters: ``--set train.betas=...`` on a
    resume changes the betas the optimiser steps with (load_state_dict alone would keep the
    checkpoint's)."""
    run_dir = train_run(
        tiny(tmp_path, steps=10, optimizer="adam"), progress=False, plots=False
    ).run_dir
    train_run(
        resume=run_dir,
        overrides=["train.betas=[0.0, 0.9]", "train.steps=20"],
        progress=False,
        plots=False,
    )
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")["optimizer"]
    assert saved["param_groups"][0]["betas"] == (0.0, 0.9)


def test_summary_records_the_seconds_of_validation(tmp_path):
    """``eval_seconds``: the validation passes' part of ``train_seconds``, carried through a
    resume by the checkpoint's ``eval_elapsed`` (older checkpoints: 0)."""
    result = train_run(tiny(tmp_path, steps=20), progress=False, plots=False)
    first = result.summary["eval_seconds"]  # rounded to 0.01 s
    assert 0 <= first <= result.summary["train_seconds"]
    last = result.run_dir / "checkpoints" / "last.pt"
    before = load_checkpoint(last)["eval_elapsed"]
    assert before > 0 and round(before, 2) == first
    resumed = train_run(
        resume=result.run_dir, overrides=["train.steps=40"], progress=False, plots=False
    )
    assert load_checkpoint(last)["eval_elapsed"] > before
    assert resumed.summary["eval_seconds"] >= first
