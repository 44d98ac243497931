"""Boot records: their JSON form goes into the real results store unchanged, and the matrix folds
records (not shared state) into per-cell comparisons."""

import dataclasses
import json
from pathlib import Path

from harness.drivers.matrix import MatrixRun, cells, make_profile
from harness.results.rundir import new_run_dir
from harness.results.store import Store
from harness.run.spec_read import spec_from_json
from tests.helpers.records import record
from tests.helpers.specs import fio_spec


def test_record_json_is_what_the_store_takes(tmp_path):
    spec = fio_spec()
    rec = record(spec, iops=(1000.0, 1100.0))
    data = json.loads(json.dumps(rec.to_json()))
    assert spec_from_json(data["spec"]) == spec
    with Store(tmp_path / "s.sqlite") as store:
        assert store.add_run(data) == "r1"
        row = store.run("r1")
        assert (row.kernel, row.kernel_key, row.image_key, row.accel, row.workload) == (
            "patched", "f" * 24, "e" * 20, "tcg", "fio")
        assert row.group == "g1" and row.front_end == "pytest" and row.boot_seconds == 7.5
        assert [m.iops for m in store.measurements(["r1"])] == [1000.0, 1100.0]
        assert [x.test for x in store.xfstests(["r1"])] == ["generic/001"]
        assert [e.kind for e in store.events(["r1"])] == ["hung_task"]
        assert [e.path for e in store.evidence(["r1"])] == ["sysrq/hang-x-wt-1.txt"]
        store.add_run(data)  # recorded twice (a retried unit): nothing duplicated
        assert len(store.measurements(["r1"])) == 2


def test_new_run_dir_is_always_fresh(tmp_path):
    a, b = new_run_dir(tmp_path, "fio/ext4 x"), new_run_dir(tmp_path, "fio/ext4 x")
    assert a != b and a.parent == b.parent == tmp_path
    assert "/" not in a.name[len("YYYYmmdd-HHMMSS-"):] and " " not in a.name


def test_matrix_folds_records_into_comparisons(tmp_path):
    profile = make_profile("quick", filesystems=["ext4"])
    m = MatrixRun.__new__(MatrixRun)  # no testbed: fold only needs the outcomes
    m.kernel, m.baseline, m.profile, m.results = "patched", "baseline", profile, tmp_path
    from harness.drivers.matrix import CellOutcome
    m.outcomes = {c.id: CellOutcome(c) for c in cells(profile)}
    m.records, m.events, m.consoles = [], {"baseline": [], "patched": []}, {"baseline": [], "patched": []}
    spec = fio_spec()
    target = "ext4/nvme/unwritten-convert/libaio"
    for i, (b, n) in enumerate([(2000, 600), (2100, 560), (1950, 580), (2050, 590), (2020, 610)]):
        m.fold(record(dataclasses.replace(spec, kernel=dataclasses.replace(spec.kernel, name="baseline")),
                      f"b{i}", "base", (b,), cell=target, run_index=i))
        m.fold(record(spec, f"n{i}", "new", (n,), cell=target, run_index=i))
    o = m.outcomes[target]
    assert len(o.base) == len(o.new) == 5
    (iops, p99) = o.comparisons()
    assert iops.verdict == "regression" and iops.pct_change < -60
    assert p99.verdict == "regression"
    rows = m.rows()
    assert any(r["cell"] == target and r["metric"] == "IOPS" and r["verdict"] == "regression" and r["gates"]
               for r in rows)
    assert len(m.events["patched"]) == 5 and m.consoles["baseline"][0] == str(Path("/tmp/b0/console.log"))


def test_a_failed_boot_fails_what_it_left_undone(tmp_path):
    profile = make_profile("quick", filesystems=["ext4"])
    m = MatrixRun.__new__(MatrixRun)
    m.kernel, m.baseline, m.profile, m.results = "patched", "baseline", profile, tmp_path
    from harness.drivers.matrix import CellOutcome
    m.outcomes = {c.id: CellOutcome(c) for c in cells(profile)}
    m.records, m.events, m.consoles = [], {"baseline": [], "patched": []}, {"baseline": [], "patched": []}
    spec = fio_spec()
    rec = dataclasses.replace(record(spec, "n0", "new", ()), status="boot-failed",
                              failures=("guest kernel panicked during boot: Kernel panic",),
                              remaining=tuple(m.outcomes))
    m.fold(rec)
    assert all("boot-failed: guest kernel panicked" in o.failures[0] for o in m.outcomes.values())


def _no_testbed(monkeypatch):
    """The matrix driver without kernels or images: specs are the test spec with the planned
    cells, label, side and run index; the fake executors below turn them into records."""
    from harness.drivers import matrix as mx
    base_spec = fio_spec()

    def fake_fio_spec(bed, kernel, cs, *, label, role, run_index, **kw):
        return dataclasses.replace(base_spec, label=label, role=role, run_index=run_index,
                                   workload=dataclasses.replace(base_spec.workload, cells=tuple(cs)))

    class Bed:
        def prepare(self):
            return self
    monkeypatch.setattr(mx, "fio_spec", fake_fio_spec)
    monkeypatch.setattr(mx, "Testbed", lambda *a, **k: Bed())


def test_adaptive_repeats_measure_only_open_cells_up_to_the_cap(tmp_path, monkeypatch):
    """A big effect is decided at the minimum; a noisy cell without an effect gets more runs,
    only it is booted again, never beyond the cap; each boot's cell order is shuffled and recorded."""
    import random as rnd

    profile = dataclasses.replace(make_profile("quick", filesystems=["ext4"]), max_runs=5)
    target, noisy = "ext4/nvme/unwritten-convert/libaio", "ext4/nvme/append-extend/libaio"

    class FakeExecutor:
        name = "fake"

        def __init__(self):
            self.booted: list[tuple[int, str, tuple[str, ...]]] = []
            self.rng = rnd.Random(3)

        def execute(self, specs, root, **kw):
            out = []
            for s in specs:
                ids = tuple(c.id for c in s.workload.cells)
                self.booted.append((s.run_index, s.role, ids))
                for cid in ids:
                    v = (300.0 if s.role == "new" else 1000.0) if cid == target else 1000.0 * self.rng.uniform(0.8, 1.2)
                    out.append(record(s, f"{s.label}-{s.role}-{cid}", s.role, (v,), cell=cid, run_index=s.run_index))
            return out

    _no_testbed(monkeypatch)
    ex = FakeExecutor()
    m = MatrixRun("patched", "baseline", profile, tmp_path, executor=ex, seed=1).run()
    first = [b for b in ex.booted if b[0] < 3]
    assert len(first) == 6 and all(set(ids) == {target, noisy} for _, _, ids in first)
    later = [b for b in ex.booted if b[0] >= 3]
    assert later and all(ids == (noisy,) for _, _, ids in later), "only the open cell is measured again"
    assert max(b[0] for b in ex.booted) < 5
    o = m.outcomes
    assert len(o[target].new) == 3 and 3 < len(o[noisy].new) <= 5
    decided = m.decided()
    assert decided[target][0].verdict == "regression"
    orders = {ids for _, _, ids in first}
    assert len(orders) == 2, "cell order is shuffled between boots"
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["seed"] == 1 and saved["rounds"][3] == [noisy]
    assert all("q_value" in r and "ci_low" in r for r in saved["rows"])


def test_repeats_run_open_cells_several_times_a_boot_and_count_boots(tmp_path, monkeypatch):
    """The first round of repeats runs each open cell twice in its boot (the within-boot noise is
    unknown until then); later rounds take the noise model's runs a boot; the verdicts count
    boots, not runs; comparison.json records each round's choice and each cell's noise."""
    import random as rnd

    profile = dataclasses.replace(make_profile("quick", filesystems=["ext4"]), max_runs=5)
    target, noisy = "ext4/nvme/unwritten-convert/libaio", "ext4/nvme/append-extend/libaio"

    class FakeExecutor:
        name = "fake"

        def __init__(self):
            self.runs: list[tuple[int, str, int]] = []   # (run index, cell, runs in the boot)
            self.rng = rnd.Random(5)

        def execute(self, specs, root, **kw):
            out = []
            for s in specs:
                for c in s.workload.cells:
                    self.runs.append((s.run_index, c.id, c.runs))
                    boot = self.rng.uniform(0.85, 1.15)
                    vs = tuple((300.0 if s.role == "new" and c.id == target else 1000.0) * boot
                               * self.rng.uniform(0.8, 1.2) for _ in range(c.runs))
                    rec = record(s, f"{s.label}-{s.role}-{c.id}", s.role, vs, cell=c.id, run_index=s.run_index)
                    out.append(dataclasses.replace(rec, started="2026-11-29T18:00:00+0000",
                                                   finished=f"2026-11-29T18:00:{10 + 5 * c.runs:02d}+0000"))
            return out

    _no_testbed(monkeypatch)
    ex = FakeExecutor()
    m = MatrixRun("patched", "baseline", profile, tmp_path, executor=ex, seed=1).run()
    assert all(k == 1 for i, _, k in ex.runs if i < 3)
    repeat_runs = [k for i, cid, k in ex.runs if i == 3]
    assert repeat_runs and set(repeat_runs) == {2}, ex.runs
    o = m.outcomes[noisy]
    boots = len(set(o.new_boots))
    assert len(o.new) > boots                                   # some boot ran the cell twice ...
    (iops, _p99) = m.decided()[noisy]
    assert iops.new.n == boots                                   # ... and counted once
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["repeats"][0]["runs_per_boot"] == 2 and "within a boot" in saved["repeats"][0]["reason"]
    if len(saved["repeats"]) > 1:                                # the model's choice, with its inputs
        assert saved["repeats"][1]["boot_sd"] is not None and 1 <= saved["repeats"][1]["runs_per_boot"] <= 4
    noise = {(n["cell"], n["metric"]): n for n in saved["noise"]}
    iops_noise = noise[(noisy, "IOPS")]
    assert iops_noise["within_sd"] > 0 and iops_noise["mde_8_pct"] < iops_noise["mde_3_pct"]


def test_a_boots_cells_are_shuffled_with_each_filesystem_together():
    """Random order (recorded per boot), but one mkfs per filesystem: a filesystem's cells are
    consecutive, and both the filesystems' order and the order within them vary between boots."""
    import random as rnd

    from harness.drivers.matrix import cells, shuffled
    cs = cells(make_profile("full", disks=["nvme"]))
    orders = set()
    for i in range(20):
        order = shuffled(list(cs), rnd.Random(i))
        assert sorted(c.id for c in order) == sorted(c.id for c in cs)
        fss = [c.fs.fstype for c in order]
        assert sum(a != b for a, b in zip(fss, fss[1:])) == 2, fss   # 3 filesystems, 2 switches
        orders.add(tuple(c.id for c in order))
    assert len(orders) == 20 and len({o[0].split("/")[0] for o in orders}) == 3


def test_a_cell_with_a_settled_change_is_settled_whatever_its_other_metrics():
    from harness.drivers.matrix import cell_settled
    from harness.results.stats import compare
    big = compare([1000.0, 1010.0, 990.0], [300.0, 310.0, 290.0], metric="IOPS", higher_is_better=True)
    noisy = compare([100.0, 180.0, 60.0], [90.0, 200.0, 70.0], metric="p99", higher_is_better=False)
    narrow = compare([100.0, 100.5, 99.5, 100.2, 99.8], [100.1, 100.4, 99.6, 100, 99.9], metric="IOPS",
                     higher_is_better=True)
    assert big.settled and not noisy.settled and narrow.settled
    assert cell_settled([big, noisy])            # the cell has regressed; p99 would only be refined
    assert not cell_settled([narrow, noisy])     # no change in IOPS, p99 still open
    assert cell_settled([narrow, narrow]) and not cell_settled([])


def test_decide_adjusts_across_the_whole_matrix_and_keeps_each_cells_comparisons():
    """``decide`` (what MatrixRun.decided and benchmarks/replay_rule.py share): one cell's change
    is judged among every cell's, so the same p-value earns a larger q in a bigger matrix."""
    from harness.results.verdict import CellValues, compare_cell
    from harness.results.verdict import adjust_cells as decide
    base = {"iops": [1000.0, 1010.0, 990.0, 1005.0], "clat_p99_us": [50.0, 51.0, 49.0, 50.5]}
    moved = {"iops": [900.0, 915.0, 890.0, 905.0], "clat_p99_us": [50.0, 51.0, 49.0, 50.5]}
    same = {"iops": [1002.0, 1008.0, 995.0, 1001.0], "clat_p99_us": [50.2, 50.8, 49.4, 50.1]}

    def cell(new):
        return compare_cell(CellValues(base, new))
    alone = decide({"a": cell(moved)})
    among = decide({"a": cell(moved), **{f"n{i}": cell(same) for i in range(20)}})
    assert [c.metric for c in alone["a"]] == [c.metric for c in among["a"]] == ["IOPS", "p99 latency us"]
    assert set(among) == {"a", *(f"n{i}" for i in range(20))} and all(len(v) == 2 for v in among.values())
    p = alone["a"][0].p_value
    assert alone["a"][0].q_value < among["a"][0].q_value and among["a"][0].p_value == p


def test_a_boot_lost_to_the_host_counts_for_no_cell_and_is_listed_apart(tmp_path):
    profile = make_profile("quick", filesystems=["ext4"])
    m = MatrixRun.__new__(MatrixRun)
    m.kernel, m.baseline, m.profile, m.results = "patched", "baseline", profile, tmp_path
    from harness.drivers.matrix import CellOutcome
    m.outcomes = {c.id: CellOutcome(c) for c in cells(profile)}
    m.records, m.events, m.consoles, m.lost = [], {"baseline": [], "patched": []}, {"baseline": [], "patched": []}, []
    rec = dataclasses.replace(record(fio_spec(), "n0", "new", ()), status="boot-failed",
                              failures=("QEMU exited during boot (exit -9)",), remaining=tuple(m.outcomes),
                              lost="QEMU ended by signal 9 before the guest answered")
    m.fold(rec)
    assert not any(o.failures for o in m.outcomes.values())
    assert m.events["patched"] == [] and len(m.lost) == 1 and "signal 9" in m.lost[0]
