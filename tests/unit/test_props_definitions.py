"""Property tests: patch series (mbox/format-patch files) and YAML definitions (load_yaml with a
schema, load_kernel/load_image in a temporary project root) give a result or a HarnessError for
any file content, never another exception."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import images, kernels
from harness.config.loader import load_yaml
from harness.errors import HarnessError, PatchError
from harness.kernel.patches import parse_series
from tests.helpers.mutations import ROOT, examples, mutate, mutated, texts

SETTINGS = settings(max_examples=examples(150), deadline=None)

PATCH = texts("/kernels/patches/*.patch")[0]
_SUBJECTS = ["[PATCH v2 0/2] cover", "[PATCH v2 1/2] one", "Re: [PATCH 2/2] two",
             "=?UTF-8?q?=5BPATCH=5D_caf=C3=A9?=", "=?x-unknown?b?////?=", "=?utf-8?b?%%%?=",
             "[PATCH 99999999999999999999999/2] big", "[PATCH 1/0] zero"]
# Headers and bodies that make the email package work: encodings, multipart, odd charsets.
_HEADERS = ["Content-Transfer-Encoding: base64\n", "Content-Transfer-Encoding: quoted-printable\n",
            "Content-Type: text/plain; charset=x-unknown\n", "Content-Type: multipart/mixed\n",
            'Content-Type: multipart/mixed; boundary="b"\n', "Content-Type: message/rfc822\n",
            "MIME-Version: 1.0\n", "Subject:\n", "From \n", "From: \udcff\n", ">From x\n"]
MBOX = [PATCH, PATCH.replace("Subject: [PATCH]", "Subject: [PATCH 2/2]")
        + PATCH.replace("Subject: [PATCH]", "Subject: [PATCH 1/2]"),
        PATCH.split("\n", 1)[1],  # a bare mail
        PATCH[PATCH.index("diff --git"):]]  # a plain diff (not a patch mail)


@st.composite
def patch_files(draw) -> list[bytes]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        text = draw(st.sampled_from(MBOX))
        if draw(st.booleans()):
            subject = draw(st.sampled_from(_SUBJECTS))
            text = text.replace("[PATCH] fs: direct-io", subject, 1)
        if draw(st.booleans()):
            header = draw(st.sampled_from(_HEADERS))
            at = text.find("\nSubject:")
            text = text[:at + 1] + header + text[at + 1:] if at >= 0 else header + text
        text = draw(mutate(text, MBOX))
        try:  # "\udcff" stands for the byte 0xff; other lone surrogates become "?"
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "replace")
        if draw(st.booleans()):
            data += draw(st.binary(max_size=64))
        out.append(data)
    return out


@SETTINGS
@given(patch_files())
def test_patch_series_gives_patches_or_patch_error(files):
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, data in enumerate(files):
            paths.append(Path(d) / f"{i:04d}.patch")
            paths[-1].write_bytes(data)
        try:
            series = parse_series(paths)
        except PatchError as e:
            assert e.patch in paths
            return
        assert series
        for p in series:
            assert p.source in paths and isinstance(p.subject, str) and p.raw
            assert len(p.sha256) == 64


DEFINITIONS = texts("/kernels/*.yaml", "/vm-images/*.yaml", "/fstests-configs/*.yaml")
# YAML constructs that exercise the loader: anchors, merge keys, tags, odd scalars, flow syntax.
_YAML_BITS = ["&a ", "*a", "<<: *a\n", "!!python/object:os.system ", "!!binary |\n  AAA=\n",
              "!!set {a, b}", "? [a, b]\n: c\n", "2001-02-30", "2001-02-03", "0o17", "0x_", ".nan",
              "~", "1e999", "{", "[", "- ", ": ", "\t", "%YAML 1.1\n---\n", "--- |\n", "!custom x",
              "1: 2\n", "null: x\n", "[1, 2]: x\n", "'\\x'", '"\\x"', '"\\ud800"', "9" * 5000,
              "a: &r [*r]\n", "x: !!int " + "9" * 5000 + "\n", "x: !!float nan\n"]


KERNEL_DEFS = texts("/kernels/*.yaml")
IMAGE_DEFS = texts("/vm-images/*.yaml")


@st.composite
def yaml_texts(draw, sources: list[str] = DEFINITIONS) -> str:
    """A definition with 1..4 mutations (half the time), YAML constructs inserted, or nested."""
    text = draw(st.sampled_from(sources))
    if draw(st.booleans()):
        text = draw(mutated(sources, surrogates=False))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + draw(st.sampled_from(_YAML_BITS)) + text[pos:]
    if draw(st.integers(0, 9)) == 0:
        depth = draw(st.integers(100, 400))
        text = "x: " + "[" * depth + "]" * depth + "\n" + text
    return text


@contextmanager
def project(files: dict[str, bytes]):
    """A temporary project root (KHARNESS_ROOT) with the repository's kernels/ (fragments and
    patches) and vm-images/, plus ``files`` written over them."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for sub in ("kernels", "vm-images"):
            shutil.copytree(ROOT / sub, root / sub)
        for rel, data in files.items():
            (root / rel).write_bytes(data)
        old = os.environ.get("KHARNESS_ROOT")
        os.environ["KHARNESS_ROOT"] = str(root)
        try:
            yield root
        finally:
            if old is None:
                del os.environ["KHARNESS_ROOT"]
            else:
                os.environ["KHARNESS_ROOT"] = old


def _encode(text: str, raw: bool) -> bytes:
    return text.encode("utf-8") + (b"\xff\xfe" if raw else b"")


RAW = st.integers(0, 4).map(lambda n: n == 0)  # now and then, bytes that are not UTF-8


@SETTINGS
@given(yaml_texts(), st.sampled_from([kernels.SCHEMA, images.SCHEMA, {}]), RAW)
def test_load_yaml_gives_data_or_definition_error(text, schema, raw):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "def.yaml"
        path.write_bytes(_encode(text, raw))
        try:
            data = load_yaml(path, schema)
        except HarnessError as e:
            assert str(path) in str(e)
            return
        if schema:
            assert isinstance(data, dict)


@SETTINGS
@given(yaml_texts(KERNEL_DEFS), st.sampled_from(["baseline", "patched"]),
       st.sampled_from(["patched", "patched", "baseline", "x", "../kernels/baseline", "", "-x",
                        "a" * 300]), RAW)
def test_load_kernel_gives_a_definition_or_harness_error(text, which, name, raw):
    with project({f"kernels/{which}.yaml": _encode(text, raw)}):
        try:
            k = kernels.load_kernel(name)
        except HarnessError as e:
            assert str(e)
            return
        assert k.name == name and k.source.kind in ("tarball", "git", "tree")
        assert all(p.exists() for p in k.patches + k.fragments)


@SETTINGS
@given(yaml_texts(IMAGE_DEFS), st.sampled_from(["debian-bookworm"] * 3 + ["x", "", "a/b"]), RAW)
def test_load_image_gives_a_recipe_or_harness_error(text, name, raw):
    with project({"vm-images/debian-bookworm.yaml": _encode(text, raw)}):
        try:
            image = images.load_image(name)
        except HarnessError as e:
            assert str(e)
            return
        assert image.name == name and image.packages and isinstance(image.sysctl, dict)
