"""Study `temperature`: LinUpper at r in {0.2, 0.4, 0.6, 0.8, 1.0, 100} (the paper's
sensitivity sweep) and the schedules of SPEC 3 (a step warm-up at r = 100 then 0.4; linear
and cosine annealing 1.0 -> 0.2), against uniform, on the same batches."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from lossreweight.experiments import plotting as P
from lossreweight.experiments.arm_plots import standard_plots
from lossreweight.experiments.compare import standard_sections, train_arms
from lossreweight.experiments.plotting import Section, Table
from lossreweight.experiments.runs import Arm, Log
from lossreweight.experiments.studies.common import (
    BASE_CONFIG,
    diff_text,
    full_scale,
    quick_scale,
    study_dir,
)
from lossreweight.experiments.study import write_study
from lossreweight.experiments.summary import fmt_pm

NAME = "temperature"
TEMPERATURES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0, 100.0)


def scale(quick: bool):  # noqa: ANN201 - a Scale
    return quick_scale(seeds=(0,), steps=8) if quick else full_scale(100, 20, (0,))


def _r_label(r: float) -> str:
    return f"r={r:g}"


def schedules(steps: int) -> dict[str, str]:
    """label -> reweight.temperature override value (YAML flow), scaled to the run length.

    The step warm-up holds r = 100 (nearly uniform) for the first quarter, like the Llama
    code's 2000 steps; the annealing schedules go from 1.0 to 0.2 over the whole run.
    """
    warm = max(1, steps // 4)
    return {
        "step-100-to-0.4": f"{{kind: step, r: 0.4, r_warm: 100, switch_step: {warm}}}",
        "linear-1-to-0.2": f"{{kind: linear, r_start: 1.0, r_end: 0.2, span: {steps}}}",
        "cosine-1-to-0.2": f"{{kind: cosine, r_start: 1.0, r_end: 0.2, span: {steps}}}",
    }


def arms(steps: int) -> list[Arm]:
    out = [Arm.strategy("uniform")]
    out += [Arm(_r_label(r), ("reweight.strategy=linupper", f"reweight.temperature={r:g}")) for r in TEMPERATURES]
    out += [Arm(label, ("reweight.strategy=linupper", f"reweight.temperature={spec}"))
            for label, spec in schedules(steps).items()]
    return out


def arm_colors(steps: int) -> dict[str, str]:
    """Constant r along a sequential colour map (small r dark), schedules in distinct colours."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    out = {"uniform": P.STRATEGY_COLORS["uniform"]}
    for i, r in enumerate(TEMPERATURES):
        out[_r_label(r)] = matplotlib_hex(cmap(i / max(len(TEMPERATURES) - 1, 1) * 0.9))
    for label, color in zip(schedules(steps), ("#d62728", "#ff7f0e", "#e377c2"), strict=True):
        out[label] = color
    return out


def matplotlib_hex(rgba: tuple[float, ...]) -> str:
    from matplotlib.colors import to_hex

    return to_hex(rgba)


def plot_sweep(path: Path, summary: dict[str, Any], steps: int) -> Path:
    """Final val loss and mean max(w)xM against r (log axis); uniform and the schedules as lines."""
    runs = summary["runs"]
    rs = list(TEMPERATURES)
    labels = [_r_label(r) for r in rs]
    fig, (a1, a2) = P.new_figure(2, panel_size=(5.6, 3.8))
    for ax, key, ylabel in ((a1, "val_loss", "final validation loss"),
                            (a2, "max_weight_x_m", "mean max(w) x M over training")):
        def get(label: str, key: str = key) -> float | None:
            r = runs[label]
            return r["weights"].get(key) if key == "max_weight_x_m" else r[key]

        def err(label: str, key: str = key) -> float:
            return 0.0 if key == "max_weight_x_m" else (runs[label]["std"].get(key) or 0.0)

        ys = [get(lab) for lab in labels]
        ax.errorbar(rs, [math.nan if y is None else y for y in ys], yerr=[err(lab) for lab in labels],
                    color=P.STRATEGY_COLORS["linupper"], marker="o", capsize=3, label="linupper, constant r")
        colors = arm_colors(steps)
        for label in schedules(steps):
            y = get(label)
            if y is not None:
                ax.axhline(y, color=colors[label], ls="--", lw=1.2, label=label)
        y = get("uniform")
        if y is not None:
            ax.axhline(y, color=P.STRATEGY_COLORS["uniform"], ls=":", lw=1.5, label="uniform")
        ax.set_xscale("log")
        ax.set_xlabel("temperature r")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    a1.set_title("final validation loss vs r")
    a2.set_title("weight concentration vs r")
    return P.save_figure(fig, path)


def sweep_table(summary: dict[str, Any]) -> Table:
    rows = []
    for arm, r in summary["runs"].items():
        d = r.get("diff_vs_uniform") or {}
        rows.append([arm, fmt_pm(r["val_loss"], r["std"]["val_loss"]),
                     fmt_pm(r["val_loss_domain_avg"], r["std"]["val_loss_domain_avg"]),
                     None if arm == "uniform" or not d else d["val_loss"]["mean"],
                     r["weights"].get("max_weight_x_m"), r["weights"].get("max_weight_x_m_max"),
                     r["weights"].get("ess_fraction")])
    return Table(["arm", "val_loss", "domain avg", "val_loss - uniform", "mean max(w)xM", "peak max(w)xM",
                  "ESS / M"], rows, "temperature sweep (linupper) and schedules")


def run_temperature(out_dir: Path | str | None = None, *, quick: bool = False, log: Log | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    out = study_dir(NAME, out_dir, quick)
    sc = scale(quick)
    arm_list = arms(sc.steps)
    records, summary = train_arms(BASE_CONFIG, out, arm_list, sc.seeds, sc.overrides, log=log,
                                  reuse_from=[out.parent])
    colors = arm_colors(sc.steps)
    files = standard_plots(out, records, summary, colors=colors)
    files["temperature_sweep"] = plot_sweep(out / "temperature_sweep.png", summary, sc.steps).name
    conclusions = [diff_text(a.name, summary["runs"][a.name], "uniform") for a in arm_list if a.name != "uniform"]
    summary.update({
        "study": NAME, "quick": quick, "steps": sc.steps, "temperatures": list(TEMPERATURES),
        "schedules": schedules(sc.steps), "conclusions": conclusions,
        "files": {**files, "html": "index.html", "summary": "summary.json"},
        "runtime_s": round(time.perf_counter() - start, 2),
    })
    sections = standard_sections(summary, files, intro=[
        f"LinUpper at constant r in {', '.join(f'{r:g}' for r in TEMPERATURES)} and three schedules "
        f"({'; '.join(f'{k}: {v}' for k, v in schedules(sc.steps).items())}), {sc.steps} steps of the "
        "tiny preset; r = 100 is nearly uniform (max/min weight <= e^(1/100))."
    ])
    sections.insert(1, Section("Sensitivity to r", conclusions,
                               images=[(files["temperature_sweep"], "final val loss and weight concentration vs r")],
                               tables=[sweep_table(summary)]))
    return write_study(out, summary, "temperature: LinUpper sensitivity to r and schedules", sections)
