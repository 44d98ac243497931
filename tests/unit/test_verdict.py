"""One verdict rule: the same records give the same verdicts (verdict, change, p and q) in the
suite's matrix, a nightly run and `kharness results compare`; and the rule's own parts (the
metric table, the adjustment families, the settle rule, the bisect step rule)."""

from __future__ import annotations

import dataclasses
import json

import pytest

import harness.cli as cli
from harness.drivers.matrix import CellOutcome, MatrixRun, cells, make_profile
from harness.drivers.nightly.book import NightlyDB
from harness.drivers.nightly.fold import fold_night, group_of, verdict_rows
from harness.drivers.nightly.plans import load_plan_file
from harness.drivers.nightly.units import planned_units
from harness.results.stats import compare
from harness.results.store import Store
from harness.results.verdict import (
    GATING,
    CellValues,
    MetricError,
    adjust_cells,
    cell_settled,
    compare_cell,
    decide_cells,
    metric,
)
from harness.run.records import BootRecord, MeasurementRecord
from tests.helpers.specs import fio_spec

BIG = "ext4/nvme/unwritten-convert/libaio"          # -71% IOPS: flagged anywhere
BORDER = "ext4/nvme/append-extend/libaio"           # -6% IOPS at p = 0.03: flagged only unadjusted
# per cell: (base IOPS, new IOPS, base p99, new p99), 5 runs a side
VALUES = {
    BIG: ([2000, 2100, 1950, 2050, 2020], [600, 580, 610, 590, 570],
          [900, 950, 870, 920, 910], [910, 940, 880, 930, 900]),
    BORDER: ([1000, 1030, 980, 1010, 995], [930, 1000, 890, 940, 960],
             [500, 520, 490, 510, 505], [505, 515, 495, 500, 512]),
    "xfs/nvme/unwritten-convert/libaio": ([1500, 1540, 1470, 1520, 1490], [1510, 1480, 1530, 1495, 1520],
                                          [700, 730, 690, 720, 710], [710, 720, 695, 715, 705]),
    "xfs/nvme/append-extend/libaio": ([800, 830, 790, 815, 805], [810, 790, 820, 800, 825],
                                      [1200, 1250, 1180, 1230, 1210], [1220, 1240, 1190, 1200, 1215]),
}
PLAN = """
kernels: [patched]
baseline: baseline
fio: {filesystems: [ext4, xfs], disks: [nvme], patterns: [unwritten-convert, append-extend], engines: [libaio],
      repeats: 5}
"""
COMMITS = {"baseline": "a" * 40, "patched": "b" * 40}


def boot_record(label: str, role: str, run_index: int, cell_ids: tuple[str, ...]) -> BootRecord:
    """One boot of ``role`` measuring each of ``cell_ids`` once (run ``run_index`` of VALUES)."""
    spec = fio_spec(label=label, role=role, run_index=run_index)
    name = "baseline" if role == "base" else "patched"
    spec = dataclasses.replace(spec, kernel=dataclasses.replace(spec.kernel, name=name))
    ms = []
    for cid in cell_ids:
        b_iops, n_iops, b_p99, n_p99 = VALUES[cid]
        iops, p99 = (b_iops, b_p99) if role == "base" else (n_iops, n_p99)
        fs, disk, pattern, engine = cid.split("/")
        # the big regression's mechanism, counted in the guest: more journal commits per 1000 writes
        commits = None if cid != BIG else (186.0 if role == "base" else 333.0) + run_index
        ms.append(MeasurementRecord(cid, fs, disk, pattern, engine, run_index, "ok", iops=float(iops[run_index]),
                                    bw_kib_s=4.0 * iops[run_index], clat_p99_us=float(p99[run_index]),
                                    jbd2_commits_per_kwrite=commits))
    run_id = f"{label}-{run_index}"
    return BootRecord(run_id=run_id, run_dir=f"/tmp/{run_id}", spec=spec, status="done",
                      started=f"2026-12-01T01:{run_index:02d}:00+0000", measurements=tuple(ms),
                      group=group_of("n1"), front_end="nightly")


@pytest.fixture
def one_night(tmp_path):
    """The night's records, stored as a nightly run stores them (units in the book, runs in the
    store), and the same BootRecords for the suite's fold."""
    p = tmp_path / "v.yaml"
    p.write_text(PLAN)
    plan = load_plan_file(p)
    units = planned_units(plan)
    assert {c for u in units for c in u.cells} == set(VALUES) and len(units) == 10
    records = [boot_record(u.label, u.role, u.run_index, u.cells) for u in units]
    store_path = tmp_path / "store.sqlite"
    with Store(store_path) as store, NightlyDB(tmp_path / "nightly.sqlite") as db:
        db.start("n1", plan.name, "sha", COMMITS)
        db.record_units("n1", {u.label: u.info() for u in units})
        for r in records:
            store.add_run(r.to_json())
        res = fold_night(store, db, plan, "n1", COMMITS)
        store.add_verdicts(group_of("n1"), verdict_rows(res, plan))
    return records, res, store_path


def suite_fold(records: list[BootRecord], tmp_path) -> MatrixRun:
    profile = make_profile("quick", filesystems=["ext4", "xfs"])
    m = MatrixRun.__new__(MatrixRun)  # no testbed: folding needs only the outcomes
    m.kernel, m.baseline, m.profile, m.results = "patched", "baseline", profile, tmp_path
    m.outcomes = {c.id: CellOutcome(c) for c in cells(profile)}
    assert set(m.outcomes) == set(VALUES)
    m.records, m.events, m.consoles = [], {"baseline": [], "patched": []}, {"baseline": [], "patched": []}
    for r in records:
        m.fold(r)
    return m


def cli_compare(store_path, capsys, *metrics: str) -> dict:
    argv = ["--store", str(store_path), "results", "compare", f"group:{group_of('n1')}@baseline",
            f"group:{group_of('n1')}@patched", "--json"]
    for key in metrics:
        argv += ["--metric", key]
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_the_same_records_get_the_same_verdicts_everywhere(one_night, tmp_path, capsys):
    records, res, store_path = one_night
    suite = {(r["cell"], r["metric"]): (r["verdict"], r["pct_change"], r["p_value"], r["q_value"])
             for r in suite_fold(records, tmp_path).rows() if r["gates"]}
    nightly = {(r.cell, r.metric): (r.baseline.verdict, r.baseline.pct, r.baseline.p_value, r.baseline.q_value)
               for r in res.fio}
    doc = cli_compare(store_path, capsys)
    results = {(r["cell"], metric(r["metric"]).label): (r["verdict"], r["pct_change"], r["p_value"], r["q_value"])
               for r in doc["rows"]}
    assert len(suite) == 8 and suite == nightly == results
    assert suite[BIG, "IOPS"][0] == "regression" and suite[BIG, "IOPS"][3] < 0.001
    # the borderline cell: p < alpha alone, lifted above alpha among the 8 comparisons decided together
    verdict, pct, p, q = suite[BORDER, "IOPS"]
    alone = compare(VALUES[BORDER][0], VALUES[BORDER][1], metric="IOPS", higher_is_better=True)
    assert alone.verdict == "regression" and alone.p_value == pytest.approx(p) and p < 0.05
    assert verdict == "inconclusive" and q > 0.05 and pct < -5
    assert [r.cell for r in res.regressions] == [BIG] and res.verdict == "regression"
    # the regression says what the kernel did differently, from the counted metric, and the suite
    # decides the same comparison the same way (its explaining family)
    (line,) = res.regressions[0].explains
    assert line.startswith(f"{BIG}: jbd2 commits/kwrite +7") and line.endswith("regression"), line
    counted = [r for r in suite_fold(records, tmp_path).rows() if not r["gates"]]
    assert [(r["cell"], r["metric"], r["verdict"]) for r in counted] == [(BIG, "jbd2 commits/kwrite", "regression")]
    # asking `results compare` for an explaining metric (or fewer gating ones) moves no verdict
    more = cli_compare(store_path, capsys, "iops", "bw_kib_s")
    iops = {r["cell"]: (r["verdict"], r["pct_change"], r["p_value"], r["q_value"])
            for r in more["rows"] if r["metric"] == "iops"}
    assert iops == {cell: v for (cell, label), v in suite.items() if label == "IOPS"}
    assert {r["metric"] for r in more["rows"]} == {"iops", "bw_kib_s"}
    assert cli_compare(store_path, capsys, "iops")["rows"] == [r for r in more["rows"] if r["metric"] == "iops"]
    # what the nightly fold stored keeps the q it decided with
    with Store(store_path) as store:
        stored = {(v.cell, v.metric): v for v in store.verdicts(group_of("n1")) if v.base_kernel == "baseline"}
    assert stored[BORDER, "IOPS"].verdict == "inconclusive"


def test_control_cells_are_decided_with_the_nights_other_comparisons(tmp_path):
    """A night's control comparisons join its family: the same control values alone with the
    borderline cell's numbers are a flag, among the night's comparisons they are not."""
    from harness.results.verdict import night_vs_baseline
    b, n = VALUES[BORDER][0], VALUES[BORDER][1]
    alone = night_vs_baseline({("control:baseline", BORDER): CellValues({"iops": b}, {"iops": n})})
    assert alone["control:baseline", BORDER]["iops"].verdict == "regression"
    night = {("patched", c): CellValues({"iops": v[0], "clat_p99_us": v[2]}, {"iops": v[0], "clat_p99_us": v[2]})
             for c, v in VALUES.items()}
    night["control:baseline", BORDER] = CellValues({"iops": b}, {"iops": n})
    together = night_vs_baseline(night)
    d = together["control:baseline", BORDER]["iops"]
    assert d.verdict == "inconclusive" and d.q_value > 0.05 and d.p_value < 0.05


def test_metric_table_and_lookup():
    assert [m.key for m in GATING] == ["iops", "clat_p99_us"]
    assert metric("iops").higher_is_better and not metric("clat_p999_us").higher_is_better
    assert not metric("bw_kib_s").gates and metric("bw_kib_s").unit == "KiB/s"
    with pytest.raises(MetricError, match="known: iops, bw_kib_s, clat_p50_us, clat_p99_us, clat_p999_us"):
        metric("latency")


def test_explaining_metrics_form_their_own_family():
    v = CellValues({"iops": VALUES[BORDER][0], "bw_kib_s": VALUES[BIG][0]},
                   {"iops": VALUES[BORDER][1], "bw_kib_s": VALUES[BIG][1]})
    gating_only = decide_cells({"c": v})["c"]
    with_bw = decide_cells({"c": v}, ["bw_kib_s"])["c"]
    assert [c.metric for c in gating_only] == ["IOPS"] and [c.metric for c in with_bw] == ["IOPS", "bandwidth KiB/s"]
    assert with_bw[0] == gating_only[0] and gating_only[0].q_value == gating_only[0].p_value
    with pytest.raises(MetricError):
        decide_cells({"c": v}, ["nope"])
    # one family of comparisons made elsewhere (labels kharness does not know gate)
    adj = adjust_cells({"a": compare_cell(v), "b": compare_cell(v)})
    assert adj["a"][0].q_value == pytest.approx(adj["a"][0].p_value)


def test_settle_rule():
    big = compare_cell(CellValues({"iops": VALUES[BIG][0]}, {"iops": VALUES[BIG][1]}))
    border = compare_cell(CellValues({"iops": VALUES[BORDER][0]}, {"iops": VALUES[BORDER][1]}))
    assert cell_settled(decide_cells({"c": CellValues({"iops": VALUES[BIG][0]}, {"iops": VALUES[BIG][1]})})["c"])
    assert cell_settled(big) and not cell_settled(border) and not cell_settled([])


def test_the_paired_rule_cancels_a_host_whose_speed_swings_between_rounds():
    """Each round is one boot of the reference and one of the kernel, adjacent: a host 6x faster
    in one round than another moves both, and the per-round ratio stays."""
    from harness.results.verdict import paired_rule
    speeds = (1.0, 3.0, 0.5)
    halved = [([1000 * s], [500 * s * (1 + 0.03 * i)]) for i, s in enumerate(speeds)]
    step = paired_rule(halved, min_effect_pct=20)
    assert step.outcome == "bad" and -52 < step.pct < -47 and step.p_value < 0.01
    same = [([1000 * s], [1000 * s * (1 + 0.02 * (-1) ** i)]) for i, s in enumerate(speeds)]
    assert paired_rule(same, min_effect_pct=20).outcome == "good"
    # one round is never enough, and a large change that is not yet certain stays open
    assert paired_rule(halved[:1], min_effect_pct=20).outcome == "open"
    shaky = [([1000], [500]), ([1000], [900])]
    assert paired_rule(shaky, min_effect_pct=20).outcome == "open"
