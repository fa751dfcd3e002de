"""The configuration reference, generated from the schema's field descriptions.

Two renderings of one source: `render_yaml` (what `lossreweight config` prints: a resolved
config as YAML, each key with its meaning as a comment) and `render_markdown` (docs/config.md;
a test regenerates it and compares, so the page cannot drift from the code).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from importlib.resources import files
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lossreweight.config.resolve import load_config
from lossreweight.config.schema import (
    DEFAULT_BURN_IN_FRACTION,
    SCHEDULE_KEYS,
    TEMPERATURE_RANGE,
    RunConfig,
)
from lossreweight.config.yaml_io import PRESET_FOLDER, PRESET_PACKAGE, dump_flow, preset_names

DOC_PATH = "docs/config.md"


def iter_fields(
    model: type[BaseModel] = RunConfig, prefix: str = ""
) -> Iterator[tuple[str, FieldInfo, type[BaseModel] | None]]:
    """(dotted key, field, sub-model or None) for every key, depth first, in schema order."""
    for name, field in model.model_fields.items():
        sub = field.annotation
        sub = sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None
        yield prefix + name, field, sub
        if sub is not None:
            yield from iter_fields(sub, f"{prefix}{name}.")


def type_name(annotation: Any) -> str:
    """A short, YAML-flavoured type: `int`, `float | null`, `auto | fp32 | bf16`, `list[str]`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is list:
        return f"list[{type_name(args[0])}]"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def flow(value: Any) -> str:
    """A value as one line of YAML (`null`, `0.4`, `[a, b]`, `{kind: step, r: 0.4}`)."""
    return dump_flow(value)


def default_of(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True)


# -- `lossreweight config` --------------------------------------------------------------------
def render_yaml(cfg: RunConfig, title: str) -> str:
    """The resolved config as YAML that loads back to the same config, with comments."""
    lines = [
        f"# {' '.join(title.splitlines())}",  # an override may hold a newline
        f"# resolved: reweighting starts after {cfg.burn_in_steps} uniform burn-in steps; "
        f"lr warm-up {cfg.train.lr_warmup} steps of {cfg.train.max_steps}",
        "# Every key: docs/config.md. Save this, edit it, and run: "
        "lossreweight train FILE --out DIR",
    ]
    _yaml_section(RunConfig, cfg.to_dict(), "", 0, lines)
    return "\n".join(lines) + "\n"


def _yaml_section(
    model: type[BaseModel], values: dict[str, Any], prefix: str, depth: int, lines: list[str]
) -> None:
    pad = "  " * depth
    for name, field in model.model_fields.items():
        ann = field.annotation
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if depth == 0:
            lines.append("")
        if field.description:
            lines.append(f"{pad}# {field.description}")
        if prefix + name == "reweight.temperature":
            lines += [f"{pad}#   schedule key {k}: {v}" for k, v in SCHEDULE_KEYS.items()]
        if sub is not None:
            lines.append(f"{pad}{name}:")
            _yaml_section(sub, values[name], f"{prefix}{name}.", depth + 1, lines)
        else:
            lines.append(f"{pad}{name}: {flow(values[name])}")


# -- docs/config.md ---------------------------------------------------------------------------
def render_markdown() -> str:
    """docs/config.md: every key with its type, default and meaning, and the presets."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from the schema (src/lossreweight/config/schema.py and the data and model",
        "     sections) by `python -m lossreweight.config.reference > docs/config.md`;",
        "     tests/test_config_reference.py fails when this page and the code differ. -->",
        "",
        "A run is configured by a YAML file or a shipped preset, plus `key=value` overrides by",
        "dotted path. Every command (`train`, `prepare`, `compare`, `experiment`, `demo`,",
        "`config`) reads them through the same loader (`lossreweight.config.load_config`).",
        "",
        "```bash",
        "lossreweight config tiny                           "
        "# the tiny preset, resolved and commented",
        "lossreweight config tiny train.max_steps=1000      # ... with overrides",
        "lossreweight config tiny > my.yaml                 # a file to edit; then:",
        "lossreweight train my.yaml --out runs/mine",
        "```",
        "",
        "Rules the loader enforces:",
        "",
        "- Values are YAML: `3`, `0.4`, `1e-3` (a float), `true`, `null`, `[a, b]`, "
        "`{kind: step, r: 0.4}`.",
        "- A key given twice in a file (or a section given twice) is an error naming it; YAML",
        "  would otherwise keep the last one silently.",
        "- `true`/`false` are refused where a number is expected (`train.batch_size=true`).",
        "- An unknown key is an error naming the closest valid keys.",
        "- Burn-in: give `reweight.warmup_steps` or `reweight.warmup_fraction`, not both (a file",
        "  with both is refused; an override of one replaces the other). With neither, the",
        f"  burn-in is {DEFAULT_BURN_IN_FRACTION:.0%} of `train.max_steps`; a fraction follows",
        "  `train.max_steps` overrides. `train.lr_warmup_steps` / `train.lr_warmup_fraction` work",
        "  the same way.",
        "- Every temperature r (a constant or any r of a schedule) lies in "
        f"[{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}].",
        "",
    ]
    defaults = RunConfig()
    for section, field, sub in iter_fields():
        if sub is None or "." in section:
            continue
        doc = (sub.__doc__ or "").strip().splitlines()[0] if sub.__doc__ else ""
        out += [f"## `{section}`: {field.description}", ""]
        if doc:
            out += [doc, ""]
        out += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        values = getattr(defaults, section)
        for key, f, s in iter_fields(sub, f"{section}."):
            if s is not None:
                continue
            value = _lookup(values, key.split(".")[1:])
            out.append(
                f"| `{key}` | {_cell(type_name(f.annotation))} | `{_cell(flow(value))}` "
                f"| {_cell(f.description or '')} |"
            )
        out.append("")
    out += [
        "## Temperature schedules (`reweight.temperature`)",
        "",
        "A number is a constant temperature. A mapping with `kind` is a schedule of the step:",
        "",
        "| key | meaning |",
        "| --- | --- |",
        *[f"| `reweight.temperature.{k}` | {_cell(v)} |" for k, v in SCHEDULE_KEYS.items()],
        "",
        "```yaml",
        "reweight:",
        "  temperature: {kind: step, r: 0.4, r_warm: 100.0, switch_step: 2000}   # the Llama code",
        "  # temperature: {kind: cosine, r_start: 100, r_end: 1, span: 5000}      # annealing",
        "```",
        "",
        "## Presets",
        "",
        "| preset | what it is |",
        "| --- | --- |",
        *[f"| `{name}` | {_cell(_preset_summary(name))} |" for name in preset_names()],
        "",
    ]
    return "\n".join(out)


def _lookup(values: Any, path: list[str]) -> Any:
    for part in path:
        values = getattr(values, part)
    return values.model_dump(mode="json") if isinstance(values, BaseModel) else values


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _preset_summary(name: str) -> str:
    """The first sentence of the preset's header comment, then its main settings."""
    text = (files(PRESET_PACKAGE) / PRESET_FOLDER / f"{name}.yaml").read_text(encoding="utf-8")
    header = " ".join(ln[1:].strip() for ln in text.splitlines() if ln.startswith("#"))
    first = header.split(". ")[0].split(": ")[0].rstrip(".")
    cfg = load_config(name)
    m, t = cfg.model, cfg.train
    r = cfg.reweight.temperature
    return (
        f"{first}. Model {m.dim} wide x {m.n_layers} layers, seq {cfg.data.seq_len}, "
        f"batch {t.batch_size} x {t.grad_accum} per rank, {t.max_steps:,} steps, lr {t.lr:g}, "
        f"burn-in {cfg.burn_in_steps:,} steps, {cfg.reweight.strategy} r={flow(r)}"
    )


if __name__ == "__main__":
    print(render_markdown(), end="")
