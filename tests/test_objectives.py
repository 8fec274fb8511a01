"""Every objective through the one trainer and run format, the baselines of
docs/comparison.md (GANs, RBM by CD/PCD, DBM, NADE) included: resume after a stop or SIGKILL ends
bit-identical (parameters, metrics and the objective's own state), ``flowforge eval`` and
``sample`` work on its run, and ``flowforge.load`` opens it with the data set hidden; the
baselines' objective state (critic optimiser, persistent chains) is in the checkpoint.
Baseline-specific mechanics (the critic's updates, AIS, Gibbs, CD) are tests/test_baselines.py."""

import json
import signal

import numpy as np
import pytest
import torch
import yaml

import flowforge.data.binarized_mnist
from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.runs import train_run
from flowforge.train.checkpoint import load_checkpoint
from helpers import (
    BASELINES,
    CASES,
    MNIST,
    assert_loads_and_samples_without_data,
    case_config,
    cli_process,
    final_parameters,
    kill_after,
    metrics_without_time,
    stop_at_step_and_resume,
    train_teacher,
)

NAMES = list(CASES)  # the flows' and VAEs' objectives, then the baselines


def config(case: str, teacher: str) -> dict:
    """``case``'s tiny config; skips the test when its data set (binarized MNIST) is absent."""
    if (
        CASES[case].get("data") is MNIST
        and not flowforge.data.binarized_mnist.DEFAULT_PATH.is_file()
    ):
        pytest.skip("binarized MNIST not found in the shared data folder")
    return case_config(case, teacher)


def _equal(a, b) -> bool:
    """Nested dicts, lists and tensors equal element by element (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny MAF teacher run on moons, for the distillation objective."""
    return train_teacher(tmp_path_factory.mktemp("teacher"), 60)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, teacher):
    """Each case's tiny run, trained to the end in this process (the figures of the flows' and
    VAEs' objectives drawn)."""
    root = tmp_path_factory.mktemp("finished")
    runs = {}
    has_mnist = flowforge.data.binarized_mnist.DEFAULT_PATH.is_file()
    for name in NAMES:
        if CASES[name].get("data") is MNIST and not has_mnist:
            continue  # its tests skip (config)
        cfg = parse_config({**case_config(name, teacher), "output_dir": str(root)})
        runs[name] = train_run(cfg, progress=False, plots=name not in BASELINES)
    return runs


@pytest.mark.parametrize("objective", NAMES)
def test_a_run_stopped_and_resumed_ends_bit_identical(
    objective, finished, teacher, tmp_path, monkeypatch
):
    """Stopped mid-way (the time budget, checked after every step) and resumed in the same
    process: parameters, the objective's state and metrics equal the uninterrupted run's."""
    cfg = parse_config({**config(objective, teacher), "output_dir": str(tmp_path)})
    resumed = stop_at_step_and_resume(cfg, 17, monkeypatch)  # between two evaluations
    whole = finished[objective]
    a, b = final_parameters(whole.run_dir), final_parameters(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the objective's own state (critic optimiser, persistent chains) ends equal too
    sa = load_checkpoint(whole.run_dir / "checkpoints" / "last.pt")["objective_state"]
    sb = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["objective_state"]
    assert _equal(sa, sb)

    # the stop at step 17 evaluated there, so the next record's training mean covers 3 steps
    def comparable(records):
        out = [r for r in records if r.get("step") != 17 and "event" not in r]
        return [
            {k: v for k, v in r.items() if not (r["step"] == 20 and k.startswith("train_"))}
            for r in out
        ]

    assert comparable(metrics_without_time(resumed.run_dir)) == comparable(
        metrics_without_time(whole.run_dir)
    )
    config_on_disk = yaml.safe_load((resumed.run_dir / "config.yaml").read_text())
    assert config_on_disk["train"]["max_seconds"] == 0  # the config that resumes is on disk


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective",
    ["mle", "elbo", "iwae", "reverse_kl", "distill", "jko", "wgan_gp", "pcd", "dbm", "pixelcnn"],
)
def test_sigkill_then_resume_is_bit_identical(objective, teacher, tmp_path):
    """Killed with SIGKILL after three evaluations and resumed from the command line: the same
    parameters and records as an uninterrupted run (both one thread, as CPU sums depend on
    the thread count)."""
    path = tmp_path / f"{objective}.yaml"
    path.write_text(yaml.safe_dump(config(objective, teacher)))
    whole = cli_process("train", str(path), "--quiet", "--set", "name=whole", cwd=tmp_path)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    run_dir = tmp_path / "runs" / "cut"
    proc = cli_process("train", str(path), "--quiet", "--set", "name=cut", cwd=tmp_path)
    kill_after(proc, run_dir, 3, signal.SIGKILL)
    resumed = cli_process("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a, b = final_parameters(tmp_path / "runs" / "whole"), final_parameters(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_without_time(run_dir) == metrics_without_time(tmp_path / "runs" / "whole")


@pytest.mark.parametrize("objective", NAMES)
def test_load_and_sample_need_no_data(objective, finished, teacher, monkeypatch, tmp_path, capsys):
    data = config(objective, teacher).get("data", {}).get("name")
    run_dir = finished[objective].run_dir
    assert_loads_and_samples_without_data(run_dir, monkeypatch, tmp_path)
    capsys.readouterr()
    if objective in ("reverse_kl", "distill"):  # they score samples, not data
        assert main(["eval", str(run_dir)]) == 0
        assert np.isfinite(json.loads(capsys.readouterr().out)["loss"])
    else:  # a test NLL needs the test set: a named one-line error, not a traceback
        assert main(["eval", str(run_dir)]) == 2
        assert f"unknown data set {data!r}" in capsys.readouterr().err


@pytest.mark.parametrize("objective", NAMES)
def test_eval_prints_the_summarys_numbers(objective, finished, teacher, capsys):
    config(objective, teacher)  # skips a case without its data
    run = finished[objective]
    assert main(["eval", str(run.run_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    shared = set(out) & set(summary) - {"run", "split"}
    assert shared and all(out[k] == summary[k] for k in shared)
    assert summary["objective"] == CASES[objective].get("objective", {}).get("name", "mle")
    if objective in BASELINES:
        adversarial = CASES[objective]["objective"]["name"] in ("gan", "wgan", "wgan_gp")
        assert np.isfinite(summary["test_mmd" if adversarial else "test_nll"])
    figures = {"mle": "density.png", "reverse_kl": "fit.png", "distill": "fit.png"}
    if objective in figures:
        assert (run.run_dir / "plots" / figures[objective]).is_file()


@pytest.mark.parametrize("objective", NAMES)
def test_every_objective_states_its_headline(objective, finished, teacher):
    """Each summary holds the typed results: a headline with a finite value and error bar and
    its kind stated, the NLL for every model with a likelihood (not the GANs), the other
    measures; and the objective reads the same results from the summary's flat numbers
    alone (summaries written before the headline block)."""
    from flowforge.objectives import OBJECTIVES
    from flowforge.objectives.results import KINDS, read_evaluation

    config(objective, teacher)  # skips a case without its data
    summary = json.loads((finished[objective].run_dir / "summary.json").read_text())
    h = summary["headline"]
    assert h["kind"] in KINDS and h["kind"] != "none" and h["name"].strip()
    assert np.isfinite(h["value"]) and np.isfinite(h["stderr"]) and h["stderr"] > 0, h
    name = summary["objective"]
    if OBJECTIVES[name].uses_data and name not in ("gan", "wgan", "wgan_gp"):
        nll = summary["nll"]
        assert nll["unit"] == "nats" and nll["kind"] in KINDS and np.isfinite(nll["stderr"])
    else:
        assert summary["nll"] is None
    older = {k: v for k, v in summary.items() if k not in ("headline", "nll", "measures")}
    again = read_evaluation(older)
    assert again is not None and again.blocks() == {
        k: summary[k] for k in ("headline", "nll", "measures")
    }


def test_a_checkpoint_of_another_run_is_refused(finished, tmp_path):
    import shutil

    from flowforge.train.checkpoint import CheckpointError

    mle, elbo = finished["mle"].run_dir, finished["elbo"].run_dir
    copy = tmp_path / "copy"
    shutil.copytree(mle, copy)
    shutil.copy(elbo / "checkpoints" / "last.pt", copy / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="belongs to another run"):
        train_run(resume=copy, progress=False, plots=False)


def test_the_baselines_state_is_in_the_checkpoint(finished, teacher):
    """The critic's optimiser (GANs) and the persistent chains (PCD, the DBM's) are saved; CD
    and NADE keep none."""
    for case in ("pcd", "cd", "dbm", "nade"):
        config(case, teacher)  # skips without binarized MNIST
    state = {
        name: load_checkpoint(finished[name].run_dir / "checkpoints" / "last.pt")["objective_state"]
        for name in ("gan", "wgan_gp", "pcd", "cd", "dbm", "nade")
    }
    assert state["gan"]["critic_optimizer"]["state"]  # Adam's moments after 40 steps
    assert state["wgan_gp"]["critic_optimizer"]["param_groups"][0]["betas"] == (0.0, 0.9)
    assert state["pcd"]["chains"].shape == (32, 784)
    assert state["dbm"]["chains"].shape == (16, 784 + 12 + 8)  # v, h1, h2 of each chain
    assert state["cd"] == {} and state["nade"] == {}


def test_wgan_clips_the_critic(finished):
    state = load_checkpoint(finished["wgan"].run_dir / "checkpoints" / "last.pt")["model"]
    critic = [v for k, v in state.items() if k.startswith("critic.")]
    assert critic and all(float(v.abs().max()) <= 0.01 + 1e-7 for v in critic)
