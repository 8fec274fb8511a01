"""The command line: subcommands work end to end; user errors are one line, exit code 2."""

import json
from pathlib import Path

import numpy as np
import pytest

from flowforge.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    args = [
        "train",
        "--quiet",
        "--set",
        f"output_dir={root}",
        "--set",
        "train.steps=30",
        "--set",
        "data.n_train=1000",
        "--set",
        "data.n_test=300",
        "--set",
        "train.eval_every=10",
    ]
    assert main(args) == 0
    return root / "realnvp-parabola"


def test_eval_prints_nll_and_entropy_gap(run_dir, capsys):
    assert main(["eval", str(run_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_test"] == 300 and "gap" in out and np.isfinite(out["test_nll"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert out["test_nll"] == summary["test_nll"]  # one piece of arithmetic for both


def test_sample_writes_npy(run_dir, tmp_path):
    out = tmp_path / "s.npy"
    assert (
        main(["sample", str(run_dir), "-n", "17", "--temperature", "0.5", "--out", str(out)]) == 0
    )
    assert np.load(out).shape == (17, 2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--set", "train.lr=-1"], "train.lr: should be positive"),
        (["train", "missing.yaml"], "config file not found"),
        (["train", "--set", "model.name=nope"], "unknown model 'nope'"),
        (["eval", "/nonexistent/run"], "not a run directory"),
        (["train", "--resume", "/nonexistent/run"], "not a run directory"),
        (["sample", "/nonexistent/run", "-n", "0"], "-n: should be positive"),
    ],
)
def test_user_errors_are_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_corrupt_checkpoint_is_a_user_error(run_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    for name in ("best.pt", "last.pt"):
        (broken / "checkpoints" / name).write_bytes(b"garbage")
    assert main(["eval", str(broken)]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_check_and_list(capsys):
    assert main(["check", "elementwise/affine"]) == 0
    out = capsys.readouterr().out
    assert "round_trip" in out and "0 failed checks" in out
    assert main(["list"]) == 0
    assert "realnvp" in capsys.readouterr().out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    pytest.importorskip("sklearn", reason="the 8x8 digits come with scikit-learn")
    root = tmp_path_factory.mktemp("cli-img")
    args = [
        "train",
        str(REPO / "configs/images/glow-digits.yaml"),
        "--quiet",
        "--set",
        f"output_dir={root}",
        "--set",
        "train.steps=4",
        "--set",
        "train.eval_every=2",
        "--set",
        "model.depth=1",
        "--set",
        "model.hidden_channels=8",
        "--set",
        "data.n_train=64",
        "--set",
        "data.n_val=16",
        "--set",
        "data.n_test=32",
    ]
    assert main(args) == 0
    return root / "glow-digits"


def _png_size(path):
    import struct

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # width, height


def test_image_sample_interpolate_manipulate_write_pngs(image_run, tmp_path):
    assert (
        main(
            [
                "sample",
                str(image_run),
                "-n",
                "16",
                "--temperature",
                "0.7",
                "--out",
                str(tmp_path / "s.png"),
            ]
        )
        == 0
    )
    assert _png_size(tmp_path / "s.png")[0] > 8
    assert (
        main(
            [
                "interpolate",
                str(image_run),
                "--pairs",
                "3",
                "--steps",
                "5",
                "--out",
                str(tmp_path / "i.png"),
            ]
        )
        == 0
    )
    w, h = _png_size(tmp_path / "i.png")
    assert w > h  # 5 images per row, 3 rows
    assert (
        main(
            [
                "manipulate",
                str(image_run),
                "-n",
                "2",
                "--reference",
                "50",
                "--out",
                str(tmp_path / "m.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "m.png").is_file()
    assert main(["sample", str(image_run), "--class", "3"]) == 2  # unconditional run


def test_interpolate_refuses_vector_runs(run_dir, capsys):
    assert main(["interpolate", str(run_dir)]) == 2
    assert "not an image run" in capsys.readouterr().err


def test_fit_target_is_a_reverse_kl_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit-target", "U1", "--model", "planar", "--set", "layers=2", "--steps", "20"]
    assert main([*args, "--quiet", "--set", "train.batch_size=64"]) == 0
    out = tmp_path / "runs" / "vi-U1-planar"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "reverse_kl" and np.isfinite(summary["kl"])
    assert (out / "plots" / "fit.png").is_file()
    assert main(["eval", str(out)]) == 0 and main(["sample", str(out), "-n", "5"]) == 0
    assert np.load(out / "samples.npy").shape == (5, 2)
    capsys.readouterr()
    assert main(["fit-target", "U9"]) == 2
    assert "unknown target 'U9'" in capsys.readouterr().err


def test_vae_config_trains_through_train_command(tmp_path, shared_data, capsys):
    args = [
        "train",
        str(REPO / "configs/variational/vae-planar10.yaml"),
        "--quiet",
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        "data.n_train=200",
        "--set",
        "data.n_val=50",
        "--set",
        "data.n_test=50",
        "--set",
        "train.steps=3",
        "--set",
        "train.eval_every=3",
        "--set",
        "objective.eval_k=2",
        "--set",
        "objective.eval_n=20",
        "--set",
        "model.hidden=[16]",
        "--set",
        "model.latent=4",
    ]
    assert main(args) == 0
    assert "(elbo)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "vae-planar10" / "summary.json").read_text())
    assert np.isfinite(summary["test_nll"]) and np.isfinite(summary["test_elbo"])
    assert (
        main(
            ["train", str(REPO / "configs/variational/vae-planar10.yaml"), "--set", "model.bogus=1"]
        )
        == 2
    )


def test_check_stress_prints_the_worst_errors(capsys):
    assert main(["check", "--stress", "elementwise/standardize"]) == 0
    out = capsys.readouterr().out
    assert "| elementwise/standardize | float32 |" in out and "p=1" in out
    assert main(["check", "--stress", "no-such-case"]) == 1


def test_python_dash_m_flowforge_is_the_flowforge_command():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "flowforge", "list"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "realnvp" in done.stdout
