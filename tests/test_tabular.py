"""Tabular loaders (on small files written in the MAF archive's formats) and known-density tasks."""

import math

import numpy as np
import pytest
import torch

from flowforge.data import DATASETS, known, load_dataset, tabular


# ---------------------------------------------------------------- MAF-archive formats, tiny files
def _power_file(root, n=300):
    rng = np.random.default_rng(0)
    raw = np.hstack(
        [
            rng.uniform(0, 5, (n, 1)).round(3),  # active power (3 decimals)
            np.full((n, 1), 1e6),  # reactive power: must be dropped
            rng.uniform(230, 250, (n, 1)).round(2),  # voltage (2 decimals)
            np.full((n, 1), -1e6),  # intensity: must be dropped
            rng.integers(0, 40, (n, 3)).astype(float),  # sub-meterings (integers)
            np.arange(n, dtype=float)[:, None],  # time (no noise)
        ]
    )
    (root / "power").mkdir(parents=True)
    np.save(root / "power" / "data.npy", raw)
    return raw


def test_power_preprocessing_and_splits(tmp_path):
    _power_file(tmp_path)
    train, val, test = tabular.load_power(str(tmp_path))
    n_test = int(0.1 * 300)
    n_val = int(0.1 * (300 - n_test))
    assert (len(train), len(val), len(test)) == (300 - n_test - n_val, n_val, n_test)
    assert train.shape[1] == 6  # columns 1 and 3 dropped
    both = np.vstack([train, val])
    assert np.allclose(both.mean(0), 0, atol=1e-9) and np.allclose(both.std(0), 1)
    # the reactive power (1e6) and intensity (-1e6) columns are gone
    assert np.abs(np.vstack([train, val, test])).max() < 10
    # the same file gives the same splits (the shuffle and the noise are seeded with 42)
    again = tabular.load_power(str(tmp_path))
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))


def test_power_noise_scales_per_column(tmp_path):
    """Two-level columns: the uniform noise spreads each level by the paper's scale (active power
    0.001, voltage 0.01, sub-meterings 1), which is the spread / gap ratio after the z-score."""
    n = 400
    levels = np.arange(n) % 2
    raw = np.column_stack(
        [
            2.0 + 0.01 * levels,  # active power: gap 0.01, noise 0.001 -> ratio 0.1
            np.zeros(n),
            240.0 + levels,  # voltage: gap 1, noise 0.01 -> ratio 0.01
            np.zeros(n),
            10.0 * levels,  # sub-meterings: gap 10, noise 1 -> ratio 0.1
            10.0 * levels,
            10.0 * levels,
            np.arange(n, dtype=float),
        ]
    )
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", raw)
    rows = np.vstack(tabular.load_power(str(tmp_path)))
    for column, ratio in ((0, 0.1), (1, 0.01), (2, 0.1), (3, 0.1), (4, 0.1)):
        v = np.sort(rows[:, column])
        low, high = v[: n // 2], v[n // 2 :]
        gap = high.min() - low.min()
        spread = max(np.ptp(low), np.ptp(high)) / gap
        assert 0.9 * ratio < spread < ratio, (column, spread)
    # the time column carries no noise: equally spaced values
    t = np.sort(rows[:, 5])
    assert np.allclose(np.diff(t), np.diff(t)[0])


def test_power_matches_the_papers_random_stream(tmp_path):
    """The exact draws of the MAF code: RandomState(42) shuffles the rows, then draws the
    voltage noise, then the active-power noise, then the sub-metering noise."""
    raw = _power_file(tmp_path)
    rng = np.random.RandomState(42)
    perm = np.arange(len(raw))
    rng.shuffle(perm)
    n = len(raw)
    noise = np.zeros((n, 6))
    noise[:, 1] = 0.01 * rng.rand(n, 1)[:, 0]
    noise[:, 0] = 0.001 * rng.rand(n, 1)[:, 0]
    noise[:, 2:5] = rng.rand(n, 3)
    expected = raw[perm][:, [0, 2, 4, 5, 6, 7]] + noise
    rows = np.vstack(tabular.load_power(str(tmp_path)))
    fit = expected[: n - int(0.1 * n)]  # train + validation rows
    assert np.allclose(rows, (expected - fit.mean(0)) / fit.std(0))


def test_gas_drops_correlated_columns_then_splits(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    n = 400
    base = rng.normal(size=(n, 8))
    frame = pd.DataFrame(base, columns=[f"s{i}" for i in range(8)])
    frame.insert(0, "Time", np.arange(n, dtype=float))
    frame.insert(1, "Meth", rng.normal(size=n))
    frame.insert(2, "Eth", rng.normal(size=n))
    frame["s_copy"] = frame["s3"] * 2 + 1e-3 * rng.normal(size=n)  # corr > 0.98 with s3
    (tmp_path / "gas").mkdir()
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    train, val, test = tabular.load_gas(str(tmp_path))
    assert train.shape[1] == 8  # Time, Meth, Eth dropped; s3 (first of the pair) dropped
    rows = np.vstack([train, val, test])
    assert np.allclose(rows.std(0, ddof=1), 1) and np.allclose(rows.mean(0), 0, atol=1e-9)
    # s3 went (the first column of the correlated pair), its copy stayed as the last column
    expected = (frame["s_copy"] - frame["s_copy"].mean()) / frame["s_copy"].std()
    assert np.allclose(rows[:, -1], expected.to_numpy())
    # the tail split keeps the row order
    assert np.allclose(test[:, 0], rows[-len(test) :, 0])
    assert len(test) == int(0.1 * n) and len(val) == int(0.1 * (n - len(test)))


def _hepmass_files(root, n_train=500, n_test=200):
    rng = np.random.default_rng(2)
    header = "# label," + ",".join(f"f{i}" for i in range(27)) + ",mass"

    def table(n):
        label = rng.integers(0, 2, (n, 1)).astype(float)
        feats = rng.normal(size=(n, 27))
        feats[:, 5] = rng.integers(0, 3, n)  # discrete: its smallest value repeats > 5 times
        mass = rng.choice([500.0, 750.0, 1000.0], (n, 1))  # discrete too
        return np.hstack([label, feats, mass])

    (root / "hepmass").mkdir()
    tables = {}
    for split, n in (("train", n_train), ("test", n_test)):
        tables[split] = table(n)
        np.savetxt(
            root / "hepmass" / f"1000_{split}.csv",
            tables[split],
            delimiter=",",
            header=header,
            comments="",
        )
    return tables


def test_hepmass_signal_only_drops_discrete_features(tmp_path):
    tables = _hepmass_files(tmp_path)
    train, val, test = tabular.load_hepmass(str(tmp_path))
    signal = tables["train"][tables["train"][:, 0] == 1]
    assert len(train) + len(val) == len(signal)
    assert len(val) == int(0.1 * len(signal))
    assert train.shape[1] == test.shape[1] == 26  # 27 features + mass - feature 5 - mass
    assert len(test) == int((tables["test"][:, 0] == 1).sum())
    # z-scored with the train statistics (sample sd), before the validation split
    feat0 = signal[:, 1]
    assert np.allclose(
        np.concatenate([train[:, 0], val[:, 0]]), (feat0 - feat0.mean()) / feat0.std(ddof=1)
    )


def test_miniboone_splits_and_zscore(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(250, 43)) * 3 + 1
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", data)
    train, val, test = tabular.load_miniboone(str(tmp_path))
    assert (len(train), len(val), len(test)) == (203, 22, 25)
    both = np.vstack([train, val])
    assert np.allclose(both.mean(0), 0, atol=1e-9) and np.allclose(both.std(0), 1)
    mu, sd = data[:225].mean(0), data[:225].std(0)
    assert np.allclose(test, (data[225:] - mu) / sd)


def test_bsds300_reads_the_three_splits(tmp_path):
    h5py = pytest.importorskip("h5py")
    (tmp_path / "BSDS300").mkdir()
    rng = np.random.default_rng(4)
    arrays = {
        k: rng.normal(size=(n, 63)).astype(np.float32)
        for k, n in (("train", 50), ("validation", 20), ("test", 30))
    }
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for k, a in arrays.items():
            f[k] = a
    parts = tabular.load_bsds300(str(tmp_path))
    assert all(np.array_equal(p, arrays[k]) for p, k in zip(parts, arrays, strict=True))


def test_registered_loaders_subsample_with_the_seed(tmp_path):
    _power_file(tmp_path)
    full = load_dataset("power", 10**9, 10**9, 10**9, data_dir=str(tmp_path))
    assert full.train.shape == (243, 6) and full.test.shape == (30, 6)
    small = load_dataset("power", 50, 10, 10, seed=1, data_dir=str(tmp_path))
    again = load_dataset("power", 50, 10, 10, seed=1, data_dir=str(tmp_path))
    assert small.train.shape == (50, 6) and torch.equal(small.train, again.train)
    # every subsampled row is a row of the full split
    assert bool((small.train[:, None, :] == full.train[None]).all(-1).any(1).all())


def test_missing_data_dir_names_the_option(tmp_path):
    for name in ("power", "gas", "hepmass", "miniboone", "bsds300"):
        with pytest.raises(ValueError, match="'data_dir'"):
            load_dataset(name, 10, 10, 10)
        with pytest.raises(ValueError, match="'data_dir'"):
            load_dataset(name, 10, 10, 10, data_dir=str(tmp_path))


def test_digits_are_dequantized_64_dim_and_standardised():
    s = load_dataset("digits", 1197, 300, 300, seed=0)
    assert s.train.shape == (1197, 64) and s.test.shape == (300, 64)
    assert torch.allclose(s.train.mean(0), torch.zeros(64), atol=1e-4)
    # dequantized: no two training values coincide within a pixel (continuous noise)
    assert s.train[:, 20].unique().numel() == 1197
    assert s.info["nll_offset"] < 0  # pixel sds are below 1 in the unit cube
    with pytest.raises(ValueError, match="at most 1797"):
        load_dataset("digits", 1500, 300, 300)


# ---------------------------------------------------------------- known-density tasks
def test_known_tasks_are_registered():
    assert {"gmm8", "gmm32", "funnel10", "teacher8", "moons_conditional", "digits"} <= set(DATASETS)


def test_mixture_log_prob_matches_an_independent_formula():
    mix = known.random_mixture(3, components=2, seed=5)
    x = np.random.default_rng(0).normal(size=(6, 3))
    dens = 0.0
    for w, mu, chol in zip(mix.weights, mix.means, mix.chols, strict=True):
        cov = chol @ chol.T
        diff = x - mu
        quad = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        dens = dens + w * np.exp(-0.5 * quad) / np.sqrt(np.linalg.det(2 * np.pi * cov))
    assert np.allclose(mix.log_prob(x), np.log(dens))


def test_mixture_sampling_matches_its_density():
    """The entropy estimated from samples equals -E log p by a second, independent route: the
    mean of log p over samples vs a 2-D grid integral of -p log p."""
    mix = known.random_mixture(2, components=3, seed=7)
    xs = mix.sample(40000, np.random.default_rng(1))
    h_mc = -mix.log_prob(xs).mean()
    g = np.linspace(-8, 8, 801)
    c = (g[1:] + g[:-1]) / 2
    pts = np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    lp = mix.log_prob(pts)
    area = (16 / 800) ** 2
    assert abs(np.exp(lp).sum() * area - 1) < 1e-3
    assert abs(h_mc - (-(np.exp(lp) * lp).sum() * area)) < 0.03


def test_funnel_log_prob_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    x = known.funnel_sample(50, np.random.default_rng(0), dim=10)
    expected = stats.norm.logpdf(x[:, 0], scale=3) + stats.norm.logpdf(
        x[:, 1:], scale=np.exp(x[:, :1] / 2)
    ).sum(1)
    assert np.allclose(known.funnel_log_prob(x), expected)


def test_moons_conditional_density_integrates_to_one_per_label():
    g = np.linspace(-4, 4, 101)
    c = (g[1:] + g[:-1]) / 2
    pts = np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    for label in (0, 1):
        lp = known.moons_conditional_log_prob(pts, np.full(len(pts), label))
        assert abs(np.exp(lp).sum() * (8 / 100) ** 2 - 1) < 1e-3


def test_known_splits_report_the_true_nll_of_the_test_set():
    s = load_dataset("gmm8", 100, 100, 2000, seed=0)
    mix = known.random_mixture(8)
    h = -mix.log_prob(s.test.double().numpy()).mean()
    assert math.isclose(s.entropy, h, rel_tol=1e-9)
    assert 0 < s.entropy_stderr < 0.1
    t = load_dataset("teacher8", 10, 10, 500, seed=0)
    with torch.no_grad():
        h_t = -known.teacher_flow().log_prob(t.test.double()).mean().item()
    assert math.isclose(t.entropy, h_t, rel_tol=1e-9)
    m = load_dataset("moons_conditional", 10, 10, 300, seed=0)
    assert m.context_features == 2 and m.test_context.sum(1).eq(1).all()
    # the test set does not depend on the train size
    assert torch.equal(load_dataset("gmm8", 7, 3, 2000, seed=0).test, s.test)


@pytest.mark.parametrize("name", ["gmm8", "gmm32", "funnel10", "teacher8", "moons_conditional"])
def test_true_log_prob_gives_each_tasks_reported_entropy(name):
    s = load_dataset(name, 10, 10, 300, seed=2)
    c = None if s.test_context is None else s.test_context.double().numpy()
    lp = known.true_log_prob(name, s.test.double().numpy(), c)
    assert lp.shape == (300,) and math.isclose(-lp.mean(), s.entropy, rel_tol=1e-9)


def test_teacher8_built_from_transforms_is_the_realnvp_recipes_teacher():
    """data/known.py builds the teacher without importing the recipes; it must be the same
    flow as ``realnvp(8, couplings=4, hidden=(32, 32), mask="half")`` with the same draws."""
    from flowforge.data import known
    from flowforge.models import realnvp

    teacher = known.teacher_flow()
    reference = realnvp(8, couplings=4, hidden=(32, 32), mask="half").double()
    reference.load_state_dict(teacher.state_dict())
    x = torch.randn(64, 8, dtype=torch.float64)
    assert torch.equal(teacher.log_prob(x), reference.eval().log_prob(x))
