"""A small kernel project for the series tests: a tree source holding one C file and a
`kernels/base.yaml` definition of it (no build: only reading, basing and selecting)."""

from __future__ import annotations

from pathlib import Path


def tree_project(tmp_path: Path, file: str, text: str) -> tuple[Path, Path]:
    """(the project root, the source tree) under ``tmp_path``: the tree has a Makefile and
    ``file`` with ``text``; the project has ``kernels/base.yaml`` whose source is that tree."""
    src = tmp_path / "src"
    (src / file).parent.mkdir(parents=True)
    (src / "Makefile").write_text("all:\n")
    (src / file).write_text(text)
    root = tmp_path / "proj"
    (root / "kernels").mkdir(parents=True)
    (root / "kernels" / "base.yaml").write_text(f"source: {{tree: {src}}}\n")
    return root, src
