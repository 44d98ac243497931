"""RunSpec: JSON round trip, strict validation, narrowing, and reproduce's refusal of changed inputs."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config.kernels import load_kernel
from harness.errors import ReproduceError
from harness.kernel.patches import parse_series
from harness.run.spec import SPEC_VERSION, HarnessSpec, PatchRef, SpecError
from harness.run.spec_read import read_spec, spec_from_json
from harness.run.testbed import kernel_changes, prepare_for_spec
from tests.helpers.specs import fio_spec, kernel, xfs_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("make", [fio_spec, xfs_spec])
def test_json_round_trip(make, tmp_path):
    spec = make()
    again = spec_from_json(json.loads(spec.dumps()))
    assert again == spec and hash(again) == hash(spec)
    spec.write(tmp_path)
    assert read_spec(tmp_path) == spec
    assert json.loads((tmp_path / "spec.json").read_text())["version"] == SPEC_VERSION


def test_fio_cells_carry_every_parameter_and_the_rendered_job():
    cell = fio_spec().workload.cells[0]
    assert cell.id == "ext4/nvme/unwritten-convert/libaio"
    assert cell.fs.mkfs[0] == "mkfs.ext4" and "{dev}" in cell.fs.mkfs
    assert "fallocate=native" in cell.job.rendered and "iodepth=32" in cell.job.rendered


@pytest.mark.parametrize("mutate, key, words", [
    (lambda d: d.update(version=99), "version", "not supported"),
    (lambda d: d.update(colour="red"), "", "unknown key(s) colour"),
    (lambda d: d["kernel"].pop("key"), "kernel.key", "missing"),
    (lambda d: d["kernel"].update(key=5), "kernel.key", "want str"),
    (lambda d: d["disks"][0].update(size=None), "disks[0].size", "want str"),
    (lambda d: d["workload"].update(kind="dance"), "workload.kind", "want one of"),
    (lambda d: d["workload"]["cells"][0]["job"].update(iodepth="32"), "workload.cells[0].job.iodepth", "want int"),
    (lambda d: d["workload"]["cells"][0]["job"].update(iodepth=True), "workload.cells[0].job.iodepth", "want int"),
    (lambda d: d["workload"].update(setup="rm -rf /"), "workload.setup", "want a list"),
    (lambda d: d.update(disks={}), "disks", "want a list"),
])
def test_validation_names_the_key(mutate, key, words):
    data = fio_spec().to_json()
    mutate(data)
    with pytest.raises(SpecError) as e:
        spec_from_json(data, "run/spec.json")
    assert str(e.value).startswith("run/spec.json: " + (key + ": " if key else ""))
    assert words in str(e.value)


def test_unreadable_spec_file_is_named(tmp_path):
    with pytest.raises(SpecError, match="no spec.json"):
        read_spec(tmp_path)
    (tmp_path / "spec.json").write_text("{truncated")
    with pytest.raises(SpecError, match="unreadable"):
        read_spec(tmp_path)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=20))
def test_any_json_gives_a_spec_or_a_spec_error(data):
    try:
        spec_from_json(data)
    except SpecError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["label", "kernel", "image", "accel", "disks", "workload", "vm", "harness"]),
       st.none() | st.integers() | st.text(max_size=4) | st.lists(st.integers(), max_size=2))
def test_a_damaged_field_gives_a_spec_error(key, value):
    data = fio_spec().to_json()
    data[key] = value
    try:
        spec_from_json(data)
    except SpecError as e:
        assert key in str(e)


def test_same_work_ignores_identity_but_not_parameters():
    a = fio_spec()
    assert a.same_work(dataclasses.replace(a, label="other", role="new", run_index=7,
                                           harness=HarnessSpec("9", "def"))) == []
    b = dataclasses.replace(a, accel="kvm", kernel=dataclasses.replace(a.kernel, commit="c" * 40))
    assert a.same_work(b) == ["accel", "kernel.commit"]


def test_narrow_and_cell_lookup():
    spec = fio_spec()
    one = spec.narrowed(["xfs/nvme/append-extend/io_uring"])
    assert [c.id for c in one.workload.cells] == ["xfs/nvme/append-extend/io_uring"]
    assert spec.cell("ext4/nvme/unwritten-convert/libaio").runs == 2
    with pytest.raises(SpecError, match="cells: ext4/nvme/unwritten-convert/libaio, xfs/nvme"):
        spec.cell("ocfs2/nvme/x/y")
    assert xfs_spec().narrowed(["generic/002"]).workload.tests == ("generic/002",)


def _project_copy(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "kernels", proj / "kernels")
    monkeypatch.setenv("KHARNESS_ROOT", str(proj))
    return proj


def _recorded_patched():
    (p,) = parse_series(list(load_kernel("patched").patches))
    return kernel([PatchRef("kernels/patches/" + p.source.name, p.subject, p.sha256)])


def test_kernel_changes_name_the_changed_patch(tmp_path, monkeypatch):
    proj = _project_copy(tmp_path, monkeypatch)
    recorded = _recorded_patched()
    assert kernel_changes(recorded) == []
    patch = proj / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
    patch.write_text(patch.read_text().replace("\n---\n", "\nEdited.\n---\n", 1))
    (change,) = kernel_changes(recorded)
    assert change.startswith("patch kernels/patches/0001-dio-unbound-single-threaded-wq.patch (")
    assert "changed: recorded sha256 " in change and ", now " in change


def test_kernel_changes_name_an_added_patch_and_a_config_base(tmp_path, monkeypatch):
    proj = _project_copy(tmp_path, monkeypatch)
    recorded = dataclasses.replace(_recorded_patched(), config_base="tinyconfig")
    extra = proj / "kernels/patches/0002-extra.patch"
    src = (proj / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch").read_text()
    extra.write_text(src.replace("Subject: [PATCH] fs:", "Subject: [PATCH] extra fs:"))
    (proj / "kernels/patched.yaml").write_text("base: baseline\npatches: [patches/]\n")
    changes = kernel_changes(recorded)
    assert any("0002-extra.patch" in c and "added" in c for c in changes), changes
    assert any("config base changed: recorded tinyconfig, now defconfig" in c for c in changes)


def test_prepare_for_spec_refuses_before_any_slow_step(tmp_path, monkeypatch):
    proj = _project_copy(tmp_path, monkeypatch)
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path / "empty-cache"))
    spec = fio_spec(kernel=_recorded_patched())
    patch = proj / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
    patch.write_text(patch.read_text().replace("\n---\n", "\nEdited.\n---\n", 1))
    with pytest.raises(ReproduceError) as e:
        prepare_for_spec(spec, say=lambda m: None)
    assert "cannot reproduce fio-x as recorded" in str(e.value)
    assert "no longer cached either" in str(e.value)
    assert not (tmp_path / "empty-cache" / "src").exists() or not any((tmp_path / "empty-cache" / "src").iterdir())


def test_paths_recorded_by_another_checkout_are_project_relative(tmp_path, monkeypatch):
    """A shared cache built by a checkout at another path still yields portable specs."""
    from harness.paths import project_relative
    proj = _project_copy(tmp_path, monkeypatch)
    inside = proj / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
    assert project_relative(inside) == "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
    elsewhere = "/srv/other-checkout/kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
    assert project_relative(elsewhere) == "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
    assert project_relative("/etc/passwd") == "/etc/passwd"
    recorded = dataclasses.replace(_recorded_patched(), patches=tuple(
        dataclasses.replace(p, file=project_relative("/srv/other" + "/" + p.file))
        for p in _recorded_patched().patches))
    patch = proj / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
    patch.write_text(patch.read_text().replace("\n---\n", "\nEdited.\n---\n", 1))
    (change,) = kernel_changes(recorded)
    assert "changed: recorded sha256 " in change


def test_with_runtime_rerenders_only_the_runtime():
    from harness.run.plan import fio_cell, with_runtime
    c = fio_cell("ext4", "nvme", "unwritten-convert", "libaio", runtime=3, size="32m")
    d = with_runtime(c, 9)
    assert d.id == c.id and d.job.runtime == 9 and d.job.size == c.job.size
    assert "runtime=9" in d.job.rendered and "runtime=3" in c.job.rendered
    assert d.job.rendered.replace("runtime=9", "runtime=3") == c.job.rendered
