"""Every kind of run draws its figures (flowforge.runs.figures): PNG at >= 150 dpi beside an SVG,
not blank, labelled, cheap."""

import struct
import time

import matplotlib.image
import pytest

from flowforge.config import parse_config
from flowforge.runs import open_run, train_run
from flowforge.runs.figures import draw_run_figures
from flowforge.viz.run_figures import DPI

SMALL = {"n_train": 1000, "n_val": 200, "n_test": 500}


def run(tmp_path, name, objective, model, data=None, steps=20, **train):
    raw = {
        "name": name,
        "output_dir": str(tmp_path),
        "objective": objective,
        "model": model,
        "train": {"steps": steps, "batch_size": 64, "eval_every": max(1, steps // 2), **train},
    }
    if data is not None:
        raw["data"] = {**SMALL, **data}
    return train_run(parse_config(raw), progress=False).run_dir


def png_dpi(path):
    """The dots per inch in a PNG's pHYs chunk (matplotlib writes it)."""
    data = path.read_bytes()
    i = data.index(b"pHYs")
    x, _, unit = struct.unpack(">IIB", data[i + 4 : i + 13])
    assert unit == 1  # per metre
    return x * 0.0254


def check(run_dir, names):
    plots = run_dir / "plots"
    for name in names:
        png, svg = plots / f"{name}.png", plots / f"{name}.svg"
        assert png.is_file() and svg.is_file(), f"{name} missing in {sorted(plots.iterdir())}"
        assert png_dpi(png) == pytest.approx(DPI, abs=1)
        pixels = matplotlib.image.imread(png)[..., :3]
        assert pixels.std() > 0.05, f"{name}.png is blank"
        text = svg.read_text()
        assert "<svg" in text and len(text) < 3_000_000


def test_2d_flow_draws_density_layers_and_curves_with_labels(tmp_path):
    run_dir = run(
        tmp_path,
        "moons",
        {"name": "mle"},
        {"name": "realnvp", "couplings": 4},
        {"name": "moons"},
        steps=10,
        eval_every=10,
    )
    check(run_dir, ["data", "density", "samples", "latent", "layers", "curves"])
    svg = (run_dir / "plots" / "curves.svg").read_text()
    # one evaluation: its point and the true entropy are drawn and labelled, not an empty plot
    assert "true entropy" in svg and "validation" in svg and "training step" in svg
    assert "learned density p(x)" in (run_dir / "plots" / "density.svg").read_text()


def test_conditional_flow_draws_one_labelled_panel_per_context(tmp_path):
    run_dir = run(
        tmp_path,
        "cond",
        {"name": "mle"},
        {"name": "maf", "layers": 2, "hidden": [16], "batch_norm": False},
        {"name": "moons_conditional"},
    )
    check(run_dir, ["density", "samples", "layers", "curves"])
    svg = (run_dir / "plots" / "density.svg").read_text()
    assert "class 0" in svg and "class 1" in svg


def test_vector_run_draws_pairs_and_marginals(tmp_path):
    run_dir = run(
        tmp_path,
        "gmm8",
        {"name": "mle"},
        {"name": "maf", "layers": 2, "hidden": [16], "batch_norm": False},
        {"name": "gmm8"},
    )
    check(run_dir, ["pairs", "marginals", "curves"])


def test_reverse_kl_run_draws_target_beside_fit(tmp_path):
    run_dir = run(
        tmp_path,
        "vi",
        {"name": "reverse_kl", "target": "U1"},
        {"name": "planar", "layers": 4},
        steps=10,
    )
    check(run_dir, ["fit", "curves"])
    assert "target: U1" in (run_dir / "plots" / "fit.svg").read_text()


def test_gan_and_vae_runs_draw_samples_beside_data(tmp_path):
    data = {"name": "8gaussians"}
    gan = run(
        tmp_path,
        "gan",
        {"name": "gan", "val_n": 200, "eval_n": 200},
        {"name": "gan", "latent": 2, "hidden": [16]},
        data,
    )
    vae = run(
        tmp_path,
        "vae",
        {"name": "elbo", "eval_k": 4, "eval_n": 100},
        {"name": "vae", "latent": 2, "hidden": [16], "likelihood": "gaussian"},
        data,
    )
    for run_dir in (gan, vae):
        check(run_dir, ["samples", "curves"])


def test_image_run_draws_samples_at_several_temperatures(tmp_path):
    pytest.importorskip("sklearn")
    run_dir = run(
        tmp_path,
        "glow",
        {"name": "mle"},
        {"name": "glow", "scales": 1, "depth": 1, "hidden_channels": 8, "levels": 17},
        {"name": "digits-image", "n_train": 300, "n_val": 50, "n_test": 50},
        steps=4,
    )
    check(run_dir, ["samples", "curves"])
    svg = (run_dir / "plots" / "samples.svg").read_text()
    assert "T = 0.5" in svg and "T = 1" in svg
    assert "bits/dim" in (run_dir / "plots" / "curves.svg").read_text()


def test_2d_figures_are_cheap(tmp_path):
    run_dir = run(
        tmp_path,
        "cheap",
        {"name": "mle"},
        {"name": "realnvp", "couplings": 4},
        {"name": "moons"},
        steps=2,
    )
    r = open_run(run_dir)
    start = time.perf_counter()
    draw_run_figures(r.config, r.objective(), r.model(), r.directory)
    assert time.perf_counter() - start < 15  # a few seconds; generous on shared CI cores
