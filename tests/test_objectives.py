"""Every objective through the one trainer and run format: resume after SIGKILL ends
bit-identical, ``flowforge eval`` and ``sample`` work on its run, and ``flowforge.load`` opens
it with the data set hidden."""

import json
import signal

import numpy as np
import pytest
import torch
import yaml

from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.runs import train_run
from flowforge.train.trainer import Trainer
from helpers import (
    assert_loads_and_samples_without_data,
    cli_process,
    final_parameters,
    kill_after,
    metrics_without_time,
    train_teacher,
)

OBJECTIVES = ["mle", "elbo", "iwae", "reverse_kl", "distill"]
MOONS = {"name": "moons", "n_train": 1024, "n_val": 256, "n_test": 256}
VAE = {
    "name": "vae",
    "latent": 2,
    "hidden": [16],
    "posterior": "planar",
    "flow_layers": 2,
    "likelihood": "gaussian",
}
VAE_OPTIONS = {"k": 2, "eval_k": 8, "eval_n": 64}
KL_OPTIONS = {"val_samples": 256, "eval_samples": 512}


def config(objective: str, teacher: str, steps: int = 40) -> dict:
    """A tiny config of ``objective`` (the distillation's teacher is a run directory)."""
    sections = {
        "mle": {"data": MOONS, "model": {"name": "realnvp", "couplings": 2, "hidden": [16]}},
        "elbo": {
            "objective": {"name": "elbo", "kl_warmup": 20, **VAE_OPTIONS},
            "data": MOONS,
            "model": VAE,
        },
        "iwae": {"objective": {"name": "iwae", **VAE_OPTIONS}, "data": MOONS, "model": VAE},
        "reverse_kl": {
            "objective": {"name": "reverse_kl", "target": "U2", "anneal": 20, **KL_OPTIONS},
            "model": {"name": "planar", "layers": 4},
        },
        "distill": {
            "objective": {"name": "distill", "teacher": teacher, **KL_OPTIONS},
            "model": {"name": "iaf", "layers": 2, "hidden": [16]},
        },
    }[objective]
    train = {"steps": steps, "batch_size": 64, "eval_every": 5}
    return {"name": objective, "train": train, **sections}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny MAF teacher run on moons, for the distillation objective."""
    return train_teacher(tmp_path_factory.mktemp("teacher"), 60)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, teacher):
    """Each objective's tiny run, trained to the end in this process."""
    root = tmp_path_factory.mktemp("finished")
    runs = {}
    for name in OBJECTIVES:
        cfg = parse_config({**config(name, teacher), "output_dir": str(root)})
        runs[name] = train_run(cfg, progress=False)  # with its figures
    return runs


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_run_stopped_and_resumed_ends_bit_identical(
    objective, finished, teacher, tmp_path, monkeypatch
):
    """Stopped mid-way (the time budget, checked after every step) and resumed in the same
    process: parameters, optimiser state and metrics equal the uninterrupted run's."""
    cfg = parse_config({**config(objective, teacher), "output_dir": str(tmp_path)})
    monkeypatch.setattr(Trainer, "elapsed", lambda self: float(self.progress.step))
    cfg.train.max_seconds = 17  # stops at step 17, between two evaluations
    cut = train_run(cfg, progress=False, plots=False)
    assert cut.summary["steps"] == 17
    monkeypatch.undo()
    resumed = train_run(
        resume=cut.run_dir, overrides=["train.max_seconds=0"], progress=False, plots=False
    )
    whole = finished[objective]
    a, b = final_parameters(whole.run_dir), final_parameters(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

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
@pytest.mark.parametrize("objective", OBJECTIVES)
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


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_load_and_sample_need_no_data(objective, finished, monkeypatch, tmp_path, capsys):
    run_dir = finished[objective].run_dir
    assert_loads_and_samples_without_data(run_dir, monkeypatch, tmp_path)
    capsys.readouterr()
    if objective in ("reverse_kl", "distill"):  # they score samples, not data
        assert main(["eval", str(run_dir)]) == 0
        assert np.isfinite(json.loads(capsys.readouterr().out)["loss"])
    else:  # a test NLL needs the test set: a named one-line error, not a traceback
        assert main(["eval", str(run_dir)]) == 2
        assert "unknown data set 'moons'" in capsys.readouterr().err


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_eval_prints_the_summarys_numbers(objective, finished, capsys):
    run = finished[objective]
    assert main(["eval", str(run.run_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    shared = set(out) & set(summary) - {"run", "split"}
    assert shared and all(out[k] == summary[k] for k in shared)
    assert summary["objective"] == objective
    figures = {"mle": "density.png", "reverse_kl": "fit.png", "distill": "fit.png"}
    if objective in figures:
        assert (run.run_dir / "plots" / figures[objective]).is_file()


def test_a_checkpoint_of_another_run_is_refused(finished, tmp_path):
    import shutil

    from flowforge.train.checkpoint import CheckpointError

    mle, elbo = finished["mle"].run_dir, finished["elbo"].run_dir
    copy = tmp_path / "copy"
    shutil.copytree(mle, copy)
    shutil.copy(elbo / "checkpoints" / "last.pt", copy / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="belongs to another run"):
        train_run(resume=copy, progress=False, plots=False)
