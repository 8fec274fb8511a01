"""Smoke tests of the benchmarks: 10 steps of flowforge and ref in the peer harness, one round
of the MADE sweep benchmark (no timings asserted)."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run(peers, tasks: str, libs: str, *extra: str) -> dict:
    argv = ["--tasks", tasks, "--libs", libs, "--warmup", "0", "--rounds", "2", "--grid", "161"]
    argv += [
        "--steps-per-round",
        "1",
        "--eval-rounds",
        "1",
        "--eval-batch",
        "64",
        "--threads",
        "1",
        "--pace-steps",
        "",
        *extra,
    ]
    return peers.main(argv)


@pytest.mark.slow
def test_flowforge_and_ref_ten_steps(peers):
    report = run(peers, "realnvp2,maf8", "ref,flowforge", "--steps-per-round", "5")
    for task in ("realnvp2", "maf8"):
        rows = report["tasks"][task]["libraries"]
        assert set(rows) == {"ref", "flowforge"}
        assert report["tasks"][task]["steps"] == 10
        assert rows["ref"]["ratio_ref"]["median"] == pytest.approx(1.0)
        assert math.isfinite(rows["flowforge"]["test_nll"])
        assert rows["flowforge"]["peak_mem_mb"] > 0
        assert rows["flowforge"]["log_prob_per_s"]["median"] > 0
    # a 2-D density integrates to 1 on the box that holds its mass: after 10 steps [-6, 6]^2
    # (after 2 to 5 the first full-size Adam steps put up to 5 % of it further out, for a
    # while: 0.958 in the box at step 2, 1.000 at 10; zuko 0.985 at step 2)
    row = report["tasks"]["realnvp2"]["libraries"]["flowforge"]
    assert row["grid_mass"] == pytest.approx(1.0, abs=0.01)
    assert row["grid_nonfinite"] == 0


@pytest.mark.parametrize("lib", ["zuko", "nflows", "normflows", "torchflows"])
def test_peer_builds_and_integrates(peers, lib):
    pytest.importorskip(lib, reason=f"{lib} is not installed (pip install -e '.[bench]')")
    report = run(peers, "realnvp2", lib, "--no-memory")
    row = report["tasks"]["realnvp2"]["libraries"][lib]
    assert math.isfinite(row["test_nll"])
    assert row["grid_mass"] == pytest.approx(1.0, abs=0.03)


def test_nll_against_steps_per_seed_and_library(peers):
    pytest.importorskip("zuko", reason="zuko is not installed (pip install -e '.[bench]')")
    argv = ["--pace-steps", "2,1", "--pace-seeds", "0,1", "--data-scale", "0.5", "--no-memory"]
    report = run(peers, "realnvp2", "ref,flowforge,zuko", *argv)
    pace = report["tasks"]["realnvp2"]["pace"]
    assert pace["steps"] == [1, 2] and pace["seeds"] == [0, 1]
    assert set(pace["libraries"]) == {"flowforge", "zuko"}  # no ref: it is not a density
    for row in pace["libraries"].values():
        assert len(row["runs"]["test_nll"]) == 2 and len(row["test_nll"]) == 2
        assert all(math.isfinite(c["mean"]) and c["sd"] >= 0 for c in row["test_nll"])
        assert row["train_s"][0]["mean"] <= row["train_s"][1]["mean"]
    diff = pace["flowforge_vs_best_peer"][1]
    rows = pace["libraries"]
    expected = rows["flowforge"]["test_nll"][1]["mean"] - rows["zuko"]["test_nll"][1]["mean"]
    assert diff["best_peer"] == "zuko" and diff["minus_best_peer"] == pytest.approx(expected)
    # the same seed gives the same model and batches: the runs repeat exactly
    again = run(peers, "realnvp2", "flowforge", *argv)["tasks"]["realnvp2"]["pace"]
    assert (
        again["libraries"]["flowforge"]["runs"]["test_nll"] == rows["flowforge"]["runs"]["test_nll"]
    )


def test_pace_options_are_checked(peers):
    with pytest.raises(SystemExit):
        peers.main(["--tasks", "maf8", "--libs", "ref", "--pace-steps", "0"])
    with pytest.raises(SystemExit):
        peers.main(["--tasks", "maf8", "--libs", "ref", "--data-scale", "-1"])


def test_unknown_task_is_named(peers):
    with pytest.raises(SystemExit):
        peers.main(["--tasks", "nope", "--libs", "ref"])


def test_made_sweep_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("made_sweep", HARNESS.with_name("made_sweep.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--batch", "16", "--rounds", "1", "--features", "3"])
    table = capsys.readouterr().out
    assert "| affine | 2 |" in table and "| spline, 8 bins | 23 |" in table


@pytest.mark.slow
def test_ab_options_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("ab_options", HARNESS.with_name("ab_options.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--rounds", "1", "--no-compile"])
    table = capsys.readouterr().out
    assert "| maf8 |" in table and "| realnvp8 |" in table
    assert "| resflow2 |" in table and "| resflow8 |" in table


def test_glow_nll_check_oracle_holds_for_both_libraries(capsys):
    pytest.importorskip("normflows", reason="the peer libraries come with the bench extra")
    spec = importlib.util.spec_from_file_location(
        "glow_nll_check", HARNESS.with_name("glow_nll_check.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gaps = module.check_oracle()
    assert set(gaps) == {"flowforge", "normflows", "normflows-exp"}
    assert all(g < 1e-8 for pair in gaps.values() for g in pair)


@pytest.mark.slow
def test_malloc_env_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("malloc_env", HARNESS.with_name("malloc_env.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--rounds", "1", "--reps", "1"])
    table = capsys.readouterr().out
    assert "| maf8 log_prob |" in table and "| realnvp8 step |" in table


def test_profile_eval_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location(
        "profile_eval", HARNESS.with_name("profile_eval.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.main(["--batch", "64", "--calls", "1", "--model", "maf8"])
    assert "aten::addmm" in table


def test_threads_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("threads_bench", HARNESS.with_name("threads.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--rounds", "1", "--steps", "1", "--loads", "0,1", "--models", "maf"]
    rows = module.main([*argv, "--max-load-seconds", "60"])
    assert [(r["load"], r["model"]) for r in rows] == [(0, "maf"), (1, "maf")]
    assert all(r["ms"][1] > 0 and r["ms"][2] > 0 and r["ratio"][2] > 0 for r in rows)
    table = capsys.readouterr().out
    assert "train.threads: 0 resolves to" in table and "| 1 | " in table


def test_tabular_panel_names_real_tables_and_renders_its_table(tmp_path):
    """The yardstick panel: at least 8 public tables, 3 conditional tasks, and a table that
    says each verdict (the panel itself is a benchmark: python benchmarks/tabular_panel.py)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tabular_panel.py"
    spec = importlib.util.spec_from_file_location("tabular_panel", path)
    panel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(panel)
    tables = {source for source, _, _ in panel.TASKS.values()}
    assert len(tables) >= 8
    assert sum(context is not None for _, context, _ in panel.TASKS.values()) >= 3
    row = {
        "task": "t|c", "options": "--context c", "features": 3, "rows": 40,
        "model": "nsf", "parameters": 1234, "steps": 600, "seconds": 5.0,
        "flow": [1.0, 0.1], "baselines": {k: [1.1, 0.1, "x"] for k in ("gaussian", "gmm", "kde")},
        "best": "gmm", "margin": [-0.1, 0.05], "verdict": "beats",
    }  # fmt: skip
    text = panel.markdown([row])
    assert "| t|c | `--context c` | 3 | 40 | nsf (1,234) | 1.000 ± 0.100 |" in text
    assert "-0.100 ± 0.050 (gmm) | **beats**" in text


def _jko_table():
    spec = importlib.util.spec_from_file_location("jko_table", HARNESS.with_name("jko_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_jko_table_matches_parameters_and_gives_the_jko_runs_time_to_the_others(tmp_path):
    table = _jko_table()
    for features in (2, 8):
        target = table.parameters("jko", table.JKO_WIDTH, features)
        for model in table.MODELS[1:]:
            count = table.parameters(model, table.matched_width(model, features), features)
            assert abs(count - target) <= 0.05 * target, (model, features, count, target)
    jko = table.config("moons", "jko", tmp_path, 7, 0.0)
    assert jko["train"]["steps"] == table.BLOCKS * 7 and jko["objective"]["steps_per_block"] == 7
    ffjord = table.config("gmm8", "ffjord-rnode", tmp_path, 7, 12.5)
    assert ffjord["train"]["max_seconds"] == 12.5 and ffjord["model"]["kinetic_energy"] > 0
    assert {c["train"]["schedule"] for c in (jko, ffjord)} == {"constant"}


@pytest.mark.slow
def test_jko_table_runs_and_writes_its_table(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    rows = _jko_table().main(
        [*argv, "--data", "moons", "--steps-per-block", "2", "--sizes", "256,64,64"]
    )
    assert [r["model"] for r in rows] == ["jko", "ffjord", "ffjord-rnode", "realnvp"]
    assert all(math.isfinite(r["test_nll"]) and r["transport"] >= 0 for r in rows)
    assert rows[0]["steps"] == 8
    text = (tmp_path / "results" / "jko-table.md").read_text()
    assert "| moons | jko |" in text and "| moons | realnvp |" in text
