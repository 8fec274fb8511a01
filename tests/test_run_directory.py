"""The run directory's guarantees: runs stay inside ``output_dir``, history is never lost, half-
written directories are named not misread, one process trains in a directory at a time."""

import json
from pathlib import Path

import pytest

from flowforge.cli import main
from flowforge.config import ConfigError, parse_config
from flowforge.run_files import TMP_SUFFIX
from flowforge.runs import RunDirectory, RunLocked, train_run
from flowforge.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def tiny(tmp_path, name="tiny", **train):
    return parse_config(
        {
            "name": name,
            "output_dir": str(tmp_path),
            "data": {"name": "moons", "n_train": 512, "n_val": 128, "n_test": 128},
            "model": {"name": "realnvp", "couplings": 2, "hidden": [8]},
            "train": {"steps": 20, "batch_size": 64, "eval_every": 5, **train},
        }
    )


@pytest.fixture
def run_dir(tmp_path):
    return train_run(tiny(tmp_path), progress=False, plots=False).run_dir


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a\0b", "x" * 300, ".hidden"])
@pytest.mark.parametrize("objective", ["mle", "elbo"])
def test_every_objective_keeps_its_run_inside_output_dir(tmp_path, name, objective):
    raw = {"name": name, "output_dir": str(tmp_path / "out"), "objective": {"name": objective}}
    if objective == "elbo":
        raw["model"] = {"name": "vae"}
    with pytest.raises(ConfigError, match="name: should be a plain directory name"):
        parse_config(raw)
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()


def test_two_runs_with_one_name_get_two_directories(tmp_path):
    first, second = RunDirectory.create(tmp_path, "r"), RunDirectory.create(tmp_path, "r")
    assert (first.path.name, second.path.name) == ("r", "r-2")


def test_the_directory_names_its_files_as_run_files_does(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.config_file == tmp_path / "config.yaml"
    assert run.metrics_file == tmp_path / "metrics.jsonl"
    assert run.summary_file == tmp_path / "summary.json"
    assert run.lock_file == tmp_path / ".lock"
    assert run.checkpoint_path("last.pt") == tmp_path / "checkpoints" / "last.pt"
    assert run.plots == tmp_path / "plots"
    assert run.linked_files() == []
    run.checkpoints.mkdir()
    (tmp_path / "elsewhere.pt").write_bytes(b"")
    (run.checkpoints / "best.pt").symlink_to(tmp_path / "elsewhere.pt")
    run.summary_file.symlink_to(tmp_path / "elsewhere.pt")
    assert run.linked_files() == ["summary.json", "checkpoints/best.pt"]
    transient = [".lock", f".last.pt.abc{TMP_SUFFIX}"]
    kept = ["lock", "notes.tmp", f"x{TMP_SUFFIX}", "last.pt", "config.yaml"]
    assert [n for n in transient + kept if RunDirectory.is_transient(n)] == transient


def test_a_directory_being_trained_in_is_locked(run_dir):
    directory = RunDirectory.open(run_dir)
    with directory.lock():
        with pytest.raises(RunLocked, match="another process is training"):
            train_run(resume=run_dir, overrides=["train.steps=30"], progress=False)
    assert train_run(resume=run_dir, overrides=["train.steps=30"], progress=False).summary


def test_resume_keeps_the_history_and_recovers_a_torn_line(run_dir):
    metrics = run_dir / "metrics.jsonl"
    before = metrics.read_text().splitlines()
    with open(metrics, "a") as f:
        f.write('{"step": 20, "train_nl')  # a kill during an append
    orphan = run_dir / "checkpoints" / f".last.pt.abc{TMP_SUFFIX}"
    orphan.write_bytes(b"half")  # a kill during a save
    train_run(resume=run_dir, overrides=["train.steps=30"], progress=False, plots=False)
    after = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [json.dumps(r) for r in after[: len(before)]] == before  # nothing lost or rewritten
    assert [r["step"] for r in after if "event" not in r] == [5, 10, 15, 20, 25, 30]
    assert not orphan.exists()


@pytest.mark.parametrize(
    "content, message",
    [("", "empty; the run's config is lost"), ("name: x\n", "incomplete"), ("\xff", "UTF-8")],
)
def test_a_half_written_config_is_named_not_replaced_by_defaults(run_dir, content, message):
    path = run_dir / "config.yaml"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ConfigError, match=message):
        train_run(resume=run_dir, progress=False)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p.update(step=-3), r"training counter 'step' is -3, outside \[0, 20\]"),
        (lambda p: p.update(lr_scale=float("inf")), "training counter 'lr_scale' is inf"),
        (lambda p: p.pop("step"), "missing training counter 'step'"),
    ],
)
def test_impossible_training_counters_are_refused(run_dir, edit, message):
    last = run_dir / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    payload.pop("format")
    edit(payload)
    save_checkpoint(last, payload)
    records = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match=message):
        train_run(resume=run_dir, progress=False)
    assert (run_dir / "metrics.jsonl").read_text() == records  # nothing deleted


def test_a_checkpoint_from_another_data_set_is_refused(tmp_path, run_dir):
    other = tiny(tmp_path, name="other")
    other.data.name = "8gaussians"
    other_dir = train_run(other, progress=False, plots=False).run_dir
    (run_dir / "checkpoints" / "last.pt").write_bytes(
        (other_dir / "checkpoints" / "last.pt").read_bytes()
    )
    with pytest.raises(CheckpointError, match="fingerprint differs.*train_data changed"):
        train_run(resume=run_dir, progress=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--set", "seed=-1"], "seed: should be in [0, 2**32)"),
        (["train", "--set", "seed=4294967296"], "seed: should be in [0, 2**32)"),
        (["train", "--set", "train.lr=.inf"], "train.lr: should be finite"),
        (["train", "--set", "device=cuda:7"], "device: 'cuda:7'"),
        (["train", "--set", "name=a/b"], "plain directory name"),
        (["train", "--set", "data.n_train=1000000000000"], "at most 1e+09"),
        (["train", "--set", "train.steps=1000000000000"], "train.steps: at most 1e+09"),
    ],
)
def test_cli_abuse_is_one_line_before_any_directory(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_read_only_output_dir_is_one_line(tmp_path, capsys):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes to read-only directories")
    (tmp_path / "ro").mkdir(mode=0o500)
    assert main(["train", "--set", f"output_dir={tmp_path / 'ro'}", "--quiet"]) == 2
    assert "cannot create" in capsys.readouterr().err


def test_output_path_is_the_path_as_given_unless_it_is_a_run_file(tmp_path):
    from flowforge.runs.directory import output_path

    (tmp_path / "config.yaml").write_text("name: r\n")
    assert output_path(None) is None
    assert output_path("rel/samples.npy") == Path("rel/samples.npy")  # not resolved
    with pytest.raises(ConfigError, match="--image: .* is the file summary.json of the run"):
        output_path(tmp_path / "summary.json", "--image")
