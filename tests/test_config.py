"""Configs are validated before any work, with errors that name the field."""

import pytest

from flowforge.config import ConfigError, RunConfig, apply_overrides, load_config, parse_config


def test_defaults_are_the_classic_experiment():
    cfg = load_config(None)
    assert (cfg.model.name, cfg.data.name) == ("realnvp", "parabola")
    assert cfg.model.options == {"couplings": 5, "hidden": [32, 32]}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"trian": {}}, r"trian: unknown key"),
        ({"train": {"lr": "fast"}}, r"train.lr: should be float"),
        ({"train": {"lr": -1}}, r"train.lr: should be positive"),
        ({"train": {"steps": 1.5}}, r"train.steps: should be int"),
        ({"train": {"schedule": "linear"}}, r"train.schedule: should be one of"),
        ({"train": {"patience": -2}}, r"train.patience: should be >= 0"),
        ({"data": {"name": "nope"}}, r"data.name: unknown data set 'nope'; choose one of"),
        ({"data": {"n_test": 0}}, r"data.n_test: should be positive"),
        ({"data": {"noise": 1}}, r"data.noise: unknown option"),
        ({"model": {"name": "glowy"}}, r"model.name: unknown model 'glowy'"),
        ({"model": {"name": "realnvp", "hiden": [3]}}, r"model.hiden: unknown option .* allowed"),
        ({"model": {"name": "realnvp", "couplings": "five"}}, r"model.couplings: should be int"),
        ({"model": {"name": "nice", "hidden": ["a"]}}, r"model.hidden: should be Sequence\[int\]"),
        ({"device": "tpu"}, r"device: should be"),
        ({"name": "../escape"}, r"name: should be a plain directory name"),
        ({"train": []}, r"train: should be a mapping"),
    ],
)
def test_bad_configs_name_the_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_overrides_parse_yaml_values():
    raw = apply_overrides({}, ["train.lr=3e-4", "model.hidden=[8, 8]", "name=x"])
    assert raw == {"train": {"lr": "3e-4"}, "model": {"hidden": [8, 8]}, "name": "x"}
    assert parse_config(raw).train.lr == 3e-4  # YAML 1.1 reads 3e-4 as a string
    optional = apply_overrides({}, ["model.name=realnvp", "model.scale_bound=5e-1"])
    assert parse_config(optional).model.options["scale_bound"] == 0.5  # float | None
    optional = apply_overrides({}, ["model.name=realnvp", "model.scale_bound=null"])
    assert parse_config(optional).model.options["scale_bound"] is None
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.lr"])


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_round_trip_through_dict():
    cfg = parse_config({"model": {"name": "nice", "couplings": 6}, "train": {"lr": 1}})
    again = parse_config(cfg.to_dict())
    assert again == cfg and isinstance(again.train.lr, float)
    assert isinstance(RunConfig().to_dict()["model"]["hidden"], list)


def test_every_shipped_config_is_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))
    assert configs, "configs/ should hold the example experiments"
    for path in configs:  # one schema for every objective
        if path.parent.name == "compare":  # comparisons of several runs: tests/test_compare.py
            continue
        load_config(path)
