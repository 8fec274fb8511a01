"""The command line: subcommands work end to end; user errors are one line, exit code 2."""

import json

import numpy as np
import pytest

from flowforge.cli import main


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
    assert out["n"] == 300 and "gap" in out and np.isfinite(out["nll"])


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
