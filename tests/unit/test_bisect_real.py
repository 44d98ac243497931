"""The pure parts of benchmarks/bisect_real.py: the cases' patches, the drawn positions, the
histories, the verdicts and the table (the bisects themselves run on real VMs)."""

import json
import subprocess

from benchmarks.bisect_real import cases, done, history, position, table, verdict


def test_each_case_rewrites_its_define_and_names_itself():
    cs = cases()
    assert set(cs) == {"perf70", "perf30", "perf15", "flaky2", "flaky4"}
    assert "#define KHARNESS_FLAKY_ONE_IN 4\n" in cs["flaky4"].patch_text()
    assert "#define KHARNESS_DIO_SPIN 100000UL" not in cs["perf30"].patch_text()
    assert cs["perf30"].patch_text() != cs["perf15"].patch_text()
    assert cs["perf70"].subject() == ("fs: direct-io: complete deferred AIO writes on one unbound, "
                                      "single-threaded workqueue")
    assert cs["flaky2"].subject().endswith("(flaky2)") and cs["flaky2"].flaky and not cs["perf15"].flaky
    assert all(c.check.startswith("fio:") for n, c in cs.items() if n.startswith("perf"))


def test_the_patches_apply_with_git(tmp_path):
    for c in cases().values():
        p = tmp_path / f"{c.name}.patch"
        p.write_text(c.patch_text())
        out = subprocess.run(["git", "apply", "--stat", str(p)], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr


def test_positions_are_uniform_and_fixed_by_the_trial():
    got = [position("flaky2", 1, t, 16) for t in range(400)]
    assert got == [position("flaky2", 1, t, 16) for t in range(400)]
    assert set(got) == set(range(16))
    assert got != [position("flaky4", 1, t, 16) for t in range(400)]


def test_history_puts_the_culprit_at_its_position():
    culprit = ("culprit", object())
    for pos in (0, 7, 15):
        h = history(culprit, pos, 16)
        assert len(h) == 16 and h[pos] is culprit
        assert len({subject for subject, _ in h}) == 16


def test_verdicts_and_the_table(tmp_path):
    assert verdict(True, True) == "correct" and verdict(False, True) == "wrong"
    assert verdict(True, False) == verdict(False, False) == "cannot say"
    rows = [{"case": "flaky2", "seed": 1, "trial": i, "commits": 16, "verdict": v, "boots": b, "wall_s": w}
            for i, (v, b, w) in enumerate([("correct", 20, 300), ("wrong", 30, 600), ("cannot say", 60, 900)])]
    out = tmp_path / "r.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert done(out) == {("flaky2", 1, i, 16) for i in range(3)}
    assert "| flaky2 | 3 | 33% | 33% | 33% | 36.7 (20-60) | 10.0 (5.0-15.0) |" in table(rows)
