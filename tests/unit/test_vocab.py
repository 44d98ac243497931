"""The vocabulary and its typed keys: one parser each, round trips, and errors that name the text."""

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.run.boot import RUNNERS
from harness.run.plan import fio_cell
from harness.run.spec import WORKLOAD_KINDS, CommandWorkload, SpecError
from harness.vocab import (
    DISKS,
    ENGINES,
    FILESYSTEMS,
    PATTERNS,
    CellId,
    KernelRef,
    VocabError,
    check_disk,
    check_engine,
    check_filesystem,
    check_pattern,
    valid_git_ref,
    valid_name,
)
from harness.workloads.fs import load_filesystems
from tests.helpers.specs import fio_spec, xfs_spec

WORKLOADS_DIR = Path(__file__).resolve().parents[2] / "harness" / "workloads"


# -- the vocabulary is read from the stages' data ---------------------------------------------------
def test_vocabulary_comes_from_the_data():
    assert FILESYSTEMS == tuple(load_filesystems()) and FILESYSTEMS[:2] == ("ext4", "xfs")
    templates = {p.name.removesuffix(".fio.j2") for p in (WORKLOADS_DIR / "templates" / "fio").glob("*.fio.j2")}
    assert set(PATTERNS) == {t for t in templates if not t.startswith("_")}
    assert PATTERNS[0] == "randwrite-overwrite"      # the planning order is kept
    assert DISKS == ("virtio", "nvme", "scsi") and ENGINES == ("libaio", "io_uring")


@pytest.mark.parametrize("check, good, bad, allowed", [
    (check_filesystem, "xfs", "btrfs", "ext4, xfs"),
    (check_disk, "nvme", "floppy", "virtio, nvme, scsi"),
    (check_pattern, "append-extend", "sideways", "randwrite-overwrite, append-extend"),
    (check_engine, "io_uring", "posixaio", "libaio, io_uring"),
])
def test_checks_name_the_text_and_what_is_allowed(check, good, bad, allowed):
    assert check(good) == good
    with pytest.raises(VocabError) as e:
        check(bad)
    assert repr(bad) in str(e.value) and allowed in str(e.value) and isinstance(e.value, HarnessError)
    with pytest.raises(VocabError):
        check(None)


# -- CellId -------------------------------------------------------------------------------------------
def test_cell_id_round_trip_and_slug():
    c = CellId.parse("ext4/nvme/unwritten-convert/libaio")
    assert (c.fs, c.disk, c.pattern, c.engine) == ("ext4", "nvme", "unwritten-convert", "libaio")
    assert str(c) == "ext4/nvme/unwritten-convert/libaio" and c.slug == "ext4-nvme-unwritten-convert-libaio"
    cell = fio_cell("xfs", "virtio", "append-extend", "io_uring")
    assert cell.cell_id == CellId("xfs", "virtio", "append-extend", "io_uring")
    assert cell.id == "xfs/virtio/append-extend/io_uring"       # the stored text did not change


@pytest.mark.parametrize("text, words", [
    ("ext4/nvme/unwritten-convert", "want FS/DISK/PATTERN/ENGINE"),
    ("ext4/nvme/unwritten-convert/libaio/x", "want FS/DISK/PATTERN/ENGINE"),
    ("", "want FS/DISK/PATTERN/ENGINE"),
    ("ext4/floppy/unwritten-convert/libaio", "disk kind 'floppy'"),
    ("zfs/nvme/unwritten-convert/libaio", "filesystem 'zfs'"),
    ("ext4/nvme/sideways/libaio", "fio pattern 'sideways'"),
    ("ext4/nvme/append-extend/aio", "fio ioengine 'aio'"),
])
def test_bad_cell_ids_name_the_text(text, words):
    with pytest.raises(VocabError) as e:
        CellId.parse(text)
    assert repr(text) in str(e.value) and words in str(e.value)


VALID_CELLS = st.builds(lambda *p: "/".join(p), st.sampled_from(FILESYSTEMS), st.sampled_from(DISKS),
                        st.sampled_from(PATTERNS), st.sampled_from(ENGINES))


@given(VALID_CELLS)
def test_cell_id_str_is_the_text_parsed(text):
    assert str(CellId.parse(text)) == text
    assert CellId.parse(text).slug == text.replace("/", "-")


@settings(max_examples=300)
@given(st.one_of(st.text(), st.text(alphabet="/ext4nvmlibaou_-@.", max_size=40),
                 st.builds(lambda a, b: a + b, VALID_CELLS, st.text(max_size=3))))
def test_cell_id_parse_raises_only_vocab_errors(text):
    try:
        c = CellId.parse(text)
    except VocabError as e:
        assert repr(text) in str(e)
    else:
        assert str(c) == text


# -- KernelRef -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, name, ref", [
    ("baseline", "baseline", None),
    ("baseline@main", "baseline", "main"),
    ("v6.9-fix@a" + "0" * 39, "v6.9-fix", "a" + "0" * 39),
    ("k@refs/tags/v6.10+rc1", "k", "refs/tags/v6.10+rc1"),
])
def test_kernel_ref_round_trip(text, name, ref):
    k = KernelRef.parse(text)
    assert (k.name, k.ref) == (name, ref) and str(k) == text
    assert str(KernelRef(name).at("c" * 40)) == f"{name}@{'c' * 40}"


@pytest.mark.parametrize("text, words", [
    ("k@", "give NAME or NAME@REF"),
    ("@main", "kernel name ''"),
    ("../k", "kernel name '../k'"),
    ("-k", "kernel name '-k'"),
    ("k@-x", "REF must be a branch, tag or commit"),
    ("k@a..b", "no '..'"),
    ("k@ma in", "REF must be"),
    ("k@main\n", "REF must be"),
    ("k@x\x01", "REF must be"),
    ("k@topic.lock", "REF must be"),
    ("k@x@y", "REF must be"),
])
def test_bad_kernel_refs_name_the_text(text, words):
    with pytest.raises(VocabError) as e:
        KernelRef.parse(text)
    assert repr(text) in str(e.value) and words in str(e.value)


@settings(max_examples=300)
@given(st.one_of(st.text(), st.text(alphabet="ab.-_/@+ \t\x00~^:", max_size=30)))
def test_kernel_ref_parse_raises_only_vocab_errors_and_round_trips(text):
    try:
        k = KernelRef.parse(text)
    except VocabError as e:
        assert repr(text) in str(e)
    else:
        assert str(k) == text and valid_name(k.name) and (k.ref is None or valid_git_ref(k.ref))
        assert not re.search(r"\s|\.\.", text) and not (k.ref or "x").startswith(("-", "."))


def test_plans_and_testbed_validate_refs_alike():
    """The plan loader and the testbed both parse with KernelRef: the same text is refused by both."""
    from harness.drivers.nightly.plans import check_kernel_ref
    from harness.errors import DefinitionError
    from harness.run.testbed import Testbed
    for text in ("baseline@-x", "baseline@a..b", "baseline@"):
        with pytest.raises(DefinitionError, match="REF|NAME@REF"):
            check_kernel_ref(text, Path("plan.yaml"), "kernels[0]")
        with pytest.raises(VocabError):
            Testbed([text])


# -- the workload protocol -----------------------------------------------------------------------------
def test_every_workload_kind_has_a_runner_and_the_protocol():
    assert set(RUNNERS) == set(WORKLOAD_KINDS)
    fio, xfs, cmd = fio_spec().workload, xfs_spec().workload, CommandWorkload(("true",))
    assert fio.work() == tuple(c.id for c in fio.cells) and xfs.work() == xfs.tests and cmd.work() == ("command",)
    assert fio.narrowed([fio.work()[1]]).work() == fio.work()[1:2]
    assert fio.undone([fio.work()[0]]) == fio.work()[1:] and xfs.undone(["x"]) == xfs.tests
    for wl in (fio, xfs, cmd):
        assert wl.busy_seconds() > 0
        wl.require(wl.work()[0], "spec")
        with pytest.raises(SpecError, match="no "):
            wl.require("nope/nope", "spec")
