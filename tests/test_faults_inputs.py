"""Hostile inputs (issue 30, items 3, 5 and 6): comparison files, configs that expand, output
paths over a run's own files, temporary files, figures linked from elsewhere, resume-time
overrides, and data files whose dtype or declared size is wrong. Each is one ``error:`` line
and exit 2 (or a named ``ValueError`` from the library), before anything is written."""

import base64
import pickle
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import flowforge.compare as compare
from flowforge.cli import main
from flowforge.config import ConfigError, parse_config, read_yaml
from flowforge.run_files import LAST, RUN_FILES
from flowforge.runs import train_run
from flowforge.runs.directory import check_output
from flowforge.train.checkpoint import load_checkpoint

FLOW = {"label": "flow", "model": {"name": "realnvp", "couplings": 2, "hidden": [8]}}
COMPARISON = {
    "name": "tiny",
    "seeds": [0, 1, 2],
    "samples": 64,
    "data": {"name": "8gaussians", "n_train": 256, "n_val": 64, "n_test": 64},
    "train": {"steps": 4, "batch_size": 64, "eval_every": 2},
    "models": [FLOW],
}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# -- item 3: comparison files ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "should hold a mapping"),
        ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
        ("name: [unclosed\n", "not valid YAML"),
        (b"name: \xff\xfe\n", "not UTF-8"),
        ({"seeds": 5}, "seeds: should be a list of integers"),
        ({"seeds": [0, 1, "x"]}, "seeds: should be a list of integers"),
        ({"models": ["a", "b"]}, r"models\[0\]: should be a mapping"),
        ({"models": "flow"}, "models: should be a non-empty list"),
        ({"models": [{**FLOW, "label": "../x"}]}, r"models\[0\].label: should be a plain"),
        ({"models": [{"label": "m", "model": "realnvp"}]}, r"models\[m\].model: should be a"),
        ({"samples": "abc"}, "samples: should be an integer"),
        ({"samples": 0}, "samples: should be an integer"),
        ({"samples": -5}, "samples: should be an integer"),
        ({"samples": True}, "samples: should be an integer"),
        ({"data": [1]}, "data: should be a mapping"),
        ({"train": "fast"}, "train: should be a mapping"),
        ({"name": "../../escape"}, "name: should be a plain directory name"),
        ({"name": "/tmp/escape"}, "name: should be a plain directory name"),
        ({"name": 7}, "name: should be a plain directory name"),
    ],
)
def test_a_bad_comparison_file_is_one_line_before_any_run(tmp_path, capsys, text, message):
    path = tmp_path / "cmp.yaml"
    if isinstance(text, dict):
        path.write_text(yaml.safe_dump({**COMPARISON, **text}))
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    out = tmp_path / "report"
    assert main(["compare", str(path), "--out", str(out), "--quiet"]) == 2
    assert message.replace("\\", "") in one_error_line(capsys) or pytest.fail(message)
    assert not out.exists()


def test_a_comparison_name_never_leaves_output_dir(tmp_path, monkeypatch, capsys):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    for name in ("../../escape", str(tmp_path / "abs")):
        path = deep / "cmp.yaml"
        path.write_text(yaml.safe_dump({**COMPARISON, "name": name, "output_dir": "out"}))
        assert main(["compare", str(path), "--quiet"]) == 2
        assert "name: should be a plain directory name" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "cmp.yaml"]


def test_a_member_killed_before_its_config_is_started_again(tmp_path):
    """A kill between ``mkdir`` of a member's run folder and its ``config.yaml`` leaves a
    folder with its lock only; the rerun starts that member again."""
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(COMPARISON))
    cmp = compare.load_comparison(path)
    runs = tmp_path / "report" / "runs"
    killed = runs / "flow-seed0"
    killed.mkdir(parents=True)
    (killed / ".lock").touch()
    result = compare.train_or_reuse(parse_config(cmp.run_config(FLOW, 0, runs)), False)
    assert result.run_dir == killed and result.summary["steps"] == 4
    assert [p.name for p in runs.iterdir()] == ["flow-seed0"]


# -- item 5: configs bounded by their expanded text ------------------------------------------


def _text_bomb(path: Path, copies: int) -> Path:
    """One 100 KB string referenced ``copies`` times through an alias."""
    refs = ", ".join(["*a"] * copies)
    path.write_text(
        f"name: x\nnote: &a {'x' * 100_000}\nmodel: {{name: realnvp, hidden: [{refs}]}}\n"
    )
    return path


def test_a_config_expanding_to_much_text_is_refused_quickly(tmp_path, capsys):
    small = _text_bomb(tmp_path / "small.yaml", 200)  # 20 MB expanded
    with pytest.raises(ConfigError, match="more than 10,000,000 characters"):
        read_yaml(small)
    big = _text_bomb(tmp_path / "big.yaml", 90_000)  # 9 GB expanded from 460 KB
    start = time.perf_counter()
    assert main(["train", str(big), "--quiet"]) == 2
    assert time.perf_counter() - start < 5
    err = one_error_line(capsys)
    assert "big.yaml: refused" in err and "characters" in err


def test_a_plain_config_of_long_text_still_reads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: x\nnote: &a {'x' * 1000}\nother: [{', '.join(['*a'] * 100)}]\n")
    assert len(read_yaml(path)["other"]) == 100


# -- item 5: outputs never replace a run's own files -----------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = parse_config(
        {
            "name": "run",
            "output_dir": str(tmp_path_factory.mktemp("runs")),
            "data": {"name": "moons", "n_train": 256, "n_val": 64, "n_test": 64},
            "model": {"name": "realnvp", "couplings": 2, "hidden": [8]},
            "train": {"steps": 4, "batch_size": 64, "eval_every": 2},
        }
    )
    return train_run(cfg, progress=False, plots=False).run_dir


@pytest.mark.parametrize("name", [*RUN_FILES, "checkpoints/best.pt", "checkpoints/x.pt"])
def test_check_output_refuses_every_run_file(run_dir, name):
    with pytest.raises(ConfigError, match=f"is the file {name} of the run"):
        check_output(run_dir / name)
    assert check_output(run_dir / "samples.npy") == (run_dir / "samples.npy").resolve()


def _snapshot(run_dir):
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "command",
    [
        ["inpaint", "{run}", "--image", "test:0", "--mask", "centre", "--out", "{run}/summary.png"],
        ["inpaint", "{run}", "--image", "test:0", "--mask", "centre", "--out", "{run}/config.yaml"],
        ["interpolate", "{run}", "--out", "{run}/metrics.jsonl"],
        ["manipulate", "{run}", "--out", "{run}/checkpoints/best.pt"],
        ["sample", "{run}", "-n", "4", "--out", "{link}"],
    ],
)
def test_no_command_writes_over_a_run_file(run_dir, tmp_path, capsys, command):
    link = tmp_path / "samples.npy"
    link.symlink_to(run_dir / "summary.json")  # a link to a run file is that file
    before = _snapshot(run_dir)
    args = [a.format(run=run_dir, link=link) for a in command]
    assert main(args) == 2
    assert "of the run" in one_error_line(capsys)
    assert _snapshot(run_dir) == before


# -- item 5: temporary files, linked figures, resume-time overrides ---------------------------


def test_resume_removes_only_flowforges_temporary_files(tmp_path):
    from flowforge.run_files import TMP_SUFFIX

    cfg = parse_config(
        {
            "name": "r",
            "output_dir": str(tmp_path),
            "data": {"name": "moons", "n_train": 256, "n_val": 64, "n_test": 64},
            "model": {"name": "realnvp", "couplings": 2, "hidden": [8]},
            "train": {"steps": 2, "batch_size": 64, "eval_every": 2},
        }
    )
    run = train_run(cfg, progress=False, plots=False).run_dir
    ours = run / "checkpoints" / f".last.pt.abc{TMP_SUFFIX}"
    ours.write_bytes(b"half")
    theirs = [run / ".notes.tmp", run / "checkpoints" / ".mine.tmp"]
    for p in theirs:
        p.write_text("the user's")
    train_run(resume=run, overrides=["train.steps=4"], progress=False, plots=False)
    assert not ours.exists()
    assert all(p.read_text() == "the user's" for p in theirs)


def test_report_never_inlines_a_figure_linked_from_outside_the_run(run_dir, tmp_path, capsys):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret bytes from elsewhere")
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    (plots / "leak.png").symlink_to(secret)
    try:
        page = tmp_path / "page.html"
        assert main(["report", str(run_dir), "--out", str(page), "--no-draw"]) == 0
        html = page.read_text()
        assert base64.b64encode(secret.read_bytes()).decode() not in html
        assert "leak" not in html
    finally:
        (plots / "leak.png").unlink()


GAN_RUN = {
    "objective": {"name": "gan", "val_n": 64, "eval_n": 64},
    "data": {"name": "8gaussians", "n_train": 256, "n_val": 64, "n_test": 64},
    "model": {"name": "gan", "latent": 2, "hidden": [8]},
    "train": {"steps": 2, "batch_size": 32, "eval_every": 2},
}


def test_an_objective_option_set_on_resume_is_applied(tmp_path):
    cfg = parse_config({**GAN_RUN, "name": "g", "output_dir": str(tmp_path)})
    run = train_run(cfg, progress=False, plots=False).run_dir
    overrides = ["objective.critic_lr=0.0123", "train.steps=4"]
    train_run(resume=run, overrides=overrides, progress=False, plots=False)
    state = load_checkpoint(run / "checkpoints" / LAST)["objective_state"]["critic_optimizer"]
    assert [g["lr"] for g in state["param_groups"]] == [0.0123]


@pytest.mark.parametrize("override", ["seed=5", "name=other", "output_dir=/tmp/elsewhere"])
def test_an_override_a_resume_cannot_apply_is_refused_by_name(run_dir, capsys, override):
    before = _snapshot(run_dir)
    assert main(["train", "--resume", str(run_dir), "--set", override, "--quiet"]) == 2
    key = override.split("=")[0]
    assert f"--set {key}: cannot change on --resume" in one_error_line(capsys)
    assert _snapshot(run_dir) == before


# -- item 6: data files -----------------------------------------------------------------------


def _train_on(path, capsys):
    assert main(["train", "--data", str(path), "--quiet", "--set", "train.steps=2"]) == 2
    return one_error_line(capsys)


@pytest.mark.parametrize(
    "array, what",
    [
        (np.ones((64, 2), dtype=np.complex128), "complex numbers of dtype complex128"),
        (np.ones((64, 2), dtype="timedelta64[s]"), "time deltas of dtype timedelta64[s]"),
        (np.ones((64, 2), dtype="datetime64[D]"), "dates of dtype datetime64[D]"),
        (np.ones((64, 2), dtype=object), "Python objects of dtype object"),
        (np.ones((64, 2), dtype="U3"), "values of dtype <U3"),
        (np.ones((64, 2), dtype=bool), "values of dtype bool"),
    ],
)
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_only_real_numbers_are_read(tmp_path, monkeypatch, capsys, array, what, suffix):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, array, allow_pickle=True)
    else:
        np.savez(path, x=array, allow_pickle=True)
    err = _train_on(path, capsys)
    assert what in err and "real numbers only" in err
    assert not (tmp_path / "runs").exists()


def _npy_header(shape, dtype="<f8") -> bytes:
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def test_an_npz_declaring_gigabytes_is_refused_from_its_header(tmp_path, monkeypatch, capsys):
    """The member's header declares 2.4 GB of float64 (its deflated zeros are left out: the
    header alone settles it, and nothing of the body is read)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _npy_header((300_000_000, 1)) + bytes(1 << 20))
    start = time.perf_counter()
    err = _train_on(path, capsys)
    assert time.perf_counter() - start < 1.0
    assert "array 'x': declares an array of shape (300000000, 1), 2.4 GB" in err
    assert not (tmp_path / "runs").exists()


def test_an_npy_whose_header_promises_a_terabyte_is_refused(tmp_path, capsys):
    path = tmp_path / "tb.npy"
    path.write_bytes(_npy_header((125_000_000_000, 1)) + bytes(800))
    err = _train_on(path, capsys)
    assert "declares an array of shape (125000000000, 1), 1e+03 GB" in err


def test_the_data_cap_is_configurable(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(256, 2)))
    monkeypatch.setenv("FLOWFORGE_MAX_DATA_BYTES", "1000")
    err = _train_on(path, capsys)
    assert "FLOWFORGE_MAX_DATA_BYTES" in err and "at most 1e-06 GB" in err
    monkeypatch.setenv("FLOWFORGE_MAX_DATA_BYTES", "lots")
    assert "should be a number of bytes" in _train_on(path, capsys)


def test_a_truncated_npy_is_named(tmp_path, capsys):
    path = tmp_path / "short.npy"
    path.write_bytes(_npy_header((1000, 2)) + bytes(80))
    assert "truncated" in _train_on(path, capsys)


@pytest.mark.slow
def test_a_real_npz_zip_bomb_is_refused_in_well_under_a_second(tmp_path, monkeypatch, capsys):
    """2.4 GB of deflated zeros (a 2.3 MB file)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bomb.npz"
    zeros = bytes(1 << 24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((300_000_000, 1)))
            for _ in range(2_400_000_000 // len(zeros) + 1):
                f.write(zeros)
    start = time.perf_counter()
    err = _train_on(path, capsys)
    assert time.perf_counter() - start < 1.0 and "declares an array" in err


def _cifar_dir(tmp_path, data):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(data)
    return tmp_path


class _Declared:
    """Pickles as ``numpy.ndarray(shape, uint8)``: uninitialised memory of any size."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return np.ndarray, (self.shape, np.dtype(np.uint8))


@pytest.mark.parametrize(
    "data, message",
    [
        (
            pickle.dumps({b"data": _Declared((10**12,)), b"labels": [0]}, protocol=4),
            r"declares an array of shape \(1000000000000,\) \(1e\+03 GB\)",
        ),
        (b"\x80\x04\x8e" + struct.pack("<Q", 10**12) + b"abc", "declares more memory|truncated"),
    ],
)
def test_a_cifar_batch_declaring_a_terabyte_is_refused_at_once(tmp_path, data, message):
    from flowforge.data.image_readers import load_cifar10_arrays

    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        load_cifar10_arrays(_cifar_dir(tmp_path, data))
    assert time.perf_counter() - start < 1.0


def test_a_gas_table_without_its_columns_is_named(tmp_path):
    pd = pytest.importorskip("pandas")
    from flowforge.data import tabular

    (tmp_path / "gas").mkdir()
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(64, 3)), columns=["a", "b", "c"])
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    with pytest.raises(ValueError, match=r"should have the columns \['Meth', 'Eth', 'Time'\]"):
        tabular.load_gas(str(tmp_path))


def test_genuine_arrays_still_load(tmp_path):
    from flowforge.data.files import open_table

    for dtype in (np.float32, np.float64, np.int16, np.uint8):
        np.save(tmp_path / "x.npy", np.ones((8, 3), dtype=dtype))
        assert open_table(tmp_path / "x.npy").rows == 8
        np.savez_compressed(tmp_path / "x.npz", a=np.ones((8, 3), dtype=dtype))
        assert open_table(tmp_path / "x.npz").rows == 8
