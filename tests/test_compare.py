"""``flowforge compare``: several objectives on the same data, 3 seeds, one report; a diverged
baseline is reported, not dropped."""

import json
from pathlib import Path

import pytest
import torch
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
    summary = json.loads((out / "runs" / "flow-seed0" / "summary.json").read_text())
    assert report["entropy"] == summary["entropy"]  # the test set's true NLL
    assert f"is {summary['entropy']:.4f} nats" in (out / "report.md").read_text()
    assert rows["flow"]["latent_inference"] == "exact inverse"
    assert rows["flow"]["steps"] == {"mean": 10, "sd": 0.0, "n": 3}
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


SHIPPED = sorted((Path(__file__).parents[1] / "configs" / "compare").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_the_shipped_comparisons_are_valid(path):
    cmp = compare.load_comparison(path)
    assert len(cmp.seeds) >= 3 and len(cmp.models) >= 4


def test_a_second_invocation_reuses_finished_runs_and_resumes_interrupted_ones(
    tmp_path, monkeypatch, capsys
):
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump({**TINY, "models": TINY["models"][:1]}))
    out = tmp_path / "report"
    assert main(["compare", str(path), "--out", str(out), "--quiet"]) == 0
    first = json.loads((out / "report.json").read_text())["runs"]
    runs = out / "runs"
    (runs / "flow-seed1" / "summary.json").unlink()  # as if killed after its last checkpoint
    older = yaml.safe_load((runs / "flow-seed0" / "config.yaml").read_text())
    del older["train"]["ema"]  # written before an option existed: its default compares equal
    (runs / "flow-seed0" / "config.yaml").write_text(yaml.safe_dump(older))
    calls = []
    real = compare.train_run

    def train_run(cfg, **kwargs):
        calls.append((cfg.name, kwargs.get("resume")))
        return real(cfg, **kwargs)

    monkeypatch.setattr(compare, "train_run", train_run)
    assert main(["compare", str(path), "--out", str(out), "--quiet"]) == 0
    assert calls == [("flow-seed1", runs / "flow-seed1")]
    assert sorted(p.name for p in runs.iterdir()) == ["flow-seed0", "flow-seed1", "flow-seed2"]
    again = json.loads((out / "report.json").read_text())["runs"]
    assert [r["test_nll"] for r in again] == [r["test_nll"] for r in first]

    changed = {**TINY, "models": TINY["models"][:1], "train": {**TINY["train"], "steps": 12}}
    path.write_text(yaml.safe_dump(changed))
    capsys.readouterr()
    assert main(["compare", str(path), "--out", str(out), "--quiet"]) == 2
    assert "holds a run of another config" in capsys.readouterr().err


@pytest.mark.parametrize("features", [2, 8, 49, 784])
def test_the_samples_figure_draws_vectors_of_any_size_and_square_images(tmp_path, features):
    from flowforge.viz.compare import plot_samples

    data = torch.rand(64, features)
    path = plot_samples({"model": torch.rand(64, features)}, data, tmp_path / "s.png")
    assert path.stat().st_size > 0


def test_the_table_has_image_columns_only_for_mnist_digits():
    """Rows as `summarise` makes them: FD and classes covered appear for binarized MNIST,
    with the shipped classifier and its test accuracy named; 8gaussians has no such column."""
    spread = {"mean": 1.0, "sd": 0.0, "n": 3}
    row = {"label": "vae", "objective": "elbo", "model": "vae", "runs": 3, "diverged": 0}
    row.update(nll_kind="exact", latent_inference="encoder q(z|x)", nll_stderr_per_run=[0.1])
    row.update({k: spread for k in compare.NUMBERS}, modes=None, classes=10)
    diverged = {"label": "gan", "objective": "gan", "model": "gan", "runs": 3, "diverged": 3}
    cmp = compare.Comparison(
        name="digits",
        data={"name": "binarized_mnist", "seed": 0},
        train={"steps": 5, "batch_size": 8},
        seeds=[0, 1, 2],
        models=[],
    )
    lines = compare.markdown(cmp, [row, diverged]).splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert "| FD | classes covered | largest class |" in header
    body = [line for line in lines if line.startswith("| vae") or line.startswith("| gan")]
    assert all(line.count(" | ") == header.count(" | ") for line in body)
    assert "| 1 ± 0 of 10 |" in body[0]
    _, meta = compare.load_digit_classifier()
    text = "\n".join(lines)
    assert "shipped MNIST classifier" in text
    assert f"{meta['test_accuracy_grey']:.2%}" in text

    cmp.data = {"name": "8gaussians", "seed": 0}
    toy = compare.markdown(cmp, [{**row, "modes": 8, "classes": None}]).splitlines()
    assert "FD" not in next(line for line in toy if line.startswith("| model"))
    assert "classifier" not in "\n".join(toy)


@pytest.mark.slow
def test_a_comparison_on_binarized_mnist_reports_the_image_measures(tmp_path, shared_data):
    """Three seeds of a tiny NADE and a tiny PixelCNN on 256 binarized MNIST images, a few
    steps: report.json carries FD and class coverage and names the classifier; the table shows
    them."""
    if not (shared_data / "mnist.npz").is_file():
        pytest.skip(f"binarized MNIST needs {shared_data / 'mnist.npz'}, which is absent")
    config = {
        "name": "tiny-digits",
        "seeds": [0, 1, 2],
        "samples": 200,
        "data": {"name": "binarized_mnist", "n_train": 256, "n_val": 64, "n_test": 200},
        "train": {"steps": 3, "batch_size": 32, "eval_every": 3},
        "models": [
            {
                "label": "nade",
                "objective": {"name": "likelihood"},
                "model": {"name": "nade", "hidden": 8},
            },
            {
                "label": "pixelcnn",
                "objective": {"name": "likelihood"},
                "model": {"name": "pixelcnn", "hidden": 2, "blocks": 1},
            },
        ],
    }
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(config))
    out = compare.run_comparison(compare.load_comparison(path), tmp_path / "report")
    report = json.loads((out / "report.json").read_text())
    assert [row["nll_kind"] for row in report["models"]] == ["exact", "exact"]
    for row in report["models"]:
        assert row["fd"]["n"] == 3 and row["fd"]["mean"] > 0 and row["classes"] == 10
        assert 0 <= row["classes_covered"]["mean"] <= 10
    assert report["digit_classifier"]["test_accuracy_binarized"] >= 0.98
    assert all(0 < r["classes_confidence"] <= 1 for r in report["runs"])
    assert "| FD | classes covered |" in (out / "report.md").read_text()


def test_an_interrupted_comparison_says_to_run_the_same_command_again(tmp_path, monkeypatch):
    from flowforge.train.trainer import TrainingInterrupted

    def train_run(cfg, **kwargs):
        raise TrainingInterrupted(
            "SIGINT received at step 3: checkpoint saved to x/last.pt. Resume with: flowforge "
            "train --resume x"
        )

    monkeypatch.setattr(compare, "train_run", train_run)
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump({**TINY, "models": TINY["models"][:1]}))
    with pytest.raises(TrainingInterrupted) as caught:
        compare.run_comparison(compare.load_comparison(path), tmp_path / "report")
    assert "checkpoint saved to x/last.pt. Continue the comparison with the same command" in str(
        caught.value
    )
    assert "flowforge train --resume" not in str(caught.value)
