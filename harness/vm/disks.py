"""Scratch disks declared by type and size, and their QEMU arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import HarnessError

KINDS = ("virtio", "nvme", "scsi")
_SIZE = re.compile(r"^(\d+)([MG])$")


@dataclass(frozen=True)
class Disk:
    """A scratch disk: kind is virtio (virtio-blk), nvme (emulated NVMe) or scsi (virtio-scsi)."""

    kind: str
    size: str = "4G"
    serial: str = ""
    cache: str = "none"

    @property
    def size_bytes(self) -> int:
        m = _SIZE.match(self.size)
        assert m
        return int(m.group(1)) << (30 if m.group(2) == "G" else 20)


def parse_disk(spec: str, index: int = 0) -> Disk:
    """Parse 'KIND[:SIZE]', e.g. 'nvme:4G' or 'virtio'. Serials are 'kh<kind><index>'."""
    kind, _, size = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "virtio-blk":
        kind = "virtio"
    if kind not in KINDS:
        raise HarnessError(f"disk {spec!r}: unknown kind {kind!r} (use one of {', '.join(KINDS)})")
    size = (size or "4G").upper().removesuffix("B")
    if not _SIZE.match(size):
        raise HarnessError(f"disk {spec!r}: size must look like 512M or 4G")
    return Disk(kind=kind, size=size, serial=f"kh{kind}{index}")


def disk_args(disk: Disk, image: Path, index: int) -> list[str]:
    """QEMU arguments attaching ``image`` (a raw file) as ``disk``."""
    drive = f"file={image},if=none,id=scratch{index},format=raw,cache={disk.cache},aio=threads,discard=unmap"
    if disk.kind == "virtio":
        return ["-drive", drive, "-device", f"virtio-blk-pci,drive=scratch{index},serial={disk.serial}"]
    if disk.kind == "nvme":
        return ["-drive", drive, "-device", f"nvme,drive=scratch{index},serial={disk.serial}"]
    return ["-drive", drive, "-device",
            f"scsi-hd,drive=scratch{index},bus=scsi0.0,serial={disk.serial}"]
