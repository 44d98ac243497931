"""`kharness run fio|xfstests`: one kernel, one boot's workload, recorded in a run directory and
the results store."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from ..errors import HarnessError
from ..vm.machine import check_icount_shift
from ..vocab import ENGINES, PATTERNS
from .common import console, open_store, out, results_root_from_args, say


def _fio_table(records) -> Table:
    table = Table("cell", "run", "IOPS", "MiB/s", "p50 us", "p99 us", "p99.9 us", "status")
    for rec in records:
        for m in rec.measurements:
            if m.iops is None:
                table.add_row(m.cell, str(m.run_index), "-", "-", "-", "-", "-", escape(m.status))
                continue
            table.add_row(m.cell, str(m.run_index), f"{m.iops:.0f}", f"{(m.bw_kib_s or 0) / 1024:.1f}",
                          f"{m.clat_p50_us or 0:.0f}", f"{m.clat_p99_us or 0:.0f}", f"{m.clat_p999_us or 0:.0f}",
                          escape(m.status))
        for cell in rec.remaining:      # what a hang (or a dead guest) left undone in this boot
            table.add_row(escape(cell), "-", "-", "-", "-", "-", "-", escape(f"not run: {_why_not_run(rec)}"))
    return table


def _why_not_run(rec) -> str:
    hung = [m.cell for m in rec.measurements if m.status == "hang"]
    if hung:
        return f"the boot ended at the hang in {hung[0]}"
    first = rec.failures[0].splitlines()[0] if rec.failures and rec.failures[0].strip() else ""
    return f"the boot ended ({rec.status}{': ' + first if first else ''})"


def _run_fio(args: argparse.Namespace) -> int:
    # heavy (testbed, executor): imported only when this verb runs
    from ..executors.base import RunContext
    from ..executors.local import LocalExecutor
    from ..run.plan import fio_cell, fio_spec
    from ..run.spec import SysrqSampling, VMSpec
    from ..run.testbed import Testbed
    # Everything is validated before the first slow step (build, boot).
    if args.icount is not None:
        check_icount_shift(args.icount)
        if args.accel == "kvm":
            raise HarnessError("--icount needs TCG, not --accel kvm")
    vm = VMSpec(icount_shift=args.icount, icount_sleep=not args.icount_sleep_off)
    cells = [fio_cell(args.fs, args.disk, p, e, iodepth=args.iodepth, numjobs=args.numjobs, bs=args.bs,
                      size=args.size, runtime=args.runtime, runs=args.runs)
             for p in (args.pattern or PATTERNS) for e in (args.engine or ENGINES)]
    setup = [a.split() for a in args.guest_setup]
    with open_store(args) as store:
        bed = Testbed([args.kernel], accel=args.accel, say=say).prepare()
        sampling = SysrqSampling("w", delay=args.sample, interval=args.sample) if args.sample else None
        spec = fio_spec(bed, args.kernel, cells, disk_size=args.disk_size,
                        label=f"fio-{args.kernel}-{args.fs}-{args.disk}", sampling=sampling, setup=setup,
                        deadline_s=args.deadline, vm=vm)
        ctx = RunContext(results_root_from_args(args), sink=store, say=say, front_end="cli", max_boots_per_spec=1)
        records = LocalExecutor().execute([spec], ctx)
    lost = [r for r in records if r.lost]
    records = [r for r in records if not r.lost]
    out.print(_fio_table(records))
    for rec in lost:
        console.print(escape(f"run {rec.run_id}: lost to the host, replaced: {rec.lost}; results: {rec.run_dir}"))
    for rec in records:
        for f in rec.failures:
            console.print(f"[red]{escape(rec.status)}:[/red] {escape(f)}")
        out.print(escape(f"run {rec.run_id}: {rec.status}; results: {rec.run_dir}"))
    if any(r.status == "hang" for r in records):
        return 3
    return 0 if records and all(r.status == "done" and all(m.status == "ok" for m in r.measurements)
                                for r in records) else 1


def _run_xfstests(args: argparse.Namespace) -> int:
    # heavy (testbed, executor): imported only when this verb runs
    from ..config.fstests import get_section
    from ..executors.base import RunContext
    from ..executors.local import LocalExecutor
    from ..image.xfstests import configured_source, resolve
    from ..run.plan import xfstests_spec, xfstests_tests
    from ..run.testbed import XFSTESTS_IMAGE, Testbed
    get_section(args.section)
    where = configured_source(None, None)
    src_tree = resolve(*where).tree if where else None
    tests = xfstests_tests([t for t in args.tests.split(",") if t], src_tree)
    with open_store(args) as store:
        bed = Testbed([args.kernel], image=XFSTESTS_IMAGE, accel=args.accel, say=say).prepare()
        spec = xfstests_spec(bed, args.kernel, args.section, tests, disk_kind=args.disk,
                             label=f"xfstests-{args.kernel}-{args.section}", default_watchdog_s=args.watchdog)
        ctx = RunContext(results_root_from_args(args), sink=store, say=say, tests_source=src_tree)
        records = LocalExecutor().execute([spec], ctx)
    table = Table("test", "status", "seconds", "message", "run")
    for rec in records:
        for r in rec.xfstests:
            table.add_row(r.test, r.status, "-" if r.duration_s is None else f"{r.duration_s:.0f}",
                          escape((r.message or "")[:80]), rec.run_id)
    out.print(table)
    out.print(escape("results: " + ", ".join(r.run_dir for r in records)))
    results = [x for r in records for x in r.xfstests]
    return 0 if results and all(x.status in ("pass", "notrun") for x in results) else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `run fio` and `run xfstests`."""
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
    f.add_argument("--runs", type=int, default=1, help="repeat each job N times in the boot")
    f.add_argument("--sample", type=float, default=None, metavar="SECONDS",
                   help="sample sysrq-w every SECONDS during runs (perturbs the numbers)")
    f.add_argument("--guest-setup", action="append", default=[], metavar="COMMAND",
                   help="a command (split on spaces) run in the guest after mount, before the cells")
    f.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                   help="a run past this is a hang (default: 3x runtime + 3 min)")
    f.add_argument("--accel", choices=["kvm", "tcg"])
    f.add_argument("--icount", type=int, default=None, metavar="SHIFT",
                   help="TCG with deterministic guest time: -icount shift=SHIFT (docs/vms.md#deterministic-guest-time)")
    f.add_argument("--icount-sleep-off", action="store_true", help="with --icount: sleep=off")
    f.add_argument("--results-dir", help="where run directories go (each run gets a fresh one)")
    f.set_defaults(func=_run_fio)

    x = r.add_parser("xfstests", help="run xfstests in a section (needs KHARNESS_XFSTESTS)")
    x.add_argument("--kernel", required=True)
    x.add_argument("--section", required=True, help="a section of fstests-configs/*.yaml, e.g. xfs_4k")
    x.add_argument("--tests", required=True, help="comma-separated: generic/001,group:quick")
    x.add_argument("--disk", default="virtio", help="virtio, nvme or scsi")
    x.add_argument("--watchdog", type=float, default=1800,
                   help="per-test deadline without check.time (scaled by the machine's measured speed)")
    x.add_argument("--accel", choices=["kvm", "tcg"])
    x.add_argument("--results-dir", help="where run directories go (each run gets a fresh one)")
    x.set_defaults(func=_run_xfstests)
