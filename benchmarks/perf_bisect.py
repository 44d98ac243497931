#!/usr/bin/env python3
"""Benchmark a performance bisect: a 16-commit history in the cached baseline source (7 filler
commits, the shipped dio-sync change, 8 more fillers; every filler changes the kernel's bytes, so
each step is a real incremental build and boot), bisected with the fio check of the ext4
unwritten-extent cell. Prints steps, builds, boots and wall time.

    .venv/bin/python -m benchmarks.perf_bisect [--fillers-before 7] [--fillers-after 8]

Run it from the repository root as a module (``-m``), so ``tests.helpers`` imports without a
sys.path edit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from harness.drivers.bisect_perf import PerfBisect
from harness.drivers.checks import FioSettings, parse_check
from harness.results.store import Store
from tests.helpers.history import DIO_PATCH, fillers, make_history


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fillers-before", type=int, default=7)
    ap.add_argument("--fillers-after", type=int, default=8)
    ap.add_argument("--runtime", type=int, default=4)
    args = ap.parse_args()
    culprit_commit = ("fs: direct-io: unbound single-threaded dio-sync workqueue", DIO_PATCH)
    history = (fillers(1, args.fillers_before) + [culprit_commit]
               + fillers(args.fillers_before + 1, args.fillers_after))
    repo, base, commits = make_history(history, "refs/heads/kharness-bench/bisect")
    culprit = commits[args.fillers_before]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as td, Store(Path(td) / "s.sqlite") as store:
        res = PerfBisect("baseline", base, commits[-1], parse_check("fio:ext4/nvme/unwritten-convert/libaio:20%"),
                     Path(td), sink=store, fio=FioSettings(runtime=args.runtime, size="32m")).run()
        wall = time.monotonic() - t0
        runs = store.runs()
        steps = res.steps
        print(res.report)
        print(json.dumps({
            "commits": len(commits), "culprit_found": res.culprit == culprit, "confirmed": res.confirmed,
            "steps": sum(s.phase == "step" for s in steps),
            "endpoint_and_confirm": sum(s.phase != "step" for s in steps),
            "skipped": sum(s.outcome == "skip" for s in steps),
            "builds": len({s.kernel_key for s in steps if s.kernel_key}), "boots": len(runs),
            "wall_s": round(wall, 1)}, indent=1))


if __name__ == "__main__":
    main()
