"""c-Glow (issue 21): image-conditioned layers, the inpainting and denoising data sets, a tiny
inpainting run end to end (resume, load without data, ``flowforge inpaint``) and the named
errors for wrong context images and masks."""

import json
import signal

import numpy as np
import pytest
import torch
import yaml

import flowforge
from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.data import load_dataset
from flowforge.data.structured import MaskError, inpainting_context, make_mask
from flowforge.models import RECIPES
from flowforge.models.cglow import ContextShapeError, ImageContextFlow, cglow
from flowforge.models.glow import glow
from flowforge.models.inpainting import (
    filled_error,
    langevin_fill,
    mean_fill,
    missing_bits,
    nearest_neighbour_fill,
)
from flowforge.objectives.base import Setting, batch_indices
from flowforge.objectives.mle import MaximumLikelihood
from flowforge.runs import train_run
from flowforge.testing import perturb_parameters
from helpers import (
    cli_process,
    final_parameters,
    kill_after,
    metrics_without_time,
    stop_at_step_and_resume,
)


def tiny(**kw):
    options = dict(scales=2, depth=2, hidden_channels=8, feature_channels=4, levels=17)
    return cglow((1, 8, 8), context_features=2, **{**options, **kw})


def test_the_recipe_is_registered_and_conditions_every_layer_on_the_image():
    assert RECIPES["cglow"] is cglow
    torch.manual_seed(0)
    flow = tiny()
    perturb_parameters(flow, 0.05)
    flow.eval()
    x = torch.randint(0, 17, (4, 1, 8, 8)).float()
    c1, c2 = torch.rand(4, 2, 8, 8), torch.rand(4, 2, 8, 8)
    assert not torch.allclose(flow.log_prob(x, c1), flow.log_prob(x, c2))
    # the loss's gradient reaches the conditioning network
    flow.train()
    (-flow.log_prob(x, c1).mean()).backward()
    enc = flow.transform.encoder
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_a_wrong_context_image_is_a_named_error():
    flow = tiny().eval()
    x = torch.zeros(2, 1, 8, 8)
    for bad in (None, torch.zeros(2, 2, 4, 4), torch.zeros(2, 3, 8, 8), torch.zeros(2, 2 * 64)):
        with pytest.raises(ContextShapeError, match="context"):
            flow.log_prob(x, bad)
    with pytest.raises(ContextShapeError, match="3 images for a batch of 2"):
        flow.log_prob(x, torch.zeros(3, 2, 8, 8))
    with pytest.raises(ContextShapeError):
        flow.sample(2, torch.zeros(2, 4, 4))
    assert flow.sample(3, torch.zeros(2, 8, 8)).shape == (3, 1, 8, 8)  # one shared context
    assert isinstance(ContextShapeError("x"), ValueError)


def test_masks_and_inpainting_contexts():
    g = torch.Generator().manual_seed(0)
    centre = make_mask("centre", 28, 28, g)
    assert centre.sum() == 28 * 28 - 14 * 14 and centre[14, 14] == 0 and centre[0, 0] == 1
    assert make_mask("top", 28, 28, g)[:14].sum() == 0
    x = torch.full((2, 1, 4, 4), 16.0)
    m = torch.ones(2, 4, 4)
    m[:, :2] = 0
    c = inpainting_context(x, m, 17)
    assert c.shape == (2, 2, 4, 4) and c[:, 0, :2].sum() == 0 and torch.all(c[:, 0, 2:] == 1)
    with pytest.raises(MaskError, match="binary"):
        inpainting_context(x, m * 0.5, 17)
    with pytest.raises(MaskError, match="matching the images"):
        inpainting_context(x, torch.ones(2, 4, 5), 17)
    with pytest.raises(MaskError, match="matching the images"):
        inpainting_context(x, torch.ones(3, 4, 4), 17)


def test_the_data_sets_give_image_contexts():
    s = load_dataset("inpainting", 30, 6, 9, source="digits-image", masks=["centre", "random"])
    assert s.context_shape == (2, 8, 8) and s.context_features == 2
    assert s.info["mask_kind"]["test"][:3] == ["centre", "random", "centre"]
    assert torch.equal(s.test_context[:, 0], s.test[:, 0] / 16 * s.test_context[:, 1])
    again = load_dataset("inpainting", 30, 6, 9, source="digits-image", masks=["centre", "random"])
    assert torch.equal(s.train_context, again.train_context)
    d = load_dataset("denoising", 30, 6, 9, source="digits-image", noise=0.3)
    assert d.context_shape == (1, 8, 8)
    assert 0.2 < float((d.test_context - d.test / 16).std()) < 0.4
    with pytest.raises(ValueError, match="masks"):
        load_dataset("inpainting", 3, 3, 3, source="digits-image", masks=["circle"])


def test_fillers_keep_the_visible_pixels():
    torch.manual_seed(0)
    x = torch.randint(0, 17, (3, 1, 8, 8)).float()
    m = make_mask("centre", 8, 8, torch.Generator()).expand(3, 1, 8, 8)
    ref = torch.randint(0, 17, (20, 1, 8, 8)).float()
    ref[7] = x[1]
    nn_fill = nearest_neighbour_fill(x, m, ref)
    assert torch.equal(nn_fill[1], x[1]) and filled_error(nn_fill, x, m, 17)[1] == 0
    mf = mean_fill(x, m, ref.mean(0))
    assert torch.equal(mf * m, x * m)
    flow = glow((1, 8, 8), scales=2, depth=1, hidden_channels=8, levels=17)
    lv = langevin_fill(flow, x, m, mf, samples=2, steps=3, levels=17)
    assert lv.shape == (3, 2, 1, 8, 8) and torch.equal(lv[:, 0] * m, x * m)
    c = inpainting_context(x, m[:, 0], 17)
    assert missing_bits(tiny(), x, c, m).shape == (3,)


CONFIG = {
    "name": "cg",
    "data": {
        "name": "inpainting",
        "n_train": 128,
        "n_val": 16,
        "n_test": 16,
        "source": "digits-image",
    },
    "model": {
        "name": "cglow",
        "scales": 2,
        "depth": 1,
        "hidden_channels": 8,
        "feature_channels": 4,
        "levels": 17,
    },
    "train": {"steps": 20, "batch_size": 16, "eval_every": 5},
}


def assert_resumes_bit_identical(config, tmp_path, monkeypatch):
    """Trains ``config`` whole and stopped at step 12 then resumed: the final parameters are
    equal; returns the whole run and its parameters."""
    whole = train_run(
        parse_config({**config, "output_dir": str(tmp_path / "a")}), progress=False, plots=False
    )
    cfg = parse_config({**config, "output_dir": str(tmp_path / "b")})
    resumed = stop_at_step_and_resume(cfg, 12, monkeypatch)
    a, b = final_parameters(whole.run_dir), final_parameters(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    return whole, a


def test_a_tiny_inpainting_run_resumes_bit_identical_and_loads_without_data(
    tmp_path, monkeypatch, capsys
):
    whole, a = assert_resumes_bit_identical(CONFIG, tmp_path, monkeypatch)

    from flowforge.data import registry

    monkeypatch.setattr(registry, "DATASETS", {})  # no data set: load needs the spec only
    flow = flowforge.load(whole.run_dir)
    assert isinstance(flow, ImageContextFlow) and flow.context_shape == (2, 8, 8)
    assert flow.sample(2, torch.zeros(2, 8, 8)).shape == (2, 1, 8, 8)
    image = np.random.default_rng(0).integers(0, 17, (2, 8, 8))
    np.save(tmp_path / "img.npy", image)
    out = tmp_path / "fill.png"
    assert (
        main(
            [
                "inpaint",
                str(whole.run_dir),
                "--image",
                str(tmp_path / "img.npy"),
                "--mask",
                "centre",
                "-k",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89PNG"
    report = json.loads(out.with_suffix(".json").read_text())
    assert len(report["bits_per_missing_pixel"]) == 2
    np.save(tmp_path / "bad.npy", np.full((8, 8), 0.5))
    assert (
        main(
            [
                "inpaint",
                str(whole.run_dir),
                "--image",
                str(tmp_path / "img.npy"),
                "--mask",
                str(tmp_path / "bad.npy"),
            ]
        )
        == 2
    )
    assert "binary" in capsys.readouterr().err
    np.save(tmp_path / "small.npy", np.zeros((2, 4, 4)))
    assert (
        main(
            [
                "inpaint",
                str(whole.run_dir),
                "--image",
                str(tmp_path / "small.npy"),
                "--mask",
                "centre",
            ]
        )
        == 2
    )
    assert "(1, 8, 8)" in capsys.readouterr().err
    assert main(["sample", str(whole.run_dir), "-n", "2"]) == 2
    assert "flowforge inpaint" in capsys.readouterr().err


def fresh_mask_objective(fresh_masks):
    """The maximum likelihood objective of 32 digit images with masks of every kind, one
    batch per epoch."""
    data = load_dataset("inpainting", 32, 8, 8, source="digits-image", fresh_masks=fresh_masks)
    return MaximumLikelihood(Setting(0, 32, 8, torch.device("cpu"), data))


def batch_masks(objective, step):
    """The masks of the batch at ``step`` in example order (the batch is a permutation)."""
    x, c = objective.batch(step)
    order = torch.argsort(batch_indices(32, 32, 0, step))
    assert torch.equal(c[:, 0], x[:, 0] / 16 * c[:, 1])  # the visible pixels of these masks
    return c[order, 1]


def test_fresh_masks_are_drawn_per_batch_and_evaluation_masks_stay_fixed():
    fixed, fresh = fresh_mask_objective(False), fresh_mask_objective(True)
    assert torch.equal(batch_masks(fixed, 0), batch_masks(fixed, 1))
    first, second = batch_masks(fresh, 0), batch_masks(fresh, 1)
    assert not torch.equal(first, second)  # the same images, new masks in the next epoch
    assert torch.equal(first, batch_masks(fresh, 0))  # a pure function of (seed, step)
    assert torch.equal(first, batch_masks(fresh_mask_objective(True), 0))
    for split in ("train_context", "val_context", "test_context"):
        assert torch.equal(getattr(fixed.data, split), getattr(fresh.data, split))
    assert fixed.fingerprint() == fresh.fingerprint()


def test_a_run_with_fresh_masks_resumes_bit_identical(tmp_path, monkeypatch):
    config = {**CONFIG, "data": {**CONFIG["data"], "fresh_masks": True}}
    _, a = assert_resumes_bit_identical(config, tmp_path, monkeypatch)
    fixed = train_run(
        parse_config({**CONFIG, "output_dir": str(tmp_path / "c")}), progress=False, plots=False
    )
    c = final_parameters(fixed.run_dir)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the fresh masks were trained on


@pytest.mark.slow
@pytest.mark.parametrize("fresh_masks", [False, True])
def test_sigkill_from_the_command_line_then_resume_is_bit_identical(tmp_path, fresh_masks):
    """A tiny c-Glow inpainting run killed with SIGKILL after three evaluations and resumed
    with ``flowforge train --resume`` ends with the parameters and records of an
    uninterrupted run (both one thread)."""
    config = {
        **CONFIG,
        "data": {**CONFIG["data"], "fresh_masks": fresh_masks},
        "train": {**CONFIG["train"], "steps": 40},
    }
    path = tmp_path / "cglow.yaml"
    path.write_text(yaml.safe_dump(config))
    whole = cli_process("train", str(path), "--quiet", "--set", "name=whole", cwd=tmp_path)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    run_dir = tmp_path / "runs" / "cut"
    proc = cli_process("train", str(path), "--quiet", "--set", "name=cut", cwd=tmp_path)
    assert kill_after(proc, run_dir, 3, signal.SIGKILL) == -signal.SIGKILL
    resumed = cli_process("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a, b = final_parameters(tmp_path / "runs" / "whole"), final_parameters(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_without_time(run_dir) == metrics_without_time(tmp_path / "runs" / "whole")


def test_posterior_mean_and_psnr():
    from flowforge.models.cglow import posterior_mean, psnr

    x = torch.zeros(2, 1, 8, 8)
    assert torch.allclose(psnr(x + 255 * 0.1, x), torch.full((2,), 20.0))
    flow = cglow(
        (1, 8, 8),
        context_features=1,
        scales=2,
        depth=1,
        hidden_channels=8,
        feature_channels=4,
        levels=17,
    )
    assert posterior_mean(flow, torch.rand(3, 1, 8, 8), samples=2).shape == (3, 1, 8, 8)
