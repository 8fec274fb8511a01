"""Fuzzing the command line: random arguments and random configs never give a bare traceback.

Every outcome is a success (0), a one-line user error (2), or argparse's usage error (2).
Configs are mutations of a tiny valid one, so the runs that do start take a few steps.
"""

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowforge.cli import main

TOKENS = [
    "train",
    "eval",
    "sample",
    "check",
    "list",
    "--set",
    "--resume",
    "--device",
    "-n",
    "--temperature",
    "--split",
    "--quiet",
    "--out",
    "test",
    "val",
    "cpu",
    "cuda",
    "0",
    "-1",
    "nan",
    "1e9",
    "train.lr=",
    "train.steps=0",
    "model.name=nope",
    "x=y",
    "=",
    "..",
    "",
    "configs/realnvp-parabola.yaml",
    "missing.yaml",
    "runs/none",
    "--debugx",
]

BASE = {
    "name": "fuzz",
    "data": {"name": "moons", "n_train": 64, "n_val": 16, "n_test": 16},
    "model": {"name": "realnvp", "couplings": 2, "hidden": [4]},
    "train": {"steps": 2, "batch_size": 16, "eval_every": 1},
}
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.lists(st.integers(-2, 40), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
PATHS = st.sampled_from(
    [
        "name",
        "seed",
        "device",
        "data.name",
        "data.n_train",
        "data.n_test",
        "data.extra",
        "model.name",
        "model.couplings",
        "model.hidden",
        "model.mask",
        "model.bogus",
        "train.steps",
        "train.lr",
        "train.batch_size",
        "train.schedule",
        "train.grad_clip",
        "train.eval_every",
        "train",
        "model",
        "extra",
    ]
)


def _outcome(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2 and err:
        assert err.startswith(("error:", "usage:")), err


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=st.lists(st.sampled_from(TOKENS), max_size=5))
def test_random_arguments(argv, capsys, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("fuzz-args"))
    if argv[:1] == ["check"]:
        argv = [*argv[:1], "elementwise/affine"]  # keep the conformance run short
    if argv[:1] == ["train"]:
        argv = [
            *argv,
            "--set",
            "train.steps=1",
            "--set",
            "data.n_train=32",
            "--set",
            "data.n_val=8",
            "--set",
            "data.n_test=8",
            "--quiet",
        ]
    _outcome(capsys, argv)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(st.tuples(PATHS, VALUES), min_size=1, max_size=3))
def test_random_configs(edits, capsys, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-config")
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in edits:
        keys = path.split(".")
        node = raw
        for k in keys[:-1]:
            node = node if not isinstance(node.get(k), dict) else node[k]
        node[keys[-1]] = value
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    _outcome(capsys, ["train", str(path), "--quiet", "--set", f"output_dir={root / 'runs'}"])
