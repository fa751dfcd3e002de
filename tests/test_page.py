"""experiments/page.py: the HTML page, the sections summary.json carries for `lossreweight
report`, and the standard tables (no training)."""

from __future__ import annotations

import json
from pathlib import Path

from lossreweight.experiments.page import (
    Section,
    Table,
    setup_table,
    write_html_report,
    write_study,
)
from lossreweight.experiments.plots import new_figure, save_figure


def test_html_report_escapes_and_embeds(tmp_path: Path) -> None:
    fig, (ax,) = new_figure(1)
    ax.plot([0, 1], [1, 2], label="a<b")
    save_figure(fig, tmp_path / "p.png")
    sections = [
        Section(
            "One & two", "x < y", images=[("p.png", "cap")], tables=[Table(["k"], [[None], [0.5]])]
        ),
        {"heading": "dict", "text": ["para"]},
    ]
    page = write_html_report(tmp_path, "T", sections, embed_images=True).read_text()
    assert "One &amp; two" in page and "x &lt; y" in page and "data:image/png;base64," in page
    assert "<td>\u2014</td>" in page and "<td>0.5</td>" in page


def test_sections_round_trip_through_summary_json(tmp_path: Path) -> None:
    """What write_study stores is what `report` reads back, image paths moved under a prefix."""
    sections = [
        Section("Verdict", "one sentence"),
        Section(
            "Plots",
            ["a", "b"],
            images=["loss.png", (Path("w.png"), "weights")],
            tables=[
                Table(["arm", "loss"], [["uniform", 3.5]], "cap"),
                {"columns": ["x"], "rows": []},
            ],
        ),
    ]
    summary = write_study(tmp_path, {"verdict": "v", "nan": float("nan")}, "Title", sections)
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored == summary and stored["nan"] is None  # JSON has no NaN: a missing value
    assert stored["report"]["title"] == "Title" and stored["report"]["html"] == "index.html"
    back = [Section.of(d, "study/") for d in stored["report"]["sections"]]
    assert [s.heading for s in back] == ["Verdict", "Plots"]
    assert back[0].text == ["one sentence"] and back[1].text == ["a", "b"]
    assert back[1].images == [("study/loss.png", ""), ("study/w.png", "weights")]
    assert back[1].tables == [Table(["arm", "loss"], [["uniform", 3.5]], "cap"), Table(["x"], [])]
    assert Section.of(stored["report"]["sections"][1]).images[0] == ("loss.png", "")


def test_setup_table_shows_each_value_its_way() -> None:
    row = {
        "arms": ["uniform", "linupper"],
        "seeds": [2, 0],
        "params": 480_512,
        "tokens": 1_250_000,
        "tokens_per_param": 2.6015,
        "steps": 604,
        "seq_len": 128,
        "burn_in_fraction": 0.05,
        "burn_in_end_step": None,  # a run from before it was measured
        "burn_in_val_loss": 6.8712,
        "unigram_entropy": 6.8,
        "lr_warmup_fraction": 0.025,
        "temperature": "0.4",
    }
    t = setup_table([row])
    cells = dict(zip(t.columns, t.rows[0], strict=True))
    assert cells["arms"] == "uniform, linupper" and cells["seeds"] == "0, 2"
    assert cells["parameters"] == "480,512" and cells["tokens/param"] == "2.6"
    assert cells["burn-in"] == "5.0%" and cells["lr warm-up"] == "2.5%"
    assert cells["burn-in ended (step)"] is None and cells["val loss there"] == "6.871"
