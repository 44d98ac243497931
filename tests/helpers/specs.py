"""Small, valid RunSpecs for unit tests: a fio spec of two cells and an xfstests spec."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.run.plan import fio_cell
from harness.run.spec import (
    DiskSpec,
    FioWorkload,
    HarnessSpec,
    ImageSpec,
    KernelSpec,
    RunSpec,
    SysrqSampling,
    XfstestsWorkload,
)


def kernel(patches=()):
    return KernelSpec(name="patched", key="f" * 24, source="tarball x", base_commit="a" * 40, commit="b" * 40,
                      release="6.1.0", config_base="defconfig", config_sha256="c" * 64, patches=tuple(patches))


def fio_spec(**kw):
    cells = (fio_cell("ext4", "nvme", "unwritten-convert", "libaio", size="16m", runtime=3, runs=2),
             fio_cell("xfs", "nvme", "append-extend", "io_uring", size="16m", runtime=3))
    base = dict(label="fio-x", kernel=kernel(), image=ImageSpec("debian-bookworm", "e" * 20), accel="tcg",
                disks=(DiskSpec("nvme", "2G", "khnvme0"),),
                workload=FioWorkload(cells=cells, sampling=SysrqSampling("w", 2.0, 2.0),
                                     setup=(("fsfreeze", "--freeze", "/mnt/scratch"),), deadline_s=60.0),
                harness=HarnessSpec("0.1.0", "abc"))
    base.update(kw)
    return RunSpec(**base)


def xfs_spec():
    wl = XfstestsWorkload(section="xfs_4k", fstype="xfs", mkfs_options="", section_sha256="s" * 64,
                          tests=("generic/001", "generic/002"), expunged=(("generic/002", "flaky"),))
    return dataclasses.replace(fio_spec(), workload=wl, role="base", run_index=3)


def spec_dir(root: Path, name: str) -> Path:
    """A run directory ``root/name`` holding only a valid fio spec.json (what a boot writes first)."""
    d = root / name
    d.mkdir(parents=True)
    cells = (fio_cell("ext4", "nvme", "unwritten-convert", "libaio"),)
    RunSpec(label="nightly-x",
            kernel=KernelSpec("baseline", "f" * 24, "src", "a" * 40, "a" * 40, "6.1", "defconfig", "h"),
            image=ImageSpec("debian-bookworm", "e" * 20), accel="tcg", disks=(),
            workload=FioWorkload(cells=cells)).write(d)
    return d
