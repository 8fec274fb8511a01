"""Image flows: reshaping, masks, actnorm, 1x1 convs, dequantization and bits/dim, data
loaders, recipes, latent tools and PNG grids."""

import gzip
import hashlib
import http.server
import math
import pickle
import struct
import threading
import zlib
from functools import partial

import numpy as np
import pytest
import torch

from flowforge.data import load_dataset
from flowforge.data.download import download_file, download_idx
from flowforge.data.image_readers import (
    FASHION_MNIST_DEBIAN_DIR,
    load_cifar10_arrays,
    load_mnist_arrays,
    read_idx,
)
from flowforge.distributions import BaseDistribution, StandardLogistic
from flowforge.flows import Flow
from flowforge.latent import (
    attribute_direction,
    decode,
    encode,
    interpolate,
    manipulate,
    stroke_thickness,
    thickness_groups,
)
from flowforge.models import RECIPES
from flowforge.models.glow import glow
from flowforge.models.nice_image import nice_image
from flowforge.objectives.mle import bits_per_dim, evaluate_nll
from flowforge.testing.cases.images import _tiny_multiscale
from flowforge.transforms import Compose, DiagonalScaling, Logit
from flowforge.transforms.conv1x1 import InvertibleConv1x1
from flowforge.transforms.coupling import MaskedCoupling, checkerboard_mask
from flowforge.transforms.dequantization import (
    UniformDequantization,
    VariationalDequantization,
    quantize,
)
from flowforge.transforms.normalization import ActNorm
from flowforge.transforms.reshape import MultiScale, squeeze, unsqueeze
from flowforge.transforms.univariate import Affine
from flowforge.viz.images import (
    image_grid,
    interpolation_grid,
    manipulation_grid,
    sample_grid,
    save_image_grid,
    write_png,
)


class UnitCubeUniform(BaseDistribution):
    """The uniform density on [0, 1]^D: log p = 0 inside, -inf outside."""

    def log_prob(self, z, context=None):
        inside = ((z >= 0) & (z <= 1)).reshape(z.shape[0], -1).all(1)
        return torch.where(inside, 0.0, -math.inf).to(z.dtype)

    def sample(self, n, context=None, temperature=1.0):
        return torch.rand(n, *self.event_shape)


def raw_images(n=6, shape=(1, 4, 4), levels=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (n, *shape), generator=g).float()


# -- the closed-form bits/dim checks ---------------------------------------------------------


@pytest.mark.parametrize("levels", [256, 17])
def test_identity_flow_with_uniform_base_gives_log2_levels_bits_per_dim(levels):
    x = raw_images(levels=levels, shape=(1, 5, 5)).double()
    flow = Flow(UniformDequantization(levels), UnitCubeUniform((1, 5, 5))).double()
    nll, _ = evaluate_nll(flow, x)
    assert bits_per_dim(nll, 25) == pytest.approx(math.log2(levels), abs=1e-12)
    bpd = -flow.log_prob(x) / (25 * math.log(2))
    assert torch.allclose(bpd, torch.full_like(bpd, math.log2(levels)), atol=1e-12)


def test_logit_preprocessing_is_counted_so_uniform_model_still_gives_8_bits():
    # sigmoid of a standard logistic is uniform on (0, 1): the model is the same uniform density,
    # so the logit's log-determinant must cancel the logistic density exactly
    x = raw_images(n=8, shape=(2, 3, 3))
    flow = Flow(Compose([UniformDequantization(), Logit(alpha=0.0)]), StandardLogistic((2, 3, 3)))
    flow = flow.double()
    bpd = -flow.log_prob(x.double()) / (18 * math.log(2))
    assert torch.allclose(bpd, torch.full_like(bpd, 8.0), atol=1e-9)


def test_variational_dequantization_bound_and_log_q_in_closed_form():
    torch.manual_seed(0)
    shape = (1, 4, 4)
    from flowforge.nn.conv import ConvNet

    vd = VariationalDequantization(shape, lambda i, o, k: ConvNet(i, o, 8, context_features=k))
    x = raw_images(n=256, shape=shape)
    # zero-initialised couplings: u = sigmoid(eps), a logit-normal with a closed-form density
    u, log_q = vd.log_q(x)
    eps = torch.log(u) - torch.log1p(-u)
    expected = (
        -0.5 * eps.pow(2) - 0.5 * math.log(2 * math.pi) - torch.log(u) - torch.log1p(-u)
    ).sum((1, 2, 3))
    assert torch.allclose(log_q, expected, atol=1e-3)
    # with a uniform model the bound is 8 bits/dim minus the entropy of q (<= 0 on the unit
    # cube): above 8 on average, equal only for uniform q
    flow = Flow(vd, UnitCubeUniform(shape))
    bpd = -flow.log_prob(x) / (16 * math.log(2))
    assert bpd.mean() > 8.0 + 3 * bpd.std() / math.sqrt(bpd.numel())
    y, _ = vd(x)
    assert torch.equal(quantize(vd.inverse(y)[0]), x)


def test_dequantization_round_trip_and_range_checks():
    x = raw_images(n=10)
    t = UniformDequantization()
    y, ladj = t(x)
    assert bool(((y >= 0) & (y < 1)).all())
    assert torch.allclose(ladj, torch.full((10,), -16 * math.log(256)))
    assert torch.equal(quantize(t.inverse(y)[0]), x)
    with pytest.raises(ValueError, match="'x' should hold values in \\[0, 255\\]"):
        t(x + 300)
    with pytest.raises(ValueError, match="'levels'"):
        UniformDequantization(levels=1)


# -- reshaping and multi-scale ----------------------------------------------------------------


def test_squeeze_layout_and_inverse():
    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    s = squeeze(x)
    assert s.shape == (1, 8, 2, 2)
    assert torch.equal(s[0, 0], x[0, 0, ::2, ::2])
    assert torch.equal(s[0, 1], x[0, 0, ::2, 1::2])
    assert torch.equal(s[0, 3], x[0, 0, 1::2, 1::2])
    assert torch.equal(s[0, 4], x[0, 1, ::2, ::2])
    assert torch.equal(unsqueeze(s), x)
    with pytest.raises(ValueError, match="divisible"):
        squeeze(torch.zeros(1, 1, 3, 4))


def test_multiscale_keeps_event_shape_and_factored_latents_ignore_deeper_scales():
    torch.manual_seed(0)
    ms = _tiny_multiscale().double().eval()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    z, _ = ms(x)
    assert z.shape == x.shape
    first, last = ms.latents(z)
    assert first.shape == (3, 2, 2, 2) and last.shape == (3, 8, 1, 1)
    # changing the deepest scale's parameters moves only the last scale's latent
    deep = ms.transforms[
        4
    ].inner  # [head, squeeze, steps, prior, FactorOut, unsqueeze]: the rest of the flow
    with torch.no_grad():
        for p in deep.parameters():
            p.add_(0.3)
    first2, last2 = ms.latents(ms(x)[0])
    assert torch.equal(first, first2)
    assert not torch.allclose(last, last2)


def test_multiscale_validates_arguments():
    with pytest.raises(ValueError, match="'levels'"):
        MultiScale([])
    with pytest.raises(ValueError, match="'priors'"):
        MultiScale([Compose([]), Compose([])], priors=[])


# -- couplings, actnorm, 1x1 conv --------------------------------------------------------------


def test_checkerboard_coupling_leaves_the_conditioning_pixels_alone():
    torch.manual_seed(0)
    from flowforge.nn.conv import ConvNet

    mask = checkerboard_mask((2, 4, 4), parity=1)
    assert mask[:, 0, 1].all() and not mask[:, 0, 0].any()
    layer = MaskedCoupling(mask, lambda i, o: ConvNet(i, o, 8, zero_init=False), Affine())
    x = torch.randn(2, 2, 4, 4)
    z, ladj = layer(x)
    assert torch.equal(z[:, mask], x[:, mask])
    assert not torch.allclose(z[:, ~mask], x[:, ~mask])
    with pytest.raises(ValueError, match="'mask' should have the event shape"):
        MaskedCoupling(torch.ones(4, dtype=torch.bool), lambda i, o: None, Affine())


def test_actnorm_data_dependent_initialisation_happens_once():
    torch.manual_seed(0)
    a = ActNorm(3)
    x = torch.randn(64, 3, 4, 4) * torch.tensor([1.0, 5.0, 0.2]).reshape(1, 3, 1, 1) + 7
    a.eval()
    assert torch.equal(a(x)[0], x)  # no initialisation in eval mode: the identity
    a.train()
    z, _ = a(x)
    assert bool(a.initialized)
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    before = a.bias.detach().clone()
    a(x * 3)
    assert torch.equal(a.bias.detach(), before)
    assert "initialized" in a.state_dict()


@pytest.mark.parametrize("shape", [(64, 3), (16, 3, 4, 4)])
def test_diagonal_scaling_data_init_gives_unit_scale_once(shape):
    torch.manual_seed(0)
    spread = torch.tensor([1.0, 5.0, 0.002]).reshape(1, 3, *[1] * (len(shape) - 2))
    x = (torch.randn(shape) * spread + 7).double()
    dims = [0, *range(2, len(shape))]
    s = DiagonalScaling(3, data_init=True).double()
    s.eval()
    assert torch.equal(s(x)[0], x)  # no initialisation in eval mode
    s.train()
    z, ladj = s(x)
    std = x.std(dims, unbiased=False)
    assert torch.allclose(z.std(dims, unbiased=False), std / (std + s.eps), atol=1e-5)
    expected = -torch.log(std + s.eps).sum() * math.prod(shape[2:])
    assert torch.allclose(ladj, expected.expand(shape[0]), rtol=1e-5)
    before = s.log_scale.detach().clone()
    s(x * 3)
    assert torch.equal(s.log_scale.detach(), before)
    assert "initialized" in s.state_dict()
    assert "initialized" not in DiagonalScaling(3).state_dict()  # the paper's plain layer


def test_nice_image_starts_its_scaling_from_the_data():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (32, 1, 4, 4)).float()
    x[:, :, 0, 0] = 0  # an always-black pixel: dequantized spread 1/256
    bpd = {}
    for data_init in (False, True):
        flow = nice_image((1, 4, 4), couplings=2, hidden=(8,), data_init=data_init)
        flow.log_prob(x)  # training mode: the initialisation, if any
        flow.eval()
        bpd[data_init] = -flow.log_prob(x).mean().item() / (16 * math.log(2))
    assert bpd[True] < bpd[False] - 0.5


def test_plain_1x1_conv_log_det_is_hw_times_slogdet():
    torch.manual_seed(0)
    c = InvertibleConv1x1(3)
    with torch.no_grad():
        c.weight.mul_(torch.tensor([[2.0], [1.0], [0.5]]) * 1.7)
    z, ladj = c(torch.randn(2, 3, 5, 6))
    assert torch.allclose(ladj, 30 * torch.linalg.slogdet(c.weight)[1].expand(2), atol=1e-5)


# -- recipes ---------------------------------------------------------------------------------


def test_image_recipes_are_registered_and_start_near_the_identity():
    for name in ("glow", "realnvp_multiscale", "realnvp_image", "nice_image"):
        assert name in RECIPES
    torch.manual_seed(0)
    flow = glow((1, 8, 8), scales=2, depth=2, hidden_channels=8, dequantization="centre")
    x = raw_images(n=4, shape=(1, 8, 8))
    # zero-initialised couplings and priors, actnorm not yet initialised (eval mode): only the
    # orthogonal 1x1 convolutions act, so norms are preserved
    flow.eval()
    y = flow.transform[0](x)[0]  # dequantization
    z = flow.transform[1](y)[0]  # the multi-scale part
    assert torch.allclose(z.flatten(1).norm(dim=1), y.flatten(1).norm(dim=1), atol=1e-4)
    assert not torch.allclose(z, y)


def test_glow_temperature_and_class_conditional_sampling():
    torch.manual_seed(0)
    flow = glow((1, 8, 8), scales=2, depth=1, hidden_channels=8, context_features=3, levels=17)
    flow.train()
    x, c = raw_images(n=8, shape=(1, 8, 8), levels=17), torch.eye(3)[torch.arange(8) % 3]
    flow.log_prob(x, c)  # actnorm initialisation
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    flow.eval()
    cold = flow.sample(2, context=torch.eye(3)[1], temperature=0.0)
    assert torch.allclose(cold[0], cold[1])  # T = 0 gives the mode of the prior, decoded
    a = flow.sample(1, context=torch.eye(3)[0], temperature=0.0)
    assert not torch.allclose(a[0], cold[0])  # the class changes the prior
    assert flow.sample(5, context=torch.eye(3)[2], temperature=0.7).shape == (5, 1, 8, 8)


def test_class_grid_has_one_row_per_class(tmp_path):
    """``sample_grid`` with one label per image: at temperature 0 every image of a row is its
    class's mode, and rows of different classes differ."""
    torch.manual_seed(0)
    flow = glow((1, 8, 8), scales=2, depth=1, hidden_channels=8, context_features=3, levels=17)
    flow.train()
    flow.log_prob(raw_images(n=9, shape=(1, 8, 8), levels=17), torch.eye(3)[torch.arange(9) % 3])
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    flow.eval()
    labels = [0, 0, 1, 1, 2, 2]
    grid = _read_png(sample_grid(flow, tmp_path / "c.png", 6, 0.0, labels, 3, nrow=2))
    assert grid.shape == (3 * 10 + 2, 2 * 10 + 2, 1)
    rows = [grid[2 + 10 * r : 10 + 10 * r, 2:10] for r in range(3)]
    for r in range(3):  # both columns of a row are the same mode
        assert np.array_equal(rows[r], grid[2 + 10 * r : 10 + 10 * r, 12:20])
    assert not np.array_equal(rows[0], rows[1]) or not np.array_equal(rows[1], rows[2])
    with pytest.raises(ValueError, match="'label'"):
        sample_grid(flow, tmp_path / "x.png", 2, 0.7, [0, 3], 3)


# -- latent tools ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_flow():
    torch.manual_seed(0)
    splits = load_dataset("digits-image", n_train=64, n_val=8, n_test=32)
    flow = glow((1, 8, 8), scales=2, depth=2, hidden_channels=8, levels=17, alpha=0.05)
    flow.train()
    flow.log_prob(splits.train)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return flow.eval(), splits


def test_encode_decode_is_exact(digits_flow):
    flow, splits = digits_flow
    x = splits.test[:16]
    assert torch.equal(decode(flow, encode(flow, x)), x)


def test_interpolation_ends_at_the_two_images(digits_flow):
    flow, splits = digits_flow
    x0, x1 = splits.test[0], splits.test[1]
    path = interpolate(flow, x0, x1, steps=5)
    assert path.shape == (5, 1, 8, 8)
    assert torch.equal(path[0], x0) and torch.equal(path[-1], x1)


def test_attribute_direction_and_manipulation(digits_flow):
    flow, splits = digits_flow
    labels = splits.info["labels"]["train"]
    a, b = splits.train[labels == 0], splits.train[labels == 1]
    d = attribute_direction(flow, a, b)
    za, zb = encode(flow, a).mean(0), encode(flow, b).mean(0)
    # one noise draw per encode: the difference of means matches up to the dequantization noise
    assert torch.allclose(d, zb - za, atol=0.5)
    out = manipulate(flow, splits.test[:3], d, scales=(0.0, 1.0))
    assert out.shape == (3, 2, 1, 8, 8)
    assert torch.equal(out[:, 0], splits.test[:3])
    assert not torch.equal(out[:, 1], out[:, 0])


def test_thickness_groups_and_grid_writers(digits_flow, tmp_path):
    flow, splits = digits_flow
    thin, thick = thickness_groups(splits.train, fraction=0.25, levels=17)
    assert thin.shape == thick.shape == (16, 1, 8, 8)
    assert stroke_thickness(thin, levels=17).max() <= stroke_thickness(thick, levels=17).min()
    d = attribute_direction(flow, thin, thick)
    png = manipulation_grid(flow, splits.test[:2], d, tmp_path / "m.png", scales=(-1.0, 0.0, 1.0))
    grid = _read_png(png)
    assert grid.shape == (2 * 10 + 2, 3 * 10 + 2, 1)
    # the middle column (scale 0) is the images themselves, rescaled from 17 levels
    expected = np.round(splits.test[0, 0].numpy() * 255 / 16)
    assert np.array_equal(grid[2:10, 12:20, 0], expected)
    pairs = splits.test[:4].reshape(2, 2, 1, 8, 8)
    assert _read_png(interpolation_grid(flow, pairs, tmp_path / "i.png", steps=4)).shape == (
        22,
        42,
        1,
    )
    assert _read_png(sample_grid(flow, tmp_path / "s.png", n=6, nrow=3)).shape == (22, 32, 1)
    with pytest.raises(ValueError, match="'n'"):
        sample_grid(flow, tmp_path / "x.png", n=0)


# -- PNG grids -------------------------------------------------------------------------------


def _read_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, depth, color = struct.unpack(">IIBB", data[16:26])
    idat = data.index(b"IDAT")
    n = struct.unpack(">I", data[idat - 4 : idat])[0]
    raw = zlib.decompress(data[idat + 4 : idat + 4 + n])
    c = 1 if color == 0 else 3
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + w * c)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, c)


def test_png_grid_round_trip(tmp_path):
    imgs = raw_images(n=5, shape=(1, 4, 4), levels=17)
    grid = image_grid(imgs, nrow=3, padding=1, levels=17)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 1)
    assert np.array_equal(grid[1:5, 1:5, 0], np.round(imgs[0, 0].numpy() * 255 / 16))
    big = image_grid(imgs, nrow=3, padding=1, levels=17, scale=2)
    assert big.shape == (2 * 9 + 1, 3 * 9 + 1, 1)
    assert np.array_equal(big[1:9:2, 1:9:2], grid[1:5, 1:5])
    path = save_image_grid(imgs, tmp_path / "g.png", nrow=3, padding=1, levels=17)
    assert np.array_equal(_read_png(path), grid)
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(_read_png(write_png(rgb, tmp_path / "rgb.png")), rgb)


# -- data --------------------------------------------------------------------------------------


def _write_idx(path, array):
    dtype_code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(
        struct.pack(">I", s) for s in array.shape
    )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _fake_mnist_dir(root, n_train=30, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, a in arrays.items():
        _write_idx(root / (name + (".gz" if gz else "")), a)
    return arrays


def test_idx_reader_and_mnist_loader_from_a_user_directory(tmp_path):
    arrays = _fake_mnist_dir(tmp_path, gz=False)
    assert np.array_equal(
        read_idx(tmp_path / "train-images-idx3-ubyte"), arrays["train-images-idx3-ubyte"]
    )
    splits = load_dataset("mnist", 20, 5, 10, data_dir=str(tmp_path), conditional=True)
    assert splits.train.shape == (20, 1, 28, 28) and splits.unit == "bits/dim"
    assert splits.info["levels"] == 256
    assert splits.train_context.shape == (20, 10)
    assert torch.equal(
        splits.test[0, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"][0]).float()
    )
    two = load_dataset("mnist", 2, 1, 1, data_dir=str(tmp_path), classes=[2])
    assert (two.info["labels"]["train"] == 2).all()
    with pytest.raises(ValueError, match="data.n_train"):
        load_dataset("mnist", 40, 5, 1, data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="data.data_dir"):
        load_mnist_arrays(tmp_path / "nothing")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_download_with_checksums_from_a_local_http_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    _fake_mnist_dir(served, gz=True)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in served.iterdir()}
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        dest = tmp_path / "dl"
        arrays = load_mnist_arrays(dest, download=True, files=md5, mirrors=[url])
        assert arrays["x_train"].shape == (30, 28, 28)
        cached = load_mnist_arrays(
            None, True, md5, [url], default_dirs=[tmp_path / "none"], cache_dir=tmp_path / "c"
        )
        assert np.array_equal(cached["y_test"], arrays["y_test"])
        assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(md5)
        bad = dict(md5, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
        with pytest.raises(ValueError, match="checksum mismatch"):
            download_file(url + "t10k-labels-idx1-ubyte.gz", tmp_path / "x.gz", "0" * 32)
        assert not (tmp_path / "x.gz").exists()
        with pytest.raises(RuntimeError, match="could not download"):
            download_idx(tmp_path / "dl2", bad, [url])
    finally:
        server.shutdown()


def test_cifar10_loader_on_generated_pickles(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            b"labels": [0, 1, 2, 3],
        }
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    arrays = load_cifar10_arrays(tmp_path)
    assert arrays["x_train"].shape == (20, 3, 32, 32)
    splits = load_dataset("cifar10", 15, 5, 4, data_dir=str(tmp_path), classes=[0, 1, 2, 3])
    assert splits.event_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="data.data_dir"):
        load_dataset("cifar10", 1, 1, 1)


def test_digits_loader():
    s = load_dataset("digits-image", 100, 20, 30, classes=[3], conditional=True)
    assert s.train.shape == (100, 1, 8, 8) and s.info["levels"] == 17
    assert s.train.max() <= 16 and (s.info["labels"]["test"] == 3).all()
    assert torch.equal(s.train_context, torch.eye(10)[[3] * 100])


def test_mnist_from_shared_data(shared_data):
    arrays = load_mnist_arrays(default_dirs=[shared_data])
    assert arrays["x_train"].shape == (60000, 28, 28)
    assert arrays["y_test"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    s = load_dataset("mnist", 100, 10, 1032, classes=[2])
    assert s.test.shape[0] == 1032 and (s.info["labels"]["test"] == 2).all()


@pytest.mark.skipif(
    not FASHION_MNIST_DEBIAN_DIR.is_dir(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_DEBIAN_DIR} "
    "(apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_the_debian_package():
    s = load_dataset("fashion_mnist", 100, 10, 10000)
    assert s.test.shape == (10000, 1, 28, 28)
    assert np.bincount(s.info["labels"]["test"]).tolist() == [1000] * 10


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_downloaded_file_gets_the_umask_mode_and_leaves_no_partial_file(tmp_path, umask):
    import hashlib
    import os

    source = tmp_path / "source.bin"
    source.write_bytes(b"flowforge" * 100)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    old = os.umask(umask)
    try:
        dest = download_file(source.as_uri(), tmp_path / "out" / "file.bin", md5)
    finally:
        os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]
