"""A run's results as text (flowforge.runs.evaluation): evaluate_run, results_text and the
summary line ``flowforge train`` closes with."""

import json

import pytest
import torch

from flowforge.config import ConfigError, parse_config
from flowforge.objectives.results import read_evaluation
from flowforge.runs import train_run
from flowforge.runs.evaluation import evaluate_run, results_text, summary_line
from flowforge.runs.load import Run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = parse_config(
        {
            "name": "e",
            "output_dir": str(tmp_path_factory.mktemp("evaluation")),
            "data": {"name": "moons", "n_train": 128, "n_val": 32, "n_test": 64},
            "model": {"name": "realnvp", "couplings": 1, "hidden": [4]},
            "train": {"steps": 2, "batch_size": 32, "eval_every": 2},
        }
    )
    return train_run(cfg, progress=False, plots=False).run_dir


def test_evaluate_run_repeats_the_summarys_numbers(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    results = evaluate_run(run_dir)
    assert results.to_dict()["test_nll"] == summary["test_nll"]
    val = evaluate_run(run_dir, "val").to_dict()
    assert val["n_val"] == 32 and val["val_nll"] != summary["test_nll"]


def test_a_result_that_is_not_finite_is_refused(run_dir, monkeypatch):
    model = Run.model

    def broken(self, *args, **kwargs):
        flow = model(self, *args, **kwargs)
        with torch.no_grad():
            for p in flow.parameters():
                p.fill_(float("nan"))
        return flow

    monkeypatch.setattr(Run, "model", broken)
    with pytest.raises(ConfigError, match=r"eval .*: test_nll.* is not finite \(the model is"):
        evaluate_run(run_dir)


def test_the_summary_line_and_the_results_text(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    line = summary_line(summary)
    head = f"e: realnvp on moons (mle), 2 steps in {summary['train_seconds']:.1f} s: "
    assert line == head + read_evaluation(summary).line()
    assert results_text(None, {}) == "no test results in the summary"
    results = read_evaluation(summary)
    assert results_text(results, {}) == results.line()
    skipped, sentence = {"yardstick": {"skipped": "few rows"}}, "yardstick skipped: few rows"
    assert results_text(results, skipped) == results.line() + "\n" + sentence
    assert summary_line({**summary, **skipped}).endswith("\n" + sentence)
