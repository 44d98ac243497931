"""Build a kernel definition out of tree, with ccache, into the content-addressed artifact cache.

Layout under the cache root:
  src/<srckey>/          imported git repository; its work tree is the source for every build
  build/<srckey>/        the O= build tree shared by every definition on that source, so a
                         patched kernel rebuilds only what its patches (and config) touch
  kernels/<key>/         finished artifacts: bzImage, .config, System.map, build.log, metadata.json
  ccache/                compiler cache
The key hashes everything that changes the result: source, base commit, patch contents, config
fragments, base config target, toolchain and the harness's build recipe.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import procs
from ..config.kernels import KernelDef, load_kernel
from ..errors import BuildError, CommandError, ConfigError, HarnessError, SourceError
from ..paths import REPO_ROOT, cache_dir, cache_root, project_relative
from ..util import atomic_dir, file_lock, run, sha256_file, sha256_json, write_json
from ..vocab import NAME_RULE, valid_name
from . import kconfig
from .git import git, rev_parse
from .patches import Patch, apply_series, parse_series, series_key
from .source import SourceRepo, import_source

RECIPE_VERSION = 1
ARCH = "x86_64"
KBUILD_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "Thu Jan  1 00:00:00 UTC 2026",
    "KBUILD_BUILD_USER": "kharness",
    "KBUILD_BUILD_HOST": "kharness",
    "KBUILD_BUILD_VERSION": "1",
}
HARNESS_FRAGMENT = REPO_ROOT / "kernels/fragments/harness.config"
ARTIFACTS = ("bzImage", ".config", "System.map", "build.log", "metadata.json")


@dataclass(frozen=True)
class KernelBuild:
    """A finished kernel in the cache."""

    name: str
    key: str
    dir: Path
    cached: bool

    @property
    def bzimage(self) -> Path:
        return self.dir / "bzImage"

    @property
    def config(self) -> Path:
        return self.dir / ".config"

    @property
    def metadata(self) -> Path:
        return self.dir / "metadata.json"


def harness_fragments(kdef: KernelDef, tree: Path | None = None) -> list[kconfig.Fragment]:
    """The fragments in merge order: kvm_guest.config, the definition's, then harness.config."""
    frags = []
    if tree is not None:
        frags.append(kconfig.Fragment(tree / "kernel/configs/kvm_guest.config", strict=False))
    # A definition's fragments (e.g. the trim list) are merged before harness.config, so the
    # harness's requirements win; a definition overriding them must say so in harness.config.
    frags += [kconfig.Fragment(p, strict=not p.name.startswith("trim")) for p in kdef.fragments]
    frags.append(kconfig.Fragment(HARNESS_FRAGMENT, strict=True))
    return frags


def _toolchain() -> dict[str, str]:
    def first(argv: list[str]) -> str:
        try:
            return run(argv, timeout=30).stdout.splitlines()[0]
        except (CommandError, IndexError):
            return "unknown"
    return {"gcc": first(["gcc", "--version"]), "ld": first(["ld", "--version"]),
            "make": first(["make", "--version"])}


def _compute_key(kdef: KernelDef, src_key: str, base_commit: str, skey: str,
                 toolchain: dict[str, str]) -> str:
    frags = [(f.path.name, sha256_file(f.path)) for f in harness_fragments(kdef)]
    return sha256_json({
        "recipe": RECIPE_VERSION, "arch": ARCH, "source": src_key, "base_commit": base_commit,
        "series": skey, "config_base": kdef.config_base, "fragments": frags,
        "toolchain": toolchain, "kbuild_env": KBUILD_ENV,
    })[:24]


def _make_argv(build_dir: Path, *targets: str, jobs: int | None = None) -> list[str]:
    argv = ["make", f"O={build_dir}", f"ARCH={ARCH}", "CC=ccache gcc", "HOSTCC=ccache gcc"]
    if jobs:
        argv.append(f"-j{jobs}")
    return argv + list(targets)


_ERR = re.compile(r"(: (fatal )?error: |: undefined reference to |^make(\[\d+\])?: \*\*\* |Error \d+$)")


def compiler_errors(log_text: str, limit: int = 40) -> list[str]:
    """The lines of a build log that explain a failure (compiler errors first, make's last)."""
    lines = log_text.splitlines()
    hits = [i for i, l in enumerate(lines) if _ERR.search(l)]
    out: list[str] = []
    for i in hits:
        line = lines[i]
        if line.startswith("make") and any(not o.startswith("make") for o in out):
            continue
        out.append(line)
        # include the source line + caret gcc prints after an error
        if ": error: " in line:
            out += [l for l in lines[i + 1:i + 3] if l.startswith(" ")]
    return out[:limit]


MAKE_DEADLINE = 124  # _stream_make's status when it had to kill make at the deadline


def _stream_make(argv: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float,
                 progress: Callable[[str], None] | None) -> int:
    """Run make with its output going straight into ``log``, whose new lines go to ``progress``.

    make and every compiler it starts share one process group (harness.procs), ended as a whole
    (SIGTERM, so make and kbuild delete half-written targets, then SIGKILL) on the deadline, on
    an exception or on a signal; the deadline holds even while make prints nothing. make writes
    to the file, not to a pipe, so it can still clean up when the harness is already dead.
    Returns make's exit status, or MAKE_DEADLINE."""
    with open(log, "ab") as out, open(log, "rb") as follow:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        follow.seek(0, os.SEEK_END)
        rest = b""

        def pump() -> None:
            nonlocal rest
            *lines, rest = (rest + follow.read()).split(b"\n")
            for raw in lines if progress else ():
                progress(raw.decode(errors="replace").rstrip())  # type: ignore[misc]
        proc = procs.spawn(argv, cwd=cwd, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                           stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        try:
            while not (finished := procs.wait_exit(proc, min(0.2, deadline - time.monotonic()))):
                pump()
                if time.monotonic() >= deadline:
                    break
            pump()
        finally:
            rc = procs.stop(proc)
        if not finished:
            out.write(f"kharness: build killed after {timeout:.0f}s (deadline)\n".encode())
            return MAKE_DEADLINE
    return rc if rc is not None else -1


def _keep_log(log: Path, name: str, key: str) -> Path:
    """Copy a failed build's log out of the temporary entry (deleted on failure) into
    ``<cache>/failed/``; return the kept path."""
    kept = cache_dir("failed") / f"{name}-{key}.log"
    shutil.copy(log, kept)
    return kept


def _make_config(target: str, build_dir: Path, repo: Path, env: dict[str, str], log: Path,
                 name: str, key: str) -> None:
    """``make TARGET`` (a *config target) in the O= tree; a failure is a BuildError naming the
    log kept in ``<cache>/failed/``."""
    try:
        run(_make_argv(build_dir, target), cwd=repo, env=env, log=log, timeout=600)
    except CommandError as e:
        how = f"timed out after {e.timeout:.0f}s" if e.returncode is None else f"failed (exit {e.returncode})"
        lines = [l for l in e.output.splitlines() if l.strip()]
        raise BuildError(name, [f"make {target} {how}"] + (compiler_errors(e.output) or lines[-10:]),
                         _keep_log(log, name, key)) from None


def reproducer(repo: Path, commit: str, entry: Path, build_dir: Path, make_argv: list[str]) -> list[str]:
    """Shell command lines (quoted with shlex) that redo a build by hand from the cache entry."""
    env = [f"{k}={v}" for k, v in KBUILD_ENV.items()]
    return [shlex.join(["git", "-C", str(repo), "checkout", "-f", "--detach", commit]),
            shlex.join(["cp", str(entry / ".config"), str(build_dir / ".config")]),
            f"cd {shlex.quote(str(repo))} && {shlex.join(['env', *env, *make_argv])}"]


def apply_definition(kdef: KernelDef) -> tuple[str, str]:
    """Import the source and apply the definition's series; return (base commit, patched commit).

    Takes the source repository's lock, so it is safe while another process builds.
    """
    src = import_source(kdef.source)
    patches = parse_series(list(kdef.patches))
    with file_lock(src.repo.with_suffix(".lock")):
        return src.commit, apply_series(src.repo, src.commit, patches)


@dataclass(frozen=True)
class KernelInputs:
    """Everything that goes into a definition's cache key, resolved without building."""

    kdef: KernelDef
    src: SourceRepo
    patches: tuple[Patch, ...]
    series_key: str
    toolchain: dict[str, str]
    key: str


def kernel_inputs(name: str, base_commit: str | None = None) -> KernelInputs:
    """Load definition ``name``, import its source and parse its series; compute the key.

    ``base_commit`` pins the source commit (a recorded run's) instead of the definition's ref;
    it must be present in the imported repository."""
    kdef = load_kernel(name)
    patches = tuple(parse_series(list(kdef.patches)))  # parse before the (slow) import
    src = import_source(kdef.source)
    if base_commit is not None and base_commit != src.commit:
        if rev_parse(src.repo, f"{base_commit}^{{commit}}") is None:
            raise SourceError(f"{name}: recorded source commit {base_commit} is not in {src.repo}")
        src = SourceRepo(src.repo, base_commit, src.key, src.describe)
    skey = series_key(src.commit, list(patches))
    toolchain = _toolchain()
    key = _compute_key(kdef, src.key, src.commit, skey, toolchain)
    return KernelInputs(kdef, src, patches, skey, toolchain, key)


def resolve_commit(name: str, ref: str) -> str:
    """The commit ``ref`` (a branch, tag or commit) names in definition ``name``'s source repository.

    A git source is fetched first (``origin``, the ref given); a tarball or tree import holds
    its import and any history made on top of it (e.g. a test history, or commits a developer
    applied there)."""
    kdef = load_kernel(name)
    src = import_source(kdef.source)
    commit = rev_parse(src.repo, ref)
    if commit is None and kdef.source.kind == "git" and not ref.startswith("-"):
        run(["git", "-C", str(src.repo), "fetch", "-q", "origin", "--end-of-options", ref], timeout=3600, check=False)
        commit = rev_parse(src.repo, ref) or rev_parse(src.repo, "FETCH_HEAD")
    if commit is None:
        raise SourceError(f"{name}: {ref!r} names no commit in {src.repo} ({src.describe})")
    return commit


KERNEL_KEY = re.compile(r"^[0-9a-f]{24}$")   # what _compute_key returns


def find_kernel(key: str, name: str = "") -> KernelBuild | None:
    """The finished kernel with cache key ``key``, if it is still in the cache.

    Key and name come from specs made elsewhere: they are checked before any path is made of
    them (HarnessError), and the entry must resolve inside the cache's kernels/ directory."""
    if not isinstance(key, str) or not KERNEL_KEY.match(key):
        raise HarnessError(f"kernel cache key {key!r}: want 24 lowercase hex digits")
    if name and not valid_name(name):
        raise HarnessError(f"kernel name {name!r}: use {NAME_RULE}")
    root = cache_dir("kernels")
    entry = root / key
    if not entry.resolve().is_relative_to(root.resolve()):
        raise HarnessError(f"kernel cache entry {entry} resolves outside the cache ({entry.resolve()})")
    return KernelBuild(name, key, entry, cached=True) if (entry / "metadata.json").exists() else None


def build_kernel(name: str, *, jobs: int | None = None, force: bool = False,
                 progress: Callable[[str], None] | None = None, timeout: float = 4 * 3600,
                 base_commit: str | None = None) -> KernelBuild:
    """Build (or find in the cache) the kernel definition ``name`` (at ``base_commit`` if given)."""
    t0 = time.monotonic()
    inputs = kernel_inputs(name, base_commit)
    kdef, src, key = inputs.kdef, inputs.src, inputs.key
    patches = list(inputs.patches)
    toolchain = inputs.toolchain
    entry = cache_dir("kernels") / key
    if (entry / "metadata.json").exists() and not force:
        return KernelBuild(name, key, entry, cached=True)

    jobs = jobs or os.cpu_count() or 1
    build_dir = cache_dir("build") / src.key
    # One lock per source repository: it guards the work tree's checkout and the O= tree.
    with file_lock(src.repo.with_suffix(".lock")):
        if (entry / "metadata.json").exists() and not force:
            return KernelBuild(name, key, entry, cached=True)
        t_patch = time.monotonic()
        commit = apply_series(src.repo, src.commit, patches)
        git(src.repo, "checkout", "-q", "-f", "--detach", commit)
        t_config = time.monotonic()

        with atomic_dir(entry) as out:
            log = out / "build.log"
            # CCACHE_BASEDIR: kbuild passes the source tree's absolute path (-I, -include,
            # -fmacro-prefix-map); ccache hashes it relative to the O= tree instead, so a cache
            # at another path (another user's) hits the same entries.
            env = {**KBUILD_ENV, "CCACHE_DIR": str(cache_dir("ccache")), "CCACHE_MAXSIZE": "10G",
                   "CCACHE_NOHASHDIR": "1", "CCACHE_BASEDIR": str(cache_root().resolve())}
            build_dir.mkdir(parents=True, exist_ok=True)
            # 1. base config, 2. merge fragments over it, 3. olddefconfig, 4. check what stuck.
            _make_config(kdef.config_base, build_dir, src.repo, env, log, name, key)
            frags = harness_fragments(kdef, src.repo)
            base_cfg = kconfig.parse_config((build_dir / ".config").read_text(), build_dir / ".config")
            parsed = [(f, kconfig.parse_config(f.path.read_text(), f.path)) for f in frags]
            merged = kconfig.merge(base_cfg, [p for _, p in parsed])
            (build_dir / ".config").write_text(kconfig.render(merged))
            _make_config("olddefconfig", build_dir, src.repo, env, log, name, key)
            final = kconfig.parse_config((build_dir / ".config").read_text(), build_dir / ".config")
            strict_req = kconfig.merge({}, [p for f, p in parsed if f.strict])
            soft_req = kconfig.merge({}, [p for f, p in parsed if not f.strict])
            missing = kconfig.check(strict_req, final)
            if missing:
                raise ConfigError(missing, build_dir / ".config")
            soft_missing = {k: v for k, v in kconfig.check(soft_req, final).items() if k not in strict_req}

            t_build = time.monotonic()
            rc = _stream_make(_make_argv(build_dir, "bzImage", jobs=jobs), src.repo, env, log,
                              timeout, progress)
            if rc != 0:
                deadline = [f"make bzImage killed at the {timeout:.0f}s deadline"] if rc == MAKE_DEADLINE else []
                raise BuildError(name, deadline + compiler_errors(log.read_text()), _keep_log(log, name, key))
            t_done = time.monotonic()

            shutil.copy(build_dir / "arch/x86/boot/bzImage", out / "bzImage")
            shutil.copy(build_dir / ".config", out / ".config")
            shutil.copy(build_dir / "System.map", out / "System.map")
            release = (build_dir / "include/config/kernel.release").read_text().strip()
            write_json(out / "metadata.json", {
                "name": name, "key": key, "definition": str(kdef.path), "based_on": kdef.based_on,
                "source": src.describe, "source_repo": str(src.repo), "base_commit": src.commit,
                "commit": commit, "release": release,
                "patches": [{"file": project_relative(p.source), "subject": p.subject, "sha256": p.sha256}
                            for p in patches],
                "config_base": kdef.config_base, "series_key": inputs.series_key,
                "fragments": [{"file": project_relative(f.path), "sha256": sha256_file(f.path), "strict": f.strict}
                              for f in frags],
                "options_not_applied": {k: list(v) for k, v in soft_missing.items()},
                "toolchain": toolchain, "jobs": jobs,
                "reproducer": reproducer(src.repo, commit, entry, build_dir,
                                         _make_argv(build_dir, "bzImage", jobs=jobs)),
                "durations_s": {"import_and_series": round(t_config - t0, 1),
                                "patch": round(t_config - t_patch, 1),
                                "config": round(t_build - t_config, 1),
                                "compile": round(t_done - t_build, 1),
                                "total": round(time.monotonic() - t0, 1)},
            })
    return KernelBuild(name, key, entry, cached=False)
