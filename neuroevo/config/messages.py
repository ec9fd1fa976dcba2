"""pydantic's validation errors as the one line a user reads: the key as written, and every value it allows."""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

from neuroevo.config.schema import SPACES, RunConfig


def one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _known_keys(loc: tuple) -> list[str]:
    cls: Any = RunConfig
    for part in loc[:-1]:
        if part in SPACES and cls in SPACES.values():
            cls = SPACES[part]
            continue
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields or not dataclasses.is_dataclass(fields[part].default_factory):
            return []
        cls = fields[part].default_factory
    return [f.name for f in dataclasses.fields(cls)]


def _key(loc: tuple) -> tuple[str, bool]:
    """The key the user wrote for pydantic's location, and whether the location names a member of a union (as in
    `data.in_memory.literal['auto']`): the space's tag and union members are pydantic's, not the user's."""
    parts: list[str] = []
    cls: Any = RunConfig
    union = False
    for i, p in enumerate(loc):
        if cls is None:  # inside a leaf key: list indices are the user's, other names union members
            if isinstance(p, int):
                parts.append(str(p))
            else:
                union = True
            continue
        if i == 1 and loc[0] == "space" and p in SPACES:
            cls = SPACES[p]
            continue
        parts.append(str(p))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        factory = fields[p].default_factory if p in fields else None
        cls = factory if dataclasses.is_dataclass(factory) else None
    return ".".join(parts), union


def _shown(v: Any) -> str:
    """A value as YAML writes it: true, null, 'text'."""
    return "true" if v is True else "false" if v is False else "null" if v is None else repr(v)


def _allowed(err: dict[str, Any], member: str) -> list[str]:
    """What one error says the value may be, as items of 'expected A, B or C'."""
    kind = "a whole number" if "int" in member else "a number"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if err["type"] == "literal_error":
        return re.split(r", | or ", err["ctx"]["expected"])
    if err["type"].startswith("bool"):
        return ["true", "false"]
    if err["type"] == "finite_number":
        return ["a finite number"]
    if err["type"] in bounds:
        return [f"{kind} {bounds[err['type']]} {next(iter(err['ctx'].values()))}"]
    if err["type"].startswith(("int_", "float_")):
        return [kind]
    return [err["msg"][0].lower() + err["msg"][1:]]


def _one_of(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def describe(errors: list[dict[str, Any]]) -> str:
    """One line for pydantic's first error; a value that matches no member of a union, or no name of a Literal,
    says every value the key allows."""
    err = errors[0]
    loc = tuple(err["loc"])
    if err["type"] == "union_tag_invalid":
        return f"{'.'.join(map(str, loc))}.name: expected one of {', '.join(SPACES)} (got {err['input'].get('name')!r})"
    key, union = _key(loc)
    if err["type"] == "unexpected_keyword_argument":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        prefix = key.rpartition(".")[0]
        hint = f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)" if close else ""
        return f"{key}: unknown key{hint}"
    if err["type"] == "dataclass_type":
        return f"{key}: expected a section of keys, got {err['input']!r}"
    if union:  # every member's error, literals last: "expected true, false or 'auto'"
        members = [(e, str(e["loc"][-1])) for e in errors if _key(tuple(e["loc"])) == (key, True)]
        members.sort(key=lambda m: m[0]["type"] == "literal_error")
        items = [item for e, member in members for item in _allowed(e, member)]
        return f"{key}: expected {_one_of(list(dict.fromkeys(items)))}, got {_shown(err['input'])}"
    if err["type"] == "literal_error":
        return f"{key}: expected {err['ctx']['expected']}, got {_shown(err['input'])}"
    return f"{key}: {err['msg'][0].lower()}{err['msg'][1:]} (got {err['input']!r})"
