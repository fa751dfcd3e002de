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
    folder, or (path, caption) pairs) and tables; stored in summary.json as `asdict` writes it
    and read back with `Section.of`."""

    heading: str
    text: str | Sequence[str] = ()
    images: Sequence[str | Path | tuple[str | Path, str]] = ()
    tables: Sequence[Table | Mapping[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:  # one shape whatever was given
        self.text = [self.text] if isinstance(self.text, str) else list(self.text)
        self.images = [
            (str(i), "") if isinstance(i, str | Path) else (str(i[0]), i[1]) for i in self.images
        ]
        self.tables = [t if isinstance(t, Table) else Table(**t) for t in self.tables]

    @classmethod
    def of(cls, d: Section | Mapping[str, Any], image_prefix: str = "") -> Section:
        """A section given as a dict (as stored in summary.json); image paths get the prefix."""
        sec = d if isinstance(d, Section) else cls(**d)
        if not image_prefix:
            return sec
        return dataclasses.replace(sec, images=[(image_prefix + p, c) for p, c in sec.images])


def format_cell(value: Any, digits: int = 4) -> str:
    """Numbers with `digits` significant digits; None as an em dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in row) + "</tr>"
        for row in t.rows
    )
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image_html(out_dir: Path, image: tuple[str, str], embed: bool) -> str:
    path, caption = image
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
    for sec in map(Section.of, sections):
        parts.append(f"<h2>{html.escape(sec.heading)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in sec.text if p]
        parts += [_table_html(t) for t in sec.tables]
        parts += [_image_html(out_dir, im, embed_images) for im in sec.images]
    parts.append("</body></html>")
    path = out_dir / filename
    atomic_write(path, "\n".join(parts).encode("utf-8"))  # a link there is replaced, not followed
    return path


# -- a study's page and summary.json -----------------------------------------------------
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
        "sections": [dataclasses.asdict(Section.of(s)) for s in sections],
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


# The setup table: column heading, the setup row's key, how a value is shown (None: as is).
_SETUP_COLUMNS: tuple[tuple[str, str, str | Callable[[Any], str] | None], ...] = (
    ("arms", "arms", ", ".join),
    ("parameters", "params", lambda v: f"{int(v):,}"),
    ("tokens", "tokens", lambda v: f"{int(v):,}"),
    ("tokens/param", "tokens_per_param", "{:.3g}"),
    ("steps", "steps", None),
    ("sequence", "seq_len", None),
    ("burn-in", "burn_in_fraction", "{:.1%}"),
    ("burn-in ended (step)", "burn_in_end_step", "{:.0f}"),
    ("val loss there", "burn_in_val_loss", "{:.3f}"),
    ("unigram entropy", "unigram_entropy", "{:.3f}"),
    ("lr warm-up", "lr_warmup_fraction", "{:.1%}"),
    ("r or schedule", "temperature", None),
    ("seeds", "seeds", lambda seeds: ", ".join(str(s) for s in sorted(seeds))),
)


def _shown(v: Any, how: str | Callable[[Any], str] | None) -> Any:
    if v is None or how is None:
        return v
    return how.format(v) if isinstance(how, str) else how(v)


def setup_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """One row per distinct setup, as trained (`stats.setup_rows`)."""
    return Table(
        [name for name, _, _ in _SETUP_COLUMNS],
        [[_shown(r.get(key), how) for _, key, how in _SETUP_COLUMNS] for r in rows],
        "setup, as trained (burn-in: uniform weights before reweighting starts; where it "
        "ended, the validation loss there and the training mix's unigram entropy, as the "
        "trainer measured them, mean over the runs; "
        f"the paper's GPT-2 code: {PAPER_TOKENS_PER_PARAM:.1f} tokens/param, burn-in 5%)",
    )


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
        if base and diff is None:
            row += ["\u2014"] * 4
        elif base:
            n, st = len(r["seeds"]), diff["steps_to_baseline_final"]
            steps = "not reached" if st["mean"] is None else fmt_pm(st["mean"], st["std"], 0)
            row += [
                fmt_pm(diff["val_loss"]["mean"], diff["val_loss"]["std"]),
                f"{diff['seeds_better']}/{n}",
                steps + (f" ({st['reached']}/{n} reached)" if st["reached"] < n else ""),
                fmt_pm(diff["speedup"]["mean"], diff["speedup"]["std"], 2),
            ]
        rows.append(row)
    return Table(cols, rows, caption or "final validation loss (mean \u00b1 std over seeds)")


def weights_table(summary: Mapping[str, Any]) -> Table:
    """Weight diagnostics averaged over training, per arm."""
    cols = ["arm", "mean max(w)xM", "peak max(w)xM", "ESS / M", "corr(w, loss)", "frac w > 2/M"]
    keys = [
        "max_weight_x_m",
        "max_weight_x_m_max",
        "ess_fraction",
        "weight_loss_corr",
        "frac_above_2_over_m",
    ]
    rows = [[arm, *(r["weights"].get(k) for k in keys)] for arm, r in summary["runs"].items()]
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
        row += [_shown(r["val_loss_by_domain"].get(d), "{:.3f}") for d in domains]
        if base:
            diff = _diff(r, base)
            m = None if diff is None or arm == base else diff["val_loss"]["mean"]
            row.append("\u2014" if m is None else f"{m:+.4f}")
        rows.append(row)
    return text_table(Table(cols, rows))


# -- `lossreweight report`: many studies on one page -------------------------------------
DEFAULT_OUT = Path("runs/report.html")
GENERATOR = "lossreweight report"  # in the page's <meta name='generator'>: this command wrote it


def load_summary(folder: Path) -> dict[str, Any]:
    path = Path(folder) / SUMMARY_FILE
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a study summary")
    return data


def _legacy_section(s: Mapping[str, Any]) -> dict[str, Any]:
    """A summary from before pages stored their sections: its conclusions and plots."""
    files = (s.get("files") or {}).values()
    images = [f for f in files if isinstance(f, str) and f.endswith(".png")]
    return {"heading": "Results", "text": list(s.get("conclusions") or []), "images": images}


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
    overview, verdicts, sections = [], [], []
    for folder in studies:
        s = load_summary(folder)
        report = s.get("report") or {}
        short = s.get("study") or s.get("command") or folder.name
        title = report.get("title") or short
        rel = os.path.relpath(folder, out_dir)
        prefix = "" if rel == "." else rel.rstrip("/") + "/"
        page = prefix + (report.get("html") or (s.get("files") or {}).get("html", PAGE_FILE))
        overview.append([title, str(folder), s.get("quick"), s.get("runtime_s"), page])
        if s.get("verdict"):
            verdicts.append(f"{title}: {s['verdict']}")
        intro = [f"Folder {folder}; its own page: {page}."]
        sections.append(Section(title, intro + list(s.get("conclusions") or [])))
        for d in report.get("sections", []) if report else [_legacy_section(s)]:
            sub = Section.of(d, prefix)
            sections.append(dataclasses.replace(sub, heading=f"{short} \u2014 {sub.heading}"))
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
