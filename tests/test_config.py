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
        (
            {"train": {"optimizer": "sgd"}},
            r"train.optimizer: should be one of \['adamw', 'adam', 'rmsprop'\], got 'sgd'",
        ),
        ({"train": {"betas": [0.5, 1.0]}}, r"train.betas: should be \[beta1, beta2\], each in"),
        ({"train": {"betas": [0.5]}}, r"train.betas: should be \[beta1, beta2\]"),
        ({"train": {"betas": 0.5}}, r"train.betas: should be list\[float\] \| None"),
        ({"train": {"momentum": 0.9}}, r"train.momentum: only for train.optimizer rmsprop"),
        (
            {"train": {"optimizer": "rmsprop", "betas": [0.5, 0.9]}},
            r"train.betas: only for train.optimizer adam or adamw, not 'rmsprop'",
        ),
        ({"train": {"optimizer": "rmsprop", "momentum": 1.0}}, r"train.momentum: should be in"),
        ({"train": {"optimizer": "rmsprop", "alpha": 0.0}}, r"train.alpha: should be in \(0, 1\)"),
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


# -- bounded YAML and bounded messages (issue 19, item 8) ------------------------------------


def _alias_bomb(levels=9):
    """A "billion laughs" flow sequence: ``levels`` anchors, each nine aliases of the last,
    so a few hundred bytes stand for 9**levels strings."""
    names = "abcdefghijklmnopqrstuvwxyz"[:levels]
    parts = ["&a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, cur in zip(names[:-1], names[1:], strict=True):
        parts.append(f"&{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "[" + ", ".join(parts) + "]"


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message and len(message) < 300, message
    return message


def test_alias_bomb_in_a_config_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(f"train:\n  lr: {_alias_bomb()}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert _one_line(error).startswith(f"{path}: refused: the YAML expands to more than")


def test_alias_bomb_in_a_set_value_is_refused_in_one_line():
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"train.lr={_alias_bomb()}"])
    assert "--set 'train.lr=[&a [lol" in _one_line(error)
    assert "value: refused: the YAML expands to more than" in str(error.value)


def test_shared_structure_is_refused_and_printed_in_bounded_length():
    """A mapping built in Python (or read by another YAML reader) with one list shared 9**9
    times: the deep copy in apply_overrides refuses it, and a message prints 80 characters."""
    bomb = ["lol"] * 9
    for _ in range(8):
        bomb = [bomb] * 9
    with pytest.raises(ConfigError, match="config: refused: the YAML expands"):
        apply_overrides({"train": {"lr": bomb}}, [])
    with pytest.raises(ConfigError) as error:
        parse_config({"train": {"lr": bomb}})
    assert _one_line(error).startswith("train.lr: should be float, got [[[[[[[[['lol', 'lol'")
    assert str(error.value).endswith("...")
    with pytest.raises(ConfigError) as error:
        parse_config({"name": "/" * 10**6})
    assert len(_one_line(error)) < 150


@pytest.mark.parametrize(
    "text, message",
    [
        ("&a [*a]", "refused: the YAML an alias refers to a node that contains it"),
        ("[" * 5000 + "]" * 5000, "refused: the YAML is nested too deeply"),
        ("train: [unclosed\n", "not valid YAML: while parsing"),
    ],
)
def test_other_hostile_yaml_is_a_one_line_error(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    _one_line(error)


def test_registered_names_are_what_flowforge_list_prints():
    from flowforge.config import registered_names
    from flowforge.models import MODELS

    names = registered_names()
    assert list(names) == ["objectives", "models", "data sets", "targets"]
    assert names["models"] == sorted(MODELS) and "mle" in names["objectives"]
    assert "moons" in names["data sets"] and "U1" in names["targets"]
