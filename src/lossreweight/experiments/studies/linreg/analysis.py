"""The linreg study's statistics: steps to target per run, per-strategy blocks per
(lr, r) setting, the paper's two claims, and summary.json."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from lossreweight.experiments.studies.linreg.simulation import (
    DIVERGED_FACTOR,
    Arm,
    LinregConfig,
    Trajectories,
    arm_for,
    lr_grid,
)


# -- statistics -----------------------------------------------------------------------------
def steps_to_target(relative_loss: torch.Tensor, target: float) -> list[int | None]:
    """Per run (row): the first step whose test loss <= target * initial, or None if never."""
    hit = relative_loss <= target
    first = hit.to(torch.int8).argmax(dim=-1)
    return [
        int(f) if h else None for f, h in zip(first.tolist(), hit.any(dim=-1).tolist(), strict=True)
    ]


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    std = float(t.std()) if len(values) > 1 else 0.0  # sample std (ddof = 1) across seeds
    return float(t.mean()), std


@dataclass
class ArmStats:
    per_seed: list[int | None]
    mean: float | None  # None unless every seed reached the target
    std: float | None
    lower_bound: float  # mean with unreached seeds counted as the budget (a lower bound)
    reached: int
    diverged: int
    final_loss: list[float | None]
    rare_share: float
    max_weight_x_b: float


def arm_stats(traj: Trajectories, a: int, cfg: LinregConfig, rare: int) -> ArmStats:
    loss = traj.test_loss[a]
    steps = steps_to_target(loss / loss[:, :1], cfg.target)
    # A run that diverged failed, even if it touched the target on its way up.
    steps = [None if d else s for s, d in zip(steps, traj.diverged[a].tolist(), strict=True)]
    reached = [s for s in steps if s is not None]
    mean, std = _mean_std(reached) if len(reached) == len(steps) else (None, None)
    lower = sum(s if s is not None else cfg.steps for s in steps) / len(steps)
    # Diagnostics over the steps each run spent getting to the target (the race that counts).
    window = [s if s is not None and s > 0 else cfg.steps for s in steps]
    share = [float(traj.group_share[a, i, :n, rare].mean()) for i, n in enumerate(window)]
    max_w = [float(traj.max_weight[a, i, :n].mean()) * cfg.batch_size for i, n in enumerate(window)]
    return ArmStats(
        per_seed=steps,
        mean=mean,
        std=std,
        lower_bound=lower,
        reached=len(reached),
        diverged=int(traj.diverged[a].sum()),
        final_loss=[_finite_or_none(v) for v in loss[:, -1].tolist()],
        rare_share=sum(share) / len(share),
        max_weight_x_b=sum(max_w) / len(max_w),
    )


def faster(a: ArmStats, b: ArmStats) -> bool | None:
    """Is `a` faster to the target than `b` (mean steps)? None when the data cannot tell.

    An unreached seed is censored at the budget, so a strategy's `lower_bound` bounds its true
    mean from below: `a` is faster if it always reached and its mean is below b's bound.
    """
    if a.mean is not None and b.mean is not None:
        return a.mean < b.mean
    if a.mean is not None:
        return True if a.mean < b.lower_bound else None
    if b.mean is not None:
        return False if b.mean <= a.lower_bound else None
    return None


def _ratio(uniform_steps: int | None, steps: int | None) -> float | None:
    return uniform_steps / steps if uniform_steps and steps else None


def _before(steps: int | None, other: int | None) -> bool:
    """Reached the target strictly earlier (never reaching counts as infinitely late)."""
    return steps is not None and (other is None or steps < other)


def best_lr(cfg: LinregConfig, stats: dict[Arm, ArmStats]) -> dict[str, dict[str, Any]]:
    """Each strategy's fastest lr on the grid at r = temperature (the tuned comparison)."""
    out = {}
    for s in cfg.strategies:
        cands = [(stats[arm_for(cfg, s, lr, cfg.temperature)].mean, lr) for lr in lr_grid(cfg)]
        cands = [(m, lr) for m, lr in cands if m is not None]
        m, lr = min(cands) if cands else (None, None)
        out[s] = {"lr": lr, "steps_to_target": m}
    return out


def setting_block(
    cfg: LinregConfig, stats: dict[Arm, ArmStats], lr: float, temperature: float
) -> dict[str, Any]:
    """steps_to_target and friends for every strategy at one (lr, r)."""
    st = {s: stats[arm_for(cfg, s, lr, temperature)] for s in cfg.strategies}
    uni = st.get("uniform")
    block: dict[str, Any] = {
        "lr": lr,
        "temperature": temperature,
        "steps_to_target": {s: v.mean for s, v in st.items()},
        "steps_to_target_std": {s: v.std for s, v in st.items()},
        "steps_to_target_per_seed": {s: v.per_seed for s, v in st.items()},
        "steps_to_target_lower_bound": {s: v.lower_bound for s, v in st.items()},
        "reached": {s: v.reached for s, v in st.items()},
        "diverged": {s: v.diverged for s, v in st.items()},
        "speedup_vs_uniform": {
            s: (uni.mean / v.mean if uni and uni.mean and v.mean else None) for s, v in st.items()
        },
        # Paired within a seed (same data, same batches): steps(uniform) / steps(strategy).
        "speedup_vs_uniform_per_seed": {
            s: [_ratio(u, x) for u, x in zip(uni.per_seed, v.per_seed, strict=True)]
            if uni
            else None
            for s, v in st.items()
        },
        "seeds_faster_than_uniform": {
            s: sum(_before(x, u) for u, x in zip(uni.per_seed, v.per_seed, strict=True))
            if uni
            else None
            for s, v in st.items()
        },
        "ranking": sorted(
            (s for s, v in st.items() if v.mean is not None), key=lambda s: st[s].mean
        ),
        "rare_weight_share": {s: v.rare_share for s, v in st.items()},
        "max_weight_x_batch": {s: v.max_weight_x_b for s, v in st.items()},
    }
    final = {}
    for s, v in st.items():
        vals = [x for x in v.final_loss if x is not None]
        m, sd = _mean_std(vals) if len(vals) == len(v.final_loss) else (None, None)
        final[s] = {"mean": m, "std": sd, "per_seed": v.final_loss}
    block["final_test_loss"] = final
    if "linupper" in st:
        others = [faster(st["linupper"], v) for s, v in st.items() if s != "linupper"]
        block["linupper_fastest"] = False if False in others else (None if None in others else True)
    if "quadratic" in st and uni:
        block["quadratic_faster_than_uniform"] = faster(st["quadratic"], uni)
    return block


# -- summary --------------------------------------------------------------------------------
TARGET_RULE = (
    "steps_to_target = the first SGD step at which the held-out test loss is <= target x the "
    "initial test loss (theta = 0); the mean and std are over seeds"
)
UNREACHED_RULE = (
    "a seed that never reaches the target within the budget, or diverges (even after touching "
    "the target), counts as null in "
    "steps_to_target_per_seed; then steps_to_target and its std are null for that strategy, "
    "`reached` says how many seeds made it, and steps_to_target_lower_bound counts the missing "
    "seeds as the budget (a lower bound on the true mean)"
)


def rare_group(cfg: LinregConfig) -> int:
    return min(range(len(cfg.groups)), key=lambda k: cfg.groups[k].fraction)


def _yes_no(v: bool | None) -> str:
    return {True: "yes", False: "no", None: "undecided"}[v]


def describe_block(name: str, block: dict[str, Any], budget: int) -> str:
    """One plain sentence per setting: the mean steps per strategy and the paper's two claims."""
    parts = []
    for s, m in block["steps_to_target"].items():
        if m is not None:
            parts.append(f"{s} {m:.1f}")
        elif block["diverged"][s]:
            parts.append(f"{s} diverged on {block['diverged'][s]} seed(s)")
        else:
            n_seeds = len(block["steps_to_target_per_seed"][s])
            parts.append(f"{s} reached on {block['reached'][s]}/{n_seeds} seeds in {budget} steps")
    text = f"{name}: mean steps to target: " + ", ".join(parts) + "."
    wins = block["seeds_faster_than_uniform"]
    n_seeds = len(block["steps_to_target_per_seed"]["uniform"]) if "uniform" in wins else 0
    if n_seeds:
        text += (
            " Seeds faster than uniform: "
            + ", ".join(f"{s} {k}/{n_seeds}" for s, k in wins.items() if s != "uniform")
            + "."
        )
    if "linupper_fastest" in block:
        text += f" LinUpper fastest: {_yes_no(block['linupper_fastest'])}."
    if "quadratic_faster_than_uniform" in block:
        text += f" Quadratic ahead of uniform: {_yes_no(block['quadratic_faster_than_uniform'])}."
    return text


def build_summary(cfg: LinregConfig, traj: Trajectories, *, quick: bool) -> dict[str, Any]:
    rare = rare_group(cfg)
    stats = {arm: arm_stats(traj, a, cfg, rare) for a, arm in enumerate(traj.arms)}
    main = setting_block(cfg, stats, cfg.lr, cfg.temperature)
    lr_blocks = {
        f"lr={lr:g}": setting_block(cfg, stats, lr, cfg.temperature) for lr in lr_grid(cfg)
    }
    r_blocks = {
        f"r={cfg.ablation_temperature:g},lr={lr:g}": setting_block(
            cfg, stats, lr, cfg.ablation_temperature
        )
        for lr in cfg.ablation_temperature_lrs
    }
    main_arms = {
        s: traj.arms.index(arm_for(cfg, s, cfg.lr, cfg.temperature)) for s in cfg.strategies
    }
    checksums = {
        str(seed): {s: traj.checksums[a][i] for s, a in main_arms.items()}
        for i, seed in enumerate(traj.seeds)
    }
    shared = all(
        len({traj.checksums[a][i] for a in range(len(traj.arms))}) == 1
        for i in range(len(traj.seeds))
    )
    conclusions = [describe_block(f"main (lr={cfg.lr:g}, r={cfg.temperature:g})", main, cfg.steps)]
    conclusions += [
        describe_block(f"ablation {k}", b, cfg.steps) for k, b in {**lr_blocks, **r_blocks}.items()
    ]
    tuned = best_lr(cfg, stats)
    conclusions.append(
        f"each strategy at its best lr of the grid (r={cfg.temperature:g}): "
        + ", ".join(
            f"{s} {v['steps_to_target']:.1f} (lr={v['lr']:g})"
            if v["lr"] is not None
            else f"{s} none"
            for s, v in tuned.items()
        )
        + "."
    )
    return {
        "study": "linreg",
        "paper": "arXiv 2502.06733, Figure 7 (toy least squares in the interpolation regime)",
        "quick": quick,
        "seeds": list(traj.seeds),
        "target": cfg.target,
        "target_rule": TARGET_RULE,
        "unreached_rule": UNREACHED_RULE,
        "budget_steps": cfg.steps,
        **main,
        "batch_checksums": checksums,
        "batch_order_shared_by_all_arms": shared,
        "ablations": {"lr": lr_blocks, "temperature": r_blocks, "lr_best": tuned},
        "conclusions": conclusions,
        "settings": {
            **asdict(cfg),
            "rare_group": cfg.groups[rare].name,
            "init": "theta = 0",
            "loss": (
                "per-sample (x . theta - y)^2 / 2; test loss = its mean on n_test held-out samples"
            ),
            "weights": (
                "Reweighter(strategy, temperature).weighted_loss over each minibatch "
                "(scope = the batch)"
            ),
            "diverged_if": f"test loss non-finite or > {DIVERGED_FACTOR:g} x initial",
        },
    }
