r"""Model sizes that suit the data: what ``flowforge train --data FILE`` picks.

The recipes' defaults are the papers' (e.g. ``nsf``: 10 layers of 256 hidden units and two
residual blocks, 3.4 million parameters for 13 features), sized for data sets with hundreds of
thousands of rows. On a small file they overfit at once. :func:`sized_options` scales a
recipe with the number of training rows ``n``:

- hidden width :math:`w = \mathrm{clip}(2^{\mathrm{round}(\log_2 \sqrt{2n})}, 16, 256)`
  (16 units below ~400 rows, 64 at 2,000, 256 from ~30,000);
- depth 4 layers below 2,000 rows, 5 below 20,000, else 8;
- ``nsf``: autoregressive, 8 bins, one residual block below 5,000 rows (else 2);
  ``maf``: two hidden layers of ``w``, no batch norm; ``realnvp``: ``2 x depth`` couplings of
  two hidden layers of ``w``;
- ``nsf`` and ``maf`` get a Gaussian-mixture base started from the data
  (:class:`~flowforge.distributions.GaussianMixture`, count and covariance kind chosen on the
  validation split, :meth:`~flowforge.objectives.mle.MaximumLikelihood.start`): on small
  tables the clusters a flow would have to learn from few rows are there from the start, and
  the flow starts as a validated Gaussian mixture. ``nsf`` (the default below 20,000 rows)
  has room for as many components as the yardstick's mixture may choose (one per ten
  training rows, at most 64), ``maf`` for 16.

The choice is written into the run's config, where it can be changed like any option.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SIZED", "sized_options"]

SIZED = ("nsf", "maf", "realnvp")


def sized_options(name: str, features: int, rows: int) -> dict[str, Any]:
    """Options of recipe ``name`` for ``rows`` training rows of ``features`` dimensions."""
    if name not in SIZED:
        raise ValueError(f"sizes are chosen for {', '.join(SIZED)}; for {name!r} write a config")
    if rows < 1 or features < 1:
        raise ValueError(f"'rows' and 'features' should be positive, got {rows}, {features}")
    width = int(min(256, max(16, 2 ** round(math.log2(math.sqrt(2 * rows))))))
    depth = 4 if rows < 2000 else 5 if rows < 20000 else 8
    if name == "nsf":
        blocks = 1 if rows < 5000 else 2
        return {
            "kind": "autoregressive",
            "layers": depth,
            "hidden": width,
            "residual_blocks": blocks,
            "bins": 8,
            "base": "mixture",
            "components": min(64, max(1, rows // 10)),  # as many as the yardstick may choose
        }
    if name == "maf":
        return {
            "layers": depth,
            "hidden": [width, width],
            "batch_norm": False,
            "base": "mixture",
            "components": 16,
        }
    return {"couplings": 2 * depth, "hidden": [width, width]}
