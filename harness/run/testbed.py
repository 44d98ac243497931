"""The testbed: kernels, the guest image and the accelerator, prepared once.

This is the only place that builds kernels and images for runs and picks the accelerator.
Front ends name what they need; the testbed validates the definitions before any slow step,
builds (or finds in the cache) what is missing, and describes each artifact for the RunSpec.
For ``kharness reproduce`` it prepares from a recorded spec instead, refusing when the current
definitions no longer produce the recorded kernel or image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..config.images import load_image
from ..config.kernels import load_kernel
from ..errors import HarnessError, ReproduceError
from ..image.build import Image, build_image, find_image
from ..kernel.build import KernelBuild, build_kernel, find_kernel, kernel_inputs, resolve_commit
from ..kernel.patches import parse_series
from ..paths import project_relative
from ..util import sha256_json
from ..vm.accel import Accel, choose_accel
from ..vocab import KernelRef, Say
from .spec import FragmentRef, ImageSpec, KernelSpec, PatchRef, RunSpec

DEFAULT_IMAGE = "debian-bookworm"
XFSTESTS_IMAGE = "debian-bookworm-xfstests"


def _rel(path: str) -> str:
    """A path relative to the project root (specs stay portable between checkouts)."""
    return project_relative(path)


def kernel_spec(build: KernelBuild) -> KernelSpec:
    """Describe a finished kernel from its metadata.json."""
    meta = json.loads(build.metadata.read_text())
    frags = tuple(FragmentRef(_rel(f["file"]), f["sha256"]) for f in meta.get("fragments", []))
    return KernelSpec(
        name=build.name or meta.get("name", ""), key=build.key, source=meta.get("source", ""),
        base_commit=meta.get("base_commit", ""), commit=meta.get("commit", ""),
        release=meta.get("release", ""), config_base=meta.get("config_base", ""),
        config_sha256=sha256_json([meta.get("config_base", ""), [f.sha256 for f in frags]]),
        patches=tuple(PatchRef(_rel(p["file"]), p["subject"], p["sha256"]) for p in meta.get("patches", [])),
        fragments=frags)


class Testbed:
    """Kernels by reference (``NAME`` or ``NAME@REF``), one image, one accelerator: validated at
    once, built on :meth:`prepare` (idempotent)."""

    __test__ = False  # not a pytest test class, though its name starts with "Test"

    def __init__(self, kernels: Sequence[str], *, image: str = DEFAULT_IMAGE, accel: str | None = None,
                 say: Say = print):
        if accel not in (None, "kvm", "tcg"):
            raise HarnessError(f"accelerator {accel!r}: use kvm or tcg")
        self.names: list[str] = []
        for n in dict.fromkeys(kernels):  # fast checks before any slow step: definitions and patch files
            self._check(n)
        load_image(image)
        self.image_name, self.accel_override, self.say = image, accel, say
        self.builds: dict[str, KernelBuild] = {}
        self.image: Image | None = None
        self.accel: Accel | None = None

    def _check(self, text: str) -> KernelRef:
        """Parse and check one reference (its definition and patches), and add it to the names."""
        ref = KernelRef.parse(text)
        parse_series(list(load_kernel(ref.name).patches))
        if text not in self.names:
            self.names.append(text)
        return ref

    def prepare(self) -> Testbed:
        """Build (or find) every kernel and the image, then choose the accelerator."""
        for n in self.names:
            if n not in self.builds:
                kref = KernelRef.parse(n)
                commit = resolve_commit(kref.name, kref.ref) if kref.ref else None
                self.say(f"kernel {n}: building (or cache hit)" + (f" at {commit[:12]}" if commit else ""))
                self.builds[n] = build_kernel(kref.name, base_commit=commit)
        if self.image is None:
            self.image = build_image(self.image_name, log=lambda m: self.say(f"  image: {m}"))
        if self.accel is None:
            first = self.builds[self.names[0]] if self.names else None
            self.accel = choose_accel(first.bzimage, self.accel_override) if first else \
                Accel(self.accel_override or "tcg", "no kernel to probe with")
            self.say(f"accelerator: {self.accel.name} ({self.accel.reason})")
        return self

    def add(self, ref: str) -> KernelBuild:
        """Add (and build) one more kernel reference, e.g. a bisect step's ``NAME@COMMIT``."""
        new = ref not in self.names
        if new:
            self._check(ref)
        try:
            self.prepare()
        except HarnessError:
            if new and ref not in self.builds:  # not kept: every later add() would build it again
                self.names.remove(ref)
            raise
        return self.builds[ref]

    def kernel(self, name: str) -> KernelBuild:
        if name not in self.builds:
            raise HarnessError(f"kernel {name!r} is not part of this testbed ({', '.join(self.names)})")
        return self.builds[name]

    def kernel_spec(self, name: str) -> KernelSpec:
        return kernel_spec(self.kernel(name))

    def image_spec(self) -> ImageSpec:
        assert self.image is not None, "prepare() first"
        return ImageSpec(self.image_name, self.image.key)

    @property
    def accel_name(self) -> str:
        assert self.accel is not None, "prepare() first"
        return self.accel.name


def kernel_changes(recorded: KernelSpec) -> list[str]:
    """What differs between the recorded kernel's inputs and the definition today ([] if none)."""
    kdef = load_kernel(recorded.name)
    changes: list[str] = []
    now = {p.sha256: p for p in parse_series(list(kdef.patches))}
    then = {p.sha256: p for p in recorded.patches}
    for sha, p in then.items():
        if sha not in now:
            same_file = [q for q in now.values() if _rel(str(q.source)) == p.file]
            how = "changed" if same_file else "no longer in the series"
            changes.append(f"patch {p.file} ({p.subject!r}) {how}: recorded sha256 {sha[:12]}"
                           + (f", now {same_file[0].sha256[:12]}" if same_file else ""))
    for sha, q in now.items():
        if sha not in then and not any(_rel(str(q.source)) == p.file for p in recorded.patches):
            changes.append(f"patch {_rel(str(q.source))} ({q.subject!r}) was added to the series")
    if kdef.config_base != recorded.config_base:
        changes.append(f"config base changed: recorded {recorded.config_base}, now {kdef.config_base}")
    return changes


def prepare_for_spec(spec: RunSpec, *, from_cache: bool = False, say: Say = print) -> tuple[KernelBuild, Image, Accel]:
    """Kernel, image and accelerator exactly as ``spec`` recorded them, or ReproduceError.

    The kernel is rebuilt from the recorded source commit when it is no longer cached; a
    definition whose patches or config changed since is refused, naming each change, unless
    ``from_cache`` and the recorded build is still in the cache."""
    rk = spec.kernel
    cached = find_kernel(rk.key, rk.name)
    changes = kernel_changes(rk)
    if changes and not (from_cache and cached):
        hint = (f"the recorded kernel is still cached ({cached.dir}): --from-cache reuses it" if cached
                else "the recorded kernel is no longer cached either")
        raise ReproduceError(spec.label, [f"kernel {rk.name}: {c}" for c in changes], hint)
    if cached is not None:
        build = cached
    else:
        inputs = kernel_inputs(rk.name, base_commit=rk.base_commit)
        if inputs.key != rk.key:
            raise ReproduceError(spec.label, [
                f"kernel {rk.name}: cache key {inputs.key} differs from the recorded {rk.key} "
                f"(fragments or toolchain changed: {', '.join(f.file for f in rk.fragments)}; "
                f"toolchain now {inputs.toolchain.get('gcc', '?')})"])
        say(f"kernel {rk.name}: rebuilding at recorded commit {rk.base_commit[:12]}")
        build = build_kernel(rk.name, base_commit=rk.base_commit)
    image = find_image(spec.image.recipe, spec.image.key)
    if image is None:
        image = build_image(spec.image.recipe, log=lambda m: say(f"  image: {m}"))
        if image.key != spec.image.key:
            raise ReproduceError(spec.label, [f"image {spec.image.recipe}: key {image.key} differs from "
                                              f"the recorded {spec.image.key} (recipe, mirror or xfstests changed)"])
    accel = choose_accel(build.bzimage, spec.accel)
    return build, image, accel
