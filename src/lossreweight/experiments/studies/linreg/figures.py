"""The linreg study's plots and HTML page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lossreweight.experiments.studies.linreg.analysis import TARGET_RULE, UNREACHED_RULE, rare_group
from lossreweight.experiments.studies.linreg.simulation import (
    LinregConfig,
    Trajectories,
    arm_for,
    lr_grid,
)
from lossreweight.reweighting import compute_weights, get_strategy


# -- plots and report -----------------------------------------------------------------------
def weight_shape(
    strategy: str, temperature: float, n: int = 201
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, w * M) on an even grid of losses, through `compute_weights`: losses 0..1 normalise
    to x = 2 l - 1 in [-1, 1], and w * M = 1 is the uniform weight."""
    losses = torch.linspace(0.0, 1.0, n)
    w = compute_weights(losses, strategy=get_strategy(strategy), temperature=temperature)
    return 2.0 * losses - 1.0, w * n


def _relative_curves(traj: Trajectories, cfg: LinregConfig, lr: float, r: float) -> dict[str, Any]:
    out = {}
    for s in cfg.strategies:
        loss = traj.test_loss[traj.arms.index(arm_for(cfg, s, lr, r))]
        out[s] = (loss / loss[:, :1]).numpy()
    return out


def _x_window(block: dict[str, Any], budget: int) -> int:
    """Steps to show: 3x the slowest strategy's steps to target (the race), within the budget."""
    worst = max((v for v in block["steps_to_target_lower_bound"].values()), default=budget)
    return int(min(budget, max(50, 3 * worst)))


def _moving_average(a: torch.Tensor, k: int) -> torch.Tensor:
    """Trailing mean over k steps along the last axis (smooths the per-batch group share)."""
    c = torch.cumsum(torch.nn.functional.pad(a, (1, 0)), dim=-1)
    idx = torch.arange(1, a.shape[-1] + 1)
    lo = torch.clamp(idx - k, min=0)
    return (c[..., idx] - c[..., lo]) / (idx - lo)


def write_plots(
    out: Path, cfg: LinregConfig, traj: Trajectories, summary: dict[str, Any]
) -> dict[str, str]:
    from lossreweight.experiments import plots as P  # matplotlib only when plotting

    files: dict[str, str] = {}
    tgt = cfg.target
    ylabel = "test loss / initial test loss"
    ylim = (tgt * 1e-3, 3.0)  # the race to the target; far below it is float noise and slow to draw

    # Main: test loss against steps, mean over seeds with the min-max band.
    window = _x_window(summary, cfg.steps)
    fig, (ax,) = P.new_figure(1, panel_size=(7.0, 4.2))
    curves = {
        s: c[:, : window + 1]
        for s, c in _relative_curves(traj, cfg, cfg.lr, cfg.temperature).items()
    }
    P.plot_mean_spread(
        ax,
        curves,
        ylabel=ylabel,
        hline=tgt,
        hline_label=f"target {tgt:g}",
        ylim=ylim,
        title=f"lr={cfg.lr:g}, r={cfg.temperature:g}, {len(traj.seeds)} seeds (mean, min-max)",
    )
    files["test_loss"] = P.save_figure(fig, out / "test_loss.png").name

    # The strategies' weight shapes at r = 1 and at the small r.
    temps = [cfg.temperature, cfg.ablation_temperature]
    fig, axes = P.new_figure(len(temps), panel_size=(5.0, 3.6))
    for ax, r in zip(axes, temps, strict=True):
        shapes = {s: weight_shape(s, r) for s in cfg.strategies}
        x = next(iter(shapes.values()))[0]
        plot_lines(
            ax,
            x,
            {s: w for s, (_, w) in shapes.items()},
            logy=r < 0.5,
            title=f"r = {r:g}",
            xlabel="normalised loss x",
            ylabel="weight x M (1 = uniform)",
        )
    files["weight_shapes"] = P.save_figure(fig, out / "weight_shapes.png").name

    # The rare group's share of the batch weight (what reweighting changes here).
    frac = cfg.groups[rare_group(cfg)].fraction
    fig, (ax,) = P.new_figure(1, panel_size=(7.0, 3.6))
    share = {}
    for s in cfg.strategies:
        a = traj.arms.index(arm_for(cfg, s, cfg.lr, cfg.temperature))
        share[s] = _moving_average(traj.group_share[a, :, :window, rare_group(cfg)], 10).numpy()
    P.plot_mean_spread(
        ax,
        share,
        logy=False,
        band=False,
        hline=frac,
        hline_label="sample share",
        ylabel=f"weight share of '{cfg.groups[rare_group(cfg)].name}'",
        title="share of minibatch weight on the rare group (10-step average)",
    )
    files["rare_weight_share"] = P.save_figure(fig, out / "rare_weight_share.png").name

    # Ablations: curves per setting, then steps to target per setting as bars.
    settings = [(lr, cfg.temperature) for lr in lr_grid(cfg)]
    settings += [(lr, cfg.ablation_temperature) for lr in cfg.ablation_temperature_lrs]
    blocks = {**summary["ablations"]["lr"], **summary["ablations"]["temperature"]}
    fig, axes = P.new_figure(len(settings), ncols=3, panel_size=(4.6, 3.4))
    for ax, (lr, r), block in zip(axes, settings, blocks.values(), strict=True):
        n = _x_window(block, cfg.steps)
        curves = {s: c[:, : n + 1] for s, c in _relative_curves(traj, cfg, lr, r).items()}
        P.plot_mean_spread(
            ax, curves, hline=tgt, title=f"lr={lr:g}, r={r:g}", ylabel=ylabel, ylim=ylim
        )
    files["ablation_curves"] = P.save_figure(fig, out / "ablation_curves.png").name

    bars, errs, missing = {}, {}, {}
    for key, block in blocks.items():
        label = (
            f"{key} (main)"
            if block["lr"] == cfg.lr and block["temperature"] == cfg.temperature
            else key
        )
        bars[label] = block["steps_to_target"]
        errs[label] = block["steps_to_target_std"]
        missing[label] = {s: "diverged" for s, n in block["diverged"].items() if n}
    fig, (ax,) = P.new_figure(1, panel_size=(10.0, 4.0))
    P.plot_grouped_bars(
        ax,
        bars,
        errors=errs,
        logy=True,
        missing_label="not reached",
        missing_labels=missing,
        ylabel=f"steps to {tgt:g} x initial loss",
        title="steps to target (mean +- std over seeds; lower is faster)",
    )
    files["ablation_steps"] = P.save_figure(fig, out / "ablation_steps.png").name
    return files


def _steps_table(blocks: dict[str, dict[str, Any]], strategies: Sequence[str]) -> dict[str, Any]:
    rows = []
    for key, block in blocks.items():
        row: list[Any] = [key]
        for s in strategies:
            m, sd = block["steps_to_target"][s], block["steps_to_target_std"][s]
            if m is not None:
                row.append(f"{m:.1f} \u00b1 {sd:.1f}")
            else:
                n = len(block["steps_to_target_per_seed"][s])
                tag = (
                    f"diverged {block['diverged'][s]}/{n}"
                    if block["diverged"][s]
                    else "not reached"
                )
                row.append(f"{tag} (reached {block['reached'][s]}/{n})")
        rows.append(row)
    return {"columns": ["setting", *strategies], "rows": rows}


def setup_paragraphs(cfg: LinregConfig, summary: dict[str, Any]) -> list[str]:
    return [
        "A toy problem, not a language model: 'parameters' are the coordinates of theta and "
        "'samples' replace tokens. No burn-in (the toy's losses are informative from step 0)."
    ]


def setup_table(cfg: LinregConfig, summary: dict[str, Any]) -> Any:
    from lossreweight.experiments.page import Table

    samples = cfg.steps * cfg.batch_size
    return Table(
        ["parameters", "samples seen", "samples/param", "steps", "burn-in", "r", "lr", "seeds"],
        [
            [
                cfg.dim,
                samples,
                samples / cfg.dim,
                cfg.steps,
                "0%",
                cfg.temperature,
                cfg.lr,
                ", ".join(str(s) for s in summary["seeds"]),
            ]
        ],
        "setup (main setting)",
    )


TITLE = "linreg: loss-based reweighting on toy least squares"


def report_sections(cfg: LinregConfig, summary: dict[str, Any], files: dict[str, str]) -> list[Any]:
    """The page's sections (written with the summary by `page.write_study`)."""
    from lossreweight.experiments.page import Section

    groups = ", ".join(
        f"{g.name}: {g.fraction:.0%} of samples, feature std {g.scale_first:g} on the first half "
        f"of the coordinates and {g.scale_second:g} on the second"
        for g in cfg.groups
    )
    setup = [
        f"Least squares y = X theta*, no noise, d = {cfg.dim}, n = {cfg.n_train} training samples "
        f"(> d, so theta* interpolates every sample), {cfg.n_test} held-out test samples. "
        f"Groups: {groups}.",
        f"Minibatch SGD from theta = 0, batch {cfg.batch_size}, {cfg.steps} steps, the same data "
        f"and minibatch order for every strategy within a seed. Weights from the library's "
        f"Reweighter over each minibatch. Seeds: {summary['seeds']}.",
        TARGET_RULE + f"; target = {cfg.target:g}. " + UNREACHED_RULE + ".",
    ]
    strategies = list(cfg.strategies)
    main_key = f"main: lr={cfg.lr:g}, r={cfg.temperature:g}"
    checks = [[seed, *row.values()] for seed, row in summary["batch_checksums"].items()]
    sections = [
        Section("Verdict", [summary["verdict"]]),
        Section("Setup", setup_paragraphs(cfg, summary), tables=[setup_table(cfg, summary)]),
        Section("Protocol", setup),
        Section(
            "Main result",
            summary["conclusions"][:1],
            images=[
                (files["test_loss"], "test loss / initial, mean over seeds, min-max band"),
                (files["rare_weight_share"], "weight share of the rare group"),
            ],
            tables=[
                {**_steps_table({main_key: summary}, strategies), "caption": "steps to target"}
            ],
        ),
        Section("Weight shapes", [], images=[(files["weight_shapes"], "w x M against x")]),
        Section(
            "Ablations: learning rate and small temperature",
            summary["conclusions"][1:]
            + ["uniform ignores r: its row in the small-r settings is the r = 1 run at that lr."],
            images=[files["ablation_steps"], files["ablation_curves"]],
            tables=[
                {
                    **_steps_table(
                        {**summary["ablations"]["lr"], **summary["ablations"]["temperature"]},
                        strategies,
                    ),
                    "caption": "steps to target (mean \u00b1 std)",
                }
            ],
        ),
        Section(
            "Same minibatch order",
            [
                f"sha256 of each run's batch indices; identical across every arm of a seed: "
                f"{summary['batch_order_shared_by_all_arms']}."
            ],
            tables=[
                {
                    "columns": [
                        "seed",
                        *summary["batch_checksums"][next(iter(summary["batch_checksums"]))],
                    ],
                    "rows": checks,
                }
            ],
        ),
    ]
    return sections


def plot_lines(
    ax: Any,
    x: Any,
    ys: Mapping[str, Any],
    *,
    logy: bool = False,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    colors: Mapping[str, str] | None = None,
    styles: Mapping[str, str] | None = None,
) -> None:
    """Plain curves y(x), one per label (e.g. weight as a function of the normalised loss).
    `x` may map each label to its own x values; `colors`/`styles` override per label."""
    import numpy as np

    from lossreweight.experiments import plots as P

    for i, (name, y) in enumerate(ys.items()):
        xs = x.get(name) if isinstance(x, Mapping) else x
        color = (colors or {}).get(name) or P.color_for(name, i)
        ax.plot(
            np.asarray(xs),
            np.asarray(y, dtype=float),
            color=color,
            label=name,
            ls=(styles or {}).get(name, "-"),
        )
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
