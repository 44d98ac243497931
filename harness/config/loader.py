"""Load a YAML file and validate it against a JSON schema, naming the file and key on error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import jsonschema
import yaml

from ..errors import DefinitionError


def _key_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def load_yaml(path: Path, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse ``path`` and validate it; raise DefinitionError naming the offending key."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DefinitionError(path, "", "no such file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise DefinitionError(path, where, f"invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        err = errors[0]
        key = _key_path(err.path)
        msg = err.message
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            allowed = ", ".join(sorted(err.schema.get("properties", {})))
            key = _key_path(list(err.path) + [extra[0]]) if extra else key
            msg = f"unknown key (allowed here: {allowed})"
        elif err.validator == "oneOf" and isinstance(err.instance, dict):
            msg = f"must have exactly one of the forms allowed here; got keys {sorted(err.instance)}"
        raise DefinitionError(path, key or "(top level)", msg)
    return data


# A definition's name is a file name in its directory: no separators, no "..", no leading dot or dash.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(name: object, where: Path, key: str, what: str) -> str:
    """Return ``name`` if it is a plain definition name (``^[A-Za-z0-9][A-Za-z0-9._-]*$``, no
    ``..``); else raise DefinitionError naming ``where`` and ``key``."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise DefinitionError(where, key, f"invalid {what} name {name!r}: use letters, digits, "
                              "'.', '_' and '-' only, starting with a letter or digit, no '..'")
    return name


def is_inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path``, with symlinks resolved, is one of ``roots`` or below one of them."""
    real = path.resolve()
    return any(real.is_relative_to(r.resolve()) for r in roots)


def resolve_file(base_file: Path, key: str, value: str, *, must_exist: bool = True,
                 hint: str = "", inside: Sequence[Path] | None = None) -> Path:
    """Resolve ``value`` relative to the definition file's directory; check it exists.

    With ``inside``, the path must also resolve (after symlinks) within one of those directories;
    this is checked first, so nothing outside is even tested for existence.
    """
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = (base_file.parent / p).resolve()
    if inside is not None and not is_inside(p, inside):
        roots = " or ".join(str(r) for r in inside)
        raise DefinitionError(base_file, key, f"{value!r} resolves to {p.resolve()}, outside the "
                              f"project ({roots})")
    if must_exist and not p.exists():
        raise DefinitionError(base_file, key, f"file not found: {p}" + (f" ({hint})" if hint else ""))
    return p
