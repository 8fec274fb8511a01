"""The table of ``flowforge check`` as a library call (flowforge.testing.check_table)."""

from flowforge.testing.check_table import CHECKS, check_table, matching_cases
from flowforge.testing.registry import Case, vector_inputs
from flowforge.transforms import ElementwiseAffine


class WrongLogDet(ElementwiseAffine):
    """An affine map whose forward log-determinant is off by one nat."""

    def forward(self, x, context=None):
        z, ladj = super().forward(x, context)
        return z, ladj + 1.0


def test_matching_cases_filters_the_registry_by_name():
    cases = matching_cases("elementwise/affine")
    assert cases and all("elementwise/affine" in name for name in cases)
    assert len(matching_cases(None)) > len(cases) and matching_cases("no-such-case") == {}


def test_the_table_has_a_row_per_case_and_counts_failed_checks():
    cases = {
        "good": Case("good", lambda: ElementwiseAffine(3), vector_inputs(3)),
        "bad": Case("bad", lambda: WrongLogDet(3), vector_inputs(3)),
    }
    lines: list[str] = []
    failures = check_table(cases, lines.append)
    assert lines[0].split() == ["case", *CHECKS]
    assert lines[1].split()[0] == "bad" and lines[2].split() == ["good"] + ["ok"] * len(CHECKS)
    bad = dict(zip(CHECKS, lines[1].split()[1:], strict=True))
    assert bad["log_det"] == "FAIL" and bad["round_trip"] == "ok"
    assert failures == sum(cell == "FAIL" for cell in bad.values()) >= 1
    assert lines[-1] == f"2 cases, {failures} failed checks" and len(lines) == 4
