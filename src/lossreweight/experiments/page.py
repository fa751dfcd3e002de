"""The HTML report of a study, and `lossreweight report`'s page of many studies.

A page is a title and `Section`s (heading, paragraphs, PNGs, `Table`s), written as one static
file by `write_html_report`. `write_study` writes a study's index.html and its summary.json,
which carries the page's sections so that `build_report` can combine studies without knowing
each one. The standard sections and tables of an arm comparison are here too: the verdict and
setup every page opens with, the protocol, results and weights.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossreweight.errors import UserError
from lossreweight.experiments.stats import PAPER_TOKENS_PER_PARAM, fidelity_rows, fmt_pm
from lossreweight.rundir import is_run_dir
from lossreweight.safe_files import atomic_write

SUMMARY_FILE = "summary.json"
PAGE_FILE = "index.html"


# -- pages --------------------------------------------------------------------------------------
@dataclass
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""


@dataclass
class Section:
    """One part of a report: a heading, paragraphs, images (paths relative to the report's
    folder, or (path, caption) pairs) and tables."""

    heading: str
    text: str | Sequence[str] = ()
    images: Sequence[str | Path | tuple[str | Path, str]] = ()
    tables: Sequence[Table | Mapping[str, Any]] = field(default_factory=list)


def format_cell(value: Any, digits: int = 4) -> str:
    """Numbers with `digits` significant digits; None as an em dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _table_html(table: Table | Mapping[str, Any]) -> str:
    t = table if isinstance(table, Table) else Table(**table)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in row) + "</tr>"
        for row in t.rows
    )
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image_html(out_dir: Path, image: str | Path | tuple[str | Path, str], embed: bool) -> str:
    path, caption = image if isinstance(image, tuple) else (image, "")
    rel = Path(path)
    if embed:
        data = base64.b64encode((out_dir / rel).read_bytes()).decode("ascii")
        src = f"data:image/png;base64,{data}"
    else:
        src = html.escape(rel.as_posix())
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{src}" alt="{html.escape(rel.name)}">{cap}</figure>'


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
img { max-width: 100%; border: 1px solid #ddd; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
"""


def write_html_report(
    out_dir: str | Path,
    title: str,
    sections: Sequence[Section | Mapping[str, Any]],
    *,
    filename: str = "index.html",
    embed_images: bool = False,
    generator: str = "lossreweight",
) -> Path:
    """Write `out_dir/filename`: a title then each section (heading, paragraphs, PNGs, tables).

    Images are referenced relative to `out_dir` (keep the folder together), or inlined as
    base64 with `embed_images=True` for a single self-contained file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<meta name='generator' content='{html.escape(generator)}'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for raw in sections:
        sec = raw if isinstance(raw, Section) else Section(**raw)
        parts.append(f"<h2>{html.escape(sec.heading)}</h2>")
        paragraphs = [sec.text] if isinstance(sec.text, str) else list(sec.text)
        parts += [f"<p>{html.escape(p)}</p>" for p in paragraphs if p]
        parts += [_table_html(t) for t in sec.tables]
        parts += [_image_html(out_dir, im, embed_images) for im in sec.images]
    parts.append("</body></html>")
    path = out_dir / filename
    atomic_write(path, "\n".join(parts).encode("utf-8"))  # a link there is replaced, not followed
    return path


# -- a study's page and summary.json -----------------------------------------------------
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
) -> dict[str, Any]:
    """Write `out/index.html` and `out/summary.json` (with a "report" block); returns it."""
    out = Path(out)
    page = write_html_report(out, title, sections, filename=PAGE_FILE)
    summary["report"] = {
        "title": title,
        "html": page.name,
        "sections": [_section_dict(s) for s in sections],
    }
    summary = clean_json(summary)
    atomic_write(
        out / SUMMARY_FILE, (json.dumps(summary, indent=1, allow_nan=False) + "\n").encode()
    )
    return summary


# -- the standard sections and tables of an arm comparison ------------------------------
def page_head(summary: Mapping[str, Any]) -> list[Section]:
    """What every page opens with: the verdict in one sentence, the setup table, and which of
    the conditions the runs share with the paper's (the fidelity table)."""
    head = [
        Section("Verdict", [summary["verdict"]]),
        Section("Setup", [], tables=[setup_table(summary.get("setup") or [])]),
    ]
    fidelity = summary.get("fidelity") or fidelity_rows(summary)
    if fidelity:
        head.append(
            Section(
                "What matches the paper and what does not",
                [
                    "Results are labelled by the conditions they tested: the paper's GPT-2 runs "
                    "(124M parameters, 20,000 steps of 32 x 512 tokens) next to these runs."
                ],
                tables=[fidelity_table(fidelity)],
            )
        )
    return head


def fidelity_table(rows: Sequence[Sequence[str]]) -> Table:
    """A study's conditions next to the paper's: condition, paper, study, whether they match."""
    return Table(
        ["condition", "the paper (GPT-2 code)", "these runs", "match"],
        [list(r) for r in rows],
        "which conditions the runs share with the paper and which they do not",
    )


def setup_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    cols = [
        "arms",
        "parameters",
        "tokens",
        "tokens/param",
        "steps",
        "sequence",
        "burn-in",
        "burn-in ended (step)",
        "val loss there",
        "unigram entropy",
        "lr warm-up",
        "r or schedule",
        "seeds",
    ]
    out = []
    for r in rows:
        tpp = r.get("tokens_per_param")
        out.append(
            [
                ", ".join(r["arms"]),
                _int(r.get("params")),
                _int(r.get("tokens")),
                None if tpp is None else f"{tpp:.3g}",
                r.get("steps"),
                r.get("seq_len"),
                f"{r['burn_in_fraction']:.1%}",
                _measured(r.get("burn_in_end_step"), ".0f"),
                _measured(r.get("burn_in_val_loss"), ".3f"),
                _measured(r.get("unigram_entropy"), ".3f"),
                f"{r['lr_warmup_fraction']:.1%}",
                r["temperature"],
                ", ".join(str(s) for s in sorted(r["seeds"])),
            ]
        )
    return Table(
        cols,
        out,
        "setup, as trained (burn-in: uniform weights before reweighting starts; where it "
        "ended, the validation loss there and the training mix's unigram entropy, as the "
        "trainer measured them, mean over the runs; "
        f"the paper's GPT-2 code: {PAPER_TOKENS_PER_PARAM:.1f} tokens/param, burn-in 5%)",
    )


def _measured(v: Any, spec: str) -> str:
    return "\u2014" if v is None else format(v, spec)


def _int(v: Any) -> str | None:
    return None if v is None else f"{int(v):,}"


def effective_overrides(overrides: Sequence[str]) -> list[str]:
    """Each key once, with the value that took effect (the last given), in first-given order:
    a study's scale settings override its base settings, and the page shows the result."""
    last: dict[str, str] = {}
    for item in overrides:
        last[item.partition("=")[0].strip()] = item
    return list(last.values())


def standard_sections(
    summary: dict[str, Any], files: dict[str, str], *, intro: Sequence[str] = ()
) -> list[Section]:
    """The report sections every arm comparison shares."""
    base = summary.get("baseline")
    same = "yes" if summary["same_batches"] else "NO"
    setup = [
        *intro,
        f"Config {summary['config']} with overrides: "
        f"{' '.join(effective_overrides(summary['overrides'])) or '(none)'}. "
        f"Seeds {summary['seeds']}; within a seed every arm has the same model init and, with the "
        f"same data settings, the same training batches (batch-order checksums equal across the "
        f"arms that should share them: {same}).",
    ]
    if base:
        setup.append(
            f"Paired differences are arm - {base} per seed (negative: lower loss than {base}). "
            f"'steps to {base}'s final' is the first step at which the arm's validation loss "
            f"reaches {base}'s final validation loss of the same seed, interpolated between "
            "evaluations."
        )
    return [
        Section("Protocol", setup),
        Section(
            "Validation loss",
            [],
            images=[
                (
                    files["loss_curves"],
                    "training loss and validation loss (mean, min-max band over seeds)",
                ),
                (files["val_loss_by_domain"], "final validation loss per domain"),
            ],
            tables=[results_table(summary)],
        ),
        Section(
            "Weights",
            [
                "max(w) x M is the largest weight of a batch times its size (1 = uniform); the "
                "paper argues it stays below 2. ESS / M is the effective sample size 1/sum(w^2) "
                "over M.",
            ],
            images=[
                (files["weight_diagnostics"], "weight diagnostics over training"),
                (
                    files["domain_weight_share"],
                    "each domain's share of the batch weight vs its share of samples",
                ),
                (files["domain_share_ratio"], "weight share / sample share per domain"),
            ],
            tables=[weights_table(summary)],
        ),
    ]


def _diff(run: Mapping[str, Any], baseline: str | None) -> Mapping[str, Any] | None:
    return run.get(f"diff_vs_{baseline}") if baseline else None


def results_table(summary: Mapping[str, Any], *, caption: str = "") -> Table:
    """One row per arm: final val loss, domain average and per-domain loss (mean ± std over
    seeds), and with a baseline the paired difference, seeds better, and steps to reach the
    baseline's final loss."""
    base = summary.get("baseline")
    domains = list(summary["domains"])
    cols = ["arm", "seeds", "val_loss", "domain avg", *domains]
    if base:
        cols += [f"val_loss - {base}", "seeds better", f"steps to {base}'s final", "speed-up"]
    rows = []
    for arm, r in summary["runs"].items():
        sd = r["std"]
        row: list[Any] = [
            arm,
            len(r["seeds"]),
            fmt_pm(r["val_loss"], sd["val_loss"]),
            fmt_pm(r["val_loss_domain_avg"], sd["val_loss_domain_avg"]),
        ]
        row += [
            fmt_pm(r["val_loss_by_domain"].get(d), sd["val_loss_by_domain"].get(d), 3)
            for d in domains
        ]
        diff = _diff(r, base)
        if base:
            if diff is None:
                row += ["\u2014"] * 4
            else:
                st = diff["steps_to_baseline_final"]
                reached = (
                    f" ({st['reached']}/{len(r['seeds'])} reached)"
                    if st["reached"] < len(r["seeds"])
                    else ""
                )
                steps = (
                    fmt_pm(st["mean"], st["std"], 0) if st["mean"] is not None else "not reached"
                )
                row += [
                    fmt_pm(diff["val_loss"]["mean"], diff["val_loss"]["std"]),
                    f"{diff['seeds_better']}/{len(r['seeds'])}",
                    steps + reached,
                    fmt_pm(diff["speedup"]["mean"], diff["speedup"]["std"], 2),
                ]
        rows.append(row)
    return Table(cols, rows, caption or "final validation loss (mean \u00b1 std over seeds)")


def weights_table(summary: Mapping[str, Any]) -> Table:
    """Weight diagnostics averaged over training, per arm."""
    cols = ["arm", "mean max(w)xM", "peak max(w)xM", "ESS / M", "corr(w, loss)", "frac w > 2/M"]
    rows = []
    for arm, r in summary["runs"].items():
        w = r["weights"]
        rows.append(
            [
                arm,
                w.get("max_weight_x_m"),
                w.get("max_weight_x_m_max"),
                w.get("ess_fraction"),
                w.get("weight_loss_corr"),
                w.get("frac_above_2_over_m"),
            ]
        )
    return Table(cols, rows, "weight diagnostics, averaged over logged steps and seeds")


def text_table(table: Table) -> str:
    """An aligned plain-text rendering of a `Table` for the terminal."""
    cells = [[str(c) for c in table.columns]] + [
        [format_cell(v) for v in row] for row in table.rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    return "\n".join(lines)


def short_table(summary: Mapping[str, Any]) -> str:
    """The terminal summary: arm, val_loss, per-domain loss, and the difference to the baseline."""
    base = summary.get("baseline")
    domains = list(summary["domains"])
    cols = ["strategy", "val_loss", *domains]
    if base:
        cols.append(f"vs {base}")
    rows = []
    for arm, r in summary["runs"].items():
        row: list[Any] = [arm, fmt_pm(r["val_loss"], r["std"]["val_loss"])]
        row += [
            f"{r['val_loss_by_domain'][d]:.3f}"
            if r["val_loss_by_domain"].get(d) is not None
            else "\u2014"
            for d in domains
        ]
        if base:
            diff = _diff(r, base)
            m = None if diff is None or arm == base else diff["val_loss"]["mean"]
            row.append("\u2014" if m is None else f"{m:+.4f}")
        rows.append(row)
    return text_table(Table(cols, rows))


# -- `lossreweight report`: many studies on one page -------------------------------------
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
    note: Callable[[str], None] | None = None,
) -> Path:
    """Write the combined page to `out_file`; images are linked relative to it (or embedded).

    Paths that are not study folders (no summary.json: a training run, prepared data, a file,
    e.g. what `runs/*` also matches) are skipped, each with a `note`; none left is an error.
    """
    if not folders:
        raise UserError("give at least one study folder")
    out_file = Path(out_file)
    check_out_file(out_file, force)
    out_dir = out_file.parent if str(out_file.parent) else Path(".")
    studies = [Path(f) for f in folders if (Path(f) / SUMMARY_FILE).is_file()]
    for f in folders:
        if Path(f) not in studies and note is not None:
            note(f"skipped {f}: not a study folder (no {SUMMARY_FILE})")
    if not studies:
        raise UserError(
            f"no {SUMMARY_FILE} in {', '.join(str(f) for f in folders)}: give folders written "
            "by `lossreweight experiment`, `compare` or `demo`"
        )
    loaded = [(f, load_summary(f)) for f in studies]
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
