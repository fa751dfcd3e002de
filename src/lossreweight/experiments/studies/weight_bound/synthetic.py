"""Synthetic batches for the `weight-bound` study: controlled loss distributions, the sweep of
max(w) x M over batch sizes and temperatures (with and without the cap), and its plots."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from matplotlib.ticker import FuncFormatter

from lossreweight.experiments import plots as P
from lossreweight.reweighting import Reweighter, stats_to_python

CAP = 2.0
BOUND = 2.0  # the paper's claim: max(w) <= 2/M, i.e. max(w) x M <= 2

Sampler = Callable[[int, torch.Generator], torch.Tensor]


def _symmetric(m: int, g: torch.Generator) -> torch.Tensor:
    return 5.0 + torch.randn(m, generator=g)


def _right_skewed(m: int, g: torch.Generator) -> torch.Tensor:
    x = 5.0 + 0.3 * torch.randn(m, generator=g)
    x[0] = 10.0  # one sample far above the rest stretches the range
    return x


def _bimodal(m: int, g: torch.Generator) -> torch.Tensor:
    x = 3.0 + 0.3 * torch.randn(m, generator=g)
    hard = torch.randperm(m, generator=g)[: max(1, m // 4)]
    x[hard] += 4.0  # a quarter of the batch is hard
    return x


def _left_skewed(m: int, g: torch.Generator) -> torch.Tensor:
    x = 5.0 + 0.3 * torch.randn(m, generator=g)
    x[0] = 0.5  # one sample far below the rest
    return x


DISTRIBUTIONS: dict[str, Sampler] = {
    "symmetric": _symmetric,
    "right-skewed (1 high outlier)": _right_skewed,
    "bimodal (25% hard)": _bimodal,
    "left-skewed (1 low outlier)": _left_skewed,
}


def synthetic_sweep(
    sizes: list[int], temperatures: list[float], draws: int, seed: int = 0
) -> dict[str, Any]:
    """max(w) x M over `draws` random batches per (distribution, r, M), with and without the cap.

    Also checks the explanation above on every batch: max(w) x M <= M / n_top.
    """
    out: dict[str, Any] = {}
    explained = True
    capped_ok = True
    for dist, sample in DISTRIBUTIONS.items():
        out[dist] = {}
        for r in temperatures:
            plain, capped = Reweighter("linupper", r), Reweighter("linupper", r, max_weight=CAP)
            rows = {}
            for m in sizes:
                g = torch.Generator().manual_seed(seed)
                mw, mw_cap, ess, ess_cap, ntop = [], [], [], [], []
                for _ in range(draws):
                    losses = sample(m, g)
                    w, s = plain.weights_and_stats(losses)
                    s = stats_to_python(s)
                    c = stats_to_python(capped.weights_and_stats(losses)[1])
                    x = 2 * losses - losses.max() - losses.min()
                    n_top = int((x >= 0).sum())
                    explained &= float(w.max()) * m <= m / n_top * (1 + 1e-4)
                    capped_ok &= c["max_weight_x_m"] <= CAP * (1 + 1e-4)
                    mw.append(s["max_weight_x_m"])
                    mw_cap.append(c["max_weight_x_m"])
                    ess.append(s["ess_fraction"])
                    ess_cap.append(c["ess_fraction"])
                    ntop.append(n_top / m)
                rows[str(m)] = {
                    "max_weight_x_m_mean": sum(mw) / draws,
                    "max_weight_x_m_min": min(mw),
                    "max_weight_x_m_max": max(mw),
                    "frac_batches_above_bound": sum(v > BOUND + 1e-6 for v in mw) / draws,
                    "capped_max_weight_x_m_max": max(mw_cap),
                    "ess_fraction": sum(ess) / draws,
                    "capped_ess_fraction": sum(ess_cap) / draws,
                    "top_half_fraction": sum(ntop) / draws,
                }
            out[dist][f"{r:g}"] = rows
    return {
        "results": out,
        "sizes": sizes,
        "temperatures": temperatures,
        "draws": draws,
        "explained_by_top_half": explained,
        "cap_holds": capped_ok,
        "limit_one_outlier": {f"{r:g}": math.exp(1 / r) for r in temperatures},
    }


def plot_synthetic(path: Path, syn: dict[str, Any]) -> Path:
    dists = list(syn["results"])
    fig, axes = P.new_figure(len(dists), ncols=2, panel_size=(5.4, 3.8))
    colors = P.colors_for([f"r={r:g}" for r in syn["temperatures"]])
    for ax, dist in zip(axes, dists, strict=True):
        for r in syn["temperatures"]:
            rows = syn["results"][dist][f"{r:g}"]
            ms = [int(m) for m in rows]
            label = f"r={r:g}"
            ax.plot(
                ms,
                [rows[str(m)]["max_weight_x_m_mean"] for m in ms],
                marker="o",
                color=colors[label],
                label=label,
            )
            ax.fill_between(
                ms,
                [rows[str(m)]["max_weight_x_m_min"] for m in ms],
                [rows[str(m)]["max_weight_x_m_max"] for m in ms],
                color=colors[label],
                alpha=0.15,
                lw=0,
            )
        ax.axhline(BOUND, color="black", ls=":", lw=1, label="2 (the paper's bound; the cap)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 2, 5, 10 rather than 2x10^0
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.xaxis.set_major_formatter(plain)
        ax.set_xlabel("batch size M")
        ax.set_ylabel("max(w) x M (no cap)")
        ax.set_title(dist)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return P.save_figure(fig, path)


def plot_examples(path: Path, m: int = 64, r: float = 0.4, seed: int = 0) -> Path:
    """w x M against the loss for one batch of each distribution, without and with the cap."""
    fig, axes = P.new_figure(len(DISTRIBUTIONS), ncols=2, panel_size=(5.0, 3.4))
    for ax, (dist, sample) in zip(axes, DISTRIBUTIONS.items(), strict=True):
        losses = sample(m, torch.Generator().manual_seed(seed))
        order = torch.argsort(losses)
        for cap, style, label in ((None, "-", "no cap"), (CAP, "--", f"cap {CAP:g}")):
            w = Reweighter("linupper", r, max_weight=cap).weights(losses)
            ax.plot(
                losses[order].numpy(), (w[order] * m).numpy(), ls=style, marker=".", label=label
            )
        ax.axhline(BOUND, color="black", ls=":", lw=1)
        ax.set_title(f"{dist}, M={m}, r={r:g}")
        ax.set_xlabel("per-sample loss")
        ax.set_ylabel("w x M")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return P.save_figure(fig, path)
