"""No noise: a plain ``flowforge train --data FILE`` (figures included) and ``flowforge sample``
print no warning the user cannot act on; none at all on a clean file."""

import warnings

import numpy as np
import pytest

from flowforge.cli import main


@pytest.fixture
def table(tmp_path):
    """A clean continuous table: 240 rows, 3 columns of full-precision values."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((240, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0, 0, 1]])
    path = tmp_path / "clean.csv"
    np.savetxt(path, x, delimiter=",", header="a,b,c", comments="", fmt="%.9g")
    return path


@pytest.mark.parametrize("model", ["nsf", "maf"])  # autoregressive: sampling is the slow way
def test_train_and_sample_print_no_warning(table, tmp_path, capsys, model):
    out = tmp_path / "runs"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(
            ["train", "--data", str(table), "--model", model, "--quiet"]
            + ["--set", "train.steps=4", "--set", f"output_dir={out}"]
        )
        assert code == 0
        assert list((out / "clean" / "plots").glob("*.png"))  # the figures sample the flow
        assert main(["sample", str(out / "clean"), "-n", "50"]) == 0
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    err = capsys.readouterr().err
    assert "Warning" not in err and "warning" not in err
