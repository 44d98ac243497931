"""`kharness run ...` and `kharness sysrq ...` subcommands (workloads and evidence)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def _run_fio(args: argparse.Namespace) -> int:
    from .errors import HangError
    from .results.rundir import RunDir
    from .runner import measure_filesystem
    from .session import boot_vm, new_run_dir
    from .vm.disks import parse_disk
    from .workloads.fio import ENGINES, PATTERNS, FioJob
    from .workloads.fs import get_filesystem

    fs = get_filesystem(args.fs)
    disk = parse_disk(f"{args.disk}:{args.disk_size}", 0)
    patterns = args.pattern or list(PATTERNS)
    engines = args.engine or list(ENGINES)
    rd = Path(args.results_dir) if args.results_dir else new_run_dir(f"fio-{args.kernel}-{args.fs}-{args.disk}")
    jobs = [FioJob(pattern=p, directory="/mnt/scratch/fio", engine=e, iodepth=args.iodepth,
                   numjobs=args.numjobs, bs=args.bs, size=args.size, runtime=args.runtime)
            for p in patterns for e in engines]
    run = RunDir(rd, kernel=args.kernel, fs=args.fs, disks=[disk.kind], workload="fio",
                 patterns=patterns, engines=engines, runs=args.runs)
    status = "ok"
    try:
        with boot_vm(args.kernel, disks=[disk], accel=args.accel, run_dir=rd, say=console.print) as vm:
            run.update(accel=vm.cfg.accel.name, accel_reason=vm.cfg.accel.reason,
                       boot_seconds=vm.boot_seconds, qemu_argv=vm.argv)
            console.print(f"guest up in {vm.boot_seconds:.1f}s; run directory {rd}")
            ms = measure_filesystem(vm, disk, fs, jobs, args.runs, run, kernel=args.kernel,
                                    say=console.print, sample_interval=args.sample)
    except HangError as e:
        run.finish("hang", error=str(e))
        console.print(f"[red]hang:[/red] {escape(str(e))}")
        return 3
    except BaseException as e:
        run.finish("error", error=str(e))
        raise
    run.finish(status)
    table = Table("pattern", "engine", "run", "IOPS", "MiB/s", "p50 us", "p99 us", "p99.9 us", "err")
    for m in ms:
        r = m.result
        if r is None:
            table.add_row(m.pattern, m.engine, str(m.run), "-", "-", "-", "-", "-", m.status)
            continue
        table.add_row(m.pattern, m.engine, str(m.run), f"{r.iops:.0f}", f"{r.bw_kib_s / 1024:.1f}",
                      f"{r.clat_p50_us or 0:.0f}", f"{r.clat_p99_us or 0:.0f}", f"{r.clat_p999_us or 0:.0f}",
                      str(r.error))
    out.print(table)
    out.print(f"results: {rd}")
    return 0


def _sysrq_parse(args: argparse.Namespace) -> int:
    from .evidence.events import scan_console
    from .evidence.sysrq import parse_dumps, summarize, to_json
    path = Path(args.log)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        from .errors import HarnessError
        raise HarnessError(f"cannot read {path}: {e.strerror}") from None
    dumps = parse_dumps(text)
    events = scan_console(text)
    if args.json:
        json.dump({"dumps": [to_json(d) for d in dumps],
                   "events": [e.__dict__ for e in events]}, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    if not dumps and not events:
        console.print(f"{path}: no sysrq dumps or kernel events found")
        return 1
    for i, d in enumerate(dumps):
        out.print(f"[bold]dump {i + 1}[/bold] (sysrq-{d.kind}, {len(d.tasks)} tasks, "
                  f"{len(d.workqueues)} busy workqueues)")
        for line in summarize(d):
            out.print(f"  {escape(line)}")
    if events:
        out.print("[bold]events[/bold]")
        for e in events:
            out.print(f"  {escape(e.title)}")
    return 0


def _run_xfstests(args: argparse.Namespace) -> int:
    from .xfstests_run import run_xfstests
    tests = [t for t in args.tests.split(",") if t]
    run = run_xfstests(args.kernel, args.section, tests, disk_kind=args.disk, accel=args.accel,
                       run_dir=Path(args.results_dir) if args.results_dir else None, say=console.print,
                       default_watchdog=args.watchdog)
    table = Table("test", "status", "seconds", "message")
    for r in run.results:
        table.add_row(r.name, r.status, "-" if r.duration_s is None else f"{r.duration_s:.0f}",
                      escape((r.message or "")[:80]))
    out.print(table)
    out.print(f"results: {run.run_dir}")
    return 0 if all(r.status in ("pass", "notrun") for r in run.results) else 1


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    """Register `run fio` and `sysrq parse`."""
    r = sub.add_parser("run", help="run workloads").add_subparsers(dest="sub", required=True)
    f = r.add_parser("fio", help="fio AIO O_DIRECT|O_DSYNC patterns on a scratch filesystem")
    f.add_argument("--kernel", required=True)
    f.add_argument("--fs", default="ext4")
    f.add_argument("--disk", default="nvme", help="nvme, virtio or scsi")
    f.add_argument("--disk-size", default="2G")
    f.add_argument("--pattern", action="append", help="repeatable; default: all")
    f.add_argument("--engine", action="append", help="libaio or io_uring; repeatable; default: both")
    f.add_argument("--iodepth", type=int, default=32)
    f.add_argument("--numjobs", type=int, default=1)
    f.add_argument("--bs", default="4k")
    f.add_argument("--size", default="64m")
    f.add_argument("--runtime", type=int, default=10)
    f.add_argument("--runs", type=int, default=1, help="repeat each job N times")
    f.add_argument("--sample", type=float, default=None, metavar="SECONDS",
                   help="sample sysrq-w every SECONDS during runs (perturbs the numbers)")
    f.add_argument("--accel", choices=["kvm", "tcg"])
    f.add_argument("--results-dir")
    f.set_defaults(func=_run_fio)

    x = r.add_parser("xfstests", help="run xfstests in a section (needs KHARNESS_XFSTESTS)")
    x.add_argument("--kernel", required=True)
    x.add_argument("--section", required=True, help="a section of fstests-configs/*.yaml, e.g. xfs_4k")
    x.add_argument("--tests", required=True, help="comma-separated: generic/001,group:quick")
    x.add_argument("--disk", default="virtio", help="virtio, nvme or scsi")
    x.add_argument("--watchdog", type=float, default=1800, help="per-test deadline without check.time")
    x.add_argument("--accel", choices=["kvm", "tcg"])
    x.add_argument("--results-dir")
    x.set_defaults(func=_run_xfstests)

    s = sub.add_parser("sysrq", help="sysrq evidence").add_subparsers(dest="sub", required=True)
    p = s.add_parser("parse", help="parse a console log or dmesg into tasks and workqueues")
    p.add_argument("log")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_sysrq_parse)
