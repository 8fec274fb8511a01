"""Sampling a run as a library call (flowforge.runs.sampling): the context of a conditional
run from --class and --context, the CSV header, and write_samples on a tiny trained run."""

import numpy as np
import pytest
import torch

from flowforge.config import ConfigError, parse_config
from flowforge.runs import train_run
from flowforge.runs.load import Run
from flowforge.runs.sampling import class_index, csv_header, sample_context, write_samples

# a run on a file conditioned on a categorical column (2 levels) and a numeric one
FILE_SPEC = {
    "event_shape": [2],
    "context_features": 3,
    "context_classes": 0,
    "names": {
        "features": ["bill", "flipper, mm"],
        "context": ["species=Adelie", "species=Gentoo", "mass"],
        "levels": {"species": ["Adelie", "Gentoo"]},
    },
}
# a class-conditional run whose one categorical column has numeric levels
CLASS_SPEC = {
    "event_shape": [2],
    "context_features": 3,
    "context_classes": 3,
    "names": {"context": ["k=1", "k=2", "k=5"], "levels": {"k": ["1", "2", "5"]}},
}
PLAIN = {"event_shape": [2], "context_features": 0, "context_classes": 0}


def test_class_index_takes_a_level_name_before_an_index():
    assert class_index(CLASS_SPEC, "5") == 2  # a level that is a number is the level
    assert class_index(CLASS_SPEC, "0") == 0  # not a level: an index
    assert class_index(CLASS_SPEC, None) is None and class_index(CLASS_SPEC, 1) == 1
    with pytest.raises(ConfigError, match="'x' is not a level of 'k'; its levels: 1, 2, 5"):
        class_index(CLASS_SPEC, "x")
    with pytest.raises(ConfigError, match="should be a class index, got 'x'"):
        class_index(PLAIN, "x")


def test_a_class_is_one_hot_for_every_sample():
    c = sample_context(CLASS_SPEC, 4, 1, None)
    assert torch.equal(c, torch.tensor([[0.0, 1.0, 0.0]] * 4))
    with pytest.raises(ConfigError, match=r"one of 1, 2, 5 or in \[0, 3\), got 3"):
        sample_context(CLASS_SPEC, 4, 3, None)
    with pytest.raises(ConfigError, match="not class-conditional \\(it has no context\\)"):
        sample_context(PLAIN, 4, 0, None)
    with pytest.raises(ConfigError, match="its context is not a class label"):
        sample_context(FILE_SPEC, 4, 0, None)
    with pytest.raises(ConfigError, match="give --class or --context, not both"):
        sample_context(CLASS_SPEC, 4, 0, "1,0,0")


def test_a_context_per_column_encodes_level_names_and_numbers():
    c = sample_context(FILE_SPEC, 3, None, "Gentoo, 4.5")
    assert torch.equal(c, torch.tensor([[0.0, 1.0, 4.5]] * 3))
    with pytest.raises(ConfigError, match="'Emperor' is not a level of 'species'"):
        sample_context(FILE_SPEC, 3, None, "Emperor,4.5")
    with pytest.raises(ConfigError, match="'mass' takes a number, got 'heavy'"):
        sample_context(FILE_SPEC, 3, None, "Adelie,heavy")
    with pytest.raises(ConfigError, match=r"1 values per row, the model takes 2 \(species, mass\)"):
        sample_context(FILE_SPEC, 3, None, "Adelie")


def test_a_context_from_numbers_or_a_file_of_one_or_n_rows(tmp_path):
    spec = {**PLAIN, "context_features": 2}
    assert torch.equal(sample_context(spec, 2, None, "1,-2"), torch.tensor([[1.0, -2.0]] * 2))
    rows = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.save(tmp_path / "c.npy", rows)
    np.savetxt(tmp_path / "c.csv", rows, delimiter=",")
    for name in ("c.npy", "c.csv"):
        assert torch.equal(sample_context(spec, 2, None, str(tmp_path / name)), torch.tensor(rows))
    with pytest.raises(ConfigError, match=r"2 rows; give 1 or -n \(3\)"):
        sample_context(spec, 3, None, str(tmp_path / "c.npy"))
    with pytest.raises(ConfigError, match="file not found"):
        sample_context(spec, 2, None, str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="3 values per row, the model takes 2"):
        sample_context(spec, 2, None, "1,2,3")
    with pytest.raises(ConfigError, match="holds NaN or infinite values"):
        sample_context(spec, 2, None, "1,nan")
    with pytest.raises(ConfigError, match="comma-separated numbers or a .npy/.csv file"):
        sample_context(spec, 2, None, "a,b")
    with pytest.raises(ConfigError, match="give --context"):
        sample_context(spec, 2, None, None)
    with pytest.raises(ConfigError, match="this run's model is unconditional"):
        sample_context(PLAIN, 2, None, "1")
    assert sample_context(PLAIN, 2, None, None) is None


def test_the_csv_header_names_the_features_quoted_where_needed():
    assert csv_header(FILE_SPEC, 2) == 'bill,"flipper, mm"'
    assert csv_header(FILE_SPEC, 3) == "x0,x1,x2"  # names that do not fit are not used
    assert csv_header(PLAIN, 2) == "x0,x1"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    cfg = parse_config(
        {
            "name": "s",
            "output_dir": str(root),
            "data": {"name": "moons", "n_train": 256, "n_val": 64, "n_test": 64},
            "model": {"name": "realnvp", "couplings": 2, "hidden": [8]},
            "train": {"steps": 4, "batch_size": 64, "eval_every": 2},
        }
    )
    return train_run(cfg, progress=False, plots=False).run_dir


def test_write_samples_writes_npy_and_csv_from_the_seed(run_dir, tmp_path):
    written = write_samples(run_dir, n=5, temperature=0.5, seed=3)
    assert written.path == run_dir / "samples.npy" and written.shape == (2,)
    assert written.line() == f"wrote 5 samples of shape (2,) to {run_dir / 'samples.npy'}"
    x = np.load(written.path)
    assert x.shape == (5, 2) and np.isfinite(x).all()
    csv = write_samples(run_dir, n=5, temperature=0.5, seed=3, out=tmp_path / "s.csv").path
    lines = csv.read_text().splitlines()
    assert lines[0] == "x0,x1" and len(lines) == 6
    assert np.allclose(np.loadtxt(csv, delimiter=",", skiprows=1), x, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "-n: should be positive, got 0"),
        ({"temperature": 0.0}, "--temperature: should be positive"),
        ({"out": "s.txt"}, "--out: unknown format '.txt'"),
        ({"out": "s.png"}, "a PNG needs an image run"),
        ({"out": "{run}/config.yaml"}, "is the file config.yaml of the run"),
        ({"label": "1"}, "this run is not class-conditional"),
    ],
)
def test_write_samples_refuses_what_does_not_fit_the_run(run_dir, tmp_path, kwargs, message):
    kwargs = {k: v.format(run=run_dir) if isinstance(v, str) else v for k, v in kwargs.items()}
    if isinstance(kwargs.get("out"), str) and "/" not in kwargs["out"]:
        kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(ConfigError, match=message):
        write_samples(run_dir, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_samples_that_are_not_finite_are_refused_not_written(run_dir, tmp_path, monkeypatch):
    model = Run.model

    def broken(self, *args, **kwargs):
        flow = model(self, *args, **kwargs)
        flow.sample = lambda n, context=None, temperature=1.0: torch.full((n, 2), float("nan"))
        return flow

    monkeypatch.setattr(Run, "model", broken)
    with pytest.raises(ConfigError, match="8 values are not finite"):
        write_samples(run_dir, n=4, out=tmp_path / "s.npy")
    assert not (tmp_path / "s.npy").exists()
