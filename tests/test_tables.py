"""Tables as they come: text columns, categorical contexts, missing values, separate split
files, columns that break a continuous density, and names that travel to the run, the
checkpoint and the samples' header."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from flowforge.cli import main
from flowforge.config import ConfigError, parse_config
from flowforge.data import columns
from flowforge.data.columns import DataWarning
from flowforge.data.files import load_file
from flowforge.runs import load, open_run, train_run
from flowforge.runs.shorthand import data_file_config

SPECIES = ["Gentoo", "Adelie", "Chinstrap"]  # not sorted: the levels come out sorted


def animals(n=60, seed=0):
    """A small table as a user has it: an id column, two text columns, two measurements."""
    rng = np.random.default_rng(seed)
    species = rng.choice(SPECIES, n)
    k = np.array([SPECIES.index(s) for s in species])
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "species": species,
            "island": rng.choice(["Biscoe", "Dream"], n),
            "bill": 40 + 3 * k + rng.standard_normal(n),
            "mass": 3500 + 400 * k + 100 * rng.standard_normal(n),
        }
    )


def write(frame, path):
    frame.to_csv(path, index=False)
    return str(path)


def loaded(*args, **kwargs):
    """``load_file(*args, **kwargs)`` and the text of the data warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load_file(*args, **kwargs)
    return splits, " | ".join(str(w.message) for w in caught if w.category is DataWarning)


def test_text_and_index_columns_are_left_out_of_the_default_features_with_a_warning(tmp_path):
    path = write(animals(), tmp_path / "a.csv")
    splits, said = loaded(40, 10, 10, path=path)
    assert splits.info["features"] == ["bill", "mass"] and splits.train.shape == (40, 2)
    assert splits.info["left_out"] == {
        "id": "row index: strictly increasing in file order",
        "species": "text",
        "island": "text",
    }
    assert "'species', 'island' are not numeric and are left out of the features" in said
    assert "--context species" in said and "--features bill,mass" in said
    assert "'id' look like a row index (strictly increasing in file order)" in said


def test_features_are_chosen_by_name_before_anything_is_parsed(tmp_path):
    path = write(animals(), tmp_path / "a.csv")
    splits, said = loaded(40, 10, 10, path=path, features=["mass", "id"])
    assert splits.info["features"] == ["mass", "id"]  # named: kept, with a warning
    assert "feature 'id' looks like a row index" in said and "not numeric" not in said
    with pytest.raises(ValueError, match=r"column 'species' is not numeric: data row 1 .*"):
        load_file(40, 10, 10, path=path, features=["bill", "species"])
    with pytest.raises(ValueError, match=r"categorical context \(--context species\)"):
        load_file(40, 10, 10, path=path, features=["bill", "species"])


def test_a_text_context_is_one_hot_with_its_levels_sorted(tmp_path):
    path = write(animals(), tmp_path / "a.csv")
    splits, _ = loaded(40, 10, 10, path=path, context=["species"])
    levels = sorted(SPECIES)
    assert splits.info["levels"] == {"species": levels}
    assert splits.info["context"] == [f"species={s}" for s in levels]
    assert splits.context_classes == 3 and splits.train_context.shape == (40, 3)
    for split in ("train", "val", "test"):
        c = getattr(splits, f"{split}_context")
        assert bool((c.sum(1) == 1).all())
    frame = animals()  # each training row's level is the species of its row in the file
    bills = frame["bill"].to_numpy()
    rows = [int(np.abs(bills - float(b)).argmin()) for b in splits.train[:, 0]]
    chosen = [levels[i] for i in splits.train_context.argmax(1).tolist()]
    assert chosen == frame["species"].to_numpy()[rows].tolist()


def test_an_integer_context_of_few_levels_is_a_category_unless_told(tmp_path):
    frame = animals()
    frame["year"] = 2007 + np.arange(len(frame)) % 3
    path = write(frame, tmp_path / "a.csv")
    splits, said = loaded(40, 10, 10, path=path, context=["year", "bill"])
    assert splits.info["levels"] == {"year": ["2007", "2008", "2009"]}
    assert splits.info["context"] == ["year=2007", "year=2008", "year=2009", "bill"]
    assert splits.context_classes == 0  # two context columns: no single class label
    assert "'year' hold few integer levels and are one-hot encoded" in said
    splits, _ = loaded(40, 10, 10, path=path, context=["year"], categorical=[])
    assert splits.info["context"] == ["year"] and splits.train_context.shape == (40, 1)
    with pytest.raises(ValueError, match=r"column\(s\) 'species' hold text; list them in"):
        load_file(40, 10, 10, path=path, context=["species"], categorical=[])


def test_a_level_unseen_in_training_is_an_error(tmp_path):
    frame = animals()
    path = write(frame[frame["species"] != "Gentoo"], tmp_path / "train.csv")
    test = write(frame[frame["species"] == "Gentoo"], tmp_path / "test.csv")
    with pytest.raises(ValueError, match=r"level\(s\) 'Gentoo' in the test split but not in"):
        load_file(30, 5, 5, path=path, test_path=test, context=["species"])


def test_drop_na_sizes_the_splits_after_dropping_and_says_how_many(tmp_path, monkeypatch):
    frame = animals(50)
    frame.loc[3, "bill"] = np.nan
    frame.loc[7, "species"] = None  # missing in a text context column: missing too
    path = write(frame, tmp_path / "na.csv")
    with pytest.raises(Exception, match=r"1 rows hold missing.*--drop-na"):
        data_file_config(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = data_file_config(path, context=["species"], drop_na=True)
    said = " | ".join(str(w.message) for w in caught)
    assert "dropped 2 of 50 rows with missing, NaN or infinite values" in said
    assert "data rows 4, 8; by column: bill 1, species 1" in said
    d = raw["data"]
    assert (d["n_train"], d["n_val"], d["n_test"], d["drop_nonfinite"]) == (40, 4, 4, True)
    splits, _ = loaded(d["n_train"], d["n_val"], d["n_test"], **_options(d))
    assert splits.info["dropped_rows"] == 2
    assert bool(torch.isfinite(splits.train).all()) and splits.train.shape == (40, 2)


def test_set_data_keys_size_the_short_form_and_paths_are_resolved(tmp_path, monkeypatch):
    import flowforge.runs

    class Started(Exception):
        pass

    def start(cfg, progress):
        seen.append(cfg.data)
        raise Started

    seen = []
    monkeypatch.setattr(flowforge.runs, "train_run", start)
    monkeypatch.chdir(tmp_path)
    frame = animals(50)
    frame.loc[3, "bill"] = np.nan
    write(frame, tmp_path / "na.csv")
    write(frame[40:].dropna(), tmp_path / "t.csv")
    argv = ["train", "--data", "na.csv", "--set", "data.drop_nonfinite=true"]
    with pytest.raises(Started):
        main([*argv, "--set", "data.features=[bill]", "--set", "data.test_path=t.csv"])
    d = seen[0]  # the test rows are t.csv's ten; the main file's 49 are train and val
    assert (d.n_train, d.n_val, d.n_test) == (45, 4, 10) and d.options["features"] == ["bill"]
    assert d.options["test_path"] == str(tmp_path.resolve() / "t.csv")
    assert d.options["path"] == str(tmp_path.resolve() / "na.csv")


def _options(data):
    return {k: v for k, v in data.items() if k not in ("name", "n_train", "n_val", "n_test")}


def test_separate_split_files_use_all_their_rows_and_are_recorded_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = animals(90)[["bill", "mass"]]
    write(frame[:50], tmp_path / "train.csv")
    write(frame[50:63], tmp_path / "val.csv")
    write(frame[63:], tmp_path / "test.csv")
    splits, said = loaded(
        1000, 1000, 1000, path="train.csv", val_path="val.csv", test_path="test.csv"
    )
    assert [len(splits.train), len(splits.val), len(splits.test)] == [50, 13, 27]
    assert splits.info["rows"] == {"train": 50, "val": 13, "test": 27} and not said
    for key, name in (("path", "train"), ("val_path", "val"), ("test_path", "test")):
        assert splits.info[key] == str(tmp_path.resolve() / f"{name}.csv")
    splits, said = loaded(40, 5, 1000, path="train.csv", test_path="test.csv")
    assert [len(splits.train), len(splits.val), len(splits.test)] == [40, 5, 27]
    assert "train.csv: 5 of its 50 usable rows are in no split (n_train + n_val = 45)" in said


def test_grid_and_index_finders():
    mass = np.array([3750.0, 3800, 3250, 3625, 3450, 3750, 3800, 3250, 3625, 3450])
    assert columns.grid_step(mass) == 25
    tenths = np.array([39.1, 39.5, 40.3, 36.7, 39.3, 38.9, 39.2, 34.1, 42.0, 37.8])
    assert columns.grid_step(tenths) == pytest.approx(0.1)
    assert columns.grid_step(tenths.astype(np.float32), eps=float(np.finfo(np.float32).eps))
    assert columns.grid_step(np.random.default_rng(0).standard_normal(50)) is None
    assert columns.index_like(np.arange(1.0, 21)) == "strictly increasing"
    shuffled = np.random.default_rng(0).permutation(np.arange(20.0))
    assert columns.index_like(shuffled) == "every integer from its minimum to its maximum once"
    ties = np.sort(np.round(np.random.default_rng(0).normal(0, 3, 40)))  # sorted by a value
    assert columns.index_like(ties) is None
    assert columns.index_like(np.random.default_rng(0).normal(0, 3, 40)) is None
    measured = np.sort(np.random.default_rng(1).normal(0, 3, 40))  # a file sorted by a measure
    assert columns.index_like(measured) is None
    rows, counts = columns.extreme_rows(np.array([[0.0, 1], [1, 2], [2, 3], [3, 4], [1000, 5]]))
    assert rows.tolist() == [False, False, False, False, True] and counts == [1, 0]


def test_rounded_columns_are_dequantised_with_fixed_noise(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "smooth": rng.standard_normal(200),
            "rounded": np.round(rng.normal(100, 20, 200)),  # step 1, about 70 values
            "coarse": 25 * np.round(rng.normal(140, 10, 200)),  # step 25
        }
    )
    path = write(frame, tmp_path / "r.csv")
    splits, said = loaded(150, 25, 25, path=path)
    assert splits.info["dequantized"] == {"rounded": 1.0, "coarse": 25.0}
    assert "rounded (step 1), coarse (step 25)" in said and "NLL is that of the dequantised" in said
    rows = torch.cat([splits.train, splits.val, splits.test]).double()
    for j, h in ((1, 1.0), (2, 25.0)):
        off = rows[:, j] - torch.round(rows[:, j] / h) * h
        assert float(off.abs().max()) <= h / 2 + 1e-3 and float(off.std()) > h / 5
    assert len(torch.unique(splits.train[:, 1])) == 150  # no spikes left
    again, _ = loaded(150, 25, 25, path=path)
    assert torch.equal(again.test, splits.test)  # the same noise: comparable evaluations
    plain, said = loaded(150, 25, 25, path=path, dequantize=False)
    assert "dequantized" not in plain.info and "set data.dequantize: auto" in said
    assert bool((plain.train[:, 1] == torch.round(plain.train[:, 1])).all())
    with pytest.raises(ValueError, match="data.dequantize: should be auto, true or false"):
        load_file(150, 25, 25, path=path, dequantize="yes")


def test_few_values_and_extreme_rows_are_named(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.standard_normal(100), "grade": rng.integers(0, 3, 100)})
    frame.loc[5, "x"] = 80.0  # a typo: 80 robust standard deviations out
    splits, said = loaded(80, 10, 10, path=write(frame, tmp_path / "f.csv"))
    assert "feature(s) with few distinct values: grade (3 values)" in said
    assert "--context grade" in said
    assert "1 of 100 rows lie beyond 10 robust standard deviations" in said
    assert "(by column: x 1)" in said and splits.info["extreme_rows"] == 1


def test_a_refused_file_makes_no_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    frame = animals(40)
    frame.loc[2, "mass"] = np.nan
    write(frame, tmp_path / "na.csv")
    write(frame[["species", "island"]], tmp_path / "text.csv")
    for argv, message in [
        (["train", "--data", "na.csv"], "1 rows hold missing"),
        (["train", "--data", "text.csv"], "no feature columns left"),
        (["train", "--data", "na.csv", "--drop-na", "--features", "bill,island"], "'island'"),
        (["train", "--features", "a"], "--features and --drop-na go with --data FILE"),
    ]:
        assert main([*argv, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err.splitlines()[-1] and err.splitlines()[-1].startswith("error:")
    cfg = {
        "name": "refused",
        "output_dir": str(tmp_path / "runs"),
        "data": {"name": "file", "path": "na.csv", "n_train": 30, "n_val": 5, "n_test": 5},
    }
    with pytest.raises(ConfigError, match="1 rows hold missing"):
        train_run(parse_config(cfg), progress=False)  # a config, not the short form
    assert not (tmp_path / "runs").exists()


def test_a_categorical_context_round_trip_through_class_names(tmp_path, monkeypatch, capsys):
    """``train --data --context species``, then ``sample --class Gentoo --out s.csv``: the
    names travel to the config, summary, checkpoint spec and the samples' header."""
    monkeypatch.chdir(tmp_path)
    frame = animals(80)
    frame.loc[10, "mass"] = np.nan
    write(frame, tmp_path / "animals.csv")
    argv = ["train", "--data", "animals.csv", "--context", "species", "--drop-na"]
    tiny = ["--model", "maf", "--set", "model.layers=1", "--set", "train.steps=5", "--quiet"]
    assert main([*argv, *tiny, "--set", "train.eval_every=5"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "dropped 1 of 80 rows" in err
    assert err.count("are not numeric and are left out") == 1  # once, though read twice
    run = tmp_path / "runs" / "animals"
    summary = json.loads((run / "summary.json").read_text())
    levels = sorted(SPECIES)
    assert summary["features"] == ["bill", "mass"]
    assert summary["context"] == [f"species={s}" for s in levels]
    spec = open_run(run).spec
    assert spec["names"] == {
        "features": ["bill", "mass"],
        "context": summary["context"],
        "levels": {"species": levels},
    }
    assert spec["context_classes"] == 3
    assert load(run).sample(3, torch.eye(3)).shape == (3, 2)  # the spec's extra key is ignored
    for label in ("Gentoo", "2"):  # a level name, or its index
        assert main(["sample", str(run), "-n", "7", "--class", label, "--out", "s.csv"]) == 0
        samples = pd.read_csv(tmp_path / "s.csv")
        assert list(samples.columns) == ["bill", "mass"] and samples.shape == (7, 2)
    assert main(["sample", str(run), "-n", "4", "--context", "Adelie", "--out", "s.npy"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 2)  # .npy: no header
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0  # the file is read again, its warnings not repeated
    assert "warning" not in capsys.readouterr().err
    for args, message in [
        (["--class", "Emperor"], "--class: 'Emperor' is not a level of 'species'; its levels: "),
        (["--context", "Emperor"], "'Emperor' is not a level of 'species'; its levels: Adelie"),
        (["--context", "Adelie,1"], "2 values per row, the model takes 1 (species)"),
    ]:
        assert main(["sample", str(run), *args]) == 2
        assert message in capsys.readouterr().err


def test_a_run_without_names_writes_a_generic_header(tmp_path):
    cfg = parse_config(
        {
            "name": "moons",
            "output_dir": str(tmp_path),
            "data": {"name": "moons", "n_train": 64, "n_val": 32, "n_test": 32},
            "model": {"name": "realnvp", "couplings": 1, "hidden": [4]},
            "train": {"steps": 2, "batch_size": 32, "eval_every": 2},
        }
    )
    run = train_run(cfg, progress=False, plots=False).run_dir
    assert "names" not in open_run(run).spec
    assert main(["sample", str(run), "-n", "3", "--out", str(tmp_path / "m.csv")]) == 0
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "x0,x1"


def test_data_warnings_are_shown_as_lines_once_each():
    import io
    import warnings

    from flowforge.data.columns import data_warnings_as_lines

    stream = io.StringIO()
    with data_warnings_as_lines(stream):
        warnings.simplefilter("always")
        for _ in range(2):
            warnings.warn("t.csv: 2 rows dropped", DataWarning, stacklevel=1)
        warnings.warn("t.csv: column c is constant", DataWarning, stacklevel=1)
        with pytest.warns(UserWarning, match="other"):
            warnings.warn("other", UserWarning, stacklevel=1)
    lines = ["warning: t.csv: 2 rows dropped", "warning: t.csv: column c is constant"]
    assert stream.getvalue().splitlines() == lines
