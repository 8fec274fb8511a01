"""``flowforge compare``: several objectives on the same data, 3 seeds, one report; a diverged
baseline is reported, not dropped."""

import json
from pathlib import Path

import pytest
import yaml

import flowforge.compare as compare
from flowforge.cli import main
from flowforge.config import ConfigError
from flowforge.train.trainer import TrainingDiverged

TINY = {
    "name": "tiny",
    "seeds": [0, 1, 2],
    "samples": 200,
    "data": {"name": "8gaussians", "n_train": 512, "n_val": 128, "n_test": 256},
    "train": {"steps": 10, "batch_size": 64, "eval_every": 5},
    "models": [
        {"label": "flow", "model": {"name": "realnvp", "couplings": 2, "hidden": [8]}},
        {
            "label": "vae",
            "objective": {"name": "iwae", "k": 2, "eval_k": 4, "eval_n": 64},
            "model": {"name": "vae", "latent": 2, "hidden": [8], "likelihood": "gaussian"},
        },
        {
            "label": "gan",
            "objective": {"name": "gan", "val_n": 64, "eval_n": 128},
            "model": {"name": "gan", "hidden": [8]},
        },
        {"label": "broken", "model": {"name": "realnvp", "couplings": 2, "hidden": [8]}},
    ],
}


def test_compare_writes_one_report_and_keeps_a_diverged_model(tmp_path, monkeypatch, capsys):
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(TINY))
    real = compare.train_run

    def train_run(cfg, **kwargs):
        if cfg.name.startswith("broken"):
            raise TrainingDiverged("non-finite loss in 10 consecutive steps at step 3")
        return real(cfg, **kwargs)

    monkeypatch.setattr(compare, "train_run", train_run)
    out = tmp_path / "report"
    assert main(["compare", str(path), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {r["label"]: r for r in report["models"]}
    assert rows["flow"]["nll_kind"] == "exact" and rows["flow"]["test_nll"]["n"] == 3
    assert rows["flow"]["latent_inference"] == "exact inverse"
    assert rows["vae"]["nll_kind"] == "IWAE bound, k=4"
    assert rows["vae"]["latent_inference"] == "encoder q(z|x)"
    assert rows["gan"]["nll_kind"] == "none" and rows["gan"]["test_nll"] is None
    assert rows["gan"]["latent_inference"] == "none"
    for label in ("flow", "vae", "gan"):
        assert rows[label]["diverged"] == 0
        assert {"mean", "sd"} <= set(rows[label]["mmd"]) and rows[label]["modes"] == 8
        assert rows[label]["samples_per_second"]["mean"] > 0
    assert rows["broken"]["diverged"] == 3 and rows["broken"]["runs"] == 3
    assert len(report["runs"]) == 12
    table = (out / "report.md").read_text()
    assert "| broken | mle | diverged |" in table and "IWAE bound, k=4" in table
    assert "encoder q(z\\|x)" in table  # a pipe inside a cell is escaped
    assert (out / "samples.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0


def test_a_comparison_needs_three_seeds_and_a_shared_budget(tmp_path):
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump({**TINY, "seeds": [0, 1]}))
    with pytest.raises(ConfigError, match="at least 3"):
        compare.load_comparison(path)
    models = [{**TINY["models"][0], "train": {"steps": 99}}]
    path.write_text(yaml.safe_dump({**TINY, "models": models}))
    with pytest.raises(ConfigError, match="budget"):
        compare.load_comparison(path)


SHIPPED = Path(__file__).parents[1] / "configs" / "compare"


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.glob("*.yaml")))
def test_the_shipped_comparisons_are_valid(name):
    cmp = compare.load_comparison(SHIPPED / name)
    assert len(cmp.seeds) >= 3 and len(cmp.models) >= 4
