"""Experiment logs: TensorBoard event files read back, and the adapter point for other
backends."""

import pytest

from flowforge.config import ConfigError, parse_config
from flowforge.runs import train_run
from flowforge.train.loggers import LOGGERS, register_logger

pytest.importorskip("tensorboard", reason="tensorboard is in the test extra")


def _config(tmp_path, log, **sections):
    raw = {
        "name": "logged",
        "output_dir": str(tmp_path),
        "data": {"name": "moons", "n_train": 512, "n_val": 128, "n_test": 128},
        "model": {"name": "realnvp", "couplings": 2, "hidden": [8]},
        "train": {"steps": 20, "batch_size": 64, "eval_every": 5, "log": log},
    }
    return parse_config({**raw, **sections})


def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    return events


def test_tensorboard_scalars_and_histograms_are_written_and_read_back(tmp_path):
    run = train_run(_config(tmp_path, {"tensorboard": True}), progress=False, plots=False)
    events = _events(run.run_dir / "tensorboard")
    tags = events.Tags()
    val = events.Scalars("val_nll")
    assert [e.step for e in val] == [5, 10, 15, 20]
    records = [r for r in run.run_dir.joinpath("metrics.jsonl").read_text().splitlines()]
    import json

    assert [e.value for e in val] == pytest.approx([json.loads(r)["val_nll"] for r in records])
    assert {"train_nll", "lr"} <= set(tags["scalars"])
    assert any("couplings" in t or "transform" in t for t in tags["histograms"])


def test_tensorboard_images_of_an_image_model(tmp_path):
    cfg = _config(
        tmp_path,
        {"tensorboard": {"histograms": False}},
        data={"name": "digits-image", "n_train": 256, "n_val": 64, "n_test": 64},
        model={"name": "glow", "scales": 1, "depth": 1, "hidden_channels": 8, "levels": 17},
    )
    cfg.train.steps, cfg.train.eval_every, cfg.train.batch_size = 4, 4, 32
    run = train_run(cfg, progress=False, plots=False)
    events = _events(run.run_dir / "tensorboard")
    assert events.Tags()["images"] == ["samples_T0.7"] and not events.Tags()["histograms"]


def test_another_backend_plugs_in_without_touching_the_trainer(tmp_path):
    seen = []

    class Recorder:
        def __init__(self, log_dir, prefix=""):
            self.prefix = prefix

        def log_evaluation(self, step, record, model):
            seen.append((self.prefix, step, record["val_nll"]))

        def close(self):
            seen.append("closed")

    register_logger("recorder")(Recorder)
    try:
        cfg = _config(tmp_path, {"recorder": {"prefix": "x"}})
        train_run(cfg, progress=False, plots=False)
        assert [s[1] for s in seen[:-1]] == [5, 10, 15, 20] and seen[-1] == "closed"
        with pytest.raises(ConfigError, match="train.log.recorder: .*unexpected keyword"):
            train_run(_config(tmp_path / "y", {"recorder": {"nope": 1}}), progress=False)
        assert not (tmp_path / "y").exists()  # refused before any directory
    finally:
        del LOGGERS["recorder"]
    with pytest.raises(ConfigError, match="train.log.mlflow: unknown logger"):
        train_run(_config(tmp_path / "x", {"mlflow": True}), progress=False)
    assert not (tmp_path / "x").exists()
