"""Every kind of run draws its figures (flowforge.runs.figures): PNG at >= 150 dpi beside an SVG,
not blank, labelled, cheap; and figures a scientist can trust (flowforge.viz.run_figures): a
random subset of the test rows, at least 2,000 samples, no outliers clamped into edge bins,
dimensions chosen in standardised units, feature names on the axes, points coloured by
context."""

import struct
import time

import matplotlib.image
import numpy as np
import pytest
import torch

from flowforge.config import parse_config
from flowforge.runs import open_run, train_run
from flowforge.runs.figures import draw_run_figures
from flowforge.viz import run_figures as rf
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


def test_shown_rows_are_a_seeded_random_subset_of_a_sorted_split():
    x = torch.arange(10_000.0).reshape(-1, 1)  # a split sorted by its only column
    c = 2 * x
    shown, context = rf.shown_rows(x, c, seed=3)
    assert len(shown) == rf.SCATTER == 2000
    # the whole range, not the first 2,000 rows (which end at 1,999)
    assert shown.min() < 100 and shown.max() > 9_900
    assert len(torch.unique(shown)) == len(shown)  # no row twice
    assert torch.equal(context, 2 * shown)  # each row keeps its context
    assert torch.equal(rf.shown_rows(x, c, seed=3)[0], shown)  # seeded
    assert not torch.equal(rf.shown_rows(x, c, seed=4)[0], shown)
    few = torch.randn(30, 3)
    assert torch.equal(rf.shown_rows(few)[0], few)  # a small split is shown whole


class Recorder(torch.nn.Module):
    """A model that samples N(0, 1) and records the contexts it was asked for."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def sample(self, n, context=None, temperature=1.0):
        self.calls.append((n, context))
        return torch.randn(n, 3)


def test_draw_at_draws_at_least_2000_samples_at_the_shown_contexts():
    model = Recorder()
    samples, at = rf.draw_at(model, None, seed=0)
    assert samples.shape == (2000, 3) and at is None
    context = torch.arange(27.0).reshape(-1, 1)  # a test split of 27 rows
    samples, at = rf.draw_at(model, context, seed=0)
    assert len(samples) == len(at) == model.calls[-1][0] >= 2000
    counts = torch.bincount(at.flatten().long(), minlength=27)
    assert counts.min() >= 2000 // 27 and counts.max() <= 2000 // 27 + 1  # each row in turn
    # seeded: the same samples twice, and the global random state untouched
    state = torch.random.get_rng_state()
    again, _ = rf.draw_at(model, context, seed=0)
    assert torch.equal(again, samples)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_plot_range_keeps_outliers_out_and_counts_them():
    g = torch.Generator().manual_seed(0)
    data = torch.cat([torch.randn(999, generator=g), torch.tensor([1e6])])
    samples = torch.randn(2000, generator=g) * 2
    lo, hi = rf.plot_range(data, samples)
    assert -8 < lo < -4 and 4 < hi < 8  # the samples' wider spread, not the outlier
    assert rf.outside(data, lo, hi) == 1
    assert rf.outside(samples, lo, hi) <= 0.01 * len(samples)
    # each set's own percentile range counts: a few far samples do not hide a wide data set
    assert rf.plot_range(torch.tensor([0.0, 100.0] * 50), torch.zeros(2000)) == pytest.approx(
        (-5.0, 105.0)
    )
    assert rf.outside(torch.tensor([float("nan"), 0.0, float("inf")]), -1, 1) == 2
    lo, hi = rf.plot_range(torch.full((10,), 3.0))  # constant: a range around it
    assert lo < 3 < hi


def test_histograms_leave_outliers_out_of_the_edge_bins():
    fig, ax = rf.plt.subplots()
    g = torch.Generator().manual_seed(0)
    data = torch.cat([torch.rand(900, generator=g), torch.full((100,), 50.0)])  # 10 % far out
    note = rf._histograms(ax, [("data", data, "C0", "data")], 0.0, 1.0, 10)
    assert note == "outside the axis: 100/1,000 data"
    heights, edges, _ = ax.patches[0].get_data()
    # clamped into the last bin, the outliers would double it; left out, it is like the others
    assert heights[-1] < 1.3 * heights[:-1].mean()
    # a density of all the points: the area is the share inside the range
    assert float((heights * np.diff(edges)).sum()) == pytest.approx(0.9)
    rf.plt.close(fig)


def test_pair_plot_dimensions_are_chosen_in_standardised_units():
    g = torch.Generator().manual_seed(0)
    n = 2000
    loud = torch.randn(n, 3, generator=g) * 1000  # large numbers, independent
    shared = torch.randn(n, 1, generator=g)
    quiet = shared * 0.01 + 0.002 * torch.randn(n, 2, generator=g)  # small, dependent
    x = torch.cat([loud, quiet], 1)
    assert rf.choose_dimensions(x, 2) == [3, 4]
    assert rf.choose_dimensions(x[:, :4], 4) == [0, 1, 2, 3]  # all when they fit


def test_vectors_without_data_draw_the_samples_alone(tmp_path):
    """Reverse KL on a target of more than 2 dimensions: q's samples, no data."""
    files = rf.plot_vectors(torch.randn(500, 3), None, tmp_path, "planar")
    assert sorted(f.name for f in files) == sorted(
        ["pairs.png", "pairs.svg", "marginals.png", "marginals.svg"]
    )
    assert "samples of the planar (500)" in (tmp_path / "pairs.svg").read_text()


def test_tick_labels_are_compact():
    assert [rf.tick_label(v) for v in (0, 0.0125, 5000, 12500, 0.1 + 0.2, -2.5)] == [
        "0",
        "0.0125",
        "5000",
        "12500",
        "0.3",
        "-2.5",
    ]
    assert rf.tick_label(1.5e-5) == "1.5e-5" and rf.tick_label(2.5e7) == "2.5e7"


def test_context_colours_by_level_name_class_or_value():
    onehot = torch.tensor([[0.0, 1.0, 0.0, 7.0], [0.0, 0.0, 1.0, 8.0]])
    info = {
        "context": ["species=Adelie", "species=Chinstrap", "species=Gentoo", "year"],
        "levels": {"species": ["Adelie", "Chinstrap", "Gentoo"]},
    }
    by = rf.context_colours(onehot, info)
    assert by.label == "species" and by.levels == ("Adelie", "Chinstrap", "Gentoo")
    assert by.values(onehot).tolist() == [1, 2]
    assert rf._context_label(onehot[1], info) == "species = Gentoo"
    classes = torch.eye(3)[[0, 2, 1]]
    by = rf.context_colours(classes, {"context": "one-hot moon label"})
    assert by.levels == ("class 0", "class 1", "class 2")
    assert rf._context_label(classes[1]) == "context: class 2"
    numeric = torch.tensor([[3.5], [4.5]])
    by = rf.context_colours(numeric, {"context": ["body_mass_g"]})
    assert by.levels is None and by.label == "body_mass_g"
    assert by.values(numeric).tolist() == [3.5, 4.5]
    assert rf._context_label(numeric[0], {"context": ["body_mass_g"]}) == "body_mass_g = 3.5"
    assert rf.context_colours(None) is None
    assert rf.context_colours(torch.zeros(2, 1, 4, 4)) is None  # image contexts: no colours


def test_layer_stages_are_named_by_index_and_type():
    from flowforge.models import build_model
    from flowforge.transforms import Inverse

    flow = build_model("maf", {"layers": 2, "hidden": [8], "batch_norm": False}, (2,))
    names = [name for name, _ in rf.layer_stages(flow, torch.randn(5, 2))]
    assert names[0] == "data space"
    layers = rf.flow_layers(flow)
    assert names[1] == f"after 1: {type(layers[0]).__name__}"
    assert names[-1] == f"latent space\n(after {len(layers)}: {type(layers[-1]).__name__})"
    assert any("MaskedAutoregressive" in n for n in names)
    assert rf.layer_name(Inverse(layers[0])) == f"Inverse({type(layers[0]).__name__})"


def file_run(tmp_path, name, rows, n_test, context=None, sort_by=0):
    """A run on a CSV file of correlated columns a, b, c (and t), sorted by one column."""
    g = np.random.default_rng(0)
    base = g.normal(size=(rows, 1))
    table = np.hstack([base + 0.3 * g.normal(size=(rows, 1)) for _ in range(4)])
    table[:, 1] *= 0.001  # small values in one column
    table = table[np.argsort(table[:, sort_by])]
    path = tmp_path / f"{name}.csv"
    np.savetxt(path, table, delimiter=",", header="a,b,c,t", comments="")
    data = {"name": "file", "path": str(path), "n_train": 200, "n_val": 50, "n_test": n_test}
    if context:
        data["context"] = context
    cfg = {
        "name": name,
        "output_dir": str(tmp_path),
        "model": {"name": "maf", "layers": 2, "hidden": [8], "batch_norm": False},
        "data": data,
        "train": {"steps": 2, "batch_size": 64, "eval_every": 2},
    }
    return train_run(parse_config(cfg), progress=False, plots=False).run_dir


def test_a_sorted_file_figure_shows_its_whole_range_with_names_and_context(tmp_path, monkeypatch):
    run_dir = file_run(tmp_path, "sorted", rows=2750, n_test=2500, context=["t"])
    drawn, sampled = [], []
    plot_vectors, draw_samples = rf.plot_vectors, rf.draw_samples
    monkeypatch.setattr(
        rf, "plot_vectors", lambda *a, **k: drawn.append(a) or plot_vectors(*a, **k)
    )
    monkeypatch.setattr(
        rf, "draw_samples", lambda m, n, *a, **k: sampled.append(n) or draw_samples(m, n, *a, **k)
    )
    r = open_run(run_dir)
    objective = r.objective()
    draw_run_figures(r.config, objective, r.model(), r.directory)
    check(run_dir, ["pairs", "marginals"])
    samples, shown, *_, shown_context, at = drawn[0]
    test = objective.data.test
    assert len(shown) == 2000 < len(test)
    # the file is sorted by column a and the split keeps the file's order: the first 2,000
    # test rows would stop near a's 80th percentile
    assert float(shown[:, 0].max()) >= float(test[:, 0].quantile(0.99))
    assert float(shown[:, 0].min()) <= float(test[:, 0].quantile(0.01))
    assert sampled == [len(samples)] and len(samples) >= 2000 and len(at) == len(samples)
    svg = (run_dir / "plots" / "pairs.svg").read_text()
    assert "colour: t" in svg  # points coloured by the context column, named
    marginals = (run_dir / "plots" / "marginals.svg").read_text()
    for name in ("a", "b", "c"):
        assert f"<!-- {name} -->" in marginals  # the feature names label the axes
    assert "x_{0}" not in marginals


def test_a_small_test_split_still_gets_2000_samples(tmp_path, monkeypatch):
    run_dir = file_run(tmp_path, "small", rows=300, n_test=30)
    sampled = []
    draw_samples = rf.draw_samples
    monkeypatch.setattr(
        rf, "draw_samples", lambda m, n, *a, **k: sampled.append(n) or draw_samples(m, n, *a, **k)
    )
    r = open_run(run_dir)
    draw_run_figures(r.config, r.objective(), r.model(), r.directory)
    assert sampled == [2000]
    check(run_dir, ["pairs", "marginals"])
    assert "samples of the maf (2,000)" in (run_dir / "plots" / "marginals.svg").read_text()


def test_the_2d_box_follows_data_in_millionths():
    from flowforge.viz.run_figures import box_of

    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0)) * 1e-6 + 3e-6
    x0, x1, y0, y1 = box_of(x)
    assert 0 < x1 - x0 < 2e-5 and 0 < y1 - y0 < 2e-5  # not a 1e-3-wide box around a dot
    assert x0 < float(x[:, 0].median()) < x1
