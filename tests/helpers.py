"""Small helpers shared by the tests (imported as ``helpers``: pytest puts tests/ on the path)."""

from flowforge.config import parse_config
from flowforge.runs import train_run
from flowforge.train.checkpoint import save_checkpoint


def save_teacher(flow, path, event_shape):
    """A checkpoint file holding a ``maf(2, layers=2, hidden=(8, 8))`` teacher with its spec,
    as a run's best.pt would."""
    spec = {
        "name": "maf",
        "options": {"layers": 2, "hidden": [8, 8], "batch_norm": False},
        "event_shape": list(event_shape),
        "context_features": 0,
        "context_classes": 0,
    }
    save_checkpoint(path, {"spec": spec, "model": flow.state_dict()})
    return path


def distill_run(tmp_path, teacher, student, steps, lr, name):
    """A distillation run of ``student`` from ``teacher`` (a run or checkpoint); its summary."""
    cfg = parse_config(
        {
            "name": name,
            "output_dir": str(tmp_path),
            "objective": {"name": "distill", "teacher": str(teacher), "eval_samples": 5000},
            "model": student,
            "train": {
                "steps": steps,
                "batch_size": 128,
                "lr": lr,
                "grad_clip": 0,
                "eval_every": steps,
            },
        }
    )
    return train_run(cfg, progress=False, plots=False).summary


def cli_process(*args, cwd, env=None):
    """``python -m flowforge.cli ARGS`` in ``cwd``, one thread, output captured; ``env``:
    the environment (default: this process's)."""
    import os
    import subprocess
    import sys

    env = {**(os.environ if env is None else env), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "flowforge.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def metrics(run_dir):
    import json

    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def metrics_without_time(run_dir):
    """The metrics records without their wall-clock field."""
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in metrics(run_dir)]


def final_parameters(run_dir):
    from flowforge.train.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def kill_after(proc, run_dir, evaluations, sig):
    """Sends ``sig`` once the run has logged ``evaluations`` records (or ended by itself)."""
    import time

    while not (run_dir / "metrics.jsonl").exists() or len(metrics(run_dir)) < evaluations:
        if proc.poll() is not None:
            return proc.returncode
        time.sleep(0.02)
    proc.send_signal(sig)
    return proc.wait(timeout=60)


def train_teacher(root, steps):
    """A tiny MAF teacher run on moons under ``root`` (for distillation); its directory."""
    cfg = parse_config(
        {
            "name": "teacher",
            "output_dir": str(root),
            "data": {"name": "moons", "n_train": 1024, "n_val": 256, "n_test": 256},
            "model": {"name": "maf", "layers": 2, "hidden": [16], "batch_norm": False},
            "train": {"steps": steps, "batch_size": 128, "eval_every": 20},
        }
    )
    return str(train_run(cfg, progress=False, plots=False).run_dir)


def assert_loads_and_samples_without_data(run_dir, monkeypatch, tmp_path):
    """With every data set hidden, ``flowforge.load`` and ``flowforge sample`` still work."""
    import numpy as np
    import torch

    import flowforge
    from flowforge.cli import main
    from flowforge.data import registry

    def hidden(*args, **kwargs):
        raise AssertionError("the data set was read")

    monkeypatch.setattr(registry, "load_dataset", hidden)
    monkeypatch.setattr(registry, "DATASETS", {})
    x = flowforge.load(run_dir).sample(7)
    assert x.shape[0] == 7 and bool(torch.isfinite(x).all())
    out = tmp_path / "s.csv"
    assert main(["sample", str(run_dir), "-n", "5", "--out", str(out)]) == 0
    assert np.loadtxt(out, delimiter=",", ndmin=2, skiprows=1).shape[0] == 5  # a header row


# -- one tiny run of every objective: tests/test_objectives.py checks each the same way ---------

MOONS = {"name": "moons", "n_train": 1024, "n_val": 256, "n_test": 256}
GAUSSIANS = {"name": "8gaussians", "n_train": 1024, "n_val": 256, "n_test": 256}
MNIST = {"name": "binarized_mnist", "n_train": 512, "n_val": 64, "n_test": 64}
_VAE = {
    "name": "vae",
    "latent": 2,
    "hidden": [16],
    "posterior": "planar",
    "flow_layers": 2,
    "likelihood": "gaussian",
}
_VAE_OPTIONS = {"k": 2, "eval_k": 8, "eval_n": 64}
_KL_OPTIONS = {"val_samples": 256, "eval_samples": 512}
_GAN = {"name": "gan", "latent": 2, "hidden": [16, 16]}
_SCORES = {"val_n": 128, "eval_n": 256}
_RBM_EVAL = {"eval_chains": 8, "eval_betas": 50, "eval_n": 32}
_BASELINE_TRAIN = {"batch_size": 32, "lr": 1e-3}
#: the sections of each case: the objectives of the flows and VAEs, then the baselines of
#: docs/comparison.md (which train with ``_BASELINE_TRAIN``)
CASES = {
    "mle": {"data": MOONS, "model": {"name": "realnvp", "couplings": 2, "hidden": [16]}},
    "elbo": {
        "objective": {"name": "elbo", "kl_warmup": 20, **_VAE_OPTIONS},
        "data": MOONS,
        "model": _VAE,
    },
    "iwae": {"objective": {"name": "iwae", **_VAE_OPTIONS}, "data": MOONS, "model": _VAE},
    "reverse_kl": {
        "objective": {"name": "reverse_kl", "target": "U2", "anneal": 20, **_KL_OPTIONS},
        "model": {"name": "planar", "layers": 4},
    },
    "distill": {
        "objective": {"name": "distill", "teacher": None, **_KL_OPTIONS},
        "model": {"name": "iaf", "layers": 2, "hidden": [16]},
    },
    "jko": {  # two CNF blocks, each half of the run's steps (case_config fills it in)
        "objective": {"name": "jko", "step_size": 0.5, "steps_per_block": 20},
        "data": MOONS,
        "model": {
            "name": "ffjord",
            "blocks": 2,
            "hidden": [8],
            "method": "rk4",
            "step_size": 0.25,
            "exact_train": True,
        },
    },
    "gan": {"objective": {"name": "gan", **_SCORES}, "data": GAUSSIANS, "model": _GAN},
    "wgan": {
        "objective": {"name": "wgan", "n_critic": 2, **_SCORES},
        "data": GAUSSIANS,
        "model": _GAN,
    },
    "wgan_gp": {
        "objective": {"name": "wgan_gp", "n_critic": 2, **_SCORES},
        "data": GAUSSIANS,
        "model": _GAN,
    },
    "cd": {
        "objective": {"name": "cd", "k": 1, **_RBM_EVAL},
        "data": MNIST,
        "model": {"name": "rbm", "hidden": 16, "sample_steps": 5},
    },
    "pcd": {
        "objective": {"name": "cd", "k": 2, "persistent": True, **_RBM_EVAL},
        "data": MNIST,
        "model": {"name": "rbm", "hidden": 16, "sample_steps": 5},
    },
    "dbm": {
        "objective": {"name": "dbm", "pretrain_steps": 5, "chains": 16, **_RBM_EVAL},
        "data": MNIST,
        "model": {"name": "dbm", "hidden1": 12, "hidden2": 8, "sample_steps": 5},
    },
    "dcgan": {
        "objective": {"name": "wgan_gp", "n_critic": 1, "val_n": 64, "eval_n": 64},
        "data": MNIST,
        "model": {
            "name": "gan",
            "latent": 8,
            "architecture": "dcgan",
            "channels": [2, 4],
            "output": "sigmoid",
        },
    },
    "nade": {
        "objective": {"name": "likelihood"},
        "data": MNIST,
        "model": {"name": "nade", "hidden": 8},
    },
    "pixelcnn": {
        "objective": {"name": "likelihood"},
        "data": MNIST,
        "model": {"name": "pixelcnn", "hidden": 2, "blocks": 1},
    },
}
BASELINES = ["gan", "wgan", "wgan_gp", "cd", "pcd", "dbm", "dcgan", "nade", "pixelcnn"]


def case_config(case: str, teacher: str | None = None, steps: int = 40) -> dict:
    """A tiny config of ``case`` (of :data:`CASES`; the distillation's teacher is a run
    directory)."""
    import copy

    sections = copy.deepcopy(CASES[case])
    if case == "distill":
        sections["objective"]["teacher"] = teacher
    if case == "jko":  # the schedule fills the run: steps_per_block x blocks == steps
        sections["objective"]["steps_per_block"] = steps // sections["model"]["blocks"]
    train = {"steps": steps, "batch_size": 64, "eval_every": 5}
    if case in BASELINES:
        train.update(_BASELINE_TRAIN)
    return {"name": case, "train": train, **sections}


def stop_at_step_and_resume(cfg, step, monkeypatch):
    """Trains ``cfg`` until its time budget stops it after ``step`` steps (the clock faked to
    one second a step; the budget is checked after every step), then resumes that run in the
    same process to the end; returns the resumed run's result."""
    from flowforge.train.trainer import Trainer

    monkeypatch.setattr(Trainer, "elapsed", lambda self: float(self.progress.step))
    cfg.train.max_seconds = step
    cut = train_run(cfg, progress=False, plots=False)
    assert cut.summary["steps"] == step
    monkeypatch.undo()
    return train_run(
        resume=cut.run_dir, overrides=["train.max_seconds=0"], progress=False, plots=False
    )
