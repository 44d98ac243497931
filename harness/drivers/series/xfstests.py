"""The xfstests a selection chose, on the base and on the series' kernel, classified by the
results module's rule (``harness.results.history.xfstests_diff``: a test failing on the kernel
that passed on the base is a new failure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...executors.base import Executor, RecordSink, RunContext
from ...executors.local import LocalExecutor
from ...image.xfstests import HOW_TO, configured_source, resolve
from ...results.history import TestAttempts, TestDiff, xfstests_diff
from ...run.plan import xfstests_spec
from ...run.testbed import XFSTESTS_IMAGE, Testbed
from ...vocab import Say


@dataclass(frozen=True)
class BaseXfstests:
    """The base kernel's attempts, keyed by what they ran on (the base kernel's and the image's
    cache keys): a later run on the same base kernel and image may take them instead of booting
    the base again (the selection benchmark's faults all share one base)."""

    key: str
    attempts: tuple[TestAttempts, ...]

    def for_section(self, key: str, section: str, tests: Sequence[str]) -> dict[tuple[str, str], TestAttempts] | None:
        """The attempts of every test of ``section`` when this ran on ``key``; None otherwise."""
        known = {(a.section, a.test): a for a in self.attempts} if key == self.key else {}
        want = [(section, t) for t in tests]
        return {k: known[k] for k in want} if all(k in known for k in want) else None


@dataclass(frozen=True)
class XfstestsOutcome:
    """What ran (classified per test), or why nothing ran; the run directories; the base's
    attempts (reusable on the same base kernel and image)."""

    diffs: tuple[TestDiff, ...]
    not_run: str = ""
    run_dirs: tuple[str, ...] = ()
    base: BaseXfstests | None = None

    @property
    def new_failures(self) -> list[TestDiff]:
        return [d for d in self.diffs if d.category == "new failure"]


def by_section(items: Sequence[str]) -> dict[str, list[str]]:
    """'SECTION:TEST' items grouped by section, in order."""
    out: dict[str, list[str]] = {}
    for i in items:
        sec, _, test = i.partition(":")
        out.setdefault(sec, []).append(test)
    return out


def run_xfstests(items: Sequence[str], kernel: str, baseline: str, results: Path, *, group: str,
                 accel: str | None = None, say: Say = print, sink: RecordSink | None = None,
                 executor: Executor | None = None, disk: str = "virtio",
                 base: BaseXfstests | None = None) -> XfstestsOutcome:
    """One boot a section and kernel; nothing (with the reason) when no xfstests source is
    configured. A section whose tests ``base`` ran on the same base kernel and image takes the
    base's attempts from it (said) instead of a boot."""
    if not items:
        return XfstestsOutcome((), "none selected")
    where = configured_source(None, None)
    if where is None:
        return XfstestsOutcome((), f"no xfstests source: {HOW_TO}")
    tree = resolve(*where).tree
    bed = Testbed([baseline, kernel], image=XFSTESTS_IMAGE, accel=accel, say=say).prepare()
    ex = executor or LocalExecutor()
    ctx = RunContext(results, sink=sink, say=say, group=group, front_end="try", tests_source=tree)
    got: dict[str, dict[tuple[str, str], TestAttempts]] = {"base": {}, "new": {}}
    dirs: list[str] = []
    key = f"{bed.kernel(baseline).key}/{bed.image_spec().key}"
    for sec, tests in by_section(items).items():
        known = base.for_section(key, sec, tests) if base is not None else None
        if known is not None:
            say(f"xfstests {sec} on {baseline}: the base's results from an earlier run on the same kernel and image")
            got["base"].update(known)
        for role, k in (("base", baseline), ("new", kernel)):
            if role == "base" and known is not None:
                continue
            spec = xfstests_spec(bed, k, sec, tests, disk_kind=disk, label=f"xfstests-{k}-{sec}", role=role)
            for rec in ex.execute([spec], ctx):
                dirs.append(rec.run_dir)
                for x in rec.xfstests:
                    prev = got[role].get((sec, x.test))
                    got[role][(sec, x.test)] = TestAttempts(sec, x.test, (prev.statuses if prev else ()) + (x.status,),
                                                            (prev.messages if prev else ()) + (x.message or "",))
    return XfstestsOutcome(tuple(xfstests_diff(got["new"], got["base"], {})), "", tuple(dirs),
                           BaseXfstests(key, tuple(got["base"].values())))
