"""A kernel cache entry on disk for the executor and artifact tests."""

from __future__ import annotations

import os
from pathlib import Path

KEY = "c2b2dfa33cee08791672c27f"


def make_kernel_entry(cache: Path, key: str = KEY, size: int = 300_000) -> Path:
    d = cache / "kernels" / key
    d.mkdir(parents=True)
    (d / "bzImage").write_bytes(os.urandom(size))
    (d / ".config").write_text("CONFIG_EXT4_FS=y\n")
    (d / "System.map").write_text("ffffffff81000000 T _text\n")
    (d / "build.log").write_text("not shipped\n")
    (d / "metadata.json").write_text('{"name": "baseline"}\n')
    return d
