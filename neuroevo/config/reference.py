"""Every config key's documentation, read from the schema: each section's class docstring and each key's attribute
docstring, which pydantic keeps as the field's description (fields.STRICT sets use_attribute_docstrings). From them
come the key list that `neuroevo run --help` ends with and the Markdown reference, docs/configuration.md:

    python -m neuroevo.config.reference            # rewrites docs/configuration.md, from the checkout's root

A docstring's first paragraph is its summary, the one sentence --help shows; the rest is for the reference.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import textwrap
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic.fields import FieldInfo

from neuroevo.config.schema import SPACES, RunConfig
from neuroevo.space import registry

DOCS = Path("docs") / "configuration.md"
WIDTH = 110  # of the --help text and of docs/configuration.md's own prose
DOC_COLUMN = 42  # where --help starts each key's summary


@dataclasses.dataclass(frozen=True)
class Key:
    name: str  # as --set writes it: "data.source"
    default: Any
    field: FieldInfo  # its type, bounds and docstring

    @property
    def doc(self) -> str:
        return self.field.description or ""


@dataclasses.dataclass(frozen=True)
class Section:
    name: str  # "data"; "space (seed-v1)" for each search space; "top level" for the run's own keys
    doc: str
    keys: tuple[Key, ...]


def sections() -> list[Section]:
    """The config's keys by section, in the schema's order: the run's own keys, then each section, with `space`
    once for every search space (registry.SECTIONS)."""
    own, found = [], []
    for f in dataclasses.fields(RunConfig):
        if f.name == "space":
            found += [_section(cls, f"space ({name})", "space.") for name, cls in SPACES.items()]
        elif dataclasses.is_dataclass(f.default_factory):
            found.append(_section(f.default_factory, f.name, f"{f.name}."))
        else:
            own.append(Key(f.name, f.default, RunConfig.__pydantic_fields__[f.name]))
    return [Section("top level", _class_doc(RunConfig), tuple(own)), *found]


def _section(cls: type, name: str, prefix: str) -> Section:
    keys = tuple(Key(prefix + f.name, f.default, cls.__pydantic_fields__[f.name]) for f in dataclasses.fields(cls))
    return Section(name, _class_doc(cls), keys)


def _class_doc(cls: type) -> str:
    """The class's own docstring; "" where it has none (dataclasses then writes one of its signature)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    return "" if doc.startswith(cls.__name__ + "(") else doc


def summary(doc: str) -> str:
    """A docstring's first paragraph, on one line."""
    return " ".join(doc.split("\n\n")[0].split())


# --- values and types, as a user writes them ----------------------------------------------------------------------


def value(v: Any) -> str:
    """A value as YAML writes it: null, true, [2, 5]; 'off' quoted, as a bare off would be read as false."""
    plain = list(v) if isinstance(v, tuple) else v
    return yaml.safe_dump(plain, default_flow_style=True, width=1 << 16).removesuffix("\n...\n").strip()


def allowed(key: Key) -> str:
    """What a key may be set to, e.g. "an integer >= 1 or `null`", "`first` or `random`"."""
    return _or(_kinds(key.field.annotation, list(key.field.metadata)))


def _kinds(tp: Any, metadata: list[Any]) -> list[str]:
    """What a type allows, as the items of "A, B or C": literal values in backticks, other types in words."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _kinds(args[0], [*args[1:], *metadata])
    if origin in (Union, types.UnionType):
        return [kind for arg in args for kind in _kinds(arg, [])]
    if origin is Literal:  # the names, as --set takes them
        return [f"`{str(a).lower() if isinstance(a, bool) else a}`" for a in args]
    if tp is type(None):
        return ["`null`"]
    if tp is bool:
        return ["`true`", "`false`"]
    constraints = [c for m in metadata for c in (m.metadata if isinstance(m, FieldInfo) else [m])]
    if origin is tuple:
        return [_sequence(args, constraints)]
    name = {int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))
    return [" ".join(filter(None, (name, _bounds(constraints))))]


def _sequence(args: tuple, constraints: list[Any]) -> str:
    if len(args) == 2 and args[1] is Ellipsis:  # a list of choices
        non_empty = any(isinstance(c, annotated_types.MinLen) and c.min_length == 1 for c in constraints)
        each = ", ".join(_kinds(args[0], [])).replace("an integer", "integers").replace("a number", "numbers")
        return f"a {'non-empty ' if non_empty else ''}list of {each}"
    items = [_or(_kinds(arg, [])).removeprefix("an ").removeprefix("a ") for arg in args]
    if len(items) == 2:  # every pair in the config is a [min, max] range
        return f"[min, max], each {items[0]}" if items[0] == items[1] else f"[min, max], min {items[0]}, max {items[1]}"
    return "[" + ", ".join(items) + "]"


def _bounds(constraints: list[Any]) -> str:
    """annotated_types bounds as one phrase: ">= 1", "in [4, 1024]", "in (0, 1)"."""
    lo = next((c for c in constraints if isinstance(c, (annotated_types.Ge, annotated_types.Gt))), None)
    hi = next((c for c in constraints if isinstance(c, (annotated_types.Le, annotated_types.Lt))), None)
    closed = (annotated_types.Ge, annotated_types.Le)
    if lo is not None and hi is not None:
        return (f"in {'[' if isinstance(lo, closed) else '('}{_bound(lo)}, "
                f"{_bound(hi)}{']' if isinstance(hi, closed) else ')'}")
    one = lo if lo is not None else hi
    if one is None:
        return ""
    return {"Ge": ">= ", "Gt": "> ", "Le": "<= ", "Lt": "< "}[type(one).__name__] + _bound(one)


def _bound(c: Any) -> str:
    return f"{getattr(c, type(c).__name__.lower()):g}"  # Ge(ge=1).ge


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


# --- the two texts --------------------------------------------------------------------------------------------------


def keys_help() -> str:
    """Every key with its default and summary, by section: what `neuroevo run --help` ends with."""
    lines = textwrap.wrap(f"config keys, each with its default, for a YAML file or --set KEY=VALUE ({DOCS} tells "
                          "each in full):", WIDTH)
    for section in sections():
        lines += ["", *textwrap.wrap(f"{section.name}: {_plain(summary(section.doc))}", WIDTH,
                                     subsequent_indent="  ")]
        for key in section.keys:
            left = f"  {key.name} = {value(key.default)}"
            if len(left) > DOC_COLUMN - 2:  # a long default: the summary starts on the next line
                lines.append(left)
                left = ""
            lines += textwrap.wrap(_plain(summary(key.doc)), WIDTH, initial_indent=f"{left:<{DOC_COLUMN}}",
                                   subsequent_indent=" " * DOC_COLUMN) or [left]
    return "\n".join(lines)


def _plain(markdown: str) -> str:
    return markdown.replace("`", "")


INTRO = """\
A run's configuration is a YAML file or a preset (`neuroevo run cifar10`; the presets are
`neuroevo/config/presets/*.yaml`), plus any `--set KEY=VALUE`, whose value is read as YAML (`--set
space.channels=[5,64]`, `--set data.subset=null`). A key left out takes its default: the defaults are the reference
experiment on CIFAR-10, the `cifar10` preset, and each preset names only what it changes. `neuroevo run --help`
lists every key with its default and first sentence. A run saves its whole config, every key, as
`RUN_DIR/config.yaml`."""


def reference_markdown() -> str:
    """docs/configuration.md: every key with what it may be, its default and its whole docstring, by section."""
    found = sections()
    out = ["# Configuration reference", "",
           "<!-- Generated by `python -m neuroevo.config.reference` from the docstrings of neuroevo/config/schema.py",
           "     and neuroevo/space/*.py: edit those, then run it again. A test fails while this file differs. -->", "",
           INTRO, "", *textwrap.wrap(
               f"The `space` section is the search space's own: `space.name` picks one "
               f"({_or([f'`{name}`' for name in SPACES])}; without it, `{registry.DEFAULT}`), and its keys follow.",
               WIDTH), ""]
    out += [f"- [{s.name}](#{_anchor(s.name)})" for s in found]
    for section in found:
        out += ["", f"## {section.name}", "", section.doc]
        for key in section.keys:
            out += ["", f"### `{key.name}`", "", f"**Values:** {allowed(key)}. **Default:** `{value(key.default)}`.",
                    "", key.doc]
    return "\n".join(out) + "\n"


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return "".join(c for c in title.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else DOCS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reference_markdown())
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
