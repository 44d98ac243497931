"""Cache entries by content: a worker's cache gets a kernel or image entry only if every byte that
arrived matches the manifest's sha256; a corrupt chunk is refused and leaves nothing behind."""

import os

import pytest

from harness.executors import artifacts
from harness.executors.artifacts import ArtifactError, FileEntry, Manifest
from harness.image.build import find_image
from harness.kernel.build import find_kernel
from harness.util import sha256_file
from tests.helpers.artifacts import KEY, make_kernel_entry


@pytest.fixture
def two_caches(tmp_path, monkeypatch):
    """The driver's cache and a worker's (empty) cache; KHARNESS_CACHE points at the driver's."""
    driver, worker = tmp_path / "driver", tmp_path / "worker"
    monkeypatch.setenv("KHARNESS_CACHE", str(driver))
    return driver, worker


def transfer(manifest, monkeypatch, worker, *, chunk_size=65536, tamper=None):
    """publish from the driver's cache, install into the worker's; ``tamper(chunk_no, data)``
    may change what arrives."""
    store: list[bytes] = []
    monkeypatch.setenv("KHARNESS_CACHE", str(worker.parent / "driver"))
    refs = artifacts.publish(manifest, lambda b: (store.append(b), len(store) - 1)[1], chunk_size=chunk_size)
    monkeypatch.setenv("KHARNESS_CACHE", str(worker))
    get = (lambda i: store[i]) if tamper is None else (lambda i: tamper(i, store[i]))
    return artifacts.install(manifest, refs, get)


def test_kernel_entry_arrives_verified(two_caches, monkeypatch):
    driver, worker = two_caches
    src = make_kernel_entry(driver)
    m = artifacts.describe("kernel", "", KEY)
    assert [f.name for f in m.files] == ["bzImage", ".config", "System.map", "metadata.json"]
    assert m.files[0].sha256 == sha256_file(src / "bzImage")
    path, fetched = transfer(m, monkeypatch, worker)
    assert fetched and path == worker / "kernels" / KEY
    assert find_kernel(KEY) is not None           # what run_boot looks for, in the worker's cache
    assert sha256_file(path / "bzImage") == sha256_file(src / "bzImage")
    assert artifacts.verify(m) == [] and not (path / "build.log").exists()
    # a second install is a cache hit and fetches nothing
    assert artifacts.install(m, {}, lambda r: pytest.fail("fetched again")) == (path, False)


@pytest.mark.parametrize("where", ["first chunk", "last chunk"])
def test_one_corrupt_byte_in_transit_is_refused(two_caches, monkeypatch, where):
    driver, worker = two_caches
    make_kernel_entry(driver)
    m = artifacts.describe("kernel", "", KEY)
    n_bz = -(-m.files[0].size // 65536)       # chunks of bzImage (published first)
    bad = 0 if where == "first chunk" else n_bz - 1

    def flip(i, data):
        if i != bad:
            return data
        b = bytearray(data)
        b[len(b) // 2] ^= 0x01
        return bytes(b)

    with pytest.raises(ArtifactError, match=r"bzImage arrived corrupt: sha256 .* want .*refused"):
        transfer(m, monkeypatch, worker, tamper=flip)
    assert find_kernel(KEY) is None
    assert [p.name for p in (worker / "kernels").iterdir()] == [f"{KEY}.fetch.lock"]   # no temp dir left


def test_truncated_or_padded_transfer_is_refused(two_caches, monkeypatch):
    driver, worker = two_caches
    make_kernel_entry(driver)
    m = artifacts.describe("kernel", "", KEY)
    with pytest.raises(ArtifactError, match="arrived corrupt"):
        transfer(m, monkeypatch, worker, tamper=lambda i, d: d + b"x" if i == 0 else d)
    with pytest.raises(ArtifactError, match="arrived corrupt"):
        transfer(m, monkeypatch, worker, tamper=lambda i, d: d[:-1] if i == 0 else d)
    assert find_kernel(KEY) is None


def test_image_entry_keeps_modes(two_caches, monkeypatch):
    driver, worker = two_caches
    d = driver / "images" / "debian-bookworm-7e690a7bf6468ef6b3d0"
    d.mkdir(parents=True)
    (d / "base.qcow2").write_bytes(os.urandom(200_000))
    (d / "id_ed25519").write_text("KEY\n")
    os.chmod(d / "id_ed25519", 0o600)
    (d / "id_ed25519.pub").write_text("ssh-ed25519 AAAA\n")
    (d / "metadata.json").write_text("{}\n")
    m = artifacts.describe("image", "debian-bookworm", "7e690a7bf6468ef6b3d0")
    path, fetched = transfer(m, monkeypatch, worker, chunk_size=50_000)
    assert fetched and find_image("debian-bookworm", "7e690a7bf6468ef6b3d0") is not None
    assert (path / "id_ed25519").stat().st_mode & 0o777 == 0o600
    assert artifacts.verify(m) == []


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/b", ".."])
def test_manifest_cannot_write_outside_its_entry(name):
    m = Manifest("kernel", "", KEY, (FileEntry(name, 1, 0o644, "0" * 64),
                                     FileEntry("metadata.json", 1, 0o644, "0" * 64)))
    with pytest.raises(ArtifactError, match="refusing file name"):
        m.check()
    with pytest.raises(ArtifactError, match="bad key"):
        Manifest("kernel", "", "../x", (FileEntry("metadata.json", 1, 0o644, "0" * 64),)).check()


def test_describe_refuses_an_incomplete_entry(two_caches):
    driver, _ = two_caches
    (driver / "kernels" / KEY).mkdir(parents=True)
    (driver / "kernels" / KEY / "bzImage").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="not a complete cache entry"):
        artifacts.describe("kernel", "", KEY)


def test_entry_changed_while_published_is_refused(two_caches):
    driver, _ = two_caches
    src = make_kernel_entry(driver)
    m = artifacts.describe("kernel", "", KEY)
    (src / "System.map").write_text("changed\n")
    with pytest.raises(ArtifactError, match="changed while being published"):
        artifacts.publish(m, lambda b: b)
