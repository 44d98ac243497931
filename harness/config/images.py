"""Guest image recipes: vm-images/NAME.yaml.

The recipe name is a plain file name; ``mask_units`` entries are systemd unit names (``foo.service``,
no '/'), since the image build links each one to /dev/null under the image's etc/systemd/system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DefinitionError
from ..paths import project_root
from .loader import check_name, load_yaml

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["suite", "packages"],
    "properties": {
        "description": {"type": "string"},
        "suite": {"type": "string", "pattern": "^[a-z]+$"},
        "variant": {"enum": ["minbase", "buildd", "-"]},   # mmdebstrap --variant
        "mirror": {"type": "string"},
        "packages": {"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9+.-]*$"},
                     "minItems": 1},
        "size": {"type": "string", "pattern": "^[0-9]+[MG]$"},
        "hostname": {"type": "string", "pattern": "^[a-z0-9-]+$"},
        "sysctl": {"type": "object", "additionalProperties": {"type": "string"}},
        "mask_units": {"type": "array", "items": {"type": "string"}},
        "init": {"enum": ["systemd", "kharness"]},
        "xfstests": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"source": {"type": "string"}, "ref": {"type": "string"}},
        },
    },
}

# A unit file name: no '/', so a masked unit cannot leave etc/systemd/system.
UNIT_NAME = re.compile(r"^[A-Za-z0-9@_.:-]+\.(service|socket|timer|target|mount|path)$")

REQUIRED_PACKAGES = ("openssh-server", "fio", "xfsprogs", "e2fsprogs", "ocfs2-tools", "util-linux",
                     "procps", "python3")


@dataclass(frozen=True)
class ImageDef:
    """A validated image recipe."""

    name: str
    path: Path
    description: str
    suite: str
    variant: str
    mirror: str | None
    packages: tuple[str, ...]
    size: str
    hostname: str
    sysctl: dict[str, str]
    mask_units: tuple[str, ...]
    xfstests: dict[str, str] | None = None   # present: build xfstests into the image
    init: str = "systemd"   # or "kharness": harness/image/guest/kharness-init, mounts + sysctl + sshd

    def as_dict(self) -> dict[str, Any]:
        d = {"suite": self.suite, "variant": self.variant, "mirror": self.mirror,
             "packages": list(self.packages), "size": self.size, "hostname": self.hostname,
             "sysctl": self.sysctl, "mask_units": list(self.mask_units),
             "xfstests": self.xfstests}
        if self.init != "systemd":   # so a systemd recipe keeps the cache key it had before `init`
            d["init"] = self.init
        return d


def images_dir() -> Path:
    return project_root() / "vm-images"


def list_images(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or images_dir()).glob("*.yaml"))


def load_image(name: str, directory: Path | None = None) -> ImageDef:
    """Load and validate vm-images/NAME.yaml."""
    d = directory or images_dir()
    check_name(name, d, "", "image recipe")
    path = d / f"{name}.yaml"
    if not path.exists():
        raise DefinitionError(path, "", f"no image recipe named {name!r} (known: "
                              f"{', '.join(list_images(d)) or 'none'})")
    data = load_yaml(path, SCHEMA)
    missing = [p for p in REQUIRED_PACKAGES if p not in data["packages"]]
    if missing:
        raise DefinitionError(path, "packages", f"the harness needs these packages too: {', '.join(missing)}")
    for k in data.get("sysctl", {}):
        if not re.match(r"^[a-z0-9_.]+$", k):
            raise DefinitionError(path, f"sysctl.{k}", "not a sysctl name")
    for i, unit in enumerate(data.get("mask_units", [])):
        if not UNIT_NAME.match(unit):
            raise DefinitionError(path, f"mask_units[{i}]", f"{unit!r} is not a systemd unit name "
                                  "(like foo.service; .socket, .timer, .target, .mount, .path; no '/')")
    return ImageDef(
        name=name, path=path, description=data.get("description", ""), suite=data["suite"],
        variant=data.get("variant", "minbase"), mirror=data.get("mirror"),
        packages=tuple(data["packages"]), size=data.get("size", "4G"),
        hostname=data.get("hostname", "kharness"), sysctl=dict(data.get("sysctl", {})),
        mask_units=tuple(data.get("mask_units", [])),
        xfstests=data.get("xfstests"), init=data.get("init", "systemd"),
    )
