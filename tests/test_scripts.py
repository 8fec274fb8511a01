"""Helper scripts: the parts that are not covered through the library."""

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_curve_every_skips_checkpoints_closer_than_n_steps():
    due = _load("image_curve").due
    evaluated, last = [], None
    for step in range(250, 3001, 250):
        if due(step, last, 1000):
            evaluated.append(step)
            last = step
    assert evaluated == [250, 1250, 2250]
    assert due(500, 250, 0)  # the default evaluates every checkpoint


def test_image_curve_peak_memory_follows_a_wrapper_to_its_child():
    image_curve = _load("image_curve")
    grow = "b = bytes(1) * (200 * 2**20); import time; time.sleep(30)"  # 200 MiB, written
    wrapper = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{grow}"; true'])
    try:
        for _ in range(100):  # until the child has touched its memory
            peak = image_curve.peak_rss_mb(wrapper.pid)
            if peak and peak > 200:
                break
            subprocess.run(["sleep", "0.1"])
        assert peak > 200  # the shell alone is a few MiB
    finally:
        for task in Path(f"/proc/{wrapper.pid}/task").iterdir():  # the child first
            for child in (task / "children").read_text().split():
                os.kill(int(child), signal.SIGKILL)
        wrapper.kill()
        wrapper.wait()
    assert image_curve.peak_rss_mb(wrapper.pid) is None  # gone: no figure rather than a wrong one


def _script(name, *args, cwd):
    """Runs ``scripts/NAME.py ARGS`` in a subprocess (one thread, the library on the path);
    returns its stdout lines."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.slow
def test_distill_script_trains_teacher_and_student_runs_and_reuses_the_teacher(tmp_path):
    import json

    small = ["--layers", "2", "--hidden", "8", "--batch", "32", "--quiet"]
    args = ["moons", 20, 10, 0, "--out", tmp_path / "runs", *small]
    first = json.loads(_script("distill", *args, cwd=tmp_path)[-1])
    assert first["teacher_run"] == str(tmp_path / "runs" / "maf-teacher-moons-20")
    assert not first["teacher_reused"]
    for key in ("kl_student_teacher", "kl_teacher_student", "test_nll_teacher", "speedup_median"):
        assert isinstance(first[key], float), key
    assert first["entropy"] == pytest.approx(2.394, abs=1e-3) and first["dim"] == 2
    summary = json.loads((Path(first["student_run"]) / "summary.json").read_text())
    assert summary["objective"] == "distill" and summary["steps"] == 10
    # a second student of the same teacher: the finished teacher run is reused
    second = json.loads(_script("distill", *args, "--student-seed", 1, cwd=tmp_path)[-1])
    assert second["teacher_reused"] and second["teacher_run"] == first["teacher_run"]
    assert second["student_run"] != first["student_run"]


@pytest.mark.slow
def test_vi_figure_script_fits_each_cell_as_a_run_and_draws_the_grid(tmp_path):
    import json

    lines = _script(
        "vi_figure", 4, "U1", "planar2,iaf", "--out", tmp_path, "--figure",
        tmp_path / "grid.png", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    rows = [json.loads(line) for line in lines[:-1]]
    assert [(r["target"], r["flow"]) for r in rows] == [("U1", "planar2"), ("U1", "iaf")]
    assert all(isinstance(r["kl"], float) and r["steps"] == 4 for r in rows)
    assert lines[-1] == str(tmp_path / "grid.png") and (tmp_path / "grid.png").stat().st_size
    assert json.loads((tmp_path / "vi" / "results_U1.json").read_text()) == rows
    config = (tmp_path / "vi" / "U1-iaf" / "config.yaml").read_text()
    assert "reverse_kl" in config and "anneal: 2" in config


@pytest.mark.slow
def test_vae_table_script_runs_an_elbo_run(tmp_path, shared_data):
    import json

    if not (shared_data / "mnist.npz").is_file():
        pytest.skip(f"binarized MNIST needs {shared_data / 'mnist.npz'}, which is absent")
    lines = _script(
        "vae_table", "planar", 2, 0, 2, "iwae", 2, "--warmup", 2, "--eval-k", 2,
        "--eval-n", 10, "--out", tmp_path, "--quiet", cwd=tmp_path,
    )  # fmt: skip
    records, summary = [json.loads(line) for line in lines[:-1]], json.loads(lines[-1])
    assert [r["step"] for r in records] == [2]
    assert summary["name"] == "planar2_iwae2_s0_2_w2_ek2_en10"
    assert summary["objective"] == "iwae" and summary["posterior"] == "planar"
    assert summary["eval_k"] == 2 and summary["eval_n"] == 10
    assert isinstance(summary["test_nll"], float) and isinstance(summary["test_elbo"], float)
    assert summary["run"] == str(tmp_path / "vae" / summary["name"])


def test_mnist_classifier_augmentation_shifts_each_image_and_binarizes_half():
    import torch

    script = _load("train_mnist_classifier")
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(400, 1, 28, 28)
    x[:, 0, 14, 14] = 0.6
    moved = script.shifted(x, g)
    where = torch.nonzero(moved[:, 0] > 0)  # (image, row, column) of the one bright pixel
    assert len(where) == 400 and where[:, 0].tolist() == list(range(400))
    offsets = where[:, 1:] - 14
    assert offsets.abs().max() == 2 and len({tuple(o) for o in offsets.tolist()}) == 25
    out = script.augmented(x, g)
    binary = ((out == 0) | (out == 1)).flatten(1).all(1)
    assert 150 < int(binary.sum()) < 250  # about half binarized, the rest keeps 0.6


@pytest.mark.slow
def test_mnist_classifier_script_writes_a_loadable_file(tmp_path, shared_data):
    """One epoch on 512 training images: the file loads with its metadata, never pickled."""
    import numpy as np

    from flowforge.metrics import load_digit_classifier

    if not (shared_data / "mnist.npz").is_file():
        pytest.skip(f"MNIST needs {shared_data / 'mnist.npz'}, which is absent")
    out = tmp_path / "classifier.npz"
    args = ["--epochs", "1", "--train-images", "512", "--features", "32", "--out", out]
    _script("train_mnist_classifier", *args, cwd=tmp_path)
    with np.load(out, allow_pickle=False) as f:
        assert "meta" in f.files and f["meta"].dtype.kind == "U"
    model, meta = load_digit_classifier(out)
    assert meta["features"] == 32 and meta["train_images"] == 512
    assert 0.1 < meta["test_accuracy_grey"] <= 1 and "--train-images 512" in meta["command"]
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
