"""benchmarks/noise_table.py: run directories in, a per-metric table of boot and within-boot
noise out (the measuring part is a real matrix run: see docs/benchmarks.md)."""

import json
import math
import random

from benchmarks.noise_table import flagged, from_records, table


def _write(root, name, role, cells):
    d = root / name
    d.mkdir()
    ms = [{"cell": c, "status": "ok", "iops": v, "jbd2_commits_per_kwrite": 100.0}
          for c, vs in cells.items() for v in vs]
    ms.append({"cell": "ext4/nvme/x/libaio", "status": "error", "iops": None})
    (d / "record.json").write_text(json.dumps({"spec": {"role": role}, "measurements": ms}))


def test_records_are_grouped_by_boot_and_the_table_splits_the_noise(tmp_path):
    rng = random.Random(2)
    for i in range(6):
        for role in ("base", "new"):
            boot = math.exp(rng.gauss(0, 0.1))
            _write(tmp_path, f"{role}{i}", role,
                   {"ext4/nvme/x/libaio": [1000 * boot * math.exp(rng.gauss(0, 0.02)) for _ in range(2)]})
    _write(tmp_path, "evidence", "evidence", {"ext4/nvme/x/libaio": [1.0, 2.0]})
    data = from_records(tmp_path)
    sides = data["values"]["ext4/nvme/x/libaio"]["iops"]
    assert len(sides["base"]) == len(sides["new"]) == 6 and all(len(g) == 2 for g in sides["base"])
    lines = table(data).splitlines()
    iops = next(line for line in lines if line.startswith("| IOPS |"))
    cols = [c.strip() for c in iops.strip("|").split("|")]
    assert cols[1] == "1"
    boot_sd, within_sd = float(cols[2].rstrip("%")), float(cols[3].rstrip("%"))
    assert boot_sd > within_sd > 0                         # the boot term dominates, as drawn
    mde3, mde8 = float(cols[4].rstrip("%")), float(cols[5].rstrip("%"))
    assert mde8 < mde3
    jbd2 = next(line for line in lines if line.startswith("| jbd2 commits/kwrite |"))
    assert "| 0.0% | 0.0% |" in jbd2                       # a constant count: no noise at all


def test_an_aa_run_names_its_false_alarms(tmp_path):
    assert flagged(tmp_path) == ""
    rows = [{"cell": f"c{i}", "metric": "IOPS", "verdict": "no change", "pct_change": 1.0} for i in range(9)]
    rows += [{"cell": "c9", "metric": "IOPS", "verdict": "improvement", "pct_change": 12.4},
             {"cell": "c0", "metric": "flushes/kwrite", "verdict": "no change", "pct_change": 0.0}]
    (tmp_path / "comparison.json").write_text(json.dumps({"aa": True, "rows": rows}))
    out = flagged(tmp_path)
    assert "| IOPS | yes | 10 | 1: c9 improvement +12% |" in out and "| flushes/kwrite | no | 1 | 0 |" in out
    assert "false alarms (A/A)" in out
