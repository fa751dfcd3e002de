"""Writing a study's outputs: the HTML page, and summary.json with the page's sections in it
(so `lossreweight report` can combine studies without knowing each one)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lossreweight.experiments.plotting import Section, Table, write_html_report

SUMMARY_FILE = "summary.json"


def _section_dict(section: Section | Mapping[str, Any]) -> dict[str, Any]:
    sec = section if isinstance(section, Section) else Section(**section)
    tables = [dataclasses.asdict(t) if isinstance(t, Table) else dict(t) for t in sec.tables]
    images = [list(im) if isinstance(im, tuple) else [str(im), ""] for im in sec.images]
    text = [sec.text] if isinstance(sec.text, str) else list(sec.text)
    return {
        "heading": sec.heading,
        "text": text,
        "images": [[str(p), c] for p, c in images],
        "tables": tables,
    }


def section_from_dict(d: Mapping[str, Any], image_prefix: str = "") -> Section:
    """The inverse of what `write_study` stores; image paths get `image_prefix` prepended."""
    images = [(image_prefix + p, c) for p, c in d.get("images", [])]
    tables = [Table(t["columns"], t["rows"], t.get("caption", "")) for t in d.get("tables", [])]
    return Section(d["heading"], list(d.get("text", [])), images, tables)


def clean_json(value: Any) -> Any:
    """JSON has no NaN/inf: write null (a missing value) instead; numpy scalars to floats."""
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_study(
    out: Path,
    summary: dict[str, Any],
    title: str,
    sections: Sequence[Section | Mapping[str, Any]],
    *,
    html_name: str = "index.html",
) -> dict[str, Any]:
    """Write `out/html_name` and `out/summary.json` (with a "report" block); returns the summary."""
    out = Path(out)
    page = write_html_report(out, title, sections, filename=html_name)
    summary["report"] = {
        "title": title,
        "html": page.name,
        "sections": [_section_dict(s) for s in sections],
    }
    summary = clean_json(summary)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return summary
