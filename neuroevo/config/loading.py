"""A config from a preset or YAML file plus `--set` overrides, a run's saved config.yaml read strictly, and a config
written back as YAML. Each problem is one ConfigError naming the key or file (config/messages.py words pydantic's).
"""

from __future__ import annotations

import copy
import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from neuroevo.config.checks import check
from neuroevo.config.messages import describe, one_line
from neuroevo.config.schema import PRESETS, SPACES, RunConfig, _space_name
from neuroevo.errors import ConfigError

_ADAPTER = TypeAdapter(RunConfig)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), ready for YAML."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def flat(cfg: RunConfig) -> dict[str, Any]:
    """{"evolve.population": 10, ...}"""

    def walk(d: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(walk(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    return walk(to_dict(cfg), "")


def preset_path(name: str) -> Path:
    return Path(str(resources.files("neuroevo.config") / "presets" / f"{name}.yaml"))


# A config is a small text file: bounds on its size and on its YAML node graph (each alias counted as often as
# it is expanded) refuse a huge file or an alias bomb before anything is built from it.
MAX_BYTES = 1 << 20
MAX_NODES = 100_000


def load(source: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Resolve a preset name or YAML path (default: the demo preset) plus `key=value` overrides."""
    source = source or "demo"
    path = preset_path(source) if source in PRESETS else Path(source)
    if not path.is_file():
        raise ConfigError(f"{source}: no such config file or preset (presets: {', '.join(PRESETS)})")
    raw = _read_mapping(path)
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(raw)


def override(cfg: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """cfg with `key=value` overrides, checked as load checks them."""
    raw = to_dict(cfg)
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(raw)


def load_saved(path: str | Path) -> RunConfig:
    """A run's own config.yaml, read strictly: every key of the schema present, none unknown.

    The run wrote it whole (to_yaml), so a missing key means a damaged file, never a default to fill in.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    return loads_saved(_read_text(path), str(path))


def loads_saved(text: str, where: str) -> RunConfig:
    """load_saved of a config's text; `where` names it in errors."""
    raw = parse_yaml(text, where)
    if raw is None:
        raise ConfigError(f"{where}: empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of config keys at the top level")
    missing = missing_keys(raw)
    damage = [k for k in missing if k not in LATER_KEYS]
    if damage:
        more = f" and {len(damage) - 5} more" if len(damage) > 5 else ""
        raise ConfigError(f"{where}: incomplete, {len(damage)} keys missing ({', '.join(damage[:5])}{more})")
    for key in missing:  # what an older run ran with
        *sections, name = key.split(".")
        node = raw
        for section in sections:
            node = node[section]
        node[name] = copy.deepcopy(LATER_KEYS[key])
    return from_dict(raw)


# Keys (or whole sections) added after config.yaml began to be read strictly, with the value that keeps an older run's
# behaviour: a saved config without them is not damaged, and resumes as it ran.
LATER_KEYS: dict[str, Any] = {"train.max_loss": None, "evolve.inherit": "none", "evolve.rungs": 1, "evolve.eta": 3,
                              "evolve.budget": None,
                              "tracking": {"tensorboard": False, "mlflow": False, "mlflow_experiment": None},
                              "space.spectral_norms": ["none"], "space.g_emas": [0.0], "space.augments": ["none"],
                              "space.r1_gammas": [0.0], "space.n_critics": [1]}


def missing_keys(raw: dict[str, Any]) -> list[str]:
    """The schema's keys that `raw` lacks ('fitness' for a whole section), in schema order."""

    def walk(cls: Any, d: dict[str, Any], prefix: str) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            if f.name not in d:
                out.append(key)
                continue
            sub = f.default_factory if dataclasses.is_dataclass(f.default_factory) else None
            if f.name == "space":
                sub = SPACES.get(_space_name(d[f.name]))
            if sub is not None and isinstance(d[f.name], dict):
                out += walk(sub, d[f.name], key + ".")
        return out

    return walk(RunConfig, raw, "")


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            content = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    if len(content) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES // (1 << 20)} MiB; a config is a small YAML text file")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start} is {content[e.start]:#04x}); "
                          f"expected a YAML config") from None


def _read_mapping(path: Path) -> dict[str, Any]:
    raw = parse_yaml(_read_text(path), str(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return raw


def parse_yaml(text: str, where: str) -> Any:
    """yaml.safe_load, refusing a document of more than MAX_NODES nodes once its aliases are expanded, and a key
    given twice in one mapping (YAML would keep the last value silently)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml's, where built: 4x faster (`ls` reads many)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise ConfigError(f"{where}: more than {MAX_NODES:,} YAML values once its aliases are expanded; "
                              f"a config needs a few hundred")
        twice = _duplicate_key(loader, node)
        if twice:
            raise ConfigError(f"{where}: {twice}; give each key once")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({one_line(e)})") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document with every alias expanded, counted on the composed graph (where an alias is the
    same node object again), so without expanding anything; a recursive alias counts as too many."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes and not children_done:
            continue
        kids = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        if children_done:
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes.get(id(k), MAX_NODES + 1) for k in kids))
            continue
        if id(node) in {id(n) for n, done in stack if done}:  # a node inside itself
            return MAX_NODES + 1
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


def _duplicate_key(loader: Any, root: yaml.Node) -> str | None:
    """'KEY is given twice (lines A and B)' for a key that a mapping of the composed graph holds twice, the outer
    mappings checked first; None when no key is. Keys are compared as YAML reads them ('seed' and "seed" are one).
    A merge key (<<) is no key of its own: the keys it brings in may be overridden, as YAML means them to be."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:  # an alias is the same node again: checked once
            continue
        seen.add(id(node))
        children: list[tuple[yaml.Node, str]] = []
        if isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge" or not isinstance(key, yaml.ScalarNode):
                    children.append((value, path))
                    continue
                same, line = loader.construct_object(key), key.start_mark.line + 1
                if same in lines:
                    where = f"on line {line}" if line == lines[same] else f"lines {lines[same]} and {line}"
                    return f"{path}{key.value} is given twice ({where})"
                lines[same] = line
                children.append((value, f"{path}{key.value}."))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, f"{path}{i}.") for i, item in enumerate(node.value)]
        stack.extend(reversed(children))
    return None


def from_dict(raw: dict[str, Any]) -> RunConfig:
    try:
        cfg = _ADAPTER.validate_python(raw)
    except ValidationError as e:
        raise ConfigError(describe(e.errors())) from None
    check(cfg)
    return cfg


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item}: expected key=value, e.g. evolve.population=4")
    try:
        value = parse_yaml(text, f"--set {key}")  # so "4" is an int, "[1, 3]" a list, "null" None
    except ConfigError as e:
        if "not valid YAML" not in str(e):
            raise
        value = text
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item}: {part} is not a section")
        node = child
    node[leaf] = value
