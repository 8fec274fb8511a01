"""summary["stopped"]: why a run ended (all steps, early stop, time budget)."""

from flowforge.config import parse_config
from flowforge.runs import train_run
from flowforge.train.trainer import Trainer


def run(tmp_path, **train):
    cfg = parse_config(
        {
            "name": "tiny",
            "output_dir": str(tmp_path),
            "data": {"name": "moons", "n_train": 256, "n_val": 64, "n_test": 64},
            "model": {"name": "realnvp", "couplings": 2, "hidden": [8]},
            "train": {"steps": 6, "batch_size": 64, "eval_every": 1, **train},
        }
    )
    return train_run(cfg, progress=False, plots=False).summary


def test_all_steps_done_is_finished(tmp_path):
    s = run(tmp_path)
    assert (s["stopped"], s["steps"]) == ("finished", 6)


def test_patience_is_early_stop(tmp_path):
    # a learning rate below float32's resolution of the parameters: the validation NLL repeats
    # exactly, so the second evaluation is no improvement
    s = run(tmp_path, lr=1e-30, patience=1)
    assert (s["stopped"], s["steps"]) == ("early_stop", 2)


def test_time_budget_in_the_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "elapsed", lambda self: float(self.progress.step))
    s = run(tmp_path, max_seconds=2.5)  # "one second a step": used up after step 3
    assert (s["stopped"], s["steps"]) == ("time_budget", 3)


def test_time_budget_used_up_before_the_first_step(tmp_path):
    s = run(tmp_path, max_seconds=1e-9)
    assert (s["stopped"], s["steps"]) == ("time_budget", 0)


def test_budget_running_out_at_the_last_step_is_finished(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "elapsed", lambda self: float(self.progress.step))
    s = run(tmp_path, max_seconds=6)
    assert (s["stopped"], s["steps"]) == ("finished", 6)
