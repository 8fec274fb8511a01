"""Conformance cases of continuous normalizing flows and the FFJORD recipe.

Tolerances follow the solvers: dopri5 at ``atol = rtol = 1e-8`` in float64 keeps the round
trip and the integrated trace within about 1e-7 of exact, inside the kit's ``1e-6`` (``1e-5``
for log-dets); the fixed-step RK4 cases have errors of order ``h^4`` of the same size for these
small dynamics. In eval mode the trace is exact, so the log-det check compares the integrated
trace with the autograd Jacobian of the solver's map.
"""

from __future__ import annotations

from flowforge.models import ffjord
from flowforge.testing.registry import Case, register, vector_inputs
from flowforge.transforms.continuous import CNF, ConcatSquashMLP

register(
    Case(
        "continuous/cnf_dopri5",
        lambda: CNF(ConcatSquashMLP(2, (16, 16)), atol=1e-8, rtol=1e-8),
        vector_inputs(2),
    )
)
register(
    Case(
        "continuous/cnf_context_adjoint_rk4",
        lambda: CNF(
            ConcatSquashMLP(3, (16,), activation="softplus", context_features=2),
            method="rk4",
            step_size=0.1,
            adjoint=True,
        ),
        vector_inputs(3, context=2),
    )
)
register(
    Case(
        "recipe/ffjord_2d",
        lambda: ffjord(2, hidden=(16, 16), method="rk4", step_size=0.25),
        vector_inputs(2),
    )
)
register(
    Case(
        "recipe/ffjord_2d_exact_train",
        lambda: ffjord(2, hidden=(16, 16), method="rk4", step_size=0.25, exact_train=True),
        vector_inputs(2),
    )
)
