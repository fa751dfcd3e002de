"""Reading configuration text: strict YAML, preset files, and `key=value` override values.

Two things PyYAML does by default silently change a config, so the loader here refuses or
fixes them: a key given twice (the last one wins without a word) is an error naming the key,
and `1e-3` (a float everywhere else, a string in YAML 1.1) is read as a float.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any

import yaml

from lossreweight.errors import ConfigError

PRESET_PACKAGE = "lossreweight"
PRESET_FOLDER = "configs"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3`, `5E+4` and `1.e5` as floats (YAML 1.2, not 1.1)."""


class StrictDumper(yaml.SafeDumper):
    """SafeDumper that quotes the strings StrictLoader would read as floats ('1e3')."""


# YAML 1.1 requires a dot in a float ("1.0e-3"); people write "1e-3". Only the forms that
# are otherwise plain strings are added, so no value that PyYAML reads today changes.
for _cls in (StrictLoader, StrictDumper):
    _cls.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )


def dump_flow(value: Any) -> str:
    """A value as one line of YAML that `load_yaml` reads back as the same value."""
    kw = {"Dumper": StrictDumper, "default_flow_style": True, "width": 10**6, "sort_keys": False}
    text = yaml.dump(value, **kw).removesuffix("\n...\n").strip()
    if "\n" in text:  # a string holding a newline: double quotes keep it on one line, escaped
        text = yaml.dump(value, default_style='"', **kw).removesuffix("\n...\n").strip()
    return text


def dump_yaml(data: Any) -> str:
    """A config as block YAML that `load_yaml` (and so every command) reads back unchanged."""
    return yaml.dump(data, Dumper=StrictDumper, sort_keys=False, allow_unicode=True)


def load_yaml(text: str, where: str) -> Any:
    """Parse one YAML document; duplicate keys and bad syntax are `ConfigError`s."""
    loader = None
    try:
        loader = StrictLoader(text)  # the reader already refuses control characters
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_alias_bombs(node, where)
        _refuse_duplicate_keys(node, "", where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to be a config") from None
    finally:
        if loader is not None:
            loader.dispose()


# A config has hundreds of values; aliases (`*name`) that expand to more are built to explode
# ("billion laughs": each level repeats the one below), and walking them would take minutes.
MAX_EXPANDED_NODES = 100_000


def _refuse_alias_bombs(root: yaml.Node, where: str) -> None:
    """Count the values the document expands to (each alias counted as what it repeats),
    without expanding it: a node's size is computed once and reused."""
    size: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being counted
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in size:
            continue
        if not done and id(node) in open_:  # an alias to a node that contains it
            raise ConfigError(f"{where} refers to itself through a YAML alias (*name)")
        children = _children(node)
        if done or not children:
            open_.discard(id(node))
            total = 1 + sum(size.get(id(c), 0) for c in children)
            if total > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"{where} expands to more than {MAX_EXPANDED_NODES:,} values through YAML "
                    "aliases (*name); a config needs a few hundred: write the values out"
                )
            size[id(node)] = total
            continue
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _refuse_duplicate_keys(node: yaml.Node, path: str, where: str) -> None:
    """A key given twice in one mapping (a section or a setting) is refused, naming it."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are YAML's explicit way to override keys
            key = (
                str(key_node.value)
                if isinstance(key_node, yaml.ScalarNode)
                else repr(key_node.value)
            )
            dotted = f"{path}{key}"
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{where}: {dotted!r} is given twice (lines {seen[key]} and {line}); "
                    "YAML would silently keep the last one: keep one of them"
                )
            seen[key] = line
            _refuse_duplicate_keys(value_node, f"{dotted}.", where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{path[:-1]}[{i}].", where)


def preset_names() -> list[str]:
    """The presets shipped in lossreweight/configs/*.yaml, by name."""
    root = importlib.resources.files(PRESET_PACKAGE) / PRESET_FOLDER
    if not root.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_config_file(spec: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or in the preset of that name (a path wins over a preset)."""
    path = Path(spec).expanduser()
    if path.is_file():
        text, where = _read_text(path), str(path)
    else:
        res = importlib.resources.files(PRESET_PACKAGE) / PRESET_FOLDER / f"{spec}.yaml"
        if not res.is_file():
            listed = ", ".join(preset_names()) or "none installed"
            raise ConfigError(
                f"config {str(spec)!r} is neither a file nor a preset; presets: {listed}"
            )
        text, where = res.read_text(encoding="utf-8"), f"preset {spec}"
    data = load_yaml(text, where)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of sections (data, model, train, ...)")
    return data


# A config is a few KB (a long list of source files, a few hundred KB): a bigger file is the
# wrong file, or one built to exhaust memory, and is refused before it is read.
MAX_CONFIG_BYTES = 4 << 20


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config {path} is {size / 2**20:.0f} MB; a config is a few KB (at most "
                f"{MAX_CONFIG_BYTES >> 20} MB): is it the right file? (list many source files "
                "with a glob)"
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None


def parse_value(text: str) -> Any:
    """`key=value` values are YAML scalars or flows: 3, 0.4, 1e-3, true, null, [a, b], {kind: step}.

    Text that is not valid YAML is kept as a string (a path with a colon, say).
    """
    try:
        return load_yaml(text, f"override value {text[:40]!r}")
    except ConfigError as exc:
        if "given twice" in str(exc) or "nested too deeply" in str(exc):
            raise
        return text
