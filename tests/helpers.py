"""Small helpers shared by the tests (imported as ``helpers``: pytest puts tests/ on the path)."""

from flowforge.config import parse_config
from flowforge.runs import train_run
from flowforge.train.checkpoint import save_checkpoint


def save_teacher(flow, path, event_shape):
    """A checkpoint file holding a ``maf(2, layers=2, hidden=(8, 8))`` teacher with its spec,
    as a run's best.pt would."""
    spec = {
        "name": "maf",
        "options": {"layers": 2, "hidden": [8, 8], "batch_norm": False},
        "event_shape": list(event_shape),
        "context_features": 0,
        "context_classes": 0,
    }
    save_checkpoint(path, {"spec": spec, "model": flow.state_dict()})
    return path


def distill_run(tmp_path, teacher, student, steps, lr, name):
    """A distillation run of ``student`` from ``teacher`` (a run or checkpoint); its summary."""
    cfg = parse_config(
        {
            "name": name,
            "output_dir": str(tmp_path),
            "objective": {"name": "distill", "teacher": str(teacher), "eval_samples": 5000},
            "model": student,
            "train": {
                "steps": steps,
                "batch_size": 128,
                "lr": lr,
                "grad_clip": 0,
                "eval_every": steps,
            },
        }
    )
    return train_run(cfg, progress=False, plots=False).summary
