"""Markdown rows for docs/results.md: test NLL +- s.e. of finished runs and, on known-density
tasks, the gap to the true density with its *paired* standard error (the s.e. of the mean of
``log p_true(x_i) - log p_model(x_i)`` over the same test points, far smaller than either NLL's).

    python scripts/autoregressive_results.py RUN_DIR...
"""

import sys
import warnings

import numpy as np
import torch

from flowforge.data.known import TRUE_LOG_PROB
from flowforge.runs import open_run
from flowforge.runs.build import load_data
from flowforge.transforms import SlowDirectionWarning


def _model_log_prob(flow, x, c, batch=4096):  # noqa: ANN001, ANN202
    out = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowDirectionWarning)
        for i in range(0, len(x), batch):
            ci = None if c is None else c[i : i + batch]
            out.append(flow.log_prob(x[i : i + batch], ci).double())
    return torch.cat(out).numpy()


def row(run_dir: str) -> str:
    run = open_run(run_dir)
    cfg, splits, flow = run.config, load_data(run.config), run.model()
    summary = run.summary
    x, c = splits.test, splits.test_context
    lp = _model_log_prob(flow, x, c)
    nll, se = -lp.mean(), lp.std(ddof=1) / np.sqrt(len(lp))
    options = ", ".join(f"{k}={v}" for k, v in cfg.model.options.items())
    cells = [cfg.data.name, f"`{cfg.model.name}({options})`", f"{nll:.3f} ± {se:.3f}"]
    if cfg.data.name in TRUE_LOG_PROB:
        true = TRUE_LOG_PROB[cfg.data.name](
            x.double().numpy(), None if c is None else c.double().numpy()
        )
        diff = true - lp
        cells += [
            f"{-true.mean():.3f}",
            f"{diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f}",
        ]
    else:
        cells += ["–", "–"]
    budget = f"{summary['steps']} steps × {cfg.train.batch_size}, {summary['train_seconds']:.0f} s"
    cells += [budget, f"`flowforge train configs/autoregressive/{cfg.name}.yaml`"]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    torch.set_num_threads(1)
    print("| data | model | test NLL (nats) | true NLL | gap ± paired s.e. | budget | command |")
    print("|---|---|---:|---:|---:|---|---|")
    for run in sys.argv[1:]:
        print(row(run))
