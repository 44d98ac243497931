"""`kharness vm boot`: boot a kernel, run a command in the guest or open a shell."""

from __future__ import annotations

import argparse
import sys

from rich.markup import escape

from .. import procs
from .common import console, open_store, results_root_from_args, say


def _vm_boot(args: argparse.Namespace) -> int:
    # heavy (testbed, VM, executor): imported only when this verb runs
    from ..executors.base import RunContext
    from ..executors.local import LocalExecutor
    from ..results.rundir import new_run_dir
    from ..run.boot import open_vm
    from ..run.plan import check_command, command_spec
    from ..run.spec import VMSpec
    from ..run.testbed import Testbed
    from ..vm.disks import parse_disk
    from ..vm.ssh import ssh_argv
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    for i, d in enumerate(args.disk):
        parse_disk(d, i)
    vm_spec = VMSpec(memory_mb=args.memory, cpus=args.cpus)
    check_command(args.timeout, vm_spec)   # before the build: the same limits a spec read back has
    bed = Testbed([args.kernel], image=args.image, accel=args.accel, say=say).prepare()
    spec = command_spec(bed, args.kernel, cmd, disks=args.disk, label=f"vm-{args.kernel}",
                        timeout_s=args.timeout, vm=vm_spec)
    if cmd:
        with open_store(args) as store:
            ctx = RunContext(results_root_from_args(args), sink=store, say=say, max_boots_per_spec=1)
            (rec,) = LocalExecutor().execute([spec], ctx)
        rd = rec.run_dir
        for name, stream in (("command.out", sys.stdout), ("command.err", sys.stderr)):
            try:
                stream.write(open(f"{rd}/{name}").read())
            except FileNotFoundError:
                pass
        for f in rec.failures:
            console.print(f"[red]{escape(rec.status)}:[/red] {escape(f)}")
        console.print(escape(f"run {rec.run_id}: {rec.status} (console {rd}/console.log)"))
        return rec.command_status if rec.command_status is not None else 2
    run_dir = new_run_dir(results_root_from_args(args), spec.label)
    with open_vm(spec, run_dir) as vm:
        console.print(escape(f"guest up in {vm.boot_seconds:.1f}s (ssh 127.0.0.1:{vm.port}, console {vm.console})"))
        # Pin the host key the image build recorded, as the harness's own SSH does.
        known = run_dir / "known_hosts"
        host_key = vm.cfg.image.host_key
        if host_key:
            known.write_text(f"[127.0.0.1]:{vm.port} {host_key.strip()}\n")
        # ssh_argv: no ~/.ssh/config, no agent, nothing forwarded
        assert vm.port is not None
        return procs.interactive(ssh_argv(vm.port, vm.cfg.image.ssh_key, known_hosts=known if host_key else None))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `vm boot`."""
    v = sub.add_parser("vm", help="boot VMs").add_subparsers(dest="sub", required=True)
    vb = v.add_parser("boot", help="boot a kernel; run COMMAND in the guest or open a shell")
    vb.add_argument("--kernel", required=True)
    vb.add_argument("--image", default="debian-bookworm")
    vb.add_argument("--disk", action="append", default=[], help="KIND:SIZE, e.g. nvme:4G, virtio:4G, scsi:1G")
    vb.add_argument("--accel", choices=["kvm", "tcg"], default=None)
    vb.add_argument("--memory", type=int, default=2048, help="MiB")
    vb.add_argument("--cpus", type=int, default=2)
    vb.add_argument("--timeout", type=float, default=600, help="deadline for COMMAND, seconds")
    vb.add_argument("--results-dir", help="where the run directory goes")
    vb.add_argument("command", nargs=argparse.REMAINDER)
    vb.set_defaults(func=_vm_boot)
