"""xfstests as pytest items: `pytest --kernel=patched --xfstests=generic/001,generic/013`.

Each xfstest of each section (--xfstests-section, default: one per --fs filesystem) is a pytest
item. The tests run on the kernel and on its baseline; a pass passes, a notrun is a skip with
its reason, a failure only on the kernel fails with the .out.bad diff and a dmesg excerpt, and a
failure on both kernels is an xfail ("fails on the baseline too").
"""

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.kernel_suite]


# The default xfstests section of each filesystem (fstests-configs/*.yaml).
SECTIONS = {"ext4": "ext4_4k", "xfs": "xfs_4k", "ocfs2": "ocfs2_local"}


def _sections(config):
    explicit = config.getoption("--xfstests-section")
    if explicit:
        return [s for s in explicit.split(",") if s]
    fs = [f.strip() for f in (config.getoption("--fs") or "ext4,xfs").split(",") if f.strip()]
    unknown = [f for f in fs if f not in SECTIONS]
    if unknown:
        raise pytest.UsageError(f"--fs {','.join(unknown)}: no xfstests section for that filesystem; "
                                f"known: {', '.join(SECTIONS)} (or name sections with --xfstests-section)")
    return [SECTIONS[f] for f in fs]


def pytest_generate_tests(metafunc):
    if "xfstest" not in metafunc.fixturenames:
        return
    spec = metafunc.config.getoption("--xfstests")
    tests = [t for t in spec.split(",") if t] if spec else []
    params = [(s, t) for s in _sections(metafunc.config) for t in tests]
    if not params:  # one item that says how to select tests
        metafunc.parametrize("xfstest", [None], ids=["none-selected"])
        return
    metafunc.parametrize("xfstest", params, ids=[f"{s}:{t}" for s, t in params])


def test_xfstest(kharness, xfstest):
    if xfstest is None:
        pytest.skip("no xfstests selected: give --xfstests=generic/001,group:quick (and KHARNESS_XFSTESTS)")
    section, test = xfstest
    outcome = kharness.xfstests(section)
    new, base = outcome["new"].get(test), outcome["base"].get(test)
    assert new is not None, f"{test}: no result on {kharness.kernel}"
    if new.status == "notrun":
        pytest.skip(f"{test} [{section}] not run: {new.message}")
    if new.status == "pass":
        return
    detail = [f"{test} [{section}] {new.status} on {kharness.kernel}: {new.message}"]
    if new.output_diff:
        detail += ["--- .out.bad diff ---", new.output_diff[-4000:]]
    if new.dmesg:
        detail += ["--- dmesg ---", new.dmesg[-3000:]]
    detail.append("artifacts: " + ", ".join(f"{d}/{new.artifacts}" for d in outcome["dirs"]["new"]))
    if base is not None and base.status in ("fail", "error"):
        pytest.xfail(f"fails on the baseline {kharness.baseline} too (shared failure): {new.message}")
    pytest.fail("\n".join(detail) + f"\n(NEW failure: {base.status if base else 'no result'} on "
                f"{kharness.baseline})", pytrace=False)
