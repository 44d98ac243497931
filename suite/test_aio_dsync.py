"""The default kernel suite: `pytest --kernel=NAME`.

For every filesystem x disk x fio AIO O_DIRECT|O_DSYNC pattern x engine cell, the kernel and its
baseline are measured N runs a side (fresh boots, interleaved) and compared. A statistically
significant regression fails its cell with the numbers and the sysrq evidence of an extra run
on the kernel under test. Invariants: no oops, hang or lockdep report on either kernel, and
every workload completed.
"""

import pytest

from harness.drivers.matrix import cells
from harness.pytest_plugin import profile_from
from harness.results.metrics import gates
from harness.results.stats import format_comparison

pytestmark = [pytest.mark.vm, pytest.mark.kernel_suite]

BAD_EVENTS = ("hung_task", "soft_lockup", "rcu_stall", "oops", "bug", "panic", "lockdep", "warning",
              "workqueue_lockup")


def pytest_generate_tests(metafunc):
    if "cell" in metafunc.fixturenames:
        cs = cells(profile_from(metafunc.config))
        metafunc.parametrize("cell", cs, ids=[c.id.replace("/", "-") for c in cs])
    if "role" in metafunc.fixturenames:
        metafunc.parametrize("role", ["baseline", "kernel"])


def test_no_regression(kharness, cell):
    m = kharness.matrix()
    outcome = m.outcomes[cell.id]
    if outcome.failures:
        pytest.fail(f"{cell.id}: {len(outcome.failures)} run(s) failed:\n" + "\n".join(outcome.failures)
                    + ("\nevidence: " + ", ".join(outcome.evidence_paths) if outcome.evidence_paths else ""))
    # the matrix-wide decision (Benjamini-Hochberg), as the table shows: the gating metrics decide,
    # the counted ones (their own family) say what the kernel did differently
    comps = m.decided(explain=True).get(cell.id, [])
    assert comps, f"{cell.id}: no measurements"
    bad = [c for c in comps if gates(c.metric) and c.verdict == "regression"]
    if bad:
        evidence = m.evidence_for(cell)
        lines = [format_comparison(cell.id, c) for c in bad]
        counted = [c for c in comps if not gates(c.metric) and c.verdict in ("regression", "improvement")]
        if counted:
            lines.append("what the kernel did differently (counted in the guest; explains, does not gate):")
            lines += [f"  {format_comparison(cell.id, c)}" for c in counted]
        lines.append(f"sysrq evidence from an extra run on {m.kernel}:")
        lines += [f"  {s}" for s in evidence] or ["  (nothing blocked at capture time)"]
        lines.append("artifacts: " + ", ".join(outcome.evidence_paths + [m.consoles[m.kernel][-1]]))
        pytest.fail("\n".join(lines), pytrace=False)


def test_no_kernel_errors(kharness, role):
    m = kharness.matrix()
    kernel = m.baseline if role == "baseline" else m.kernel
    bad = [e for e in m.events[kernel] if e.kind in BAD_EVENTS]
    assert not bad, f"{kernel}: " + "; ".join(sorted({e.title for e in bad})) + \
        "\nconsoles: " + ", ".join(m.consoles[kernel])


def test_every_workload_completed(kharness):
    m = kharness.matrix()
    failed = {c: o.failures for c, o in m.outcomes.items() if o.failures}
    short = {c: (len(o.base), len(o.new)) for c, o in m.outcomes.items()
             if len(o.base) < m.profile.runs or len(o.new) < m.profile.runs}
    assert not failed and not short, f"failed: {failed}\nincomplete (base, new runs): {short}"
