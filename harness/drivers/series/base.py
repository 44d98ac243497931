"""Where a series goes: its base (a definition whose cached source holds the base-commit, or
--base NAME) and the kernel definition kept for it (kernels/NAME.yaml + kernels/patches/NAME/).

A base at a commit other than the definition's import (``NAME@COMMIT``: a history made on top of
a tarball or tree import, a commit of a git source) is recorded so that building the kept
definition gives the tried kernel: for a tarball or tree source, ``base: NAME`` and a first patch
that is the diff from the import to COMMIT; for a git source (whose ref moves with fetches),
a source of its own pinned at COMMIT with NAME's config, fragments and patches.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...config.kernels import KernelDef, Source, kernels_dir, list_kernels, load_kernel
from ...errors import HarnessError
from ...kernel.git import rev_parse
from ...kernel.patches import MAX_MBOX_BYTES
from ...kernel.source import BASE_REF, tarball_digest
from ...paths import cache_dir
from ...util import run, sha256_json
from ...vocab import valid_name
from .read import Series

MARK = "# kept by `kharness try`"


class BaseError(HarnessError):
    """No base for a series: names the series and what was tried."""


@dataclass(frozen=True)
class Base:
    """The kernel a series is tested against: ``ref`` is NAME or NAME@COMMIT (a commit of the
    definition's source other than its imported one)."""

    name: str
    commit: str | None
    how: str

    @property
    def ref(self) -> str:
        return self.name if self.commit is None else f"{self.name}@{self.commit}"


def cached_repo(src: Source) -> Path | None:
    """The cached repository of ``src`` if it was imported already (the key rule of
    ``harness.kernel.source.import_source``), without importing anything."""
    if src.kind == "tarball":
        if not Path(src.location).exists():
            return None
        key = f"tarball-{tarball_digest(Path(src.location))[:16]}"
    elif src.kind == "git":
        key = f"git-{sha256_json(src.location)[:16]}"
    else:
        key = f"tree-{sha256_json(str(Path(src.location).resolve()))[:16]}"
    repo = cache_dir("src") / key
    return repo if (repo / ".git").exists() else None


def root_definitions(directory: Path | None = None) -> list[KernelDef]:
    """Definitions with a source of their own (no ``base:``), which a series can be based on;
    not the ones `kharness try` kept (a git base's kept definition has a pinned source)."""
    out = []
    for n in list_kernels(directory):
        try:
            k = load_kernel(n, directory)
            kept = k.path.read_text().startswith(MARK)
        except (HarnessError, OSError):
            continue
        if k.based_on is None and not kept:
            out.append(k)
    return out


def find_base(series: Series, base_name: str | None, directory: Path | None = None) -> Base:
    """The series' base: --base NAME when given (at the series' base-commit if that is in NAME's
    cached source, else on NAME's tree), else the definition whose cached source holds the
    base-commit; BaseError naming the series when neither works."""
    where = series.source
    if base_name is not None:
        k = load_kernel(base_name, directory)
        commit = _commit_in(k, series.base_commit)
        if series.base_commit and commit is None and not _is_import(k, series.base_commit):
            return Base(base_name, None, f"--base; base-commit {series.base_commit[:12]} is not in its cached "
                                         "source: applied on its tree")
        how = "the range's definition" if series.kind == "range" else "--base"
        return Base(base_name, commit, how + (f" at {commit[:12]}" if commit else ""))
    if series.base_commit is None:
        raise BaseError(f"{where}: no base-commit: line in the series; give --base NAME "
                        f"(one of: {', '.join(k.name for k in root_definitions(directory))})")
    for k in root_definitions(directory):
        commit = _commit_in(k, series.base_commit)
        if commit is not None or _is_import(k, series.base_commit):
            return Base(k.name, commit, f"base-commit {series.base_commit[:12]} is in {k.name}'s cached source")
    raise BaseError(f"{where}: base-commit {series.base_commit} is in no cached kernel source "
                    f"(looked in {', '.join(k.name for k in root_definitions(directory)) or 'none'}); "
                    "give --base NAME to apply the series on that definition's tree")


def _is_import(k: KernelDef, commit: str | None) -> bool:
    repo = cached_repo(k.source)
    if repo is None or commit is None:
        return False
    full = rev_parse(repo, commit)
    return full is not None and full == rev_parse(repo, BASE_REF)


def _commit_in(k: KernelDef, commit: str | None) -> str | None:
    """The full commit in k's cached source (None when it is the imported commit itself, which the
    plain NAME builds, or when it is not there)."""
    repo = cached_repo(k.source)
    if repo is None or commit is None or commit.startswith("-"):
        return None
    full = rev_parse(repo, commit)
    if full is None or full == rev_parse(repo, BASE_REF):
        return None
    return full


def base_diff(base: Base, directory: Path | None = None) -> bytes | None:
    """One mail ``git am`` applies on the import of ``base.name``'s tarball or tree source to give
    ``base.commit``'s tree (``git diff --binary`` from the import), or None when the base is the
    import or has its tree. HarnessError when the source is not cached or the diff is larger than
    a patch file may be."""
    if base.commit is None:
        return None
    k = load_kernel(base.name, directory)
    repo = cached_repo(k.source)
    if repo is None:
        raise HarnessError(f"{base.ref}: {base.name}'s source is not cached")
    with tempfile.TemporaryDirectory(prefix="kharness-base-") as td:
        out = Path(td) / "base.diff"
        # --output: the diff's bytes as git wrote them (run() decodes text); no renames, colour or
        # drivers from the user's config, so the same commit always gives the same patch
        run(["git", "-C", str(repo), "diff", "--binary", "--full-index", "--no-renames", "--no-color",
             "--no-ext-diff", "--no-textconv", f"--output={out}", BASE_REF, base.commit, "--"], timeout=1800)
        diff = out.read_bytes()
    if not diff:
        return None
    head = (f"From: kharness <kharness@localhost>\nDate: Thu, 1 Jan 1970 00:00:00 +0000\n"
            f"Subject: [PATCH] {base.name}'s source at {base.commit[:12]}\n\n"
            f"The diff from {base.name}'s imported source to commit {base.commit}, so that this\n"
            f"definition builds the series on {base.ref} (kept by `kharness try`).\n---\n").encode()
    # a signature after the diff, as git format-patch writes: an mbox reader drops the blank line
    # that ends a message, and a binary patch's last hunk needs its blank line
    mail = head + diff + b"-- \nkharness\n\n"
    if len(mail) > MAX_MBOX_BYTES:
        raise HarnessError(f"{base.ref}: the diff from {base.name}'s import to {base.commit[:12]} is "
                           f"{len(mail)} bytes, more than a patch file may be ({MAX_MBOX_BYTES}); make a "
                           "definition whose source is that commit and give it as --base")
    return mail


def definition_text(name: str, series: Series, base: Base, directory: Path | None = None) -> str:
    """The YAML kept for the series: ``base: NAME`` (after the base diff's patch, see
    :func:`base_diff`), or for a git base at a commit a source pinned there with NAME's config,
    fragments and patches."""
    desc = f"{series.subject} ({len(series.patches)} patch(es), read by {series.reader} from {series.source}" + \
           (f"; base-commit {series.base_commit}" if series.base_commit else "") + \
           (f"; built on {base.ref}" if base.commit else "") + ")"
    head = f"{MARK} from {series.source}; trying the same series again reuses it\ndescription: {json.dumps(desc)}\n"
    k = load_kernel(base.name, directory)
    if base.commit is None or k.source.kind != "git":
        return head + f"base: {base.name}\npatches:\n  - patches/{name}\n"
    d = directory or kernels_dir()
    frags = [f"    - {json.dumps(os.path.relpath(f, d))}\n" for f in k.fragments]
    patches = [f"  - {json.dumps(os.path.relpath(q, d))}\n" for q in k.patches]
    return (head + f"source:\n  git: {json.dumps(k.source.location)}\n  ref: {base.commit}\n"
            f"config:\n  base: {k.config_base}\n" + ("  fragments:\n" if frags else "") + "".join(frags)
            + "patches:\n" + "".join(patches) + f"  - patches/{name}\n")


def keep_definition(name: str, series: Series, base: Base, directory: Path | None = None) -> Path:
    """Write kernels/NAME.yaml and kernels/patches/NAME/ (one file a patch), then load it back.
    A base at a commit other than the import is recorded (see the module's docstring), so the
    definition alone builds the kernel `kharness try` tested. An existing definition of that
    name is reused when it holds the same patches and base, refused otherwise (HarnessError
    naming it: pick --name)."""
    if not valid_name(name):
        raise HarnessError(f"--name {name!r}: not a plain definition name")
    d = directory or kernels_dir()
    yaml_path, pdir = d / f"{name}.yaml", d / "patches" / name
    files = {f"{i:04d}-{_short(p.subject)}.patch": b"From kharness Mon Sep 17 00:00:00 2001\n" + p.raw
             for i, p in enumerate(series.patches, 1)}
    text = definition_text(name, series, base, directory)
    diff = base_diff(base, directory) if "\nbase: " in text else None
    if diff is not None and base.commit:   # 0000 sorts first: the series applies on COMMIT's tree
        files[f"0000-base-at-{base.commit[:12]}.patch"] = b"From kharness Mon Sep 17 00:00:00 2001\n" + diff
    if yaml_path.exists() or pdir.exists():
        kept = yaml_path.read_text() if yaml_path.exists() else ""
        same = (pdir.is_dir()
                and sorted(q.name for q in pdir.iterdir()) == sorted(files)
                and all((pdir / f).read_bytes() == b for f, b in files.items())
                and kept.split("\n", 2)[2:] == text.split("\n", 2)[2:])
        if not same:
            raise HarnessError(f"{yaml_path}: a definition {name!r} with other patches exists; "
                               "give --name NEW (or remove it)")
        return yaml_path
    try:
        pdir.mkdir(parents=True)
        for f, b in files.items():
            (pdir / f).write_bytes(b)
        yaml_path.write_text(text)
        load_kernel(name, directory)
    except BaseException:
        yaml_path.unlink(missing_ok=True)
        shutil.rmtree(pdir, ignore_errors=True)
        raise
    return yaml_path


def _short(subject: str) -> str:
    from .read import slug
    return slug(subject, 40)
