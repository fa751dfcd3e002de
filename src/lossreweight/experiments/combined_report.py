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
GENERATOR = (
    "lossreweight report"  # in the page's <meta name='generator'>: a page this command wrote
)


def load_summary(folder: Path) -> dict[str, Any]:
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        raise UserError(
            f"{folder} has no {SUMMARY_FILE}: "
            "run `lossreweight experiment` or `compare` into it first"
        )
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


def check_out_file(out_file: Path, force: bool) -> None:
    """The page may replace only a page this command wrote, or (with --force) another .html
    file; never anything inside a training run, never a summary.json or other non-HTML file."""
    if out_file.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out_file} must name an .html file (e.g. runs/report.html)")
    if out_file.is_dir():
        raise UserError(
            f"--out {out_file} is a folder; name the .html file to write, "
            f"e.g. {out_file / 'report.html'}"
        )
    from lossreweight.experiments.runs import is_run_dir

    for parent in out_file.resolve().parents:
        if is_run_dir(parent):
            raise UserError(
                f"--out {out_file} is inside the training run {parent}; write the page elsewhere"
            )
    if not out_file.exists():
        return
    try:
        head = out_file.read_text(encoding="utf-8", errors="replace")[:2000]
    except OSError as exc:
        raise UserError(
            f"--out {out_file} cannot be read ({exc.strerror}); choose another file"
        ) from None
    if f"content='{GENERATOR}'" not in head and not force:
        raise UserError(
            f"--out {out_file} exists and was not written by `lossreweight report`; give another "
            "--out, or add --force to replace it"
        )


def build_report(
    folders: Sequence[Path | str],
    out_file: Path | str = DEFAULT_OUT,
    *,
    embed: bool = False,
    force: bool = False,
) -> Path:
    """Write the combined page to `out_file`; images are linked relative to it (or embedded)."""
    if not folders:
        raise UserError("give at least one study folder")
    out_file = Path(out_file)
    check_out_file(out_file, force)
    out_dir = out_file.parent if str(out_file.parent) else Path(".")
    loaded = [(Path(f), load_summary(Path(f))) for f in folders]
    overview = []
    verdicts = []
    sections: list[Section] = []
    for folder, s in loaded:
        title = _title(folder, s)
        rel = os.path.relpath(folder, out_dir)
        prefix = "" if rel == "." else rel.rstrip("/") + "/"
        page = (s.get("report") or {}).get("html") or (s.get("files") or {}).get(
            "html", "index.html"
        )
        overview.append([title, str(folder), s.get("quick"), s.get("runtime_s"), prefix + page])
        if s.get("verdict"):
            verdicts.append(f"{title}: {s['verdict']}")
        intro = [f"Folder {folder}; its own page: {prefix + page}."]
        sections.append(Section(title, intro + list(s.get("conclusions") or [])))
        report = s.get("report")
        subs = (
            [section_from_dict(d, prefix) for d in report["sections"]]
            if report
            else _fallback_sections(s, prefix)
        )
        short = s.get("study") or s.get("command") or folder.name
        for sub in subs:
            sub.heading = f"{short} \u2014 {sub.heading}"
            sections.append(sub)
    head = [
        Section("Verdicts", verdicts or ["No study in these folders states a verdict."]),
        Section(
            "Studies",
            [],
            tables=[Table(["study", "folder", "quick", "runtime (s)", "page"], overview)],
        ),
    ]
    return write_html_report(
        out_dir,
        "lossreweight: results",
        [*head, *sections],
        filename=out_file.name,
        embed_images=embed,
        generator=GENERATOR,
    )
