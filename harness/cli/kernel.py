"""`kharness kernel ...` and `kharness image ...`: definitions and cached builds."""

from __future__ import annotations

import argparse
import json
import time

from rich.markup import escape
from rich.table import Table

from ..errors import HarnessError
from .common import console, out, progress_builder


def _kernel_list(args: argparse.Namespace) -> int:
    # heavy (jsonschema, the build and image machinery): loaded only for this verb
    from ..config.kernels import list_kernels, load_kernel
    table = Table("name", "based on", "source", "patches", "description")
    for name in list_kernels():
        try:
            k = load_kernel(name)
            table.add_row(escape(name), escape(k.based_on or "-"), escape(f"{k.source.kind}: {k.source.location}"),
                          str(len(k.patches)), escape(k.description.strip()))
        except HarnessError as e:
            table.add_row(escape(name), "", "[red]invalid[/red]", "", escape(str(e)))
    out.print(table)
    return 0


def _kernel_show(args: argparse.Namespace) -> int:
    # heavy (jsonschema, the build and image machinery): loaded only for this verb
    from ..config.kernels import load_kernel
    from ..kernel.patches import parse_series
    k = load_kernel(args.name)
    out.print(f"[bold]{escape(k.name)}[/bold]  ({escape(str(k.path))})")
    if k.description:
        out.print(escape(k.description.strip()))
    out.print(escape(f"source:      {k.source.kind} {k.source.location}"
                     + (f" @ {k.source.ref}" if k.source.ref else "")))
    out.print(escape(f"based on:    {k.based_on or '-'}"))
    out.print(escape(f"config base: {k.config_base}"))
    for f in k.fragments:
        out.print(escape(f"fragment:    {f}"))
    for p in parse_series(list(k.patches)):
        out.print(escape(f"patch:       {p.source.name}: {p.subject}  (sha256 {p.sha256[:12]})"))
    return 0


def _kernel_build(args: argparse.Namespace) -> int:
    # heavy (jsonschema, the build and image machinery): loaded only for this verb
    from ..kernel.build import build_kernel
    t0 = time.monotonic()
    status, update = progress_builder(f"building {args.name}")
    with status:  # type: ignore[attr-defined]
        b = build_kernel(args.name, jobs=args.jobs, force=args.force, progress=update)
    meta = json.loads(b.metadata.read_text())
    how = "cache hit" if b.cached else "built"
    console.print(escape(f"{args.name}: {how} in {time.monotonic() - t0:.1f}s -> {b.dir}"))
    out.print(escape(str(b.bzimage)))
    if meta.get("options_not_applied"):
        console.print(escape("note: options from non-strict fragments that did not stick: "
                             + ", ".join(sorted(meta["options_not_applied"]))))
    return 0


def _image_build(args: argparse.Namespace) -> int:
    # heavy (jsonschema, the build and image machinery): loaded only for this verb
    from ..image.build import build_image
    t0 = time.monotonic()
    img = build_image(args.name, force=args.force, log=lambda m: console.print(escape(f"  {m}")))
    console.print(escape(f"{args.name}: {'cache hit' if img.cached else 'built'} in "
                         f"{time.monotonic() - t0:.1f}s -> {img.qcow2}"))
    out.print(escape(str(img.qcow2)))
    return 0


def _image_list(args: argparse.Namespace) -> int:
    # heavy (jsonschema, the build and image machinery): loaded only for this verb
    from ..config.images import list_images, load_image
    table = Table("name", "suite", "packages", "description")
    for n in list_images():
        i = load_image(n)
        table.add_row(escape(n), escape(i.suite), str(len(i.packages)), escape(i.description))
    out.print(table)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `kernel list|show|build` and `image list|build`."""
    k = sub.add_parser("kernel", help="kernel definitions and builds").add_subparsers(dest="sub", required=True)
    k.add_parser("list", help="list kernel definitions").set_defaults(func=_kernel_list)
    s = k.add_parser("show", help="show one definition and its patch series")
    s.add_argument("name")
    s.set_defaults(func=_kernel_show)
    b = k.add_parser("build", help="build a kernel (or find it in the cache)")
    b.add_argument("name")
    b.add_argument("-j", "--jobs", type=int, default=None)
    b.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    b.set_defaults(func=_kernel_build)

    i = sub.add_parser("image", help="guest images").add_subparsers(dest="sub", required=True)
    i.add_parser("list").set_defaults(func=_image_list)
    ib = i.add_parser("build", help="debootstrap a recipe into a cached qcow2 base")
    ib.add_argument("name", nargs="?", default="debian-bookworm")
    ib.add_argument("--force", action="store_true")
    ib.set_defaults(func=_image_build)
