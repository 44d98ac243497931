"""Patch-aware selection (harness.drivers.series.select): rules, ranking, budget, --full."""

import pytest

from harness.drivers.series.diff import Touched, touched_text
from harness.drivers.series.select import DEFERRED, INTEGRITY_SHARE, RULES, Costs, named_xfstests, select

FS = ("ext4", "xfs", "ocfs2")
DISKS = ("nvme", "virtio")
PATTERNS = ("randwrite-overwrite", "append-extend", "unwritten-convert", "randwrite-osync")
ENGINES = ("libaio", "io_uring")


def sel(files, functions=(), words=(), **kw):
    t = Touched(tuple(files), tuple(functions), tuple(words))
    kw.setdefault("budget_s", 900.0)
    return select(t, filesystems=FS, disks=DISKS, patterns=PATTERNS, engines=ENGINES,
                  iomap_users=("ext4", "xfs"), direct_io_users=("ocfs2",), **kw)


def test_one_filesystem_runs_only_its_cells_and_tests():
    s = sel(["fs/ocfs2/file.c"])
    assert s.filesystems == ("ocfs2",)
    assert s.xfstests and all(x.item.startswith("ocfs2_local:") for x in s.xfstests)
    assert "touches fs/ocfs2/file.c: ocfs2 cells and the ocfs2 tests" in s.reasons
    assert s.to_json()["filesystems"] == ["ocfs2"]


def test_iomap_direct_io_selects_the_iomap_filesystems():
    s = sel(["fs/iomap/direct-io.c"], [("fs/iomap/direct-io.c", ("iomap_dio_complete_work",))])
    assert set(s.filesystems) == {"ext4", "xfs"}
    assert {c.item.split("/")[2] for c in s.cells[:4]} <= set(DEFERRED)


def test_the_completion_workqueue_ranks_deferred_completions_first_on_every_filesystem():
    s = sel(["fs/direct-io.c"], [("fs/direct-io.c", ("sb_init_dio_done_wq",))], budget_s=600.0)
    top = [c.item for c in s.cells if c.weight == 1.0]
    assert {i.split("/")[0] for i in top} == set(FS)
    assert {i.split("/")[2] for i in top} == set(DEFERRED)
    assert "ext4/nvme/append-extend/libaio" not in top      # ext4 performs extending writes synchronously
    # the first two: ext4's deferred completions (ties go by name)
    assert [c.item for c in s.cells[:2]] == ["ext4/nvme/randwrite-osync/libaio", "ext4/nvme/unwritten-convert/libaio"]
    assert "ext4/nvme/unwritten-convert/libaio" in [c.item for c in s.cells]


def test_budget_is_kept_and_full_runs_everything():
    s = sel(["mm/filemap.c"], budget_s=300.0)
    assert s.cost_s <= 300.0 and s.skipped
    full = sel(["mm/filemap.c"], full=True)
    assert len(full.cells) == len(FS) * len(DISKS) * len(PATTERNS) * len(ENGINES) and not full.skipped


def test_measured_costs_change_the_ranking():
    cheap = "xfs/nvme/unwritten-convert/libaio"
    costs = Costs({c: 500.0 for c in [f"{f}/nvme/{p}/libaio" for f in FS for p in PATTERNS]} | {cheap: 10.0})
    s = sel(["fs/direct-io.c"], [("fs/direct-io.c", ("sb_init_dio_done_wq",))], costs=costs, budget_s=200.0)
    assert s.cells[0].item == cheap


def test_at_least_one_item_even_when_nothing_fits():
    s = sel(["fs/ext4/inode.c"], budget_s=1.0)
    assert len(s.cells) == 1 and s.cells[0].item.startswith("ext4/")


def test_block_layer_and_drivers_pick_disks():
    assert sel(["drivers/block/virtio_blk.c"]).cells[0].item.split("/")[1] == "virtio"
    assert sel(["drivers/nvme/host/core.c"]).cells[0].item.split("/")[1] == "nvme"


def test_from_a_real_diff():
    t = touched_text("diff --git a/fs/jbd2/commit.c b/fs/jbd2/commit.c\n--- a/fs/jbd2/commit.c\n"
                     "+++ b/fs/jbd2/commit.c\n"
                     "@@ -1,1 +1,1 @@ void jbd2_journal_commit_transaction(journal_t *j)\n-a\n+b\n")
    s = select(t, filesystems=FS, disks=DISKS, patterns=PATTERNS, engines=ENGINES, iomap_users=("ext4", "xfs"),
               direct_io_users=("ocfs2",), budget_s=900.0)
    assert set(s.filesystems) == {"ext4", "ocfs2"}


def test_costs_measured_in_the_store():
    from types import SimpleNamespace

    from harness.drivers.series.run import measured_costs, parse_budget

    def run(cells, started, finished, boot):
        return SimpleNamespace(workload="fio", started=started, finished=finished, boot_seconds=boot,
                               record={"measurements": [{"cell": c} for c in cells]})
    store = SimpleNamespace(runs=lambda limit: [
        run(["a/nvme/p/libaio", "b/nvme/p/libaio"], "2026-12-06T04:29:15+0000", "2026-12-06T04:29:35+0000", 4.0),
        run(["a/nvme/p/libaio"], "2026-12-06T05:00:00+0000", "2026-12-06T05:00:14+0000", 4.0),
        SimpleNamespace(workload="xfstests", started=None, finished=None, boot_seconds=None, record={})])
    c = measured_costs(store, runs=3)
    assert c.cell_s == {"a/nvme/p/libaio": 6 * 9.0, "b/nvme/p/libaio": 6 * 8.0}
    assert measured_costs(None, 3).cell_s == {}
    assert parse_budget("15m") == 900 and parse_budget("90s") == 90 and parse_budget("1h") == 3600


def test_named_xfstests_replace_the_chosen_ones_in_the_selected_filesystems():
    s = sel(["fs/direct-io.c"], [("fs/direct-io.c", ("sb_init_dio_done_wq",))], budget_s=200.0)
    assert s.filesystems == ("ext4",) and not s.xfstests           # 200 s: two ext4 cells, no xfstests
    named = named_xfstests(s, ["generic/001", "xfs_4k:generic/013", "generic/001"], Costs())
    assert [x.item for x in named.xfstests] == ["ext4_4k:generic/001", "xfs_4k:generic/013"]
    assert named.cells == s.cells and named.cost_s == s.cost_s + 2 * 80.0 + 60.0   # tests + their boots, once
    assert named.to_json()["xfstests"][0]["reason"] == "named by --xfstests"
    chosen = sel(["fs/ocfs2/file.c"])
    again = named_xfstests(chosen, ["generic/001"], Costs())
    assert [x.item for x in again.xfstests] == ["ocfs2_local:generic/001"]
    assert again.cost_s == chosen.cost_s - sum(x.cost_s for x in chosen.xfstests) + 80.0
    for bad in ("generic/../x", "nosuch_4k:generic/001", "-rf", "generic/001 ; x"):
        with pytest.raises(ValueError, match="want TEST"):
            named_xfstests(s, [bad], Costs())


def test_a_touched_direct_io_write_path_keeps_a_quarter_for_its_integrity_tests():
    # a functional fault moves no cell's metric: rules 1 spent a 651 s budget on cells alone
    s = sel(["fs/iomap/direct-io.c"], [("fs/iomap/direct-io.c", ("iomap_dio_bio_iter",))], budget_s=651.0)
    assert [x.item for x in s.xfstests][:1] == ["ext4_4k:generic/091"]
    assert s.cells and s.cost_s <= 651.0
    assert any("25% of the budget kept for its data-integrity xfstests" in r for r in s.reasons)
    assert s.to_json()["rules"] == RULES
    # more room: the first test on each touched filesystem before a second one on any
    wide = sel(["fs/iomap/direct-io.c"], [("fs/iomap/direct-io.c", ("iomap_dio_bio_iter",))], budget_s=900.0)
    assert [x.item for x in wide.xfstests][:2] == ["ext4_4k:generic/091", "xfs_4k:generic/091"]


def test_no_reserve_without_a_direct_io_path_or_room_for_it():
    assert not any("data-integrity" in r for r in sel(["block/blk-flush.c"], budget_s=900.0).reasons)
    tiny = sel(["fs/ext4/file.c"], budget_s=(Costs().xfstests_boot_s + Costs().xfstest_s) / INTEGRITY_SHARE - 1)
    assert not any(x.reason.startswith("kept for data integrity") for x in tiny.xfstests)
    assert not any("data-integrity" in r for r in sel(["fs/ext4/file.c"], full=True).reasons)


FUA_HUNK = """diff --git a/fs/iomap/direct-io.c b/fs/iomap/direct-io.c
--- a/fs/iomap/direct-io.c
+++ b/fs/iomap/direct-io.c
@@ -553,8 +553,10 @@ __iomap_dio_rw(struct kiocb *iocb, struct iov_iter *iter,
 \t\t\t * completion whether a cache flush is necessary.
 \t\t\t */
-\t\t\tif (!(iocb->ki_flags & IOCB_SYNC))
-\t\t\t\tdio->flags |= IOMAP_DIO_WRITE_FUA;
+\t\t\t/* FUA is not used */
 \t\t}
"""


def test_the_changed_lines_raise_the_patterns_they_name():
    """Rules 3: a change to FUA inside __iomap_dio_rw (whose name says only "dio") ranks the FUA
    overwrites with the deferred completions, and says so; the same files without the words do not."""
    t = touched_text(FUA_HUNK)
    assert "iomap_dio_write_fua" in t.words_of("fs/iomap/direct-io.c")
    s = select(t, filesystems=FS, disks=DISKS, patterns=PATTERNS, engines=ENGINES, iomap_users=("ext4", "xfs"),
               direct_io_users=("ocfs2",), budget_s=900.0)
    top = {c.item for c in s.cells if c.weight == 1.0}
    assert {"ext4/nvme/randwrite-overwrite/libaio", "xfs/nvme/randwrite-overwrite/libaio"} <= top
    assert any(r.endswith("its changed lines name randwrite-overwrite") for r in s.reasons)
    bare = sel(["fs/iomap/direct-io.c"], [("fs/iomap/direct-io.c", ("__iomap_dio_rw",))])
    assert not any(c.weight == 1.0 and "overwrite" in c.item for c in bare.cells)
    assert not any("changed lines" in r for r in bare.reasons)


def test_words_raise_a_pattern_under_any_rule_but_never_lower_one():
    # jbd2's rule ranks O_SYNC overwrites and conversions first; a FUA word adds the overwrites
    s = sel(["fs/jbd2/commit.c"], words=[("fs/jbd2/commit.c", ("req_fua", "jbd2_journal_commit_transaction"))])
    w = {c.item: c.weight for c in s.cells}
    assert w["ext4/nvme/randwrite-overwrite/libaio"] == w["ext4/nvme/randwrite-osync/libaio"] == 1.0
    # a word naming nothing changes nothing
    plain = sel(["fs/ocfs2/aops.c"], words=[("fs/ocfs2/aops.c", ("create", "i_blkbits"))])
    assert plain == sel(["fs/ocfs2/aops.c"])
