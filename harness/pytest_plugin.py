"""pytest plugin, registered through the ``pytest11`` entry point: ``pytest --kernel=NAME``.

A front end: options name the kernel under test, its baseline, the matrix, the accelerator, the
runs and the results directory; the session object composes ``harness.run`` (a MatrixRun for the
fio cells, executed xfstests specs for the xfstests items) and keeps the records in the typed
stash. Every boot is a run directory with its spec and record, and is written to the results
store (``--kharness-store``, else $KHARNESS_STORE, else the default path).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .errors import HarnessError
from .procs import install_signal_handlers
from .vocab import Say

# This plugin loads in every pytest session (unit tests too): the harness machinery (testbed,
# executors, scipy for the statistics) is imported in the functions that need it,
# so only a session that runs kharness tests pays for it. Each such import says "heavy".

_SESSION_KEY = pytest.StashKey["Kharness"]()
_PLAN_KEY = pytest.StashKey[object]()     # a --patch series' TryPlan (harness.drivers.series.run)


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
                help="fio runs per side for every cell (each a fresh boot; at least 3 for a verdict)")
    g.addoption("--max-runs", action="store", type=int, default=None,
                help="adaptive repeats: cells whose verdict is still open get more runs, up to this "
                     "many a side (default: the profile's: quick 5, default 6, full 8)")
    g.addoption("--runs-per-boot", action="store", type=int, default=None,
                help="runs of each cell in every boot, 1-4 (default: one, and in adaptive repeats the "
                     "noise model's choice; docs/statistics.md#runs-per-boot)")
    g.addoption("--ray", action="store", default=None, metavar="ADDRESS",
                help="run the boots on a Ray cluster (auto, HOST:6379, ray://HOST:10001); needs "
                     "pip install 'kharness[ray]'")
    g.addoption("--results-dir", action="store", default=None,
                help="where run directories go (default: results/<time>-<kernel>)")
    g.addoption("--kharness-store", action="store", default=None,
                help="results store (SQLite) every run is recorded in (default: $KHARNESS_STORE or "
                     "~/.local/share/kharness/results.sqlite)")
    g.addoption("--quick", action="store_true", default=False,
                help="the quick profile (same as --suite-profile quick)")
    g.addoption("--suite-profile", action="store", default=None, choices=["quick", "default", "full"],
                help="matrix profile: quick (4 cells, CI), default (8 cells, ext4+xfs on NVMe, about "
                     "9 min on 2-core TCG), full (48 cells, about an hour on 2-core TCG)")
    g.addoption("--xfstests", action="store", default=None,
                help="comma-separated xfstests (generic/001) or groups (group:quick) to run as items")
    g.addoption("--xfstests-section", action="store", default=None,
                help="comma-separated fstests-configs sections (default: ext4_4k,xfs_4k or per --fs)")
    g.addoption("--xfstests-disk", action="store", default="virtio", help="disk kind for xfstests")
    g.addoption("--patch", action="store", default=None, metavar="SERIES",
                help="test a posted series as `kharness try SERIES` does (mbox, maildir, format-patch "
                     "directory or NAME:A..B): its definition is kept, --kernel is set to it, --baseline "
                     "names the base when the series has no base-commit, and only the cells chosen from "
                     "what it touches run (docs/try.md)")
    g.addoption("--patch-budget", action="store", default="15m", help="machine time for --patch's selection")
    g.addoption("--patch-full", action="store_true", default=False, help="with --patch: every cell")


def pytest_configure(config: pytest.Config) -> None:
    install_signal_handlers()  # SIGTERM/SIGHUP unwind like Ctrl-C: fixtures, VMs, locks, children
    config.addinivalue_line("markers", "vm: boots real QEMU guests with real kernels (slow)")
    config.addinivalue_line("markers", "build: builds or imports a real kernel tree (slow)")
    config.addinivalue_line("markers", "kernel_suite: part of the default suite; needs --kernel")
    series = config.getoption("--patch", None)
    if series:
        from .drivers.series.run import parse_budget, plan_try  # heavy: see the top of the module
        from .results.store import Store
        full = config.getoption("--patch-full")
        try:
            with Store(_store_path(config)) as store:
                plan = plan_try(series, base_name=config.getoption("--baseline"),
                                budget_s=None if full else parse_budget(config.getoption("--patch-budget")),
                                full=full, store=store)
        except HarnessError as e:
            raise pytest.UsageError(str(e)) from None
        config.stash[_PLAN_KEY] = plan
        config.option.kernel = plan.kernel
        config.option.baseline = plan.base.ref


def _store_path(config: pytest.Config) -> Path | None:
    store = config.getoption("--kharness-store", None)
    return Path(store) if store else None


def patch_plan(config: pytest.Config):
    """The --patch series' TryPlan, or None."""
    return config.stash.get(_PLAN_KEY, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --patch: deselect the cells the selection left out."""
    plan = patch_plan(config)
    if plan is None:
        return
    chosen = {c.item for c in plan.selection.cells}
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        cell = getattr(item, "callspec", None) and item.callspec.params.get("cell")  # type: ignore[attr-defined]
        (drop if cell is not None and getattr(cell, "id", None) not in chosen else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def split_option(v: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [x.strip() for x in v.split(",") if x.strip()] if v else None


def profile_from(config: pytest.Config):
    """The matrix profile the options select; a UsageError names a bad --fs/--disk/--runs."""
    from .drivers.matrix import make_profile  # heavy: see the top of the module
    plan = patch_plan(config)
    if plan is not None:  # every cell of the selection is in this profile; the rest are deselected
        from .drivers.series.run import profile_for
        try:
            base = make_profile(config.getoption("--suite-profile") or "quick", runs=config.getoption("--runs"),
                                max_runs=config.getoption("--max-runs"),
                                runs_per_boot=config.getoption("--runs-per-boot"))
        except HarnessError as e:
            raise pytest.UsageError(str(e)) from None
        return profile_for(plan, base)
    try:
        name = config.getoption("--suite-profile") or ("quick" if config.getoption("--quick") else "default")
        return make_profile(name,
                            filesystems=split_option(config.getoption("--fs")),
                            disks=split_option(config.getoption("--disk")), runs=config.getoption("--runs"),
                            max_runs=config.getoption("--max-runs"),
                            runs_per_boot=config.getoption("--runs-per-boot"))
    except HarnessError as e:
        raise pytest.UsageError(str(e)) from None


class Kharness:
    """Session state: which kernels, which matrix, where results go, the records so far."""

    def __init__(self, config: pytest.Config):
        # heavy: see the top of the module
        from .config.kernels import load_kernel
        from .results.store import Store
        from .vocab import KernelRef
        self.config = config
        kernel: str | None = config.getoption("--kernel")
        if kernel is None:
            raise pytest.UsageError("this test needs --kernel NAME (a definition in kernels/)")
        self.kernel: str = kernel
        kdef = load_kernel(KernelRef.parse(self.kernel).name)
        self.baseline: str | None = config.getoption("--baseline") or kdef.based_on
        self.profile = profile_from(config)
        rd = config.getoption("--results-dir")
        self.results = (Path(rd) if rd
                        else Path("results") / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.kernel}").resolve()
        self.accel = config.getoption("--accel")
        store = config.getoption("--kharness-store")
        self.store = Store(Path(store) if store else None)
        self._matrix = None
        self._executor = None
        self._xfstests: dict[str, dict] = {}

    def executor(self):
        """Where boots run: this host, or the Ray cluster of --ray (connected on first use)."""
        from .executors.choose import executor_for  # heavy: see the top of the module
        if self._executor is None:
            self._executor = executor_for(self.config.getoption("--ray"))
        return self._executor

    def say(self) -> Say:
        """Progress lines shown live on the terminal (not captured), plain when piped."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capman = self.config.pluginmanager.get_plugin("capturemanager")

        def say(msg: str) -> None:
            if reporter is None:
                return
            if capman is None:
                reporter.write_line(msg, flush=True)
                return
            # the matrix runs inside a test's call, where pytest captures fd 1 (and so the
            # reporter's own output): step out of the capture for the line, as pytest's -s would
            with capman.global_and_fixture_disabled():
                reporter.write_line(msg, flush=True)
        return say

    def _need_baseline(self) -> str:
        if self.baseline is None:
            pytest.skip(f"kernel {self.kernel!r} has no baseline: give --baseline NAME")
        return self.baseline

    def xfstests(self, section: str) -> dict:
        """Run the --xfstests selection in ``section`` on the kernel and its baseline (once)."""
        # heavy: see the top of the module
        from .executors.base import RunContext
        from .image.xfstests import HOW_TO, configured_source, resolve
        from .run.plan import xfstests_spec, xfstests_tests
        from .run.testbed import XFSTESTS_IMAGE, Testbed
        if configured_source(None, None) is None:
            pytest.skip(f"no xfstests source configured: {HOW_TO}")
        baseline = self._need_baseline()
        if section not in self._xfstests:
            src_tree = resolve(*configured_source(None, None)).tree  # type: ignore[misc]
            tests = xfstests_tests(split_option(self.config.getoption("--xfstests")) or [], src_tree)
            disk = self.config.getoption("--xfstests-disk")
            bed = Testbed([baseline, self.kernel], image=XFSTESTS_IMAGE, accel=self.accel, say=self.say()).prepare()
            group = f"xfstests-{time.strftime('%Y%m%d-%H%M%S')}-{self.kernel}-{section}"
            dirs, res = {}, {}
            for role, k in (("base", baseline), ("new", self.kernel)):
                spec = xfstests_spec(bed, k, section, tests, disk_kind=disk, label=f"xfstests-{k}-{section}", role=role)
                ctx = RunContext(self.results, sink=self.store, say=self.say(), group=group, front_end="pytest",
                                 tests_source=src_tree)
                recs = self.executor().execute([spec], ctx)
                dirs[role] = [r.run_dir for r in recs]
                res[role] = {x.test: x for r in recs for x in r.xfstests}
            self._xfstests[section] = {"dirs": dirs, **res}
        return self._xfstests[section]

    def matrix(self):
        """The MatrixRun comparing --kernel against its baseline (measured on first use)."""
        from .drivers.matrix import MatrixRun  # heavy: see the top of the module
        baseline = self._need_baseline()
        plan = patch_plan(self.config)
        if self._matrix is None and plan is not None:
            from .drivers.series.run import matrix_for, write_selection
            self._matrix = matrix_for(plan, self.results, accel=self.accel, say=self.say(), sink=self.store,
                                      executor=self.executor(), profile=self.profile, front_end="pytest")
            write_selection(plan, self.results)
        if self._matrix is None:
            self._matrix = MatrixRun(self.kernel, baseline, self.profile, self.results, accel=self.accel,
                                     say=self.say(), sink=self.store, front_end="pytest",
                                     executor=self.executor())
        return self._matrix.run()


@pytest.fixture(scope="session")
def kharness(pytestconfig: pytest.Config) -> Kharness:
    """The kharness session: kernel, baseline, profile, results directory, matrix."""
    try:
        session = Kharness(pytestconfig)
    except HarnessError as e:
        raise pytest.UsageError(str(e)) from None
    pytestconfig.stash[_SESSION_KEY] = session
    return session


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """End the session with the comparison table."""
    session = config.stash.get(_SESSION_KEY, None)
    m = session._matrix if session is not None else None
    if m is None or not m.done:
        return
    from .results.report import comparison_table  # heavy: see the top of the module
    runs = f"{m.profile.runs} runs a side" + (f", up to {m.profile.cap} for open cells"
                                              if m.profile.cap > m.profile.runs else "")
    terminalreporter.section(f"kharness: {m.kernel} vs {m.baseline} ({m.profile.name} profile, {runs})")
    for line in comparison_table(m).splitlines():
        terminalreporter.write_line(line)
    rows = [r for r in m.rows() if r["gates"]]
    if m.is_aa:
        flagged = [r for r in rows if r["verdict"] in ("regression", "improvement")]
        terminalreporter.write_line(f"A/A run ({m.kernel} against itself): {len(flagged)} of {len(rows)} "
                                    f"comparisons flagged: the false-alarm rate measured here is "
                                    f"{len(flagged) / max(1, len(rows)):.0%}")
    if m.lost:
        terminalreporter.write_line(f"boots lost to the host and replaced ({len(m.lost)}; not kernel failures):")
        for line in m.lost:
            terminalreporter.write_line(f"  {line}")
    plan = patch_plan(config)
    if plan is not None:
        from .drivers.series.run import finish
        text = finish(plan, m)
        for line in text.splitlines():
            terminalreporter.write_line(line)
    terminalreporter.write_line(f"results: {m.results} (group {m.group} in {session.store.path})")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION_KEY, None)
    if session is not None:
        if session._executor is not None:
            session._executor.close()
        session.store.close()
