"""Where a series goes: its base (a definition whose cached source holds the base-commit, or
--base NAME) and the kernel definition kept for it (kernels/NAME.yaml + kernels/patches/NAME/)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ...config.kernels import KernelDef, Source, kernels_dir, list_kernels, load_kernel
from ...errors import HarnessError
from ...kernel.git import rev_parse
from ...kernel.source import BASE_REF, tarball_digest
from ...paths import cache_dir
from ...util import sha256_json
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
    """Definitions with a source of their own (no ``base:``), which a series can be based on."""
    out = []
    for n in list_kernels(directory):
        try:
            k = load_kernel(n, directory)
        except HarnessError:
            continue
        if k.based_on is None:
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


def definition_text(name: str, series: Series, base: Base) -> str:
    """The YAML kept for the series."""
    desc = f"{series.subject} ({len(series.patches)} patch(es), read by {series.reader} from {series.source}" + \
           (f"; base-commit {series.base_commit}" if series.base_commit else "") + \
           (f"; test as {name}@{base.commit}" if base.commit else "") + ")"
    quoted = desc.replace("\\", "\\\\").replace('"', '\\"')
    return (f"{MARK} from {series.source}; trying the same series again reuses it\n"
            f"description: \"{quoted}\"\nbase: {base.name}\npatches:\n  - patches/{name}\n")


def keep_definition(name: str, series: Series, base: Base, directory: Path | None = None) -> Path:
    """Write kernels/NAME.yaml and kernels/patches/NAME/ (one file a patch), then load it back.
    An existing definition of that name is reused when it holds the same patches, refused
    otherwise (HarnessError naming it: pick --name)."""
    if not valid_name(name):
        raise HarnessError(f"--name {name!r}: not a plain definition name")
    d = directory or kernels_dir()
    yaml_path, pdir = d / f"{name}.yaml", d / "patches" / name
    files = {f"{i:04d}-{_short(p.subject)}.patch": b"From kharness Mon Sep 17 00:00:00 2001\n" + p.raw
             for i, p in enumerate(series.patches, 1)}
    text = definition_text(name, series, base)
    if yaml_path.exists() or pdir.exists():
        same = (yaml_path.exists() and pdir.is_dir()
                and sorted(q.name for q in pdir.iterdir()) == sorted(files)
                and all((pdir / f).read_bytes() == b for f, b in files.items())
                and f"base: {base.name}" in yaml_path.read_text().splitlines())
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
