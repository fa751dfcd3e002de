"""`lossreweight report DIR...`: one HTML page from several study (or compare) folders.

Each folder's summary.json carries the sections of its own page (see `study.write_study`);
they are re-rendered here with image paths made relative to the combined page. A folder
without them (e.g. the linreg study) contributes its conclusions and its PNG files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lossreweight.errors import UserError
from lossreweight.experiments.plotting import Section, Table, write_html_report
from lossreweight.experiments.study import SUMMARY_FILE, section_from_dict

DEFAULT_OUT = Path("runs/report.html")


def load_summary(folder: Path) -> dict[str, Any]:
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        raise UserError(f"{folder} has no {SUMMARY_FILE}: run `lossreweight experiment` or `compare` into it first")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a study summary")
    return data


def _title(folder: Path, s: dict[str, Any]) -> str:
    report = s.get("report") or {}
    return report.get("title") or s.get("study") or s.get("command") or folder.name


def _fallback_sections(s: dict[str, Any], prefix: str) -> list[Section]:
    files = s.get("files") or {}
    images = [prefix + f for f in files.values() if isinstance(f, str) and f.endswith(".png")]
    return [Section("Results", list(s.get("conclusions") or []), images=images)]


def build_report(folders: Sequence[Path | str], out_file: Path | str = DEFAULT_OUT, *, embed: bool = False) -> Path:
    """Write the combined page to `out_file`; images are linked relative to it (or embedded)."""
    if not folders:
        raise UserError("give at least one study folder")
    out_file = Path(out_file)
    out_dir = out_file.parent if str(out_file.parent) else Path(".")
    loaded = [(Path(f), load_summary(Path(f))) for f in folders]
    overview = []
    sections: list[Section] = []
    for folder, s in loaded:
        title = _title(folder, s)
        rel = os.path.relpath(folder, out_dir)
        prefix = "" if rel == "." else rel.rstrip("/") + "/"
        page = (s.get("report") or {}).get("html") or (s.get("files") or {}).get("html", "index.html")
        overview.append([title, str(folder), s.get("quick"), s.get("runtime_s"), prefix + page])
        intro = [f"Folder {folder}; its own page: {prefix + page}."]
        sections.append(Section(title, intro + list(s.get("conclusions") or [])))
        report = s.get("report")
        subs = ([section_from_dict(d, prefix) for d in report["sections"]] if report
                else _fallback_sections(s, prefix))
        short = s.get("study") or s.get("command") or folder.name
        for sub in subs:
            sub.heading = f"{short} \u2014 {sub.heading}"
            sections.append(sub)
    head = Section("Studies", [], tables=[Table(["study", "folder", "quick", "runtime (s)", "page"], overview)])
    return write_html_report(out_dir, "lossreweight: results", [head, *sections], filename=out_file.name,
                             embed_images=embed)
