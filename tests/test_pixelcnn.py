"""PixelCNN's oracles on tiny images: the masks (each logit independent of its pixel and the
later ones, by the Jacobian), the NLL as a sum of conditionals computed one by one, a total
probability of 1 over every image, and samples at the model's probabilities. The run features
(train, resume, eval, load without data, sample) are the ``pixelcnn`` case of
tests/test_objectives.py."""

import itertools

import pytest
import torch

from flowforge.models.pixelcnn import MaskedConv2d, PixelCNN


def tiny(shape, seed=0, scale=0.5):
    """A PixelCNN of ``shape`` with every weight drawn from N(0, scale^2), in float64: far
    from uniform, so a wrong conditional shows."""
    torch.manual_seed(seed)
    model = PixelCNN(shape, hidden=3, blocks=2).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, scale)
    return model


def all_images(shape):
    d = shape[0] * shape[1]
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=d)), dtype=torch.float64)


def logit_jacobian(model, x):
    """``J[i, k] = d logit_i / d x_k`` at one flattened image ``x``."""
    return torch.autograd.functional.jacobian(
        lambda v: model.logits(v.reshape(1, *model.event_shape))[0], x
    )


def test_each_logit_depends_on_the_pixels_before_it_and_on_no_other():
    model = tiny((5, 4))
    x = torch.rand(20, dtype=torch.float64)
    jac = logit_jacobian(model, x)
    later = torch.triu(torch.ones(20, 20, dtype=torch.bool))  # k >= i, raster order
    assert jac[later].abs().max() == 0
    # and the pixels just before do matter: the left neighbour and the one above
    for i in range(20):
        row, col = divmod(i, 4)
        if col > 0:
            assert jac[i, i - 1].abs() > 1e-8
        if row > 0:
            assert jac[i, i - 4].abs() > 1e-8


@pytest.mark.parametrize(("mask", "centre"), [("A", False), ("B", True)])
def test_a_masked_convolution_sees_the_pixels_before_its_centre(mask, centre):
    torch.manual_seed(0)
    conv = MaskedConv2d(1, 1, 5, mask).double()
    x = torch.rand(1, 1, 6, 7, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: conv(v).flatten(), x).reshape(42, 42)
    sees = jac != 0
    before = torch.tril(torch.ones(42, 42, dtype=torch.bool), -1)
    assert not (sees & ~before & ~torch.eye(42, dtype=torch.bool)).any()
    assert bool(sees.diagonal().all()) == centre
    with pytest.raises(ValueError, match="'mask' should be 'A' or 'B'"):
        MaskedConv2d(1, 1, 3, "C")


def test_the_nll_is_the_sum_of_the_conditionals_computed_one_by_one():
    """Each conditional ``p(x_i | x_<i)`` from an image whose pixels ``>= i`` are noise."""
    model = tiny((4, 5), seed=1)
    x = torch.bernoulli(torch.full((6, 4, 5), 0.4, dtype=torch.float64)).flatten(1)
    total = torch.zeros(6, dtype=torch.float64)
    for i in range(20):
        seen = x.clone()
        seen[:, i:] = torch.rand(6, 20 - i, dtype=torch.float64)
        p = torch.sigmoid(model.logits(seen.reshape(6, 4, 5))[:, i])
        total += torch.where(x[:, i] == 1, p, 1 - p).log()
    torch.testing.assert_close(model.log_prob(x.reshape(6, 4, 5)), total, rtol=1e-12, atol=1e-12)


def test_the_probabilities_of_every_3x3_image_sum_to_one():
    model = tiny(9, seed=2)  # flattened square images, as binarized MNIST comes
    with torch.no_grad():
        log_p = model.log_prob(all_images((3, 3)))
    assert log_p.shape == (512,)
    assert abs(float(torch.logsumexp(log_p, 0))) < 1e-12
    assert float(log_p.max() - log_p.min()) > 3  # far from uniform


def test_the_sampler_computes_each_logit_from_its_window_exactly():
    """On a 12 x 13 image the windows of :meth:`PixelCNN._logit_at` (``3 + blocks`` = 4 rows
    up and columns each side) are smaller than the image: each logit equals the whole image's."""
    model = tiny((12, 13), seed=5)
    assert model.reach == 3 + 2
    x = torch.bernoulli(torch.full((3, 1, 12, 13), 0.5, dtype=torch.float64))
    with torch.no_grad():
        whole = model.logits(x.reshape(3, 12, 13)).reshape(3, 12, 13)
        for i, j in itertools.product(range(12), range(13)):
            torch.testing.assert_close(model._logit_at(x, i, j), whole[:, i, j], rtol=0, atol=1e-12)


def test_samples_follow_the_models_probabilities():
    """2 x 3 images (not square: a row/column mix-up shows): 20,000 draws, every one of the 64
    images within 5 standard errors of its exact probability."""
    model = tiny((2, 3), seed=3, scale=0.8)
    states = all_images((2, 3)).reshape(64, 2, 3)
    with torch.no_grad():
        p = model.log_prob(states).exp()
        torch.manual_seed(0)
        x = model.sample(20000)
    assert x.shape == (20000, 2, 3) and set(x.unique().tolist()) == {0.0, 1.0}
    index = (x.flatten(1) * 2.0 ** torch.arange(5, -1, -1)).sum(1).long()
    freq = torch.bincount(index, minlength=64).double() / 20000
    se = (p * (1 - p) / 20000).sqrt()
    assert bool(((freq - p).abs() <= 5 * se + 1e-4).all())
    assert float(p.max()) > 4 / 64  # not near uniform, so the check has teeth


def test_temperature_sharpens_the_conditionals():
    model = tiny(4, seed=4, scale=1.5)
    torch.manual_seed(0)
    cold = model.sample(4000, temperature=0.05)
    # at a temperature near 0 every pixel takes its likelier value given the ones before
    logits = model.logits(cold)  # (4000, 4): flattened square images
    sure = logits.abs() > 1  # the other value at most sigmoid(-20) likely
    assert float(sure.float().mean()) > 0.5
    assert bool(((logits > 0) == (cold.flatten(1) == 1))[sure].all())


@pytest.mark.parametrize(
    ("shape", "error"),
    [(10, "not a square image"), ((3, 2, 2), "one-channel images"), ((0, 4), "one-channel")],
)
def test_shapes_it_cannot_model_are_refused(shape, error):
    with pytest.raises(ValueError, match=error):
        PixelCNN(shape)


def test_inputs_it_cannot_score_are_refused():
    model = tiny((1, 3, 3))
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        model.log_prob(torch.full((2, 1, 3, 3), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected images of shape \(1, 3, 3\)"):
        model.log_prob(torch.zeros(2, 9, dtype=torch.float64))
    with pytest.raises(ValueError, match="takes no context"):
        model.sample(2, context=torch.zeros(2, 1))
    assert model.sample(2).shape == (2, 1, 3, 3)


@pytest.mark.parametrize("binary", [True, False])
def test_a_run_on_a_file_of_images_needs_values_of_0_and_1(binary, tmp_path, capsys):
    """A file of 3 x 3 binary images trains (kept as they are: ``dequantize: false``); a file
    of other values (or the dequantised default) is refused in one line before training."""
    import numpy as np
    import yaml

    from flowforge.cli import main

    rng = np.random.default_rng(0)
    rows = rng.random((200, 9))
    np.save(tmp_path / "x.npy", (rows < 0.3 if binary else rows).astype(np.float32))
    config = {
        "name": "tiny",
        "output_dir": str(tmp_path / "runs"),
        "objective": {"name": "likelihood"},
        "data": {
            "name": "file",
            "path": str(tmp_path / "x.npy"),
            "n_train": 150,
            "n_val": 25,
            "n_test": 25,
            "dequantize": False,
        },
        "model": {"name": "pixelcnn", "hidden": 2, "blocks": 1},
        "train": {"steps": 3, "batch_size": 32, "eval_every": 3},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    status = main(["train", str(tmp_path / "c.yaml"), "--quiet"])
    err = capsys.readouterr().err
    if binary:
        assert status == 0
        assert (tmp_path / "runs" / "tiny" / "summary.json").is_file()
    else:
        assert status == 2 and not (tmp_path / "runs" / "tiny").exists()
        assert "error: model: objective 'likelihood' on this data: PixelCNN models binary" in err
