"""train.threads and --threads: the automatic rule, the count a run uses and restores, and the
warning when steps ran far slower than they can (decided from numbers, no timing)."""

import json

import pytest
import torch
import yaml

from flowforge.cli import main
from flowforge.config import ConfigError, parse_config
from flowforge.runs import train_run
from flowforge.train.threads import StepPace, auto_threads, slow_steps, torch_threads


@pytest.mark.parametrize(
    "cpus, current, environ, expected",
    [
        (2, 2, {}, 1),  # a 2-CPU machine: one thread, half of it free for other jobs
        (1, 1, {}, 1),
        (3, 3, {}, 1),
        (16, 8, {}, 8),  # half the logical CPUs: torch's own count on a 2-way SMT machine
        (16, 4, {}, 4),  # never more than the process already uses (torch.set_num_threads(4))
        (64, 32, {}, 32),
        (2, 2, {"OMP_NUM_THREADS": "2"}, 2),  # the environment chose
        (16, 1, {"OMP_NUM_THREADS": "1"}, 1),  # torchrun's processes
        (16, 8, {"OMP_NUM_THREADS": ""}, 8),  # empty: not set
    ],
)
def test_automatic_thread_count(cpus, current, environ, expected):
    assert auto_threads(cpus, current, environ) == expected


def test_torch_threads_sets_the_count_and_restores_it():
    before = torch.get_num_threads()
    with torch_threads(3) as n:
        assert n == 3 and torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    with torch_threads(0) as n:
        assert n == auto_threads(current=before) == torch.get_num_threads()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "fastest, window, threads, slow",
    [
        (34.0, 439.0, 2, True),  # the busy 2-core machine
        (10.0, 30.0, 2, True),  # exactly SLOWER times
        (10.0, 29.0, 2, False),
        (10.0, 10.0, 8, False),
        (34.0, 439.0, 1, False),  # one thread: nothing in the run to change
        (10.0, float("nan"), 2, False),
    ],
)
def test_slow_steps_decision(fastest, window, threads, slow):
    message = slow_steps(fastest, window, threads)
    assert (message is not None) == slow
    if slow:
        assert message.startswith("warning: steps took")
        assert f"times the {fastest:.0f} ms of earlier steps" in message
        assert "busy or oversubscribed" in message and message.endswith("try --threads 1")


def test_step_pace_warns_once_when_a_window_is_far_slower():
    pace = StepPace(threads=2, window=2.0)
    # a first window slowed by the first steps, then a fast one: nothing to say
    assert [pace.add(1.0) for _ in range(2)] == [None, None]
    assert [pace.add(0.05) for _ in range(40)] == [None] * 40
    assert pace.fastest == pytest.approx(50.0)
    said = [pace.add(0.5) for _ in range(4)]  # 500 ms a step: 10 times slower
    assert said[:3] == [None] * 3 and "steps took 500 ms, 10 times the 50 ms" in said[3]
    assert [pace.add(0.6) for _ in range(8)] == [None] * 8  # once per run
    quiet = StepPace(threads=1, window=2.0)
    assert {quiet.add(t) for t in [0.05] * 40 + [0.5] * 8} == {None}


@pytest.mark.parametrize("value, match", [(-1, "should be >= 0"), (10**6, "at most 1024")])
def test_bad_thread_counts_are_refused(value, match):
    with pytest.raises(ConfigError, match=f"train.threads: {match}"):
        parse_config({"train": {"threads": value}})


def test_the_default_is_automatic():
    assert parse_config({}).train.threads == 0


def tiny(tmp_path, **train):
    return parse_config(
        {
            "name": "tiny",
            "output_dir": str(tmp_path),
            "data": {"name": "moons", "n_train": 256, "n_val": 64, "n_test": 64},
            "model": {"name": "realnvp", "couplings": 2, "hidden": [8]},
            "train": {"steps": 4, "batch_size": 64, "eval_every": 2, **train},
        }
    )


def test_a_run_records_the_automatic_count_and_restores_the_process_count(tmp_path):
    before = torch.get_num_threads()
    summary = train_run(tiny(tmp_path), progress=False, plots=False).summary
    assert summary["threads"] == auto_threads(current=before)
    assert torch.get_num_threads() == before


def test_threads_flag_reaches_the_run(tmp_path, capsys):
    path = tmp_path / "tiny.csv"
    rows = torch.randn(60, 2, generator=torch.Generator().manual_seed(0)).tolist()
    path.write_text("a,b\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in rows))
    before = torch.get_num_threads()
    argv = ["train", "--data", str(path), "--model", "maf", "--threads", "1", "--quiet"]
    out = tmp_path / "runs"
    argv += ["--set", "train.steps=2", "--set", f"output_dir={out}"]
    assert main(argv) == 0
    # one thread: more would oversubscribe a busy test machine (the point of the option)
    assert yaml.safe_load((out / "tiny" / "config.yaml").read_text())["train"]["threads"] == 1
    assert json.loads((out / "tiny" / "summary.json").read_text())["threads"] == 1
    assert torch.get_num_threads() == before
    capsys.readouterr()
    assert main([*argv, "--threads", "-1"]) == 2
    assert "error: train.threads: should be >= 0, got -1" in capsys.readouterr().err
