"""The `kharness` command. A front end: it composes the stages and owns no logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import HarnessError

console = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


# -- kernel ----------------------------------------------------------------------------------
def _kernel_list(args: argparse.Namespace) -> int:
    from .config.kernels import list_kernels, load_kernel
    table = Table("name", "based on", "source", "patches", "description")
    for name in list_kernels():
        try:
            k = load_kernel(name)
            table.add_row(name, k.based_on or "-", f"{k.source.kind}: {k.source.location}",
                          str(len(k.patches)), k.description.strip())
        except HarnessError as e:
            table.add_row(name, "", "[red]invalid[/red]", "", str(e))
    out.print(table)
    return 0


def _kernel_show(args: argparse.Namespace) -> int:
    from .config.kernels import load_kernel
    from .kernel.patches import parse_series
    k = load_kernel(args.name)
    out.print(f"[bold]{k.name}[/bold]  ({k.path})")
    if k.description:
        out.print(k.description.strip())
    out.print(f"source:      {k.source.kind} {k.source.location}" + (f" @ {k.source.ref}" if k.source.ref else ""))
    out.print(f"based on:    {k.based_on or '-'}")
    out.print(f"config base: {k.config_base}")
    for f in k.fragments:
        out.print(f"fragment:    {f}")
    for p in parse_series(list(k.patches)):
        out.print(f"patch:       {p.source.name}: {p.subject}  (sha256 {p.sha256[:12]})")
    return 0


def _progress_builder(label: str):
    """A rich status line showing the compile step being run."""
    status = console.status(f"{label}: starting")
    count = {"n": 0}

    def update(line: str) -> None:
        if line.startswith("  ") and len(line.split()) >= 2:
            count["n"] += 1
            status.update(f"{label}: {count['n']} steps, {line.strip()[:70]}")
    return status, update


def _kernel_build(args: argparse.Namespace) -> int:
    from .kernel.build import build_kernel
    t0 = time.monotonic()
    status, update = _progress_builder(f"building {args.name}")
    with status:
        b = build_kernel(args.name, jobs=args.jobs, force=args.force, progress=update)
    meta = json.loads(b.metadata.read_text())
    how = "cache hit" if b.cached else "built"
    console.print(f"{args.name}: {how} in {time.monotonic() - t0:.1f}s -> {b.dir}")
    out.print(str(b.bzimage))
    if meta.get("options_not_applied"):
        console.print(f"note: options from non-strict fragments that did not stick: "
                      f"{', '.join(sorted(meta['options_not_applied']))}")
    return 0


# -- image -----------------------------------------------------------------------------------
def _image_build(args: argparse.Namespace) -> int:
    from .image.build import build_image
    t0 = time.monotonic()
    img = build_image(args.name, force=args.force, log=lambda m: console.print(f"  {m}"))
    console.print(f"{args.name}: {'cache hit' if img.cached else 'built'} in "
                  f"{time.monotonic() - t0:.1f}s -> {img.qcow2}")
    out.print(str(img.qcow2))
    return 0


def _image_list(args: argparse.Namespace) -> int:
    from .config.images import list_images, load_image
    table = Table("name", "suite", "packages", "description")
    for n in list_images():
        i = load_image(n)
        table.add_row(n, i.suite, str(len(i.packages)), i.description)
    out.print(table)
    return 0


# -- vm --------------------------------------------------------------------------------------
def _vm_boot(args: argparse.Namespace) -> int:
    import subprocess
    from .session import boot_vm
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    with boot_vm(args.kernel, disks=args.disk, accel=args.accel, image=args.image,
                 memory_mb=args.memory, cpus=args.cpus, say=console.print) as vm:
        console.print(f"guest up in {vm.boot_seconds:.1f}s (ssh 127.0.0.1:{vm.port}, console {vm.console})")
        if cmd:
            res = vm.run(cmd, timeout=args.timeout, check=False)
            sys.stdout.write(res.stdout)
            sys.stderr.write(res.stderr)
            return res.status
        ssh = ["ssh", "-i", str(vm.cfg.image.ssh_key), "-p", str(vm.port), "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@127.0.0.1"]
        return subprocess.call(ssh)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kharness", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    k = sub.add_parser("kernel", help="kernel definitions and builds").add_subparsers(dest="sub", required=True)
    k.add_parser("list", help="list kernel definitions").set_defaults(func=_kernel_list)
    s = k.add_parser("show", help="show one definition and its patch series")
    s.add_argument("name")
    s.set_defaults(func=_kernel_show)
    b = k.add_parser("build", help="build a kernel (or find it in the cache)")
    b.add_argument("name")
    b.add_argument("-j", "--jobs", type=int, default=None)
    b.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    b.set_defaults(func=_kernel_build)

    i = sub.add_parser("image", help="guest images").add_subparsers(dest="sub", required=True)
    i.add_parser("list").set_defaults(func=_image_list)
    ib = i.add_parser("build", help="debootstrap a recipe into a cached qcow2 base")
    ib.add_argument("name", nargs="?", default="debian-bookworm")
    ib.add_argument("--force", action="store_true")
    ib.set_defaults(func=_image_build)

    v = sub.add_parser("vm", help="boot VMs").add_subparsers(dest="sub", required=True)
    vb = v.add_parser("boot", help="boot a kernel; run COMMAND in the guest or open a shell")
    vb.add_argument("--kernel", required=True)
    vb.add_argument("--image", default="debian-bookworm")
    vb.add_argument("--disk", action="append", default=[], help="KIND:SIZE, e.g. nvme:4G, virtio:4G, scsi:1G")
    vb.add_argument("--accel", choices=["kvm", "tcg"], default=None)
    vb.add_argument("--memory", type=int, default=2048, help="MiB")
    vb.add_argument("--cpus", type=int, default=2)
    vb.add_argument("--timeout", type=float, default=600, help="deadline for COMMAND, seconds")
    vb.add_argument("command", nargs=argparse.REMAINDER)
    vb.set_defaults(func=_vm_boot)

    from .cli_run import add_run_commands
    add_run_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
