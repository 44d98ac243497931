#!/usr/bin/env python3
"""Selection benchmark (issue 22): does `kharness try`'s patch-aware selection catch what the full
matrix catches, and at what share of its time?

The faults are small patches written across the code the harness covers, before this benchmark
was first run and never changed to suit its results (``kernels/patches/fault/select-*.patch``):
ext4's, XFS's and ocfs2's direct-write paths, iomap direct I/O, the completion workqueue and the
block layer. For each fault:

1. the selections `kharness try FAULT --base baseline --budget 15m` and `--budget 30m` would run
   are recorded first (``plan_try``, dry, with the cell costs the benchmark's store knew then);
2. the full run (`--full`: every cell of the quick profile's matrix and every xfstest the
   selection knows) runs on real VMs with the same driver `kharness try` uses, less the evidence
   boots it adds for regressed cells (they change no verdict);
3. the full run *catches* the fault when a gating metric of a cell is a regression, a cell's runs
   fail on the fault's kernel, or an xfstest fails on it and passed on the base. A selection
   catches it when it chose one of those cells or tests. Its time is its estimated cost over the
   full run's estimated cost (the same cost model and costs for both); the full run's wall time
   is recorded as well.

Each line records the version of the selection rules that made its selections (``rules``; a line
without one is version 1), and the summary counts each version on its own lines only: select-01
to 06 were run with version 1, whose 20% selection missed select-04; version 2 (a reserve for
data-integrity xfstests) is judged on select-07 to 10, written and committed before it, and
missed select-10; version 3 (the changed lines' words raise patterns) on select-11 to 14,
written and committed before it in turn.

The selection is judged on the full run's verdicts of the cells it chose, not by a run of its
own: a cell's verdict there is decided with the false-discovery control over every cell, so a
selection's own run, with fewer cells, is if anything more sensitive.

    KHARNESS_XFSTESTS=PATH .venv/bin/python -m benchmarks.selection [--fault select-01] [--accel tcg]
    .venv/bin/python -m benchmarks.selection --table

Results go to ``--out`` (default ``~/.cache/kharness/bench/selection.jsonl``), one JSON line per
fault, with run directories and a store beside it; a fault already in the file is skipped, and a
fault whose earlier attempt finished its matrix (comparison.json) but not its xfstests resumes
there. The definitions `try` keeps (``kernels/select-*.yaml``) are removed after each fault.

Each finished row is also written, without this machine's run directory and the base's xfstests
attempts, to the record committed with the repository (``benchmarks/data/selection.jsonl``), so
the table survives a new machine: ``--table`` reads the record and the results file (the results
file's row wins for a fault in both), a fault in the record is skipped as one in the results file
is, and ``--export`` writes the results file's rows into the record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.paths import cache_dir

if TYPE_CHECKING:
    from harness.drivers.series.xfstests import BaseXfstests

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ROOT / "kernels/patches/fault"
RECORD = ROOT / "benchmarks/data/selection.jsonl"   # the committed rows (module docstring)
# what a row holds that only this machine can use: its run directory, and the base's xfstests
# attempts (guest messages, taken by the next fault's run on the same base kernel and image)
LOCAL_KEYS = ("run_dir", "base_xfstests")
BUDGETS = {"15m": 900.0, "30m": 1800.0}
AIM_SHARE = 0.20        # the aim: 95% of the caught faults within 20% of the full time
# the selections measured: the two budgets, and one whose budget is the aim's share of the full
# run's estimated cost (on this host the full run is about 55 min by estimate, so 15m is 27%)
LABELS = (*BUDGETS, "aim")


def faults() -> dict[str, Path]:
    """The benchmark's fault patches by name (select-01, ...)."""
    return {"-".join(p.stem.split("-")[:2]): p for p in sorted(FAULTS.glob("select-*.patch"))}


def _items(plan: object) -> list[str]:
    sel = plan.selection     # type: ignore[attr-defined]
    return [c.item for c in sel.cells + sel.xfstests]


def selections(name: str, patch: Path, store: object, *, after_matrix: bool = False) -> dict:
    """The fault's result line so far: the 15m and 30m selections (dry ``plan_try``) and the full
    run's items with its estimated cost. ``after_matrix``: computed after the full matrix ran
    (a resumed fault whose first attempt predates the selections file), which the line says."""
    from harness.drivers.series.run import plan_try
    from harness.drivers.series.select import RULES

    row: dict = {"fault": name, "patch": str(patch.relative_to(ROOT)), "rules": RULES}
    full = plan_try(str(patch), base_name="baseline", name=patch.stem, full=True, dry_run=True, store=store)
    row["full"] = {"items": _items(full), "estimated_s": round(full.selection.cost_s, 1)}
    budgets = {**BUDGETS, "aim": AIM_SHARE * full.selection.cost_s}
    for label in LABELS:
        p = plan_try(str(patch), base_name="baseline", name=patch.stem, budget_s=budgets[label], dry_run=True,
                     store=store)
        row[f"select_{label}"] = {"items": _items(p), "estimated_s": round(p.selection.cost_s, 1),
                                  "budget_s": round(budgets[label], 1), "reasons": list(p.selection.reasons)}
    if after_matrix:
        row["selected_after_matrix"] = True
    return row


def read_rows(path: Path) -> list[dict]:
    """The result rows of ``path`` (none: no such file); ValueError naming the file and line of a
    line that is not a JSON object with a fault."""
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON: {e.msg}") from None
        if not isinstance(row, dict) or not isinstance(row.get("fault"), str):
            raise ValueError(f"{path}:{n}: not a result row (a JSON object with a \"fault\")")
        rows.append(row)
    return rows


def portable(row: dict) -> dict:
    """``row`` as the committed record keeps it: without what only this machine can use."""
    return {**row, "full": {k: v for k, v in row["full"].items() if k not in LOCAL_KEYS}}


def merged(record: list[dict], rows: list[dict]) -> list[dict]:
    """The record's rows and ``rows``, one per fault (``rows``' wins), in the faults' order."""
    by = {r["fault"]: r for r in record} | {r["fault"]: r for r in rows}
    return [by[k] for k in sorted(by)]


def write_record(rows: list[dict], path: Path = RECORD) -> list[dict]:
    """Merge ``rows`` (made portable) into the committed record at ``path``; its rows now."""
    from harness.util import write_text_atomic

    out = merged(read_rows(path), [portable(r) for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in out))
    return out


def rules_of(row: dict) -> int:
    """The version of the selection rules that made ``row``'s selections (a row without one: 1)."""
    return int(row.get("rules", 1))


def backfill(row: dict, patch: Path, store: object) -> dict:
    """``row`` with the selections it lacks (a selection added to the benchmark after the row's
    full run), computed dry now and marked so (``computed_after_full_run``), and the matrix
    verdicts read again from its run directory; the rest unchanged. ValueError when a selection
    is missing and the rules changed since the row's (its selections would mix two versions)."""
    from harness.drivers.series.select import RULES

    out = dict(row)
    run_dir = Path(row["full"].get("run_dir", ""))
    if (run_dir / "comparison.json").is_file():
        out["full"] = {**row["full"], **matrix_verdicts(run_dir)}
    missing = [label for label in LABELS if f"select_{label}" not in out]
    if missing and rules_of(row) != RULES:
        raise ValueError(f"{row['fault']}: made with selection rules {rules_of(row)}, now {RULES}: "
                         f"not adding {', '.join(missing)}")
    now = selections(row["fault"], patch, store) if missing else {}
    for label in missing:
        out[f"select_{label}"] = {**now[f"select_{label}"], "computed_after_full_run": True}
    return out


def finished_matrix(runs: Path, name: str) -> Path | None:
    """The newest earlier attempt of ``name`` whose full matrix finished (its comparison.json
    written): a resumed fault runs only what came after it, the xfstests."""
    done = [d for d in runs.glob(f"{name}-*") if (d / "comparison.json").is_file() and (d / "selection.json").is_file()]
    return max(done, key=lambda d: d.name) if done else None


def matrix_verdicts(work: Path) -> dict:
    """What the full matrix found, from its comparison.json (the rows `kharness try` reports)."""
    comp = json.loads((work / "comparison.json").read_text())
    rows = [r for r in comp["rows"] if r.get("gates", True)]
    def pct(verdict: str) -> dict[str, float]:
        return {f"{r['cell']} {r['metric']}": round(r["pct_change"], 1) for r in rows
                if r["verdict"] == verdict and r.get("pct_change") is not None}

    # improvements are recorded, not counted as catching: the rule (module docstring) was set
    # before the first run, and a fault that only makes a cell faster is a change, not a regression
    return {"regressions": sorted({r["cell"] for r in rows if r["verdict"] == "regression"}),
            "changes": pct("regression"), "improvements": pct("improvement"),
            "failed": sorted(comp.get("failures") or {})}


def improved_cells(full: dict) -> set[str]:
    """The cells whose gating metric the full run judged an improvement (none: an older row)."""
    return {key.split(" ", 1)[0] for key in full.get("improvements", {})}   # "cell metric": no space in a cell


def base_xfstests(rows: list[dict]) -> BaseXfstests | None:
    """The base kernel's xfstests attempts an earlier fault recorded (the newest), as
    ``run_xfstests`` takes them: every fault's full run has the same base and tests, and
    run_xfstests uses them only on the same base kernel and image."""
    from harness.drivers.series.xfstests import BaseXfstests
    from harness.results.history import TestAttempts

    for r in reversed(rows):
        b = r.get("full", {}).get("base_xfstests")
        if b:
            return BaseXfstests(b["key"], tuple(TestAttempts(a[0], a[1], tuple(a[2]), tuple(a[3]))
                                                for a in b["attempts"]))
    return None


def run_fault(name: str, patch: Path, work: Path, accel: str | None, resume: Path | None = None,
              base: BaseXfstests | None = None) -> dict:
    """The selections, then the full run on real VMs (from its xfstests when ``resume`` is an
    earlier attempt whose matrix finished; the base's xfstests from ``base`` when it ran on the
    same base kernel and image); the fault's result line."""
    from harness.drivers.series.run import plan_try, run_try
    from harness.drivers.series.xfstests import run_xfstests
    from harness.executors.choose import executor_for
    from harness.results.store import Store

    kname = patch.stem
    kept = work.parent / f"{name}-selections.json"
    with Store(work.parent / "store.sqlite") as store:
        if resume is not None and kept.is_file():
            row = json.loads(kept.read_text())
        else:
            row = selections(name, patch, store, after_matrix=resume is not None)
            # on disk before the hour-long full run, so an interrupted run keeps them
            kept.write_text(json.dumps(row, indent=1))
        for label in LABELS:
            sel = row[f"select_{label}"]
            print(f"{name} --budget {label}: {', '.join(sel['items'])} (~{sel['estimated_s']:.0f} s)", flush=True)
        plan = plan_try(str(patch), base_name="baseline", name=kname, full=True, store=store)   # keeps the definition
        t0 = time.monotonic()
        executor = executor_for(None)
        try:
            if resume is None:
                _, xfs, _ = run_try(plan, work, accel=accel, sink=store, executor=executor, evidence=False,
                                    base_xfstests=base)
            else:
                work = resume
                comp = json.loads((work / "comparison.json").read_text())
                print(f"{name}: the full matrix finished in {work}; running its xfstests", flush=True)
                xfs = run_xfstests([c.item for c in plan.selection.xfstests], comp["kernel"], comp["baseline"], work,
                                   group=comp["group"].replace("matrix-", "xfstests-", 1), accel=accel, sink=store,
                                   executor=executor, base=base)
            matrix_s = (work / "comparison.json").stat().st_mtime - (work / "selection.json").stat().st_mtime
        finally:
            executor.close()
            (ROOT / "kernels" / f"{kname}.yaml").unlink(missing_ok=True)
            shutil.rmtree(ROOT / "kernels" / "patches" / kname, ignore_errors=True)
        wall = time.monotonic() - t0
        xfstests_s = wall - matrix_s if resume is None else wall
        row["full"].update(
            wall_s=round(matrix_s + xfstests_s, 1), matrix_wall_s=round(matrix_s, 1),
            xfstests_wall_s=round(xfstests_s, 1), resumed=resume is not None, **matrix_verdicts(work),
            new_failures=[f"{d.section}:{d.test}" for d in xfs.new_failures],
            xfstests_not_run=xfs.not_run, run_dir=str(work),
            base_boots=sum(1 for d in xfs.run_dirs if "-xfstests-baseline-" in Path(d).name))
        if xfs.base is not None:
            row["full"]["base_xfstests"] = {"key": xfs.base.key, "attempts": [
                [a.section, a.test, list(a.statuses), list(a.messages)] for a in xfs.base.attempts]}
    return row


def caught_by(full: dict) -> set[str]:
    """The cells and xfstests by which the full run caught the fault (empty: not caught)."""
    return set(full["regressions"]) | set(full["failed"]) | set(full["new_failures"])


def evaluate(row: dict, label: str) -> dict:
    """Whether the full run caught the fault, whether the ``label`` selection did, its time share
    (None: the row has no such selection)."""
    full = row["full"]
    by = caught_by(full)
    sel = row.get(f"select_{label}")
    if sel is None:
        return {"caught": bool(by), "selected": None, "share": None}
    return {"caught": bool(by), "selected": sorted(by & set(sel["items"])),
            "share": sel["estimated_s"] / full["estimated_s"] if full["estimated_s"] else 1.0}


def _cell(e: dict) -> str:
    if e["share"] is None:
        return "n/a"
    return f"{'yes' if e['selected'] else 'no' if e['caught'] else '-'}, {100 * e['share']:.0f}%"


def table(rows: list[dict]) -> str:
    """A line per fault, then the summary per selection (the two budgets and the aim's share)."""
    lines = ["| fault | rules | full run: caught by | full wall | 15m: caught, share | 30m: caught, share "
             f"| {AIM_SHARE:.0%} of full: caught, share |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["full"]
        by = sorted(caught_by(f))
        better = sorted(improved_cells(f))
        what = ", ".join(by) or ("nothing" + (f" (improved: {', '.join(better)})" if better else ""))
        cols = [_cell(evaluate(r, label)) for label in LABELS]
        lines.append(f"| {r['fault']} | {rules_of(r)} | {what} | {f['wall_s'] / 60:.0f} min | "
                     + " | ".join(cols) + " |")
    for version in sorted({rules_of(r) for r in rows}):
        lines += ["", f"Selection rules {version}:"] + summary([r for r in rows if rules_of(r) == version])
    return "\n".join(lines)


def summary(rows: list[dict]) -> list[str]:
    """A line per selection (the two budgets and the aim's share) over ``rows``."""
    lines = []
    for label in LABELS:
        ev = [(r, e) for r, e in ((r, evaluate(r, label)) for r in rows) if e["share"] is not None]
        caught = [e for _, e in ev if e["caught"]]
        hit = [e for e in caught if e["selected"]]
        shares = [e["share"] for _, e in ev]
        # faults the full run changed only for the better: did the selection choose a changed cell?
        only_better = [r for r, e in ev if not e["caught"] and improved_cells(r["full"])]
        chose = [r for r in only_better if improved_cells(r["full"]) & set(r[f"select_{label}"]["items"])]
        name = f"--budget {label}" if label in BUDGETS else f"a budget of {AIM_SHARE:.0%} of the full run's"
        lines.append(f"{name}: {len(hit)} of {len(caught)} caught faults caught by the selection "
                     f"({len(ev)} faults); time share median "
                     f"{100 * statistics.median(shares) if shares else 0:.0f}% (aim: 95% within {AIM_SHARE:.0%})"
                     + (f"; it chose an improved cell for {len(chose)} of the {len(only_better)} faults the "
                        "full run found only improvements for" if only_better else ""))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fault", action="append", choices=sorted(faults()), help="only these (repeatable)")
    ap.add_argument("--accel", choices=["kvm", "tcg"])
    ap.add_argument("--out", type=Path, default=cache_dir("bench") / "selection.jsonl")
    ap.add_argument("--table", action="store_true", help="print the table of the results file and stop")
    ap.add_argument("--backfill", action="store_true",
                    help="add the selections a row lacks (computed now, marked so) to the results file and stop")
    ap.add_argument("--export", action="store_true",
                    help="write the results file's rows into the committed record "
                         f"({RECORD.relative_to(ROOT)}) and stop")
    args = ap.parse_args()
    # SIGTERM and SIGHUP unwind like Ctrl-C, so each fault's kept definition is removed (finally)
    from harness.procs import install_signal_handlers
    install_signal_handlers()
    try:
        rows, record = read_rows(args.out), read_rows(RECORD)
    except ValueError as e:
        raise SystemExit(f"benchmarks.selection: {e}") from None
    if args.table:
        print(table(merged(record, rows)))
        return
    if args.export:
        print(table(write_record(rows)))
        return
    if args.backfill:
        from harness.results.store import Store
        with Store(args.out.parent / args.out.stem / "store.sqlite") as store:
            rows = [backfill(r, ROOT / r["patch"], store) for r in rows]
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(table(rows))
        return
    done = {r["fault"]: args.out for r in rows} | {r["fault"]: RECORD for r in record}
    for name, patch in faults().items():
        if args.fault and name not in args.fault:
            continue
        if name in done:
            print(f"{name} is in {done[name]}: skipped (remove its line to run it again)")
            continue
        runs = args.out.parent / args.out.stem
        work = runs / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        row = run_fault(name, patch, work, args.accel, resume=finished_matrix(runs, name), base=base_xfstests(rows))
        rows.append(row)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        write_record([row])
        print(table([row]))


if __name__ == "__main__":
    main()
