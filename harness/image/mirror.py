"""Find the Debian mirror this machine's apt already uses."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import HarnessError


def apt_mirror(suite: str, etc: Path = Path("/etc/apt")) -> str:
    """The first 'deb' URI serving ``suite`` in sources.list or deb822 .sources files."""
    candidates: list[Path] = []
    if (etc / "sources.list").exists():
        candidates.append(etc / "sources.list")
    candidates += sorted((etc / "sources.list.d").glob("*.list")) if (etc / "sources.list.d").exists() else []
    candidates += sorted((etc / "sources.list.d").glob("*.sources")) if (etc / "sources.list.d").exists() else []
    for f in candidates:
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if ("deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split()
                        and fields.get("enabled", "yes") != "no"):
                    return fields["uris"].split()[0]
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^\]]*\]", "", line).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite:
                    return parts[1]
    raise HarnessError(f"no apt source for suite {suite!r} in {etc}/sources.list*; "
                       f"set 'mirror:' in the image recipe")
