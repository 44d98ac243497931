"""Exports of stored runs: the JSON document and JUnit XML parsed back."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from harness.results.export import export_json, export_junit
from harness.results.metrics import COUNTED
from harness.results.store import SCHEMA_VERSION, Store, StoreError
from tests.helpers.records import make_record

HOSTILE = "bad\x00byte \x1b[31mred\x1b[0m ]]> <tag attr=\"q\"> & 'apos' \ud800 ünïcode ✓\nsecond line"


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "r.sqlite") as s:
        good = make_record("run-good", root=tmp_path)
        hung = make_record("run-hung", root=tmp_path, status="hang", iops=(9000.0, 8000.0, 7000.0))
        hung["measurements"][2]["status"] = "hang"
        hung["xfstests"] += [
            {"section": "xfs_4k", "test": "generic/002", "status": "notrun", "message": "no reflink support"},
            {"section": "xfs_4k", "test": "generic/003", "status": "error", "message": HOSTILE},
            {"section": "ext4", "test": "ext4/001", "status": "fail", "duration_s": 1.0, "message": HOSTILE}]
        hung["failures"] = ["fio made no progress for 120s", "sysrq dump collected"]
        s.add_run(good)
        s.add_run(hung)
        yield s


def test_export_json_shape(store):
    doc = export_json(store, ["run-good", "run-h"])  # ids or unique prefixes
    assert doc["schema"] == SCHEMA_VERSION
    json.dumps(doc)  # JSON-able as is
    good, hung = doc["runs"]
    assert (good["run_id"], hung["run_id"]) == ("run-good", "run-hung")
    assert "record" not in good
    assert good["spec"]["kernel"]["name"] == "v6.8-patched" and good["kernel"] == "v6.8-patched"
    assert (good["status"], good["accel"], good["boot_seconds"], good["failures"]) == ("done", "kvm", 7.3, [])
    assert good["measurements"][0] == {
        "cell": "ext4/nvme/unwritten-convert/libaio", "fs": "ext4", "disk": "nvme", "pattern": "unwritten-convert",
        "engine": "libaio", "run_index": 0, "status": "ok", "iops": 8979.0, "bw_kib_s": 8979.0 * 4,
        "clat_p50_us": 110.0, "clat_p99_us": 250.5, "clat_p999_us": 900.0, "fio_json": "fio/run0.json",
        **{m.key: None for m in COUNTED}, "counters": {},     # a record without counters or calibration
        "calib_iops": None, "host_free": None}
    assert [x["test"] for x in hung["xfstests"]] == [
        "ext4/001", "generic/001", "generic/002", "generic/003", "generic/475"]
    assert hung["events"][0]["kind"] == "hung_task" and hung["events"][0]["line"] == 1234
    assert hung["evidence"][0] == {"path": "sysrq/hang-x-wt-181512.txt", "what": "sysrq"}
    assert hung["failures"] == ["fio made no progress for 120s", "sysrq dump collected"]
    assert [m["status"] for m in hung["measurements"]] == ["ok", "ok", "hang"]
    with pytest.raises(StoreError, match="no run matches 'nope'"):
        export_json(store, ["nope"])


def test_export_junit_parses_back(store, tmp_path):
    text = export_junit(store, ["run-good", "run-hung"])
    (tmp_path / "junit.xml").write_text(text, encoding="utf-8")  # encodable: no lone surrogates left
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.tag == "testsuites"
    good, hung = root.findall("testsuite")
    assert good.get("name") == "run-good"
    props = {p.get("name"): p.get("value") for p in good.iter("property")}
    assert (props["kernel"], props["kernel_key"], props["image_key"], props["accel"]) == (
        "v6.8-patched", "v6.8-patched-k3y", "debian12-img1", "kvm")
    # good: boot + 2 measurements + 2 xfstests (one fail)
    assert [good.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["5", "1", "0", "0"]
    # hung: boot (failed) + 3 measurements (one hung) + 5 xfstests (2 fail, 1 error, 1 notrun)
    assert [hung.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["9", "4", "1", "1"]
    assert [root.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["14", "5", "1", "1"]

    cases = {(c.get("classname"), c.get("name")): c for c in hung.findall("testcase")}
    assert cases[("boot", "boot")].get("time") == "7.300"
    boot_failure = cases[("boot", "boot")].find("failure")
    assert boot_failure.get("message") == "run status: hang"
    assert "fio made no progress for 120s\nsysrq dump collected" in boot_failure.text
    assert "hung_task: INFO: task hung in jbd2_log_wait_commit" in boot_failure.text
    assert good.find("testcase[@name='boot']/failure") is None
    assert cases[("ext4/nvme/unwritten-convert/libaio", "run2")].find("failure").get("message") == "fio status: hang"
    assert "iops=9000" in cases[("ext4/nvme/unwritten-convert/libaio", "run0")].find("system-out").text
    assert cases[("xfs_4k", "generic/002")].find("skipped").get("message") == "no reflink support"
    assert cases[("xfs_4k", "generic/475")].find("failure").text == "output mismatch (see generic/475.out.bad)"

    for tag, key in (("error", ("xfs_4k", "generic/003")), ("failure", ("ext4", "ext4/001"))):
        el = cases[key].find(tag)
        for piece in ("]]> <tag attr=\"q\"> & 'apos'", "ünïcode ✓", "\nsecond line", "bad\\x00byte",
                      "\\x1b[31mred"):
            assert piece in el.text
        assert el.get("message").startswith("bad\\x00byte \\x1b[31mred\\x1b[0m ]]> <tag")
        assert "second line" not in el.get("message")


def test_export_junit_empty(store):
    root = ET.fromstring(export_junit(store, []).encode())
    assert root.get("tests") == "0" and root.findall("testsuite") == []
