#!/usr/bin/env python3
"""Benchmark the kernel stage: cache hit, incremental rebuilds, and (with --cold) a cold build.

    .venv/bin/python -m benchmarks.kernel_build [--cold]

--cold removes the build tree and ccache first (tens of minutes on 2 cores).
Prints one line per measurement; numbers go into the README by hand.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from harness.kernel.build import build_kernel
from harness.paths import cache_dir


def timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", action="store_true", help="also measure a cold build (wipes caches)")
    ap.add_argument("--hits", type=int, default=10)
    args = ap.parse_args()
    if args.cold:
        for sub in ("build", "ccache"):
            shutil.rmtree(cache_dir(sub), ignore_errors=True)
        print(f"cold baseline build (no build tree, empty ccache): "
              f"{timed(lambda: build_kernel('baseline', force=True)):.1f}s")
    build_kernel("baseline")
    build_kernel("patched")
    hits = [timed(lambda: build_kernel("patched")) for _ in range(args.hits)]
    print(f"cache hit (patched), median of {args.hits}: {statistics.median(hits) * 1000:.0f} ms "
          f"(max {max(hits) * 1000:.0f} ms)")
    print(f"incremental baseline rebuild after patched (checkout switch): "
          f"{timed(lambda: build_kernel('baseline', force=True)):.1f}s")
    print(f"incremental patched rebuild after baseline: "
          f"{timed(lambda: build_kernel('patched', force=True)):.1f}s")


if __name__ == "__main__":
    main()
