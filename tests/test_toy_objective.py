"""An objective defined here alone, registered for the test, goes through every front end: it
trains, ``flowforge eval`` prints its results, the CLI's closing line, the report and
``flowforge compare`` show its headline with its error bar and kind, all read from its typed
results (flowforge.objectives.results); and no front end names an objective or checks a
model's or objective's class (they ask the objective and the model)."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import Tensor, nn

import flowforge
from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.flows import Flow
from flowforge.objectives import OBJECTIVES, Evaluation, Measure, Objective
from flowforge.objectives.base import eval_mode
from flowforge.report import write_report
from flowforge.runs import train_run
from flowforge.runs.evaluation import summary_line


class _NegativeLogProb(nn.Module):
    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, x: Tensor) -> Tensor:
        return -self.flow.log_prob(x)


class ToyScore(Objective):
    """A flow fitted by likelihood whose headline is a score of its own: the mean NLL under
    another name, stated as an ``estimate`` with its standard error and no NLL measure."""

    name = "toy_score"
    metric = "toy"
    model_type = Flow

    def model_inputs(self) -> dict:
        return {"event_shape": list(self.data.event_shape), "context_features": 0}

    def batch(self, step: int) -> tuple[Tensor, ...]:
        return (self.train_rows(step).to(self.setting.device),)

    def training_module(self, model: nn.Module) -> nn.Module:
        return _NegativeLogProb(model)  # type: ignore[arg-type]

    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        return terms.mean()

    def _score(self, model: nn.Module, split: str) -> tuple[float, float]:
        with torch.no_grad(), eval_mode(model):
            d = -model.log_prob(self.split_rows(split).to(self.setting.device)).double()
        return float(d.mean()), float(d.std() / math.sqrt(len(d)))

    def validate(self, model: nn.Module) -> dict:
        value, se = self._score(model, "val")
        return {"val_toy": value, "val_stderr": se}

    def scores(self, model: nn.Module, split: str = "test") -> dict:
        value, se = self._score(model, split)
        return {f"{split}_toy": value, f"{split}_toy_stderr": se}

    @classmethod
    def results(cls, numbers: dict, split: str = "test") -> Evaluation:
        score = Measure(
            f"{split} toy score",
            numbers[f"{split}_toy"],
            numbers[f"{split}_toy_stderr"],
            "nats",
            "estimate",
            "a toy rule",
        )
        return Evaluation(score, None, (), numbers)


DATA = {"name": "moons", "n_train": 256, "n_val": 64, "n_test": 128}
MODEL = {"name": "realnvp", "couplings": 2, "hidden": [8]}
TRAIN = {"steps": 6, "batch_size": 32, "eval_every": 3}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(OBJECTIVES, ToyScore.name, ToyScore)


def _headline(text: str) -> tuple[float, float]:
    """The value and the error bar of ``test toy score V ± S nats``."""
    m = re.search(r"test toy score (-?[0-9.]+) ± ([0-9.]+) nats", text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


def test_a_toy_objective_trains_evaluates_reports_and_compares(toy, tmp_path, capsys):
    cfg = parse_config(
        {
            "name": "toy",
            "output_dir": str(tmp_path / "runs"),
            "objective": {"name": ToyScore.name},
            "data": DATA,
            "model": MODEL,
            "train": TRAIN,
        }
    )
    run = train_run(cfg, progress=False, plots=False)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    h = summary["headline"]
    assert h["name"] == "test toy score" and h["kind"] == "estimate" and h["unit"] == "nats"
    assert (h["value"], h["stderr"]) == (summary["test_toy"], summary["test_toy_stderr"])
    assert math.isfinite(h["value"]) and h["stderr"] > 0
    assert summary["nll"] is None and summary["measures"] == []

    line = summary_line(summary)  # the CLI's closing line
    assert _headline(line) == pytest.approx((h["value"], h["stderr"]), abs=1e-4)
    assert "(a toy rule)" in line

    assert main(["eval", str(run.run_dir)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["headline"] == h
    assert _headline(out.err) == pytest.approx((h["value"], h["stderr"]), abs=1e-4)

    page = write_report([run.run_dir], tmp_path / "page.html").read_text()
    assert f'data-key="headline">{h["value"]:.6g}</span>' in page
    assert f'data-key="headline_stderr">{h["stderr"]:.6g}</span>' in page
    assert "test toy score" in page and "a toy rule" in page

    comparison = {
        "name": "toys",
        "seeds": [0, 1, 2],
        "samples": 64,
        "data": DATA,
        "train": TRAIN,
        "models": [{"label": "toy", "objective": {"name": ToyScore.name}, "model": MODEL}],
    }
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(comparison))
    assert main(["compare", str(path), "--out", str(tmp_path / "cmp"), "--quiet"]) == 0
    report = json.loads((tmp_path / "cmp" / "report.json").read_text())
    (row,) = report["models"]
    assert row["headline"]["name"] == "test toy score" and row["headline"]["kind"] == "estimate"
    assert row["headline_value"]["n"] == 3 and math.isfinite(row["headline_value"]["mean"])
    assert all(se > 0 for se in row["headline_stderr_per_run"])
    assert row["nll_kind"] == "none" and row["test_nll"] is None
    table = (tmp_path / "cmp" / "report.md").read_text()
    assert re.search(
        r"\| test toy score -?[0-9.]+ ± [0-9.e-]+ nats \(se [0-9.e-]+; a toy rule\) \|", table
    )


FRONT_ENDS = ["cli.py", "compare.py", "report", "runs/figures.py"]


def test_no_front_end_names_an_objective_or_checks_a_class():
    """The CLI, the comparison, the report and the run figures ask the objective and the
    model (their typed results, ``figures``, ``latent_inference``), never their names or
    classes."""
    root = Path(flowforge.__file__).parent
    files = [
        p
        for f in FRONT_ENDS
        for p in ([root / f] if f.endswith(".py") else (root / f).rglob("*.py"))
    ]
    names = "|".join(re.escape(n) for n in OBJECTIVES)
    objectives = "|".join(c.__name__ for c in OBJECTIVES.values())
    classes = f"Flow|VAE|GAN|RBM|DBM|NADE|PixelCNN|{objectives}"
    assert "ReverseKL" in classes and "MaximumLikelihood" in classes
    for path in files:
        text = path.read_text()
        assert not re.search(rf"""["']({names})["']""", text), path
        assert not re.search(rf"isinstance\([^)]*\b({classes})\b", text), path
        assert not re.search(rf"^from flowforge\S* import .*\b({objectives})\b", text, re.M), path
