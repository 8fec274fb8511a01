"""Checkpoints: atomic, finite, and loaded without executing code, with clear errors."""

import os
import pickle

import pytest
import torch

from flowforge.models import realnvp
from flowforge.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)


def test_round_trip_and_no_temporary_files(tmp_path):
    model = realnvp(2, couplings=2)
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "step": 3})
    payload = load_checkpoint(path)
    assert payload["step"] == 3
    assert os.listdir(path.parent) == ["last.pt"]
    load_model_state(path, realnvp(2, couplings=2), payload)


def test_refuses_to_write_nan_weights_and_keeps_the_old_file(tmp_path):
    model = realnvp(2, couplings=2)
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "step": 1})
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        save_checkpoint(path, {"model": model.state_dict(), "step": 2})
    assert load_checkpoint(path)["step"] == 1


def test_truncated_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": realnvp(2).state_dict()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last.pt: corrupt or truncated"):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(path)


def test_foreign_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a flowforge checkpoint"):
        load_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "flowforge-checkpoint-v1", "model": Exploit()}, path)
    with pytest.raises(CheckpointError, match="execute code"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "other.pt"
    save_checkpoint(path, {"model": realnvp(2, couplings=2).state_dict()})
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_model_state(path, realnvp(2, couplings=4), load_checkpoint(path))
