"""Your own data: file data sets, the ``--data`` short form, named errors for bad files, and
densities in the file's own units."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.data.files import load_file, read_table
from flowforge.models import build_model, nsf
from flowforge.models.sizing import sized_options
from flowforge.runs import load, train_run

LOC, SCALE = np.array([1000.0, 0.0]), np.array([50.0, 5.0])


def mixture(n, seed=0):
    """Two Gaussians far from the origin in data units: component k has mean LOC + k (200, -10)
    and standard deviations SCALE."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 2, n)[:, None]
    return LOC + k * np.array([200.0, -10.0]) + SCALE * rng.standard_normal((n, 2))


def mixture_log_prob(x):
    x = torch.as_tensor(x, dtype=torch.float64)
    log_n = lambda m: (  # noqa: E731
        -0.5 * (((x - torch.as_tensor(m)) / torch.as_tensor(SCALE)) ** 2).sum(1)
        - torch.log(torch.as_tensor(SCALE)).sum()
        - math.log(2 * math.pi)
    )
    return torch.logaddexp(log_n(LOC), log_n(LOC + [200.0, -10.0])) - math.log(2)


def write_csv(path, values, header="a,b"):
    np.savetxt(path, values, delimiter=",", header=header, comments="")
    return path


def test_standardisation_sits_in_the_flow_so_densities_are_in_data_units(tmp_path):
    path = write_csv(tmp_path / "g.csv", mixture(400))
    splits = load_file(300, 50, 50, path=str(path))
    loc, scale = splits.standardization["loc"], splits.standardization["scale"]
    assert torch.allclose(loc, splits.train.double().mean(0))
    assert float(splits.train.mean(0)[0]) > 900  # the tensors stay in the file's units
    stand = {"loc": loc.tolist(), "scale": scale.tolist()}
    flow = build_model("realnvp", {"couplings": 2}, [2], standardize=stand)  # identity start
    x = splits.test[:5]
    z = (x.double() - loc) / scale
    expected = -0.5 * (z**2).sum(1) - math.log(2 * math.pi) - torch.log(scale).sum()
    assert torch.allclose(flow.log_prob(x).double(), expected, atol=1e-4)
    assert float(flow.sample(2000).mean(0)[0]) == pytest.approx(float(loc[0]), rel=0.01)


def test_npy_is_memory_mapped_and_object_arrays_are_refused(tmp_path):
    np.save(tmp_path / "x.npy", mixture(50))
    values, names = read_table(tmp_path / "x.npy")
    assert isinstance(values, np.memmap) and names == ["0", "1"]
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        read_table(tmp_path / "o.npy")


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "build, options, message",
    [
        (lambda t: str(t / "absent.csv"), {}, "file not found"),
        (lambda t: _bad(t, "x.parquet", "x"), {}, "unknown format '.parquet'"),
        (
            lambda t: _bad(t, "m.csv", "a,b\n1,2\n3,x7\n4,5\n"),
            {},
            r"column 'b' is not numeric: data row 2 \(line 3\) holds 'x7'; leave it out of "
            r"the features \(--features, data.features\), or use it as a categorical context "
            r"\(--context b\)",
        ),
        (
            lambda t: _bad(t, "n.csv", "a,b\n1,2\n3,nan\n4,inf\n5,6\n7,8\n9,10\n"),
            {},
            r"2 rows hold missing, NaN or infinite values in the columns used \(data rows 2, 3; "
            r"by column: b 2\); drop them with --drop-na \(data.drop_nonfinite: true\)",
        ),
        (lambda t: _bad(t, "f.csv", "a,b\n1,2\n3,4\n"), {}, "2 usable rows, too few for train"),
        (
            lambda t: _bad(t, "c.csv", "a,b\n" + "".join(f"{i},7\n" for i in range(9))),
            {},
            r"column\(s\) \['b'\] are constant",
        ),
        (
            lambda t: _bad(t, "ctx.csv", "a,b,c\n" + "".join(f"{i},{i * i},1\n" for i in range(9))),
            {"features": ["a", "b"], "context": ["b"]},
            r"\['b'\] are both features and context",
        ),
        (lambda t: _bad(t, "k.csv", "a,b\n1,2\n"), {"features": ["z"]}, "no column 'z'"),
    ],
)
def test_bad_files_get_named_errors(tmp_path, build, options, message):
    with pytest.raises(ValueError, match=message):
        load_file(3, 2, 2, path=build(tmp_path), **options)


def test_non_finite_rows_can_be_dropped_and_npz_arrays_named(tmp_path):
    path = _bad(tmp_path, "n.csv", "a,b\n1,2\n3,nan\n4,inf\n5,6\n7,8\n9,10\n11,3\n12,1\n13,0\n")
    splits = load_file(3, 2, 2, path=path, drop_nonfinite=True)  # 7 of the 9 rows are finite
    rows = torch.cat([splits.train, splits.val, splits.test])
    assert bool(torch.isfinite(rows).all()) and len(rows) == 7
    np.savez(tmp_path / "two.npz", x=mixture(20), y=np.zeros(20))
    with pytest.raises(ValueError, match="name one with data.key"):
        load_file(10, 5, 5, path=str(tmp_path / "two.npz"))
    assert load_file(10, 5, 5, path=str(tmp_path / "two.npz"), key="x").train.shape == (10, 2)


def test_a_small_file_gets_a_small_model():
    options = sized_options("nsf", 13, 142)
    small = sum(p.numel() for p in nsf(13, **options).parameters())
    default = sum(p.numel() for p in nsf(13).parameters())
    assert small < 60_000 < 3_000_000 < default
    with pytest.raises(ValueError, match="write a config"):
        sized_options("glow", 13, 142)


def test_data_short_form_trains_and_a_fresh_shell_evaluates_and_samples(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    values = mixture(300)
    context = (values[:, :1] > 1100).astype(float)  # which component, as a context column
    write_csv(tmp_path / "wine.csv", np.hstack([values, context]), header="a,b,k")
    args = ["train", "--data", "wine.csv", "--model", "maf", "--context", "k", "--quiet"]
    assert main([*args, "--set", "train.steps=30", "--set", "train.eval_every=10"]) == 0
    run = tmp_path / "runs" / "wine"
    config = (run / "config.yaml").read_text()  # k, two integer levels: a one-hot category
    assert "n_train: 240" in config and "context:\n  - k" in config and "hidden:\n  - 16" in config
    outputs = []
    for argv in (["eval", str(run)], ["sample", str(run), "-n", "4", "--context", "1"]):  # k=1
        out = subprocess.run(
            [sys.executable, "-m", "flowforge.cli", *argv], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout)
    assert np.isfinite(json.loads(outputs[0])["test_nll"])
    assert np.load(run / "samples.npy").shape == (4, 2)
    capsys.readouterr()
    for argv, message in [
        (["sample", str(run), "-n", "4"], "on 2 context features: give --context or --class"),
        (["sample", str(run), "--class", "7"], "--class: should be one of 0, 1 or in [0, 2)"),
        (["sample", str(run), "--context", "1,2"], "2 values per row, the model takes 1"),
        (["sample", str(run), "--context", "1", "--out", "s.png"], "a PNG needs an image run"),
        (["sample", str(run), "--context", "1", "--out", "s.txt"], "unknown format '.txt'"),
        (["train", "--data", "absent.csv"], "file not found"),
    ]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "s.txt").exists()
    np.save(tmp_path / "plain.npy", values)  # and a NumPy file, read through a memory map
    npy = ["train", "--data", "plain.npy", "--model", "realnvp", "--quiet"]
    assert main([*npy, "--set", "train.steps=10", "--set", "train.eval_every=5"]) == 0
    assert main(["sample", str(tmp_path / "runs" / "plain"), "-n", "3"]) == 0


@pytest.mark.slow
def test_the_learned_density_in_data_units_reaches_the_files_entropy(tmp_path):
    """A flow on a two-Gaussian mixture stored in data units (means near 1000, scales 50 and
    5): its test NLL is within 0.05 nats of the mixture's entropy, estimated on the same
    test rows (paired, so only the model's error remains)."""
    write_csv(tmp_path / "train.csv", mixture(12000, seed=1))
    write_csv(tmp_path / "test.csv", mixture(4000, seed=2))
    cfg = parse_config(
        {
            "name": "mix",
            "output_dir": str(tmp_path),
            "data": {
                "name": "file",
                "path": str(tmp_path / "train.csv"),
                "test_path": str(tmp_path / "test.csv"),
                "n_train": 10000,
                "n_val": 2000,
                "n_test": 4000,
            },
            "model": {"name": "maf", "layers": 5, "hidden": [64, 64], "batch_norm": False},
            "train": {"steps": 1500, "batch_size": 256, "lr": 2e-3, "eval_every": 250},
        }
    )
    summary = train_run(cfg, progress=False, plots=False).summary
    flow = load(tmp_path / "mix")
    test = torch.as_tensor(np.loadtxt(tmp_path / "test.csv", delimiter=",", skiprows=1))
    entropy = -float(mixture_log_prob(test).mean())
    assert abs(entropy - 9.01) < 0.1  # the analytic value is 9.0147 (400k-sample estimate)
    with torch.no_grad():
        nll = -float(flow.log_prob(test.float()).double().mean())
    assert nll == pytest.approx(summary["test_nll"], abs=1e-4)
    assert nll - entropy < 0.05, (nll, entropy)
