"""Load a YAML file and validate it against a JSON schema, naming the file and key on error."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import DefinitionError
from ..util import InputTooLarge, read_bytes_capped
from ..vocab import NAME_RULE, valid_name

# A definition is a page of YAML; these bound what a hostile one costs to load and validate.
MAX_DEFINITION_BYTES = 1 << 20
# Nodes that aliases may add: each ``*a`` counts the whole subtree it repeats, so a few hundred
# bytes of nested aliases (a "billion laughs") are refused before anything expands them.
MAX_ALIAS_NODES = 10_000


class _AliasLimit(yaml.YAMLError):
    def __init__(self, mark: yaml.Mark | None):
        self.problem_mark = mark
        super().__init__(f"aliases expand to more than {MAX_ALIAS_NODES} nodes")


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts what aliases add (the size of each repeated subtree) and refuses
    past MAX_ALIAS_NODES."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}

    def _size(self, node: yaml.Node) -> int:
        """Nodes in ``node`` with aliases expanded (capped), memoised per node."""
        if id(node) in self._sizes:
            return self._sizes[id(node)]
        self._sizes[id(node)] = 1                     # a recursive anchor counts once
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(self._size(v) for v in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(self._size(k) + self._size(v) for k, v in node.value)
        self._sizes[id(node)] = total = min(total, MAX_ALIAS_NODES + 1)
        return total

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                self._alias_nodes += self._size(node)
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise _AliasLimit(event.start_mark)
            return super().compose_node(parent, index)
        node = super().compose_node(parent, index)
        self._sizes.pop(id(node), None)               # counted while incomplete (a recursive anchor)
        return node


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
        text = read_bytes_capped(path, MAX_DEFINITION_BYTES, "definition").decode("utf-8")
    except FileNotFoundError:
        raise DefinitionError(path, "", "no such file") from None
    except OSError as e:
        raise DefinitionError(path, "", f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DefinitionError(path, "", f"not UTF-8 text (byte {e.start})") from None
    except InputTooLarge as e:
        raise DefinitionError(path, "", f"{e.size} bytes: larger than the {e.limit} a definition "
                              "may be") from None
    try:
        loader = _Loader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except _AliasLimit as e:
        raise DefinitionError(path, f"line {e.problem_mark.line + 1}" if e.problem_mark else "",
                              f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes (nested "
                              "anchors and aliases); refused") from None
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


def check_name(name: object, where: Path, key: str, what: str) -> str:
    """Return ``name`` if it is a plain definition name (``^[A-Za-z0-9][A-Za-z0-9._-]*$``, no
    ``..``, short enough that NAME.yaml is a valid file name: NAME_MAX is 255); else raise
    DefinitionError naming ``where`` and ``key``."""
    if not valid_name(name):   # a file name in its directory: no separators, no "..", no leading dot or dash
        raise DefinitionError(where, key, f"invalid {what} name {name!r}: use {NAME_RULE}")
    assert isinstance(name, str)   # valid_name accepts only strings
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
