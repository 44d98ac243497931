#!/usr/bin/env python3
"""Benchmark `kharness sysrq parse` on a big console log: peak RSS and seconds, text vs streaming.

Synthesizes a console log of about --size-mb MB from the real captures in tests/fixtures/console
and tests/fixtures/sysrq (sysrq-w/-t dumps, workqueue dumps, hung-task/lockup/oops reports),
repeated, with filler lines between them (kernel messages and user-space console output), then
runs each way of parsing it in a fresh subprocess and reports that process's peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and wall time:

* ``text``: the whole log read into a string, ``parse_dumps(text)`` + ``scan_console(text)`` and
  every dump summarized (what the verb did before it streamed);
* ``cli`` / ``cli-json``: ``kharness sysrq parse [--json] LOG`` (output to /dev/null), which reads
  the log a line at a time;
* with ``--baseline REV``, ``cli`` again on the harness as of git revision REV (``git archive``
  into a temporary directory), for a before/after comparison.

    .venv/bin/python -m benchmarks.parse_memory [--size-mb 200] [--baseline HEAD] [--log PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"

FILLER = [
    "[{t}] EXT4-fs (nvme0n1): mounted filesystem 5a0b0e4c-1f6e-4a7c-9d0e-2b7c1f0e9a11 with "
    "ordered data mode. Quota mode: none.",
    "[{t}] nvme nvme0: 2/0/0 default/read/poll queues",
    "[{t}] audit: type=1334 audit(1732812945.123:58): prog-id=21 op=UNLOAD",
    "[{t}] systemd[1]: Started session-3.scope - Session 3 of User root.",
    "[{t}] fio (1234) used greatest stack depth: 12728 bytes left",
    "[  OK  ] Started systemd-journald.service - Journal Service.",
    "Jobs: 4 (f=4): [w(4)][42.0%][w=91.2MiB/s][w=23.3k IOPS][eta 00m:29s]",
    "root@kharness:~# fio --output-format=json+ /root/job.fio",
]


def synthesize(path: Path, size_mb: int) -> tuple[int, int]:
    """Write the log; return (bytes, rounds of the fixtures)."""
    captures = [p.read_bytes().decode("utf-8", "replace")
                for p in sorted(FIXTURES.glob("console/*.txt")) + sorted(FIXTURES.glob("sysrq/*.txt"))]
    rng = random.Random(1)
    target = size_mb * 1024 * 1024
    written = rounds = 0
    clock = 0.0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        while written < target:
            rounds += 1
            for capture in captures:
                filler = []
                for _ in range(rng.randint(500, 2500)):  # about as much filler as capture text
                    clock += rng.random() / 100
                    filler.append(rng.choice(FILLER).format(t=f"{clock:12.6f}") + "\n")
                chunk = "".join(filler) + capture
                fh.write(chunk)
                written += len(chunk.encode())
    return written, rounds


CHILD = r"""
import os, resource, sys, time
mode, log = sys.argv[1], sys.argv[2]
null = os.open(os.devnull, os.O_WRONLY)
os.dup2(null, 1)  # the verb's output goes nowhere; the measurement goes to stderr
t0 = time.monotonic()
if mode == "text":
    from pathlib import Path
    from harness.evidence.events import scan_console
    from harness.evidence.summary import summarize
    from harness.evidence.sysrq import parse_dumps
    text = Path(log).read_text(errors="replace")
    dumps = parse_dumps(text)
    events = scan_console(text)
    lines = sum(len(summarize(d)) for d in dumps)
    counts = (len(dumps), len(events), lines)
else:
    import argparse
    from harness.cli import sysrq
    rc = sysrq._sysrq_parse(argparse.Namespace(log=log, json=mode == "cli-json"))
    counts = (rc,)
seconds = time.monotonic() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{peak_mb:.1f} {seconds:.2f} " + " ".join(map(str, counts)), file=sys.stderr)
"""


def measure(mode: str, log: Path, root: Path) -> dict:
    """Run one mode in a fresh interpreter importing harness from ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root))
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(log)], env=env, cwd=root,
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{res.stderr}")
    peak, seconds, *counts = res.stderr.strip().splitlines()[-1].split()
    return {"mode": mode, "peak_rss_mb": float(peak), "seconds": float(seconds),
            "counts": [int(c) for c in counts]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--log", type=Path, help="use (or create) this log instead of a temporary one")
    ap.add_argument("--baseline", metavar="REV", help="also run the verb as of this git revision")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kharness-parse-mem-") as td:
        log = args.log or Path(td) / "console.log"
        if not log.exists():
            size, rounds = synthesize(log, args.size_mb)
            print(f"synthesized {log}: {size / 2**20:.0f} MiB, {rounds} rounds of the captures",
                  file=sys.stderr)
        runs = []
        if args.baseline:
            base = Path(td) / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "harness"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            runs.append({**measure("cli", log, base), "mode": f"cli@{args.baseline}"})
        for mode in ("text", "cli", "cli-json"):
            runs.append(measure(mode, log, REPO))
        size_mb = log.stat().st_size / 2**20
    if args.json:
        json.dump({"log_mib": size_mb, "runs": runs}, sys.stdout, indent=1)
        print()
        return
    print(f"log: {size_mb:.0f} MiB")
    print(f"{'mode':<16} {'peak RSS MiB':>12} {'x log':>6} {'seconds':>8}")
    for r in runs:
        print(f"{r['mode']:<16} {r['peak_rss_mb']:>12.0f} {r['peak_rss_mb'] / size_mb:>6.2f} "
              f"{r['seconds']:>8.1f}")


if __name__ == "__main__":
    main()
