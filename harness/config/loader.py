"""Load a YAML file and validate it against a JSON schema, naming the file and key on error."""

from __future__ import annotations

import re
from collections.abc import Sequence
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


def _string_keys(path: Path, data: Any) -> None:
    """DefinitionError naming the first mapping key that is not a string (YAML allows ``1:``,
    ``null:`` or ``[a, b]:``; a definition, like JSON, has string keys). Iterative, and each
    node is visited once, so anchors that make the data recursive are fine."""
    stack: list[tuple[Any, list[Any]]] = [(data, [])]
    seen: set[int] = set()
    while stack:
        node, where = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise DefinitionError(path, _key_path(where) or "(top level)",
                                          f"key {k!r} is not a string")
                stack.append((v, where + [k]))
        elif isinstance(node, list):
            stack.extend((v, where + [i]) for i, v in enumerate(node))


def load_yaml(path: Path, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse ``path`` and validate it; raise DefinitionError naming the offending key (or the
    line, for YAML that does not parse)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DefinitionError(path, "", "no such file") from None
    except OSError as e:
        raise DefinitionError(path, "", f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DefinitionError(path, "", f"not UTF-8 text (byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise DefinitionError(path, where, f"invalid YAML: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise DefinitionError(path, "", "invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:
        # PyYAML's constructors: a date like 2001-02-30, an int of more than 4300 digits
        raise DefinitionError(path, "", f"invalid YAML value: {e}") from None
    if data is None:
        data = {}
    _string_keys(path, data)
    validator = jsonschema.Draft202012Validator(schema)
    try:
        errors = sorted(validator.iter_errors(data),
                        key=lambda e: (len(e.path), list(map(str, e.path))))
    except RecursionError:
        raise DefinitionError(path, "", "nested too deeply") from None
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
    ``..``, short enough that NAME.yaml is a valid file name: NAME_MAX is 255); else raise
    DefinitionError naming ``where`` and ``key``."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name or len(name) > 200:
        raise DefinitionError(where, key, f"invalid {what} name {name!r}: use letters, digits, "
                              "'.', '_' and '-' only, starting with a letter or digit, no '..', "
                              "at most 200 characters")
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
    try:
        p = Path(value).expanduser()
    except RuntimeError:  # "~user/..." for an unknown user
        raise DefinitionError(base_file, key, f"{value!r}: cannot expand '~'") from None
    try:
        if not p.is_absolute():
            p = (base_file.parent / p).resolve()
        if inside is not None and not is_inside(p, inside):
            roots = " or ".join(str(r) for r in inside)
            raise DefinitionError(base_file, key, f"{value!r} resolves to {p.resolve()}, outside "
                                  f"the project ({roots})")
        exists = p.exists()
    except (ValueError, OSError, RuntimeError) as e:  # a NUL byte, a name too long, a symlink loop
        raise DefinitionError(base_file, key, f"{value!r}: not a usable path ({e})") from None
    if must_exist and not exists:
        raise DefinitionError(base_file, key, f"file not found: {p}" + (f" ({hint})" if hint else ""))
    return p
