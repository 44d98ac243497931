"""QEMU command-line building (no QEMU started)."""

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.image.build import Image
from harness.vm.accel import Accel
from harness.vm.disks import parse_disk
from harness.vm.machine import Icount, VMConfig, qemu_argv


def test_disk_spec_parsing():
    d = parse_disk("nvme:4G", 2)
    assert (d.kind, d.size, d.serial, d.size_bytes) == ("nvme", "4G", "khnvme2", 4 << 30)
    assert parse_disk("virtio-blk:512m").size_bytes == 512 << 20
    assert parse_disk("scsi").size == "4G"
    with pytest.raises(HarnessError, match="unknown kind"):
        parse_disk("floppy:1M")
    with pytest.raises(HarnessError, match="size"):
        parse_disk("nvme:lots")


def argv(disks, accel=Accel("tcg", "test"), cmdline="", icount=None):
    cfg = VMConfig(kernel=Path("/k/bzImage"), image=Image("i", "k", Path("/img"), True), accel=accel,
                   run_dir=Path("/run"), disks=[parse_disk(d, i) for i, d in enumerate(disks)],
                   cmdline=cmdline, icount=icount)
    return qemu_argv(cfg, Path("/run/ov.qcow2"), [Path(f"/run/s{i}.raw") for i in range(len(disks))],
                     2222, Path("/run/qmp.sock"), Path("/run/console.log"))


def test_argv_is_a_list_with_loopback_forward_and_console_file():
    a = argv(["nvme:1G", "virtio:1G", "scsi:1G"])
    assert all(isinstance(x, str) for x in a)
    assert "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22" in a  # no route but the SSH forward
    assert "file,id=con0,path=/run/console.log" in a
    assert a[a.index("-accel") + 1] == "tcg,thread=multi"
    assert "-no-reboot" in a and "-nodefaults" in a
    append = a[a.index("-append") + 1]
    assert "console=ttyS0" in append and "panic=-1" in append
    devices = [a[i + 1] for i, x in enumerate(a) if x == "-device"]
    assert "nvme,drive=scratch0,serial=khnvme0" in devices
    assert "virtio-blk-pci,drive=scratch1,serial=khvirtio1" in devices
    assert "virtio-scsi-pci,id=scsi0" in devices
    assert "scsi-hd,drive=scratch2,bus=scsi0.0,serial=khscsi2" in devices
    # the root disk comes first so it is /dev/vda
    assert devices.index("virtio-blk-pci,drive=root") < devices.index("virtio-blk-pci,drive=scratch1,serial=khvirtio1")


def test_kvm_args_and_extra_cmdline():
    a = argv([], Accel("kvm", "test"), "init=/nonexistent")
    assert a[a.index("-accel") + 1] == "kvm" and a[a.index("-cpu") + 1] == "host"
    assert a[a.index("-append") + 1].endswith("init=/nonexistent")
    assert not any("scsi" in x for x in a)


def test_an_image_built_with_kharness_init_boots_it(tmp_path):
    import json
    (tmp_path / "metadata.json").write_text(json.dumps({"recipe": {"init": "kharness"}}))
    img = Image("i", "k", tmp_path, True)
    assert img.init == "kharness"
    cfg = VMConfig(kernel=Path("/k/bzImage"), image=img, accel=Accel("tcg", "test"), run_dir=Path("/run"),
                   cmdline="loglevel=7")
    a = qemu_argv(cfg, Path("/run/ov.qcow2"), [], 2222, Path("/run/qmp.sock"), Path("/run/console.log"))
    # the user's cmdline comes last, so it can override
    assert a[a.index("-append") + 1].endswith(" init=/usr/local/sbin/kharness-init loglevel=7")
    assert Image("i", "k", tmp_path / "none", True).cmdline == ""   # no metadata: systemd


def test_icount_runs_single_threaded_tcg_with_the_shift():
    a = argv(["nvme:1G"], icount=Icount(3, sleep=False))
    assert a[a.index("-accel") + 1] == "tcg,thread=single" and a.count("-accel") == 1
    assert a[a.index("-icount") + 1] == "shift=3,sleep=off"
    assert argv([], icount=Icount(0))[argv([], icount=Icount(0)).index("-icount") + 1] == "shift=0,sleep=on"
    with pytest.raises(HarnessError, match="icount needs TCG"):
        argv([], Accel("kvm", "test"), icount=Icount(3))
    with pytest.raises(HarnessError, match="icount shift 11"):
        argv([], icount=Icount(11))
