"""Kconfig fragments: parse, merge in order, and check what stuck after olddefconfig."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DefinitionError

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Fragment:
    """A config fragment file; ``strict`` fragments fail the build when an option does not stick."""

    path: Path
    strict: bool = True


def parse_config(text: str, origin: Path | str = "<config>") -> dict[str, str | None]:
    """Map CONFIG_X to its value ('y', 'm', '"str"', '0x10') or None for 'is not set'.

    Lines like ``CONFIG_X=n`` are normalised to None. Raises DefinitionError on junk lines.
    """
    out: dict[str, str | None] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if m := _SET.match(line):
            out[m.group(1)] = None if m.group(2) == "n" else m.group(2)
        elif m := _UNSET.match(line):
            out[m.group(1)] = None
        elif line and not line.startswith("#"):
            raise DefinitionError(origin, f"line {n}", f"not a kconfig line: {line!r}")
    return out


def merge(base: dict[str, str | None], fragments: list[dict[str, str | None]]) -> dict[str, str | None]:
    """Apply fragments in order over base; later values win."""
    merged = dict(base)
    for frag in fragments:
        merged.update(frag)
    return merged


def render(config: dict[str, str | None]) -> str:
    """Write a .config body from a mapping."""
    lines = []
    for k, v in config.items():
        lines.append(f"# {k} is not set" if v is None else f"{k}={v}")
    return "\n".join(lines) + "\n"


def check(requested: dict[str, str | None], final: dict[str, str | None]) -> dict[str, tuple[str, str | None]]:
    """Options whose final value differs from the request: {name: (wanted, got)}."""
    missing: dict[str, tuple[str, str | None]] = {}
    for k, want in requested.items():
        got = final.get(k)
        if want != got:
            missing[k] = ("n" if want is None else want, got)
    return missing
