"""Latent grids of an image run as library calls (flowforge.runs.image_grids), and
scripts/image_grids.py, which draws them with the same functions."""

import os
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from flowforge.config import ConfigError, parse_config
from flowforge.runs import train_run
from flowforge.runs.image_grids import (
    ImageRun,
    interpolate_run,
    manipulate_run,
    open_image_run,
    write_interpolations,
    write_thin_to_thick,
)

REPO = Path(__file__).resolve().parents[1]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # width, height


def grid_size(rows, columns, side=8, padding=2):
    return columns * (side + padding) + padding, rows * (side + padding) + padding


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    pytest.importorskip("sklearn", reason="the 8x8 digits come with scikit-learn")
    cfg = parse_config(
        {
            "name": "g",
            "output_dir": str(tmp_path_factory.mktemp("grids")),
            "data": {"name": "digits-image", "n_train": 64, "n_val": 16, "n_test": 10},
            "model": {"name": "glow", "scales": 2, "depth": 1, "hidden_channels": 8, "levels": 17},
            "train": {"steps": 2, "batch_size": 16, "eval_every": 2},
        }
    )
    return train_run(cfg, progress=False, plots=False).run_dir


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    cfg = parse_config(
        {
            "name": "v",
            "output_dir": str(tmp_path_factory.mktemp("vector")),
            "data": {"name": "moons", "n_train": 64, "n_val": 16, "n_test": 16},
            "model": {"name": "realnvp", "couplings": 1, "hidden": [4]},
            "train": {"steps": 2, "batch_size": 16, "eval_every": 2},
        }
    )
    return train_run(cfg, progress=False, plots=False).run_dir


def test_interpolations_are_a_row_per_pair_of_test_images(image_run, tmp_path):
    done = interpolate_run(image_run, tmp_path / "i.png", pairs=3, steps=5)
    assert done.line() == f"wrote 3 interpolations of 5 steps to {tmp_path / 'i.png'}"
    assert png_size(done.path) == grid_size(3, 5)
    image = open_image_run(image_run)
    assert write_interpolations(image, tmp_path / "all.png", pairs=99, steps=2) == 5  # 10 tests
    assert png_size(tmp_path / "all.png") == grid_size(5, 2)
    default = interpolate_run(image_run)
    assert default.path == image_run / "interpolations.png" and default.path.is_file()


def test_thin_to_thick_is_a_row_per_test_image_over_seven_scales(image_run, tmp_path):
    done = manipulate_run(image_run, tmp_path / "m.png", n=2, reference=40)
    assert done.line() == f"wrote thin-to-thick edits of 2 test images to {tmp_path / 'm.png'}"
    assert png_size(done.path) == grid_size(2, 7)


def test_a_conditional_image_run_has_no_thin_to_thick_grid(image_run, tmp_path):
    image = open_image_run(image_run)
    labels = torch.nn.functional.one_hot(torch.zeros(64, dtype=torch.long), 10).float()
    labelled = replace(image.splits, train_context=labels)  # as a class-conditional run's
    with pytest.raises(ConfigError, match="manipulate: needs an unconditional image run"):
        write_thin_to_thick(ImageRun(image.run, labelled, image.flow), tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()


def test_vector_runs_and_run_files_are_refused(vector_run, tmp_path):
    with pytest.raises(ConfigError, match=r"not an image run \(data shape \[2\]\)"):
        open_image_run(vector_run)
    for verb in (interpolate_run, manipulate_run):  # the output is checked first
        with pytest.raises(ConfigError, match="is the file metrics.jsonl of the run"):
            verb(vector_run, vector_run / "metrics.jsonl")


@pytest.mark.slow  # a fresh process that loads torch and the data: about 10 s
def test_the_script_draws_samples_interpolations_and_edits(image_run, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    args = [str(image_run), str(tmp_path), "--n", "8", "--temperature", "0.5"]
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "image_grids.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    names = ["interpolations.png", "samples_T0.5.png", "thin_to_thick.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert png_size(tmp_path / "interpolations.png") == grid_size(5, 8)  # 10 test images
    assert png_size(tmp_path / "samples_T0.5.png") == grid_size(1, 8)
