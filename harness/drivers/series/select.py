"""Patch-aware selection (pure): from what a series touches, which fio cells and xfstests to run,
ranked by expected value per minute of machine time, within a budget.

Rules (docs/try.md): a file under ``fs/<fs>/`` selects that filesystem; the iomap direct-I/O code
selects the filesystems that call ``iomap_dio_rw`` in the base tree; ``fs/direct-io.c`` those
that still use ``__blockdev_direct_IO`` and, when ``sb_init_dio_done_wq`` changes, every
filesystem (its workqueue runs every deferred completion); jbd2 selects ext4 and ocfs2; the block
layer and the NVMe/virtio drivers select disks. Patterns follow docs/workloads.md ("Which
completions block"): the deferred-completion patterns (unwritten-convert, randwrite-osync,
append-extend) rank first for completion-path changes; the words of a changed function's name, and
of the changed lines themselves, raise the patterns they name (``FUA``: the overwrites, which go
out as FUA writes on NVMe; rules version 3). A file nothing maps is "unknown": every
filesystem at a low weight. Each cell's cost is its measured duration when the results store has
one, else an estimate; cells are taken by value per second while they fit the budget. When the
series touches a direct-I/O write path, a quarter of the budget is kept first for that path's
data-integrity xfstests (``INTEGRITY_SHARE``): a functional fault moves no cell's metric, and the
ranking by weight per second alone can spend a small budget on cells (rules version 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .diff import Touched

DEFERRED = ("unwritten-convert", "randwrite-osync", "append-extend")
# Which patterns complete in the workqueue on which filesystem (docs/workloads.md, "Which
# completions block"): ext4 performs extending direct writes synchronously, so its appends never
# reach the workqueue.
DEFERRED_ON = {"ext4": ("unwritten-convert", "randwrite-osync")}
SECTIONS = {"ext4": "ext4_4k", "xfs": "xfs_4k", "ocfs2": "ocfs2_local"}
# xfstests that exercise direct and AIO I/O (generic/091, 263: fsx with O_DIRECT; 240: AIO DIO
# into unwritten/partial blocks; 013: fsstress), and a sanity test for anything else.
DIO_TESTS = ("generic/091", "generic/263", "generic/240")
BASIC_TESTS = ("generic/001", "generic/013")
# The share of a budget kept for the data-integrity tests of a touched direct-I/O write path, and
# the version of these rules, recorded in selection.json and by the selection benchmark (1: no
# reserve; 2: the reserve; 3: the changed lines' words raise patterns as function names do).
INTEGRITY_SHARE = 0.25
RULES = 3
# Words that raise a pattern to the top weight, in a changed function's name or a changed line.
PATTERN_WORDS = ((("unwritten", "convert", "extent"), "unwritten-convert"),
                 (("size", "extend", "end_io", "append"), "append-extend"),
                 (("sync", "commit", "journal", "log_force"), "randwrite-osync"),
                 (("overwrite", "fua", "flush"), "randwrite-overwrite"))
DEFERRED_WORDS = ("dio", "complete", "workqueue", "wq")     # every deferred-completion pattern
_TEST = re.compile(r"\A[a-z0-9_]{1,32}/[0-9]{3,4}\Z")     # an xfstests test: generic/001, ext4/271


@dataclass(frozen=True)
class Costs:
    """Seconds a choice costs: per fio cell (both kernels, all runs), per disk kind (boots), per
    xfstest (both kernels); ``measured`` cells' costs came from the results store."""

    cell_s: Mapping[str, float] = field(default_factory=dict)
    default_cell_s: float = 48.0       # 3 runs x 2 sides x (3 s fio + 5 s overhead)
    boot_s: float = 96.0               # 3 runs x 2 sides x 16 s boot on TCG
    xfstest_s: float = 80.0            # 2 kernels x 40 s
    xfstests_boot_s: float = 60.0      # 2 kernels x 30 s (systemd image)


@dataclass(frozen=True)
class Choice:
    """One selected (or skipped) item with its weight, cost and reason."""

    kind: str          # cell | xfstests
    item: str          # a cell id, or SECTION:TEST
    weight: float
    cost_s: float
    reason: str


@dataclass(frozen=True)
class Selection:
    """What runs, what was left out, and why; ``to_json`` is selection.json."""

    cells: tuple[Choice, ...]
    xfstests: tuple[Choice, ...]
    skipped: tuple[Choice, ...]
    reasons: tuple[str, ...]
    budget_s: float | None
    full: bool
    overhead_s: float = 0.0     # boots the chosen items need (per disk kind; the xfstests boots)

    @property
    def filesystems(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.item.split("/")[0] for c in self.cells))

    @property
    def cost_s(self) -> float:
        return self.overhead_s + sum(c.cost_s for c in self.cells + self.xfstests)

    def to_json(self) -> dict:
        def row(c: Choice) -> dict:
            return {"kind": c.kind, "item": c.item, "weight": round(c.weight, 3), "cost_s": round(c.cost_s, 1),
                    "reason": c.reason}
        return {"rules": RULES, "full": self.full, "budget_s": self.budget_s, "estimated_s": round(self.cost_s, 1),
                "reasons": list(self.reasons), "filesystems": list(self.filesystems),
                "cells": [row(c) for c in self.cells], "xfstests": [row(c) for c in self.xfstests],
                "skipped": [row(c) for c in self.skipped]}


@dataclass(frozen=True)
class Area:
    """What one touched file means: filesystems (weight each), disks, patterns (weight each)."""

    filesystems: Mapping[str, float]
    disks: Mapping[str, float]
    patterns: Mapping[str, float]
    reason: str
    dio: bool = False
    deferred: bool = False     # weights follow DEFERRED_ON per filesystem

    def pattern_weight(self, fs: str, pattern: str) -> float:
        w = self.patterns.get(pattern, 0.0)
        if self.deferred and pattern in DEFERRED and pattern not in DEFERRED_ON.get(fs, DEFERRED):
            return min(w, 0.4)
        return w


def _raised(text: str, all_patterns: Sequence[str]) -> set[str]:
    """The patterns ``text`` (names or words, lowercased) raises to the top weight."""
    out = {pat for keys, pat in PATTERN_WORDS if any(x in text for x in keys)}
    if any(x in text for x in DEFERRED_WORDS):
        out |= set(DEFERRED)
    return out & set(all_patterns)


def _patterns_for(functions: Sequence[str], all_patterns: Sequence[str]) -> dict[str, float]:
    """Pattern weights from function names: conversions, size updates, syncs; else deferred first."""
    up = _raised(" ".join(functions).lower(), all_patterns)
    return {p: 1.0 if p in up else 0.6 if p in DEFERRED else 0.3 for p in all_patterns}


def classify(path: str, functions: Sequence[str], *, filesystems: Sequence[str], patterns: Sequence[str],
             iomap_users: Sequence[str], direct_io_users: Sequence[str], words: Sequence[str] = ()) -> Area:
    """The area of one touched file (see the module docstring for the rules): the file's rule,
    then the patterns the changed lines' ``words`` name raised to the top weight (rules 3)."""
    area = _classify(path, functions, filesystems=filesystems, patterns=patterns, iomap_users=iomap_users,
                     direct_io_users=direct_io_users)
    named = _raised(" ".join(words), patterns)
    raised = [p for p in patterns if p in named and area.patterns.get(p, 0.0) < 1.0]
    if not raised:
        return area
    return replace(area, patterns={**area.patterns, **{p: 1.0 for p in raised}},
                   reason=f"{area.reason}; its changed lines name {', '.join(raised)}")


def _classify(path: str, functions: Sequence[str], *, filesystems: Sequence[str], patterns: Sequence[str],
              iomap_users: Sequence[str], direct_io_users: Sequence[str]) -> Area:
    fs_all = {f: 1.0 for f in filesystems}
    nvme = {"nvme": 1.0}
    pw = _patterns_for(functions, patterns)
    parts = path.split("/")
    if parts[0] == "fs" and len(parts) > 2 and parts[1] in filesystems:
        return Area({parts[1]: 1.0}, nvme, pw, f"touches {path}: {parts[1]} cells and the {parts[1]} tests",
                    dio=any("dio" in f or "direct" in f for f in functions) or "file" in parts[-1])
    if path.startswith("fs/iomap/"):
        users = {f: 1.0 for f in iomap_users if f in filesystems} or fs_all
        return Area(users, nvme, pw, f"touches {path}: the filesystems that call iomap_dio_rw "
                    f"({', '.join(users)})", dio=True, deferred=True)
    if path == "fs/direct-io.c" or path == "fs/super.c" and "sb_init_dio_done_wq" in functions:
        if "sb_init_dio_done_wq" in functions:
            pw = {p: (1.0 if p in DEFERRED else 0.4) for p in patterns}
            return Area(fs_all, nvme, pw, f"touches sb_init_dio_done_wq in {path}: the deferred-completion "
                        f"workqueue of every filesystem: the patterns whose completions it runs "
                        f"({', '.join(DEFERRED)}; ext4 defers no appends)", dio=True, deferred=True)
        users = {f: 1.0 for f in direct_io_users if f in filesystems} or fs_all
        return Area(users, nvme, pw, f"touches {path}: the filesystems on __blockdev_direct_IO ({', '.join(users)})",
                    dio=True)
    if path.startswith("fs/jbd2/"):
        users = {f: 1.0 for f in ("ext4", "ocfs2") if f in filesystems}
        return Area(users, nvme, {p: (1.0 if p in ("randwrite-osync", "unwritten-convert") else 0.4)
                                  for p in patterns}, f"touches {path}: jbd2 journals ext4 and ocfs2")
    if path.startswith("kernel/workqueue"):
        return Area(fs_all, nvme, {p: (1.0 if p in DEFERRED else 0.3) for p in patterns},
                    f"touches {path}: deferred completions run on workqueues", dio=True, deferred=True)
    if path.startswith("drivers/nvme/"):
        return Area({f: 0.7 for f in filesystems}, nvme, {p: 0.7 for p in patterns}, f"touches {path}: NVMe cells")
    if path.startswith(("drivers/block/virtio", "drivers/virtio/")):
        return Area({f: 0.7 for f in filesystems}, {"virtio": 1.0}, {p: 0.7 for p in patterns},
                    f"touches {path}: virtio-blk cells")
    if path.startswith("block/"):
        return Area({f: 0.7 for f in filesystems}, {"nvme": 1.0, "virtio": 0.8}, {p: 0.7 for p in patterns},
                    f"touches {path}: the block layer under every disk")
    if path.startswith("fs/") and "/" not in path[3:]:
        return Area({f: 0.6 for f in filesystems}, nvme, pw, f"touches {path}: VFS code every filesystem uses")
    return Area({f: 0.2 for f in filesystems}, nvme, {p: 0.2 for p in patterns},
                f"touches {path}: no rule maps it to a cell: every filesystem at a low weight")


def integrity_reserve(xcands: Sequence[Choice], areas: Sequence[Area], budget_s: float,
                      costs: Costs = Costs()) -> list[Choice]:
    """The data-integrity xfstests (``DIO_TESTS``) kept first from ``budget_s``: for the filesystems
    whose direct-I/O path an area touches (heaviest first), one test per filesystem in turn
    (generic/091 on each, then 263, then 240), with their boot, while they fit
    ``INTEGRITY_SHARE`` of the budget; none when the series touches no such path."""
    fs_of = {sec: fs for fs, sec in SECTIONS.items()}
    weight = {fs: max((a.filesystems.get(fs, 0.0) for a in areas if a.dio), default=0.0) for fs in SECTIONS}
    tests = []      # (test's place in DIO_TESTS, -its filesystem's weight, item): the order they are kept in
    for c in xcands:
        sec, test = c.item.split(":", 1)
        if test in DIO_TESTS and weight[fs_of[sec]]:
            tests.append(((DIO_TESTS.index(test), -weight[fs_of[sec]], c.item), c))
    room = INTEGRITY_SHARE * budget_s - costs.xfstests_boot_s
    kept: list[Choice] = []
    for _, c in sorted(tests, key=lambda kc: kc[0]):
        if c.cost_s > room:
            break
        kept.append(replace(c, reason=f"kept for data integrity ({INTEGRITY_SHARE:.0%} of the budget): {c.reason}"))
        room -= c.cost_s
    return kept


def select(touched: Touched, *, filesystems: Sequence[str], disks: Sequence[str], patterns: Sequence[str],
           engines: Sequence[str], iomap_users: Sequence[str], direct_io_users: Sequence[str],
           costs: Costs = Costs(), budget_s: float | None = 900.0, full: bool = False,
           xfstests: bool = True) -> Selection:
    """Choose cells and xfstests for a series: every candidate weighted by the areas its files
    map to, ranked by weight per second, taken while the budget lasts (everything with ``full``)."""
    areas = [classify(p, touched.functions_of(p), filesystems=filesystems, patterns=patterns,
                      iomap_users=iomap_users, direct_io_users=direct_io_users, words=touched.words_of(p))
             for p in touched.files]
    if not areas:
        areas = [Area({f: 0.2 for f in filesystems}, {"nvme": 1.0}, {p: 0.2 for p in patterns},
                      "the series touches no file: every filesystem at a low weight")]
    cands: list[Choice] = []
    for fs in filesystems:
        for disk in disks:
            for pat in patterns:
                for eng in engines:
                    best, why = 0.0, ""
                    for a in areas:
                        w = a.filesystems.get(fs, 0.0) * a.disks.get(disk, 0.3) * a.pattern_weight(fs, pat) * \
                            (1.0 if eng == "libaio" else 0.4)
                        if w > best:
                            best, why = w, a.reason
                    cid = f"{fs}/{disk}/{pat}/{eng}"
                    cost = costs.cell_s.get(cid, costs.default_cell_s)
                    if full or best > 0:
                        cands.append(Choice("cell", cid, best if not full else max(best, 0.01), cost, why))
    xcands: list[Choice] = []
    if xfstests:
        for fs, sec in SECTIONS.items():
            if fs not in filesystems:
                continue
            wf = max((a.filesystems.get(fs, 0.0) for a in areas), default=0.0)
            dio = any(a.dio and a.filesystems.get(fs, 0.0) > 0 for a in areas)
            for t in (DIO_TESTS if dio or full else ()) + BASIC_TESTS:
                w = wf * (0.8 if t in DIO_TESTS else 0.3)
                why = next((a.reason for a in areas if a.filesystems.get(fs, 0.0) == wf), "")
                if full or w > 0:
                    xcands.append(Choice("xfstests", f"{sec}:{t}", w, costs.xfstest_s, why))
    ranked = sorted(cands + xcands, key=lambda c: (-c.weight / max(c.cost_s, 1.0), c.item))
    reserve = [] if full or budget_s is None else integrity_reserve(xcands, areas, budget_s, costs)
    chosen: list[Choice] = list(reserve)
    skipped: list[Choice] = []
    x_used = bool(reserve)
    spent = overhead = costs.xfstests_boot_s if x_used else 0.0
    spent += sum(c.cost_s for c in reserve)
    disks_used: set[str] = set()
    kept = {c.item for c in reserve}
    for c in (c for c in ranked if c.item not in kept):
        extra = 0.0
        if c.kind == "cell" and c.item.split("/")[1] not in disks_used:
            extra = costs.boot_s
        if c.kind == "xfstests" and not x_used:
            extra = costs.xfstests_boot_s
        if full or budget_s is None or spent + c.cost_s + extra <= budget_s or not chosen:
            chosen.append(c)
            spent += c.cost_s + extra
            overhead += extra
            if c.kind == "cell":
                disks_used.add(c.item.split("/")[1])
            else:
                x_used = True
        else:
            skipped.append(c)
    order = {c.item: i for i, c in enumerate(ranked)}
    reasons = tuple(dict.fromkeys(a.reason for a in areas))
    if reserve:
        reasons += (f"touches a direct-I/O write path: {INTEGRITY_SHARE:.0%} of the budget kept for its data-integrity "
                    f"xfstests ({', '.join(c.item for c in reserve)})",)
    return Selection(tuple(sorted((c for c in chosen if c.kind == "cell"), key=lambda c: order[c.item])),
                     tuple(c for c in chosen if c.kind == "xfstests"), tuple(skipped), reasons,
                     None if full else budget_s, full, overhead)


def named_xfstests(sel: Selection, tests: Sequence[str], costs: Costs = Costs()) -> Selection:
    """``sel`` with the xfstests a user named (``try --xfstests``) instead of the chosen ones: a
    TEST runs in the section of each filesystem the selection's cells use, a SECTION:TEST in
    that section. Named tests are not weighed against the budget (they were asked for); their
    cost is counted. ValueError names a test or section that is not of that form."""
    items: list[str] = []
    for t in tests:
        sec, colon, name = t.rpartition(":")
        if not _TEST.match(name) or colon and sec not in SECTIONS.values():
            raise ValueError(f"xfstests {t!r}: want TEST (generic/001) or SECTION:TEST with SECTION one of "
                             f"{', '.join(SECTIONS.values())}")
        items += [t] if colon else [f"{SECTIONS[fs]}:{name}" for fs in sel.filesystems if fs in SECTIONS]
    chosen = tuple(Choice("xfstests", i, 1.0, costs.xfstest_s, "named by --xfstests") for i in dict.fromkeys(items))
    boots = costs.xfstests_boot_s if sel.xfstests else 0.0     # the chosen ones' boots were counted already
    return replace(sel, xfstests=chosen, skipped=tuple(c for c in sel.skipped if c.kind != "xfstests"),
                   overhead_s=sel.overhead_s - boots + (costs.xfstests_boot_s if chosen else 0.0))
