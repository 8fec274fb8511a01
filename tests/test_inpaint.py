"""Inpainting as a library call (flowforge.runs.inpaint): the readers of --image and --mask,
and inpaint_run on a tiny c-Glow inpainting run (grid, report, refusals)."""

import json

import numpy as np
import pytest
import torch

from flowforge.config import ConfigError, parse_config
from flowforge.runs import open_run, train_run
from flowforge.runs.inpaint import inpaint_run, read_images, read_masks

SHAPE = (1, 8, 8)


def test_read_masks_makes_kinds_from_the_seed_and_reads_arrays(tmp_path):
    centre = read_masks("centre", 3, SHAPE, seed=0)
    assert centre.shape == (3, 8, 8) and set(centre.unique().tolist()) == {0.0, 1.0}
    a, b = read_masks("random", 2, SHAPE, seed=1), read_masks("random", 2, SHAPE, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, read_masks("random", 2, SHAPE, seed=2))
    one = np.ones((8, 8))
    one[:4] = 0
    np.save(tmp_path / "m.npy", one)
    m = read_masks(str(tmp_path / "m.npy"), 3, SHAPE, seed=0)
    assert m.shape == (3, 8, 8) and torch.equal(m[2], torch.from_numpy(one).float())
    with pytest.raises(ConfigError, match=r"--mask: should be one of \['random', 'centre'"):
        read_masks("circle", 1, SHAPE, seed=0)


def test_read_images_takes_one_image_or_a_stack(tmp_path):
    for shape in [(8, 8), (1, 8, 8), (3, 1, 8, 8)]:
        np.save(tmp_path / "x.npy", np.zeros(shape))
        x = read_images(str(tmp_path / "x.npy"), None, SHAPE)
        assert x.shape == (shape[0] if len(shape) == 4 else 1, *SHAPE) and x.dtype == torch.float32
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4)))
    with pytest.raises(ConfigError, match=r"the run's images are \(1, 8, 8\), got an array"):
        read_images(str(tmp_path / "x.npy"), None, SHAPE)
    with pytest.raises(ConfigError, match="test:I,J,... or an existing .npy file"):
        read_images(str(tmp_path / "missing.npy"), None, SHAPE)
    with pytest.raises(ConfigError, match="test:I,J,... with integers, got 'test:a'"):
        read_images("test:a", None, SHAPE)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    pytest.importorskip("sklearn", reason="the 8x8 digits come with scikit-learn")
    cfg = parse_config(
        {
            "name": "cg",
            "output_dir": str(tmp_path_factory.mktemp("inpaint")),
            "data": {
                "name": "inpainting",
                "n_train": 32,
                "n_val": 8,
                "n_test": 8,
                "source": "digits-image",
            },
            "model": {
                "name": "cglow",
                "scales": 2,
                "depth": 1,
                "hidden_channels": 4,
                "feature_channels": 4,
                "levels": 17,
            },
            "train": {"steps": 2, "batch_size": 8, "eval_every": 2},
        }
    )
    return train_run(cfg, progress=False, plots=False).run_dir


def test_inpaint_run_writes_the_grid_and_its_report(run_dir, tmp_path):
    done = inpaint_run(run_dir, "test:0,3", "centre", k=2, temperature=0.7, seed=1)
    assert done.path == run_dir / "inpainting.png" and done.path.read_bytes()[:4] == b"\x89PNG"
    report = json.loads(done.path.with_suffix(".json").read_text())
    assert report == done.report
    assert report["images"] == "test:0,3" and report["samples"] == 2
    bits = report["bits_per_missing_pixel"]
    assert len(bits) == 2 and all(b > 0 for b in bits)
    assert done.line().startswith(f"wrote 2 rows (image, visible part, 2 samples) to {done.path}")
    again = inpaint_run(run_dir, "test:0,3", "centre", k=2, temperature=0.7, seed=1)
    assert again.path.read_bytes() == done.path.read_bytes()  # the seed fixes the samples
    test = read_images("test:0,3", open_run(run_dir), SHAPE)
    assert test.shape == (2, *SHAPE)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "-k: should be positive, got 0"),
        ({"image": "test:99"}, r"test indices should be in \[0, 8\)"),
        ({"image": "{tmp}/big.npy"}, r"pixel values should be in \[0, 16\]"),
        ({"mask": "{tmp}/half.npy"}, "--mask: "),
        ({"out": "{run}/summary.json"}, "is the file summary.json of the run"),
        ({"out": "{run}/summary.png"}, r"--out \(its .json report\): .* summary.json of the run"),
    ],
)
def test_inpaint_run_refuses_with_the_option_named(run_dir, tmp_path, kwargs, message):
    np.save(tmp_path / "big.npy", np.full((8, 8), 17.0))
    np.save(tmp_path / "half.npy", np.full((8, 8), 0.5))
    given = {"image": "test:0", "mask": "centre", **kwargs}
    given = {k: v.format(tmp=tmp_path, run=run_dir) if k != "k" else v for k, v in given.items()}
    with pytest.raises(ConfigError, match=message):
        inpaint_run(run_dir, **given)


def test_inpaint_run_refuses_a_run_that_is_not_an_inpainting_run(tmp_path):
    cfg = parse_config(
        {
            "name": "v",
            "output_dir": str(tmp_path),
            "data": {"name": "moons", "n_train": 64, "n_val": 16, "n_test": 16},
            "model": {"name": "realnvp", "couplings": 1, "hidden": [4]},
            "train": {"steps": 2, "batch_size": 16, "eval_every": 2},
        }
    )
    run = train_run(cfg, progress=False, plots=False).run_dir
    with pytest.raises(ConfigError, match="not an inpainting run .* its context is none"):
        inpaint_run(run, "test:0", "centre")
