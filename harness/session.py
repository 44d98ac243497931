"""Compose the stages for front ends: build (or reuse) kernel and image, pick the accelerator,
boot a VM in a run directory."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .image.build import Image, build_image
from .kernel.build import KernelBuild, build_kernel
from .paths import results_root
from .vm.accel import Accel, choose_accel
from .vm.disks import Disk, parse_disk
from .vm.machine import VM, VMConfig

Say = Callable[[str], None]


def new_run_dir(label: str, root: Path | None = None) -> Path:
    """A fresh, timestamped run directory under the results root."""
    base = root or results_root()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        d = base / f"{stamp}-{label}" if i == 0 else base / f"{stamp}-{label}-{i}"
        try:
            d.mkdir(parents=True)
            return d
        except FileExistsError:
            continue
    raise RuntimeError("could not create a run directory")


def disks_from_specs(specs: Sequence[str | Disk]) -> list[Disk]:
    """Parse 'nvme:4G'-style specs; serials are unique per kind."""
    out = []
    for i, s in enumerate(specs):
        out.append(s if isinstance(s, Disk) else parse_disk(s, i))
    return out


def vm_config(kernel: KernelBuild, image: Image, accel: Accel, run_dir: Path,
              disks: Sequence[str | Disk] = (), memory_mb: int = 2048, cpus: int = 2,
              cmdline: str = "") -> VMConfig:
    timeout = 120.0 if accel.name == "kvm" else 240.0
    return VMConfig(kernel=kernel.bzimage, image=image, accel=accel, run_dir=run_dir,
                    disks=disks_from_specs(disks), memory_mb=memory_mb, cpus=cpus, cmdline=cmdline,
                    boot_timeout=timeout)


@contextlib.contextmanager
def boot_vm(kernel: str, *, disks: Sequence[str | Disk] = (), accel: str | None = None,
            image: str = "debian-bookworm", memory_mb: int = 2048, cpus: int = 2, cmdline: str = "",
            run_dir: Path | None = None, say: Say = print) -> Iterator[VM]:
    """Build what is missing, boot, yield the running VM, and always shut it down."""
    kb = build_kernel(kernel)
    img = build_image(image)
    acc = choose_accel(kb.bzimage, accel)
    say(f"accelerator: {acc.name} ({acc.reason})")
    rd = run_dir or new_run_dir(f"vm-{kernel}")
    with VM(vm_config(kb, img, acc, rd, disks, memory_mb, cpus, cmdline)) as vm:
        yield vm
