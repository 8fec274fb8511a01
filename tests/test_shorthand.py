"""The command line's short forms as library calls (flowforge.runs.shorthand): the config
``flowforge train`` trains, the ``--data`` short form with ``--set`` overrides, ``fit-target``
and the options that stand for config keys."""

import numpy as np
import pytest

from flowforge.config import ConfigError
from flowforge.runs.shorthand import (
    data_file_run_config,
    fit_target_run_config,
    option_overrides,
    train_config,
)

pytestmark = pytest.mark.filterwarnings("ignore::flowforge.data.columns.DataWarning")


def test_options_stand_for_config_keys_after_the_sets():
    assert option_overrides(["a.b=1"]) == ["a.b=1"]
    assert option_overrides(None, "cuda", True, 30.0, 2) == [
        "device=cuda",
        "train.compile=true",
        "train.max_seconds=30.0",
        "train.threads=2",
    ]
    assert option_overrides(["x=1"], threads=0) == ["x=1", "train.threads=0"]  # 0 is given
    assert option_overrides(None, compile="false") == ["train.compile=false"]  # --no-compile


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.normal(size=200), rng.normal(size=200), rng.integers(0, 3, 200)])
    path = tmp_path / "t.csv"
    np.savetxt(path, rows, delimiter=",", header="a,b,k", comments="", fmt="%.6g")
    return path


def test_train_config_reads_a_config_file_or_the_data_short_form(table, tmp_path, monkeypatch):
    assert train_config(None, None, ["train.steps=7"]).train.steps == 7  # the default config
    monkeypatch.chdir(tmp_path)
    cfg = train_config(None, "t.csv", ["train.steps=9"], "maf", ["k"])
    assert cfg.model.name == "maf" and cfg.train.steps == 9
    assert cfg.data.options["path"] == str(table.resolve())
    with pytest.raises(ConfigError, match="give CONFIG or --data FILE, not both"):
        train_config("c.yaml", "t.csv")
    with pytest.raises(ConfigError, match="--model, --context, --features and --drop-na go"):
        train_config(None, None, model="maf")


def test_the_data_short_form_takes_data_options_from_the_sets(table, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test.csv").write_text("\n".join(table.read_text().splitlines()[:51]) + "\n")
    sets = ["data.context=[k]", "data.test_path=test.csv"]
    cfg = data_file_run_config("t.csv", sets)
    assert cfg.data.options["context"] == ["k"] and cfg.data.n_test == 50
    assert cfg.data.options["test_path"] == str((tmp_path / "test.csv").resolve())  # absolute
    cfg = data_file_run_config("t.csv", ["data.context=[k]"], context=["a"], features=["b"])
    assert cfg.data.options["context"] == ["k"]  # a --set is applied last: it wins
    assert cfg.data.options["features"] == ["b"]


def test_fit_target_splits_recipe_options_from_config_keys():
    cfg = fit_target_run_config("U1", "planar", ["layers=3", "train.lr=0.01"], steps=20)
    assert cfg.model.options["layers"] == 3 and cfg.train.lr == 0.01 and cfg.train.steps == 20
    assert cfg.objective.name == "reverse_kl" and cfg.name == "vi-U1-planar"
    assert fit_target_run_config("U1", anneal=50).objective.options["anneal"] == 50
