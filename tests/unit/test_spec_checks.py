"""A spec read from JSON (a shared run directory, the results store, a Ray peer) is checked as
strictly as the CLI's own options: nothing in it may reach a QEMU option, a host path or an
unbounded deadline (run/spec_checks.py)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.run.plan import fio_cell
from harness.run.spec import (
    CommandWorkload,
    DiskSpec,
    FioWorkload,
    HarnessSpec,
    ImageSpec,
    RunSpec,
    SpecError,
    SysrqSampling,
    VMSpec,
    XfstestsWorkload,
)
from harness.run.spec_read import read_spec, spec_from_json
from harness.vm.disks import Disk, disk_args, parse_disk
from tests.helpers.specs import kernel

KERNEL_KEY = kernel().key                 # 24 hex digits, as kernel/build.py keys the cache
IMAGE_KEY = "89abcdef0123456789ab"        # 20 hex digits, as image/build.py does


def spec(workload=None, **kw) -> RunSpec:
    cells = (fio_cell("ext4", "nvme", "unwritten-convert", "libaio", size="16m", runtime=3, runs=2),)
    base = dict(label="fio-x", kernel=kernel(), image=ImageSpec("debian-bookworm", IMAGE_KEY), accel="tcg",
                disks=(DiskSpec("nvme", "2G", "khnvme0"), DiskSpec("virtio", "1G", "khvirtio1")),
                workload=workload or FioWorkload(cells=cells, sampling=SysrqSampling("wt", 2.0, 2.0),
                                                 setup=(("fsfreeze", "--freeze", "/mnt/scratch"),),
                                                 deadline_s=60.0),
                vm=VMSpec(memory_mb=2048, cpus=2), harness=HarnessSpec("0.1.0", "abc"))
    base.update(kw)
    return RunSpec(**base)


def xfs() -> RunSpec:
    return spec(XfstestsWorkload(section="xfs_4k", fstype="xfs", mkfs_options="", section_sha256="s" * 64,
                                 tests=("generic/001", "xfs/002"), expunged=(("xfs/002", "flaky"),)))


def command() -> RunSpec:
    return spec(CommandWorkload(argv=("sh", "-c", "echo hi"), timeout_s=600.0))


@pytest.mark.parametrize("make", [spec, xfs, command])
def test_specs_the_harness_writes_are_accepted(make, tmp_path):
    s = make()
    assert spec_from_json(json.loads(s.dumps()), "x") == s
    s.write(tmp_path)
    assert read_spec(tmp_path) == s


def _set(path: str, value):
    """A mutation setting ``path`` (``a.b[0].c``) of the JSON form to ``value``."""
    def mutate(d):
        keys = path.replace("[", ".[").split(".")
        for k in keys[:-1]:
            d = d[int(k[1:-1])] if k.startswith("[") else d[k]
        last = keys[-1]
        if last.startswith("["):
            d[int(last[1:-1])] = value
        else:
            d[last] = value
    return mutate


FIO_CASES = [
    # 1. a serial or a kind reaching QEMU's -device string
    ("disks[1].serial", "khnvme0,romfile=/root/.ssh/id_ed25519", "serial"),
    ("disks[0].serial", "", "serial"),
    ("disks[0].serial", "a" * 21, "serial"),
    ("disks[0].kind", "floppy", "kind"),
    ("disks[0].kind", "nvme,romfile=/etc/shadow", "kind"),
    ("disks[0].size", "16000G", "at most 64G"),
    ("disks[0].size", "0M", "size"),
    ("disks[0].size", "2G,readonly=off", "size"),
    # 2. names and keys that would leave the cache
    ("kernel.name", "../../tmp/x", "name"),
    ("kernel.name", "/tmp/x/evil", "name"),
    ("kernel.key", "../../../tmp/x/evil-0000", "key"),
    ("kernel.key", "0123456789ABCDEF01234567", "key"),
    ("kernel.key", "0123", "key"),
    ("kernel.base_commit", "--upload-pack=touch /tmp/x", "commit"),
    ("kernel.commit", "HEAD", "commit"),
    ("image.recipe", "/tmp/x/evil", "name"),
    ("image.recipe", "..", "name"),
    ("image.key", "../evil", "key"),
    ("image.key", KERNEL_KEY, "key"),
    # 3. numbers: finite and bounded
    ("workload.deadline_s", math.inf, "finite"),
    ("workload.deadline_s", math.nan, "finite"),
    ("workload.deadline_s", 86401.0, "at most"),
    ("workload.deadline_s", 0, "at least"),
    ("workload.sampling.delay", math.inf, "finite"),
    ("workload.sampling.interval", -1.0, "at least"),
    ("workload.sampling.keys", "../../../tmp/x", "keys"),
    ("workload.sampling.keys", "", "keys"),
    ("vm.memory_mb", 16385, "at most"),
    ("vm.memory_mb", 1, "at least"),
    ("vm.cpus", 0, "at least"),
    ("vm.cpus", 4096, "at most"),
    ("vm.cmdline", "quiet\nroot=/dev/sdb", "cmdline"),
    ("vm.cmdline", "x" * 2000, "cmdline"),
    ("run_index", -1, "at least"),
    ("label", "", "label"),
    ("label", "a\x1b[2Jb", "label"),
    ("label", "x" * 1001, "label"),
    ("role", "x" * 300, "role"),
    ("accel", "xen", "accel"),
    ("vm.icount_shift", 11, "at most"),
    ("vm.icount_shift", -1, "at least"),
    ("vm.icount_shift", "3", "int"),
    ("vm.icount_sleep", "off", "true or false"),
    # 4. fio cells: known kinds and parameters only
    ("workload.cells[0].runs", 0, "at least"),
    ("workload.cells[0].runs", 10 ** 6, "at most"),
    ("workload.cells[0].disk", "floppy", "disk"),
    ("workload.cells[0].fs.fstype", "../../x", "fstype"),
    ("workload.cells[0].fs.mkfs", [], "mkfs"),
    ("workload.cells[0].job.pattern", "rm-rf", "pattern"),
    ("workload.cells[0].job.engine", "sync", "engine"),
    ("workload.cells[0].job.runtime", 3601, "runtime"),
    ("workload.cells[0].job.ramp_time", 10 ** 9, "ramp_time"),
    ("workload.cells[0].job.numjobs", 100000, "numjobs"),
    ("workload.cells[0].job.iodepth", 10 ** 7, "iodepth"),
    ("workload.cells[0].job.size", "1t", "size"),
    ("workload.cells[0].job.bs", "0", "bs"),
    ("workload.cells[0].job.directory", "/mnt/scratch/a b", "directory"),
    ("workload.cells", [], "cells"),
    # 5. guest commands: argv lists of strings
    ("workload.setup", [[]], "empty"),
    ("workload.setup", [["sh", "-c", "a\x00b"]], "NUL"),
    ("workload.setup", [["true"]] * 1000, "at most"),
]


@pytest.mark.parametrize("key, value, words", FIO_CASES, ids=[f"{k}={v!r}"[:60] for k, v, _ in FIO_CASES])
def test_a_fio_spec_is_checked(key, value, words):
    data = spec().to_json()
    _set(key, value)(data)
    with pytest.raises(SpecError) as e:
        spec_from_json(data, "run/spec.json")
    msg = str(e.value)
    assert msg.startswith(f"run/spec.json: {key}") and words in msg, msg


OTHER_CASES = [
    (xfs, "workload.tests", ["../../../etc/passwd"], "test"),
    (xfs, "workload.tests", ["generic/001;reboot"], "test"),
    (xfs, "workload.tests", [], "tests"),
    (xfs, "workload.section", "xfs 4k", "section"),
    (xfs, "workload.section", "../x", "section"),
    (xfs, "workload.fstype", "x,y", "fstype"),
    (xfs, "workload.default_watchdog_s", math.inf, "finite"),
    (xfs, "workload.default_watchdog_s", 1e9, "at most"),
    (xfs, "workload.expunged", [["generic/001"]], "expunged"),
    (xfs, "workload.expunged", [["../x", "why"]], "expunged"),
    (command, "workload.timeout_s", math.inf, "finite"),
    (command, "workload.timeout_s", 0.0, "at least"),
    (command, "workload.timeout_s", 86400.5, "at most"),
    (command, "workload.argv", ["sh", "-c", "\x00"], "NUL"),
    (command, "workload.argv", ["x" * 200_000], "long"),
]


@pytest.mark.parametrize("make, key, value, words", OTHER_CASES,
                         ids=[f"{m.__name__}-{k}={v!r}"[:60] for m, k, v, _ in OTHER_CASES])
def test_xfstests_and_command_specs_are_checked(make, key, value, words):
    data = make().to_json()
    _set(key, value)(data)
    with pytest.raises(SpecError) as e:
        spec_from_json(data, "spec.json")
    msg = str(e.value)
    assert msg.startswith(f"spec.json: {key}") and words in msg, msg


def test_infinity_in_a_spec_file_is_refused_naming_the_file_and_key(tmp_path):
    command().write(tmp_path)
    path = tmp_path / "spec.json"
    text = path.read_text().replace('"timeout_s": 600.0', '"timeout_s": Infinity')
    assert "Infinity" in text
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        read_spec(tmp_path)
    assert str(e.value).startswith(f"{path}: workload.timeout_s: ")


def test_a_bad_serial_names_the_disk_in_the_file(tmp_path):
    s = spec()
    s.write(tmp_path)
    data = json.loads((tmp_path / "spec.json").read_text())
    data["disks"][1]["serial"] = "khnvme0,romfile=/root/.ssh/id_ed25519"
    (tmp_path / "spec.json").write_text(json.dumps(data))
    with pytest.raises(SpecError) as e:
        read_spec(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'spec.json'}: disks[1].serial: ")


# --- the VM layer refuses too, whatever built the Disk ------------------------------------------

@pytest.mark.parametrize("kw", [dict(serial="khnvme0,romfile=/root/.ssh/id_ed25519"), dict(serial=""),
                                dict(kind="nvme,romfile=/x"), dict(size="16000G"), dict(size="4G,x=y"),
                                dict(cache="none,file=/etc/shadow")])
def test_disk_values_are_checked_where_they_become_qemu_options(kw):
    with pytest.raises(HarnessError):
        Disk(**{"kind": "nvme", "size": "4G", "serial": "khnvme0", **kw})


def test_disk_args_paste_only_checked_values():
    d = parse_disk("nvme:64G", 3)
    (drive, device) = disk_args(d, Path("/r,un/s.raw"), 3)[1::2]
    assert device == "nvme,drive=scratch3,serial=khnvme3"
    assert drive.startswith("file=/r,,un/s.raw,if=none,")
    with pytest.raises(HarnessError, match="at most 64G"):
        parse_disk("virtio:65G")
    with pytest.raises(HarnessError, match="at most 64G"):
        parse_disk("virtio:16000G")



# --- kharness reproduce: show, then refuse ------------------------------------------------------

def test_describe_lists_kernel_image_disks_workload_and_every_guest_command():
    from harness.run.spec_checks import describe_spec
    text = "\n".join(describe_spec(spec()))
    for words in (f"kernel patched (key {KERNEL_KEY}", f"image debian-bookworm (key {IMAGE_KEY})",
                  "disks: nvme 2G serial khnvme0, virtio 1G serial khvirtio1", "memory 2048 MiB, 2 CPUs",
                  "fio cell ext4/nvme/unwritten-convert/libaio x2", "mkfs.ext4 -F -q '{dev}'",
                  "fsfreeze --freeze /mnt/scratch"):
        assert words in text, (words, text)
    evil = CommandWorkload(("sh", "-c", "rm -rf /\x1b[2J"))
    cmd = "\n".join(describe_spec(dataclasses.replace(command(), workload=evil)))
    assert "sh -c 'rm -rf /\\x1b[2J'" in cmd and "\x1b" not in cmd   # no terminal escapes reach the screen
    x = "\n".join(describe_spec(xfs()))
    assert "xfstests section xfs_4k (xfs): 2 tests: generic/001 xfs/002" in x and "expunged: xfs/002" in x


def test_reproduce_shows_the_spec_before_preparing_anything(tmp_path, monkeypatch):
    import harness.drivers.reproduce as repro
    command().write(tmp_path)
    seen = []
    monkeypatch.setattr(repro, "prepare_for_spec", lambda s, **kw: seen.append("prepare") or (_ for _ in ()).throw(
        HarnessError("stop here")))
    with pytest.raises(HarnessError, match="stop here"):
        repro.reproduce(str(tmp_path), tmp_path / "out", say=seen.append)
    shown = seen[:seen.index("prepare")]
    assert any("guest command: sh -c 'echo hi'" in s for s in shown), seen


def test_reproduce_refuses_a_bad_spec_before_showing_or_preparing(tmp_path, monkeypatch):
    import harness.drivers.reproduce as repro
    command().write(tmp_path)
    data = json.loads((tmp_path / "spec.json").read_text())
    data["disks"][0]["serial"] = "khnvme0,romfile=/root/.ssh/id_ed25519"
    (tmp_path / "spec.json").write_text(json.dumps(data))
    seen = []
    monkeypatch.setattr(repro, "prepare_for_spec", lambda s, **kw: seen.append("prepare"))
    with pytest.raises(SpecError, match=r"disks\[0\]\.serial"):
        repro.reproduce(str(tmp_path), tmp_path / "out", say=seen.append)
    assert seen == []


@pytest.mark.parametrize("argv, words", [
    (["vm", "boot", "--kernel", "baseline", "--timeout", "inf", "--", "true"], "timeout inf"),
    (["vm", "boot", "--kernel", "baseline", "--timeout", "1e9", "--", "true"], "timeout 1000000000.0"),
    (["vm", "boot", "--kernel", "baseline", "--memory", "1000000", "--", "true"], "memory"),
    (["run", "fio", "--kernel", "baseline", "--fs", "ext4", "--disk", "nvme", "--runs", "101"], "runs 101"),
])
def test_the_command_line_refuses_what_a_spec_would_before_building(argv, words, capsys, tmp_path, monkeypatch):
    """The CLI's limits are the spec reader's: a value a spec.json may not hold is refused by the
    command line too, before any build (no Testbed is ever made)."""
    import harness.run.testbed as testbed
    from harness.cli import main

    def no_build(*a, **k):
        raise AssertionError("a build was started")
    monkeypatch.setattr(testbed.Testbed, "prepare", no_build)
    monkeypatch.setenv("KHARNESS_RESULTS", str(tmp_path))
    assert main(argv + ["--results-dir", str(tmp_path)] if argv[0] == "run" else argv) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("content, words", [("[1, 2]", "want a JSON object"), ("{trunc", "unreadable run record"),
                                            (None, "larger than")])
def test_a_shared_record_json_is_read_as_untrusted_input(tmp_path, monkeypatch, content, words):
    """record.json of a run directory from elsewhere: capped, and refused naming the file when it
    is no JSON object, instead of a traceback or an unbounded read."""
    import harness.drivers.reproduce as repro
    command().write(tmp_path)
    rec = tmp_path / "record.json"
    if content is None:
        monkeypatch.setattr(repro, "MAX_RECORD_BYTES", 16)
        rec.write_text(json.dumps({"padding": "x" * 64}))
    else:
        rec.write_text(content)
    with pytest.raises(HarnessError, match=words) as e:
        repro.load_recorded(str(tmp_path))
    assert "record" in str(e.value)


def test_icount_is_for_tcg_only_and_recorded_in_the_spec():
    data = spec(vm=VMSpec(icount_shift=3, icount_sleep=False)).to_json()
    assert data["vm"]["icount_shift"] == 3 and data["vm"]["icount_sleep"] is False
    assert spec_from_json(data, "run/spec.json").vm.icount_shift == 3
    data["accel"] = "kvm"
    with pytest.raises(SpecError, match="vm.icount_shift: icount needs accel tcg"):
        spec_from_json(data, "run/spec.json")
