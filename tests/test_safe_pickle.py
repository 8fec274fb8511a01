"""The data sets published as pickles (GAS, CIFAR-10) are read without running code."""

import builtins
import os
import pickle

import numpy as np
import pytest

from flowforge.data import tabular
from flowforge.data.image_readers import load_cifar10_arrays
from flowforge.data.safe_pickle import NUMPY_ARRAYS, UnsafePickleError, load_restricted


class SystemExploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalExploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


EXPLOITS = [(SystemExploit, r"posix\.system"), (EvalExploit, r"builtins\.eval")]


def _cifar_batches(root, protocol, hostile=None):
    """Six batches of the official layout; ``hostile`` replaces the labels of the first."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batch = {
            b"batch_label": b"training batch",
            b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            b"labels": [0, 1, 2, 3] if hostile is None or i else hostile,
            b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"],
        }
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))


@pytest.mark.parametrize("protocol", [4, 5])
def test_genuine_cifar_batches_load(tmp_path, protocol):
    _cifar_batches(tmp_path / "cifar-10-batches-py", protocol)
    arrays = load_cifar10_arrays(tmp_path)
    assert arrays["x_train"].shape == (20, 3, 32, 32) and arrays["y_test"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("exploit, name", EXPLOITS)
def test_hostile_cifar_batch_is_refused_and_runs_nothing(tmp_path, exploit, name):
    marker = tmp_path / "pwned"
    _cifar_batches(tmp_path, pickle.DEFAULT_PROTOCOL, hostile=exploit(marker))
    with pytest.raises(UnsafePickleError, match=rf"data_batch_1: refused to unpickle {name}"):
        load_cifar10_arrays(tmp_path)
    assert not marker.exists()


def _gas_frame(n=400):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"s{i}" for i in range(8)])
    for i, column in enumerate(["Time", "Meth", "Eth"]):
        frame.insert(i, column, rng.normal(size=n))
    return frame


def test_genuine_gas_pickle_and_its_csv_load_the_same(tmp_path):
    frame = _gas_frame()
    (tmp_path / "gas").mkdir()
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    from_pickle = tabular.load_gas(str(tmp_path))
    frame.to_csv(tmp_path / "gas" / "ethylene_CO.csv", index=False)
    from_csv = tabular.load_gas(str(tmp_path))
    for a, b in zip(from_pickle, from_csv, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("exploit, name", EXPLOITS)
def test_hostile_gas_pickle_is_refused_and_runs_nothing(tmp_path, exploit, name):
    pytest.importorskip("pandas")
    marker = tmp_path / "pwned"
    (tmp_path / "gas").mkdir()
    hostile = {"frame": _gas_frame(), "payload": exploit(marker)}
    (tmp_path / "gas" / "ethylene_CO.pickle").write_bytes(pickle.dumps(hostile))
    message = rf"ethylene_CO.pickle: refused to unpickle {name}: .* convert it once"
    with pytest.raises(UnsafePickleError, match=message):
        tabular.load_gas(str(tmp_path))
    assert not marker.exists()


def test_damaged_or_unexpected_pickles_are_named(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros(3)})[:-5])
    with pytest.raises(ValueError, match="data_batch_1: corrupt or not the expected pickle"):
        load_restricted(path, NUMPY_ARRAYS)
    (tmp_path / "gas").mkdir()
    (tmp_path / "gas" / "ethylene_CO.pickle").write_bytes(pickle.dumps(np.zeros(3)))
    with pytest.raises(ValueError, match="holds a ndarray, not a pandas DataFrame"):
        tabular.load_gas(str(tmp_path))
