"""The table of ``flowforge check [PATTERN]``: every registered conformance case whose name
contains the pattern (:func:`matching_cases`), a row each with the outcome of each check of
:func:`~flowforge.testing.conformance.check_transform` (``ok``, ``FAIL`` or ``skipped``), and a
closing count of the failed checks (:func:`check_table`).
"""

from __future__ import annotations

from collections.abc import Callable

from flowforge.testing.conformance import check_transform
from flowforge.testing.registry import Case, all_cases

__all__ = ["CHECKS", "check_table", "matching_cases"]

#: the columns of the table: the checks of :func:`~flowforge.testing.conformance.check_transform`
CHECKS = ("round_trip", "log_det", "inverse_log_det", "gradients", "state_dict", "repr")


def matching_cases(pattern: str | None = None) -> dict[str, Case]:
    """The registered cases whose name contains ``pattern`` (every case without one)."""
    return {k: v for k, v in all_cases().items() if not pattern or pattern in k}


def check_table(cases: dict[str, Case], write: Callable[[str], None] = print) -> int:
    """Checks each case of ``cases`` (in name order) and writes the table with ``write``, a
    line at a time: a header, a row per case as soon as it is checked, and the count of
    failed checks; returns that count. A skipped check (its detail starts with ``skipped``,
    e.g. the log-determinant of a transform too large for the brute-force Jacobian) is shown
    as such and not counted."""
    width = max((len(k) for k in cases), default=4)
    write(f"{'case':<{width}}  " + "  ".join(f"{n:<15}" for n in CHECKS))
    failures = 0
    for name, case in sorted(cases.items()):
        x, c = case.inputs()
        results = {
            r.name: r for r in check_transform(case.make_transform, x, c, case.atol, case.rtol)
        }
        cells = []
        for check in CHECKS:
            r = results[check]
            mark = "ok" if r.passed else "FAIL"
            if r.detail.startswith("skipped"):
                mark = "skipped"
            cells.append(f"{mark:<15}")
            failures += not r.passed
        write(f"{name:<{width}}  " + "  ".join(cells))
    write(f"{len(cases)} cases, {failures} failed checks")
    return failures
