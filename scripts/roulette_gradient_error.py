"""How noisy is the Residual Flow's stochastic log-det gradient on a trained model?

    python scripts/roulette_gradient_error.py RUN_DIR [N_EXACT_TERMS ...]

Loads a trained ``resflow`` run, computes the gradient of the mean training NLL on 256
validation points with the exact log-det, then 30 times with the Neumann-gradient roulette
(``p = 0.5``, backward-in-forward, one Hutchinson probe per point) for each ``n_exact_terms``
(default 2 4 8), and prints the median and largest relative error
``|g_estimate - g_exact| / |g_exact|``.
"""

import sys

import torch

from flowforge.runs import open_run
from flowforge.runs.build import load_data
from flowforge.transforms.logdet import BackwardInForward, ExactLogDet, NeumannLogDet
from flowforge.transforms.residual import ResidualBlock

torch.set_num_threads(1)
run = sys.argv[1]
terms = [int(a) for a in sys.argv[2:]] or [2, 4, 8]
_run = open_run(run)
cfg, splits, flow = _run.config, load_data(_run.config), _run.model()
flow.train()
x = splits.val[:256]
blocks = [m for m in flow.modules() if isinstance(m, ResidualBlock)]
params = [p for p in flow.parameters() if p.requires_grad]


def gradient() -> torch.Tensor:
    flow.zero_grad()
    (-flow.log_prob(x).mean()).backward()
    return torch.cat([p.grad.flatten() for p in params])


for block in blocks:
    block.estimator = ExactLogDet()
torch.manual_seed(0)
exact = gradient()
for n in terms:
    for block in blocks:
        block.estimator = BackwardInForward(NeumannLogDet(n, 0.5))
    errors = []
    for seed in range(30):
        torch.manual_seed(seed)
        errors.append(((gradient() - exact).norm() / exact.norm()).item())
    errors.sort()
    median, worst = errors[15], errors[-1]
    print(f"n_exact_terms={n}: relative gradient error median {median:.3f}, max {worst:.3f}")
