"""pytest plugin, registered through the ``pytest11`` entry point: ``pytest --kernel=NAME``.

Options name the kernel under test, its baseline, the matrix (filesystems, disks), the
accelerator, the number of runs and the results directory. The session fixture ``kharness``
builds kernels and the image once (cached across sessions), and measures the matrix once,
lazily, the first time a test asks for a comparison. Per-test artifacts (console logs, fio
JSON, sysrq captures) live in the results directory; a failing test prints their paths.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .errors import HarnessError

_MATRIX_KEY = pytest.StashKey["object"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kharness", "kharness kernel patch testing")
    g.addoption("--kernel", action="store", default=None,
                help="kernel definition to test (kernels/NAME.yaml); the kernel suite needs it")
    g.addoption("--baseline", action="store", default=None,
                help="kernel to compare against (default: the definition --kernel is based on)")
    g.addoption("--fs", action="store", default=None, help="comma-separated filesystems: ext4,xfs,ocfs2")
    g.addoption("--disk", action="store", default=None, help="comma-separated disk kinds: nvme,virtio")
    g.addoption("--accel", action="store", default=None, choices=["kvm", "tcg"],
                help="force the accelerator (default: probe KVM, fall back to TCG)")
    g.addoption("--runs", action="store", type=int, default=None,
                help="fio runs per side (each a fresh boot; at least 3 for a verdict)")
    g.addoption("--results-dir", action="store", default=None,
                help="where run directories go (default: results/<time>-<kernel>)")
    g.addoption("--quick", action="store_true", default=False,
                help="CI profile: fewer cells and shorter runtimes")
    g.addoption("--xfstests", action="store", default=None,
                help="comma-separated xfstests (generic/001) or groups (group:quick) to run as items")
    g.addoption("--xfstests-section", action="store", default=None,
                help="comma-separated fstests-configs sections (default: ext4_4k,xfs_4k or per --fs)")
    g.addoption("--xfstests-disk", action="store", default="virtio", help="disk kind for xfstests")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: boots real QEMU guests with real kernels (slow)")
    config.addinivalue_line("markers", "build: builds or imports a real kernel tree (slow)")
    config.addinivalue_line("markers", "kernel_suite: part of the default suite; needs --kernel")


def _split(v: str | None) -> list[str] | None:
    return [x.strip() for x in v.split(",") if x.strip()] if v else None


class Kharness:
    """Session state: which kernels, which matrix, where results go."""

    def __init__(self, config: pytest.Config):
        from .config.kernels import load_kernel
        from .matrix import make_profile
        self.config = config
        self.kernel: str | None = config.getoption("--kernel")
        if self.kernel is None:
            raise pytest.UsageError("this test needs --kernel NAME (a definition in kernels/)")
        kdef = load_kernel(self.kernel)
        self.baseline: str | None = config.getoption("--baseline") or kdef.based_on
        self.profile = make_profile("quick" if config.getoption("--quick") else "full",
                                    filesystems=_split(config.getoption("--fs")),
                                    disks=_split(config.getoption("--disk")),
                                    runs=config.getoption("--runs"))
        rd = config.getoption("--results-dir")
        self.results = Path(rd) if rd else Path("results") / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.kernel}"
        self.accel = config.getoption("--accel")
        self._matrix = None
        self._xfstests: dict[str, dict] = {}

    def xfstests(self, section: str) -> dict:
        """Run the --xfstests selection in ``section`` on the kernel and its baseline (once)."""
        from .image.xfstests import HOW_TO, configured_source
        from .xfstests_run import run_xfstests
        if configured_source(None, None) is None:
            pytest.skip(f"no xfstests source configured: {HOW_TO}")
        if self.baseline is None:
            pytest.skip(f"kernel {self.kernel!r} has no baseline: give --baseline NAME")
        if section not in self._xfstests:
            tests = [t for t in self.config.getoption("--xfstests").split(",") if t]
            disk = self.config.getoption("--xfstests-disk")
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            say = (lambda m: reporter.write_line(m)) if reporter else (lambda m: None)
            dirs, res = {}, {}
            for role, k in (("base", self.baseline), ("new", self.kernel)):
                rd = self.results.resolve() / f"xfstests-{k}-{section}"
                run = run_xfstests(k, section, tests, disk_kind=disk, accel=self.accel, run_dir=rd, say=say)
                dirs[role], res[role] = rd, run.by_name()
            self._xfstests[section] = {"dirs": dirs, **res}
        return self._xfstests[section]

    def matrix(self):
        """The MatrixRun comparing --kernel against its baseline (measured on first use)."""
        from .matrix import MatrixRun
        if self.baseline is None:
            pytest.skip(f"kernel {self.kernel!r} has no baseline: give --baseline NAME")
        if self._matrix is None:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")

            def say(msg: str) -> None:
                if reporter is not None:
                    reporter.write_line(msg)
            self._matrix = MatrixRun(self.kernel, self.baseline, self.profile, self.results.resolve(),
                                     accel=self.accel, say=say)
            self.config.stash[_MATRIX_KEY] = self._matrix
        return self._matrix.run()


@pytest.fixture(scope="session")
def kharness(pytestconfig: pytest.Config) -> Kharness:
    """The kharness session: kernel, baseline, profile, results directory, matrix."""
    try:
        return Kharness(pytestconfig)
    except HarnessError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """End the session with the comparison table."""
    m = config.stash.get(_MATRIX_KEY, None)
    if m is None or not getattr(m, "_done", False):
        return
    from .results.report import comparison_table
    terminalreporter.section(f"kharness: {m.kernel} vs {m.baseline} ({m.profile.name} profile, "
                             f"{m.profile.runs} runs a side)")
    for line in comparison_table(m).splitlines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"results: {m.results}")
