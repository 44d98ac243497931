"""Values pasted into QEMU's ``key=value,...`` option strings (``-drive``, ``-chardev``, ``-qmp``).

QEMU splits those strings at each ``,`` and reads ``,,`` as a literal comma (QemuOpts,
util/qemu-option.c ``get_opt_value``), so a path holding a comma would end its value and start a
new option (``/r,id=x/console.log``). Every path goes through :func:`qemu_path`; every other value
pasted into an option string is checked where it is made (vm/disks.py) to hold no comma at all.
"""

from __future__ import annotations

from pathlib import Path


def qemu_path(path: Path | str) -> str:
    """``path`` made absolute, with each ``,`` doubled, for a ``file=``/``path=`` value.

    Absolute, so the block layer never reads a prefix such as ``json:`` or ``nbd:`` as a protocol
    (``path_has_protocol()`` in block.c stops at the first '/')."""
    return str(Path(path).absolute()).replace(",", ",,")
