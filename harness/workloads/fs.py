"""Scratch filesystems in the guest: mkfs and mount driven by filesystems.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.loader import load_yaml
from ..errors import DefinitionError, WorkloadError
from ..vm.machine import VM
from ..vm.ssh import GuestCommandError
from ..vocab import FILESYSTEMS_FILE

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "additionalProperties": False,
        "required": ["mkfs"],
        "properties": {
            "mkfs": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "mount_options": {"type": "string"},
        },
    },
}


@dataclass(frozen=True)
class Filesystem:
    """How to make and mount one filesystem type."""

    fstype: str
    mkfs: tuple[str, ...]
    mount_options: str = ""

    def mkfs_argv(self, dev: str) -> list[str]:
        return [a.replace("{dev}", dev) for a in self.mkfs]


def load_filesystems(path: Path = FILESYSTEMS_FILE) -> dict[str, Filesystem]:
    """All filesystem profiles."""
    data = load_yaml(path, SCHEMA)
    out = {}
    for name, d in data.items():
        if not any("{dev}" in a for a in d["mkfs"]):
            raise DefinitionError(path, f"{name}.mkfs", "must contain '{dev}'")
        out[name] = Filesystem(name, tuple(d["mkfs"]), d.get("mount_options", ""))
    return out


def get_filesystem(name: str) -> Filesystem:
    profiles = load_filesystems()
    if name not in profiles:
        raise DefinitionError(FILESYSTEMS_FILE, name, f"unknown filesystem (known: {', '.join(profiles)})")
    return profiles[name]


def make_and_mount(vm: VM, fs: Filesystem, dev: str, mountpoint: str = "/mnt/scratch") -> str:
    """mkfs ``dev`` and mount it at ``mountpoint``; a failure carries the tool's output."""
    try:
        vm.run(fs.mkfs_argv(dev), timeout=300)
    except GuestCommandError as e:
        raise WorkloadError(f"mkfs of {fs.fstype} on {dev} failed: {' '.join(fs.mkfs_argv(dev))}",
                            (e.result.stdout + e.result.stderr) if e.result else str(e)) from None
    argv = ["mount", "-t", fs.fstype] + (["-o", fs.mount_options] if fs.mount_options else [])
    argv += [dev, mountpoint]
    vm.run(["mkdir", "-p", mountpoint], timeout=30)
    try:
        vm.run(argv, timeout=120)
    except GuestCommandError as e:
        dmesg = vm.run(["dmesg", "-t"], timeout=30, check=False).stdout.splitlines()[-10:]
        raise WorkloadError(f"mount of {fs.fstype} {dev} on {mountpoint} failed: {' '.join(argv)}",
                            ((e.result.stdout + e.result.stderr) if e.result else str(e))
                            + "\n" + "\n".join(dmesg)) from None
    return mountpoint


def unmount(vm: VM, mountpoint: str = "/mnt/scratch") -> None:
    vm.run(["umount", mountpoint], timeout=300, check=False)
