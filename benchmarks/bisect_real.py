#!/usr/bin/env python3
"""Bisect accuracy on real VMs (issue 23): synthetic 16-commit histories in the cached baseline
source (fillers that each change the kernel's bytes, one culprit at a random position), bisected
by the harness's own drivers, one JSON line per bisect. The real counterpart of the simulation
``benchmarks/bisect_accuracy.py``.

Cases (the culprits are in ``kernels/patches/``):

    perf70   the shipped dio-sync change, fio:ext4/nvme/unwritten-convert/libaio:20% (PerfBisect at the
             CLI's default confidence and budget)
    perf30   a spin of SPIN["perf30"] loop iterations per deferred direct-I/O write completion
    perf15   the same with SPIN["perf15"] (both measured on this host's TCG to cost about -30%
             and -15% of that cell's IOPS; the check's minimum effect is 10%)
    flaky2   a boot-time line in dmesg one boot in 2, bisected with --confidence 0.95 --max-boots 60
    flaky4   the same one boot in 4

    .venv/bin/python -m benchmarks.bisect_real --case flaky2 --trials 10 [--seed 1] [--out FILE]
    .venv/bin/python -m benchmarks.bisect_real --table

Run it from the repository root as a module (``-m``). Results go to ``--out`` (default
``~/.cache/kharness/bench/bisect_real.jsonl``), each bisect's directory and store beside it; a
trial already in the file is skipped, and an interrupted one resumes its bisect. Verdicts: correct
= a confirmed (or confident) culprit that is the real one; wrong = a confirmed one that is not;
cannot say = none confirmed, or endpoints that did not behave.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.paths import cache_dir
from tests.helpers.history import DIO_PATCH, ROOT, fillers

FAULT = ROOT / "kernels/patches/fault"
FLAKY_PATCH = FAULT / "bisect-0001-direct-io-flaky-boot-failure.patch"
SPIN_PATCH = FAULT / "bisect-0002-iomap-spin-in-dio-write-completion.patch"
FLAKY_DEFINE, SPIN_DEFINE = "#define KHARNESS_FLAKY_ONE_IN 2", "#define KHARNESS_DIO_SPIN 100000UL"
FLAKY_CHECK = "guest:sh -c '! dmesg | grep -q kharness-flaky-fault'"
CELL = "ext4/nvme/unwritten-convert/libaio"
# Loop iterations per write completion. Measured on this host's TCG (2 cores, 2 vCPUs; fio 3 runs of
# 4 s a boot, alternating boots with the parent, geometric mean of the per-round median ratios):
# 100000 -8% (3 rounds), 180000 -11% (4), 350000 -29% (4), 500000 -38% (3), 2000000 -63% (3).
SPIN = {"perf30": 360000, "perf15": 220000}


@dataclass(frozen=True)
class Case:
    """One benchmark case: the culprit's patch (and the define it rewrites), the check, how to bisect."""

    name: str
    patch: Path
    define: tuple[str, str] | None
    check: str
    flaky: bool

    def patch_text(self) -> str:
        text = self.patch.read_text()
        if self.define:
            assert self.define[0] in text, f"{self.patch}: {self.define[0]!r} not found"
            text = text.replace(self.define[0], self.define[1], 1)
        return text

    def subject(self) -> str:
        head = self.patch_text().split("\n\n", 1)[0].replace("\n ", " ")   # folded header lines unfolded
        line = next(x for x in head.splitlines() if x.startswith("Subject: "))
        return line.removeprefix("Subject: ").removeprefix("[PATCH] ") + (f" ({self.name})" if self.define else "")


def cases() -> dict[str, Case]:
    out = {"perf70": Case("perf70", DIO_PATCH, None, f"fio:{CELL}:20%", False)}
    for name, amount in SPIN.items():
        out[name] = Case(name, SPIN_PATCH, (SPIN_DEFINE, f"#define KHARNESS_DIO_SPIN {amount}UL"),
                         f"fio:{CELL}:10%", False)
    for k in (2, 4):
        out[f"flaky{k}"] = Case(f"flaky{k}", FLAKY_PATCH, (FLAKY_DEFINE, f"#define KHARNESS_FLAKY_ONE_IN {k}"),
                                FLAKY_CHECK, True)
    return out


def position(case: str, seed: int, trial: int, commits: int) -> int:
    """The culprit's 0-based index among the ``commits`` commits after the base: uniform, fixed by
    (case, seed, trial)."""
    return random.Random(f"{case}:{seed}:{trial}").randrange(commits)


def history(culprit: tuple[str, object], pos: int, commits: int) -> list[tuple[str, object]]:
    """``pos`` fillers, the culprit, then fillers up to ``commits`` commits in all."""
    return fillers(1, pos) + [culprit] + fillers(pos + 1, commits - 1 - pos)


def verdict(found: bool, confirmed: bool) -> str:
    """correct | wrong | cannot say, as the simulation counts them."""
    return "cannot say" if not confirmed else "correct" if found else "wrong"


def done(path: Path) -> set[tuple[str, int, int, int]]:
    """(case, seed, trial, commits) of the trials already in the results file."""
    if not path.exists():
        return set()
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return {(r["case"], r["seed"], r["trial"], r["commits"]) for r in rows}


def trial(case: Case, seed: int, index: int, commits: int, out: Path) -> dict:
    """One bisect on real VMs; its result line."""
    from harness.drivers.bisect import Bisect, BisectError
    from harness.drivers.bisect_flaky import FlakyBisect
    from harness.drivers.bisect_perf import DEFAULT_BUDGET, DEFAULT_CONFIDENCE, PerfBisect
    from harness.drivers.checks import FioSettings, parse_check
    from harness.results.store import Store
    from tests.helpers.history import make_history

    pos = position(case.name, seed, index, commits)
    work = out.parent / out.stem / f"{case.name}-s{seed}-t{index}"
    work.mkdir(parents=True, exist_ok=True)
    patch = work / "culprit.patch"
    patch.write_text(case.patch_text())
    _, base, chain = make_history(history((case.subject(), patch), pos, commits),
                                  f"refs/heads/kharness-bench/acc-{case.name}-{seed}-{index}")
    culprit = chain[pos]
    want, budget = (0.95, 60) if case.flaky else (DEFAULT_CONFIDENCE, DEFAULT_BUDGET)
    row: dict = {"case": case.name, "seed": seed, "trial": index, "commits": commits, "check": case.check,
                 "want": want, "budget": budget, "harness": _head(), "position": pos, "culprit": culprit,
                 "base": base, "bad": chain[-1]}
    t0 = time.monotonic()
    with Store(work / "store.sqlite") as store:
        common = dict(sink=store, fio=FioSettings(runtime=4, size="32m"))
        check = parse_check(case.check)
        kind = FlakyBisect if case.flaky else PerfBisect
        b: Bisect = kind("baseline", base, chain[-1], check, work, confidence=want, budget=budget, **common)
        try:
            res = b.run()
            found, confirmed, steps = res.culprit == culprit, res.confirmed, res.steps
            conf = res.confidence
            row.update(found_commit=res.culprit, confidence=conf.get("p_first_bad", conf.get("p_best")),
                       stopped=conf.get("stopped"))
            row["builds"] = len({s.kernel_key for s in steps if s.kernel_key})
        except BisectError as e:
            found, confirmed = False, False
            row.update(found_commit=None, error=str(e))
            row["builds"] = len({s.get("kernel_key") for s in _steps(work) if s.get("kernel_key")})
        boots = len(store.runs())
    row.update(found=found, confirmed=confirmed, verdict=verdict(found, confirmed), boots=boots,
               wall_s=round(time.monotonic() - t0, 1))
    return row


def _head() -> str:
    """The harness's commit (with ``+`` when harness/ has changes), so rows of two drivers differ."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()
    return git("rev-parse", "--short=12", "HEAD") + ("+" if git("status", "--porcelain", "harness") else "")


def _steps(work: Path) -> list[dict]:
    states = list(work.glob("bisect-*/state.json"))
    return json.loads(states[0].read_text())["steps"] if states else []


def _mean_range(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    return f"{statistics.fmean(values):.1f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(rows: list[dict]) -> str:
    """The markdown table of the results, a line per case."""
    lines = ["| case | bisects | correct | wrong | cannot say | boots mean (range) | minutes mean (range) |",
             "|---|---|---|---|---|---|---|"]
    for name in [c for c in cases() if any(r["case"] == c for r in rows)]:
        mine = [r for r in rows if r["case"] == name]
        n = len(mine)
        share = {v: f"{100 * sum(r['verdict'] == v for r in mine) / n:.0f}%"
                 for v in ("correct", "wrong", "cannot say")}
        lines.append(f"| {name} | {n} | {share['correct']} | {share['wrong']} | {share['cannot say']} | "
                     f"{_mean_range([r['boots'] for r in mine], 0)} | "
                     f"{_mean_range([r['wall_s'] / 60 for r in mine], 1)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(cases()))
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--commits", type=int, default=16)
    ap.add_argument("--out", type=Path, default=cache_dir("bench") / "bisect_real.jsonl")
    ap.add_argument("--table", action="store_true", help="print the table of the results file and stop")
    args = ap.parse_args()
    if args.table:
        rows = [json.loads(x) for x in args.out.read_text().splitlines() if x.strip()] if args.out.exists() else []
        print(table(rows))
        return
    if not args.case:
        ap.error("give --case (or --table)")
    case = cases()[args.case]
    seen = done(args.out)
    for i in range(args.trials):
        if (case.name, args.seed, i, args.commits) in seen:
            print(f"trial {i} of {case.name} (seed {args.seed}) is in {args.out}: skipped")
            continue
        row = trial(case, args.seed, i, args.commits, args.out)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
