"""Scratch disks declared by type and size, and their QEMU arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import HarnessError
from ..vocab import DISKS
from .qemu_opts import qemu_path

_SIZE = re.compile(r"^(\d+)([MG])$")
# NVMe and virtio-blk keep at most 20 bytes of serial (nvme_check_constraints() in hw/nvme/ctrl.c,
# VIRTIO_BLK_ID_BYTES); parse_disk's 'kh<kind><index>' fits. The serial goes into a -device string.
SERIAL = re.compile(r"^[A-Za-z0-9_-]{1,20}$")
MAX_SIZE = "64G"          # a scratch file is sparse, but a workload can fill it: bound what a host gives
_MAX_BYTES = 64 << 30
CACHES = ("none", "writeback", "writethrough", "directsync", "unsafe")


@dataclass(frozen=True)
class Disk:
    """A scratch disk: kind is virtio (virtio-blk), nvme (emulated NVMe) or scsi (virtio-scsi)."""

    kind: str
    size: str = "4G"
    serial: str = ""
    cache: str = "none"

    def __post_init__(self) -> None:
        check_disk(self)

    @property
    def size_bytes(self) -> int:
        m = _SIZE.match(self.size)
        assert m
        return int(m.group(1)) << (30 if m.group(2) == "G" else 20)


def check_disk(disk: Disk) -> None:
    """HarnessError unless every value of ``disk`` is one QEMU's -drive/-device strings can take
    as it is: a known kind, a size like 4G up to MAX_SIZE, a serial of SERIAL, a known cache mode."""
    if disk.kind not in DISKS:
        raise HarnessError(f"disk kind {disk.kind!r}: use one of {', '.join(DISKS)}")
    if not isinstance(disk.size, str) or not _SIZE.match(disk.size):
        raise HarnessError(f"disk size {disk.size!r}: want a size like 512M or 4G")
    if not 0 < disk.size_bytes <= _MAX_BYTES:
        raise HarnessError(f"disk size {disk.size!r}: want more than 0 and at most {MAX_SIZE}")
    if not isinstance(disk.serial, str) or not SERIAL.match(disk.serial):
        raise HarnessError(f"disk serial {disk.serial!r}: want 1-20 characters of [A-Za-z0-9_-]")
    if disk.cache not in CACHES:
        raise HarnessError(f"disk cache mode {disk.cache!r}: use one of {', '.join(CACHES)}")


def parse_disk(spec: str, index: int = 0) -> Disk:
    """Parse 'KIND[:SIZE]', e.g. 'nvme:4G' or 'virtio'. Serials are 'kh<kind><index>'."""
    kind, _, size = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "virtio-blk":
        kind = "virtio"
    if kind not in DISKS:
        raise HarnessError(f"disk {spec!r}: unknown kind {kind!r} (use one of {', '.join(DISKS)})")
    size = (size or "4G").upper().removesuffix("B")
    if not _SIZE.match(size):
        raise HarnessError(f"disk {spec!r}: size must look like 512M or 4G")
    try:
        return Disk(kind=kind, size=size, serial=f"kh{kind}{index}")
    except HarnessError as e:
        raise HarnessError(f"disk {spec!r}: {e}") from None


def disk_args(disk: Disk, image: Path, index: int) -> list[str]:
    """QEMU arguments attaching ``image`` (a raw file) as ``disk`` (whose values Disk checked)."""
    drive = f"file={qemu_path(image)},if=none,id=scratch{index},format=raw,cache={disk.cache},aio=threads,discard=unmap"
    if disk.kind == "virtio":
        return ["-drive", drive, "-device", f"virtio-blk-pci,drive=scratch{index},serial={disk.serial}"]
    if disk.kind == "nvme":
        return ["-drive", drive, "-device", f"nvme,drive=scratch{index},serial={disk.serial}"]
    return ["-drive", drive, "-device",
            f"scsi-hd,drive=scratch{index},bus=scsi0.0,serial={disk.serial}"]
