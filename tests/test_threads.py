"""train.threads and --threads: the automatic rule, the count a run uses and restores, and the
warning when steps ran far slower than they can (decided from numbers, no timing)."""

import json

import pytest
import torch
import yaml

from flowforge.cli import main
from flowforge.config import ConfigError, parse_config
from flowforge.runs import train_run
from flowforge.train.threads import Pace, StepPace, auto_threads, slow_steps, torch_threads


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
        ((34, 0.95), (439, 0.30), 2, True),  # the busy 2-core machine
        ((10, 1.0), (30, 0.8), 2, True),  # exactly SLOWER times, exactly SHARE_DROP
        ((10, 1.0), (29, 0.3), 2, False),  # not slow enough
        ((10, 1.0), (40, 0.81), 2, False),  # the CPU kept working: more work per step
        ((10, 0.9), (100, 0.9), 8, False),  # (an adaptive ODE solver late in training)
        ((34, 0.65), (439, 0.30), 1, False),  # one thread: nothing in the run to change
        ((10, 1.0), (float("nan"), 0.3), 2, False),
    ],
)
def test_slow_steps_decision(fastest, window, threads, slow):
    message = slow_steps(Pace(*fastest), Pace(*window), threads)
    assert (message is not None) == slow
    if slow:
        assert message.startswith(f"warning: steps took {window[0]} ms")
        assert f"times the {fastest[0]} ms of earlier steps" in message
        assert "busy or oversubscribed" in message and message.endswith("try --threads 1")


def test_step_pace_warns_once_when_a_window_is_far_slower_with_less_cpu():
    # durations in powers of two: the 2-second windows close exactly where intended
    pace = StepPace(threads=2, window=2.0)
    # a first window slowed by the first steps, then a fast one: nothing to say
    assert [pace.add(1.0, 2.0) for _ in range(2)] == [None, None]
    assert [pace.add(0.125, 0.234375) for _ in range(16)] == [None] * 16
    assert pace.fastest == Pace(125.0, 0.9375)
    # 500 ms a step with the CPU busy throughout: more work per step, not a busy machine
    assert [pace.add(0.5, 0.9375) for _ in range(4)] == [None] * 4
    said = [pace.add(1.0, 0.5) for _ in range(2)]  # 1000 ms a step, 0.25 CPU per thread
    assert said[0] is None and "steps took 1000 ms, 8 times the 125 ms" in said[1]
    assert [pace.add(1.0, 0.5) for _ in range(4)] == [None] * 4  # once per run
    one = StepPace(threads=1, window=2.0)  # the same slowdown with one thread: nothing to say
    assert {one.add(t, t if t < 1 else t / 4) for t in [0.125] * 16 + [1.0] * 4} == {None}


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
