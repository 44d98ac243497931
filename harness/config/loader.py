"""Load a YAML file and validate it against a JSON schema, naming the file and key on error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def resolve_file(base_file: Path, key: str, value: str, *, must_exist: bool = True,
                 hint: str = "") -> Path:
    """Resolve ``value`` relative to the definition file's directory; check it exists."""
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = (base_file.parent / p).resolve()
    if must_exist and not p.exists():
        raise DefinitionError(base_file, key, f"file not found: {p}" + (f" ({hint})" if hint else ""))
    return p
