"""The paper's toy study (arXiv 2502.06733, Figure 7): least squares in the interpolation regime.

Noise-free targets y = X theta* with more samples than parameters, so theta* fits every
training sample exactly and every per-sample loss can reach 0: reweighting changes the speed
of SGD, never the solution. The samples come in groups with different feature scales on two
blocks of coordinates: a common group that mostly spans the first block and a rare group
that mostly spans the second. Under uniform weights the rare group's directions are learned
slowly (few samples, little curvature); a loss-based strategy can notice that those samples
keep a high loss and shift weight to them.

Every strategy trains on the same data and the same minibatch order within a seed, through
the library's real path: per-sample squared losses -> `Reweighter.weighted_loss` (weights
over the minibatch, detached) -> autograd -> plain SGD step. All runs (strategies x learning
rates x seeds) advance together; `torch.func.vmap` maps the `Reweighter` over the runs so one
step costs a handful of tensor calls rather than one Python loop per run.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from lossreweight.reweighting import Reweighter, compute_weights, get_strategy

STRATEGIES: tuple[str, ...] = ("uniform", "linupper", "quadratic", "extremes")
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
QUICK_SEEDS: tuple[int, ...] = (0, 1)
DIVERGED_FACTOR = 1e4  # a run whose test loss exceeds this multiple of its initial value diverged
DTYPE = torch.float64  # data and parameters; the Reweighter computes weights in float32 itself


# -- configuration --------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """One kind of sample: its share of the data and its feature scale on the two blocks."""

    name: str
    fraction: float
    scale_first: float  # std of the features on the first half of the coordinates
    scale_second: float  # ... and on the second half


@dataclass(frozen=True)
class LinregConfig:
    dim: int = 32
    n_train: int = 512  # > dim: theta* is the unique interpolating parameter
    n_test: int = 4096
    groups: tuple[Group, ...] = (
        Group("common", 0.8, 1.0, 0.1),
        Group("rare", 0.2, 0.1, 1.0),
    )
    batch_size: int = 32
    steps: int = 1200  # budget per run; steps_to_target is None for a run that misses it
    lr: float = 0.1
    temperature: float = 1.0
    target: float = 1e-3  # reach target * initial test loss
    strategies: tuple[str, ...] = STRATEGIES
    # Swept with the main lr at r = temperature: from slow to past linupper's stability edge.
    ablation_lrs: tuple[float, ...] = (0.03, 0.3, 0.6, 1.2)
    ablation_temperature: float = 0.2
    ablation_temperature_lrs: tuple[float, ...] = (0.1, 0.3)  # small r at these lrs

    def __post_init__(self) -> None:
        if self.n_train <= self.dim:
            raise ValueError("n_train must exceed dim so the interpolating theta* is unique")
        if abs(sum(g.fraction for g in self.groups) - 1.0) > 1e-9:
            raise ValueError("group fractions must sum to 1")
        if self.batch_size > self.n_train:
            raise ValueError("batch_size must not exceed n_train")


def quick_config() -> LinregConfig:
    """The --quick budget (tests): fewer steps, same problem."""
    return replace(LinregConfig(), steps=300)


# -- data and minibatch order ---------------------------------------------------------------
@dataclass
class Problem:
    """Stacked per-seed data: index 0 of every tensor is the seed."""

    seeds: list[int]
    x: torch.Tensor  # [S, n, d]
    y: torch.Tensor  # [S, n]
    theta_star: torch.Tensor  # [S, d]
    group_of: torch.Tensor  # [S, n] long: the group of each training sample
    test_moment: torch.Tensor  # [S, d, d]: X_test^T X_test / n_test
    batches: torch.Tensor  # [S, steps, B] long: the minibatch order


def _group_sizes(cfg: LinregConfig, n: int) -> list[int]:
    sizes = [int(round(g.fraction * n)) for g in cfg.groups]
    sizes[0] += n - sum(sizes)  # rounding remainder to the first group
    return sizes


def sample_features(
    cfg: LinregConfig, n: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian features scaled per group and block; returns (x [n, d], group id [n])."""
    half = cfg.dim // 2
    xs, ids = [], []
    for k, (group, m) in enumerate(zip(cfg.groups, _group_sizes(cfg, n), strict=True)):
        scale = torch.cat(
            [
                torch.full((half,), group.scale_first, dtype=DTYPE),
                torch.full((cfg.dim - half,), group.scale_second, dtype=DTYPE),
            ]
        )
        xs.append(torch.randn(m, cfg.dim, generator=gen, dtype=DTYPE) * scale)
        ids.append(torch.full((m,), k, dtype=torch.long))
    return torch.cat(xs), torch.cat(ids)


def batch_order(n: int, batch_size: int, steps: int, gen: torch.Generator) -> torch.Tensor:
    """Minibatch indices [steps, B]: reshuffle every epoch, sample without replacement in it."""
    per_epoch = n // batch_size  # drop the ragged tail so every batch has B samples
    epochs = math.ceil(steps / per_epoch)
    perms = [torch.randperm(n, generator=gen)[: per_epoch * batch_size] for _ in range(epochs)]
    return torch.cat(perms).view(-1, batch_size)[:steps]


def make_problem(cfg: LinregConfig, seeds: Sequence[int]) -> Problem:
    """Data, theta* and batch order for each seed (independent generator per seed)."""
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("x", "y", "ts", "gid", "m", "b")}
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        theta_star = torch.randn(cfg.dim, generator=gen, dtype=DTYPE)
        x, gid = sample_features(cfg, cfg.n_train, gen)
        x_test, _ = sample_features(cfg, cfg.n_test, gen)
        parts["x"].append(x)
        parts["y"].append(x @ theta_star)  # noise-free: the interpolation regime
        parts["ts"].append(theta_star)
        parts["gid"].append(gid)
        parts["m"].append(x_test.T @ x_test / cfg.n_test)
        parts["b"].append(batch_order(cfg.n_train, cfg.batch_size, cfg.steps, gen))
    stack = {k: torch.stack(v) for k, v in parts.items()}
    return Problem(
        seeds=[int(s) for s in seeds],
        x=stack["x"],
        y=stack["y"],
        theta_star=stack["ts"],
        group_of=stack["gid"],
        test_moment=stack["m"],
        batches=stack["b"],
    )


def batch_checksum(indices: torch.Tensor) -> str:
    """sha256 (16 hex digits) of a run's minibatch indices, to prove the order is shared."""
    data = indices.detach().to(torch.int64).contiguous().cpu().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


# -- the weighted SGD step ------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """One training configuration; it runs once per seed."""

    strategy: str
    lr: float
    temperature: float


WeightedLossFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def batched_weighted_loss(reweighter: Reweighter, step: int) -> WeightedLossFn:
    """Map `Reweighter.weighted_loss` over rows of [runs, B] losses -> (loss [runs], w [runs, B]).

    Each row is one run's minibatch: one scope, weights normalised over its B samples, exactly
    as a single-process training loop calls the Reweighter. The weights are returned too (for
    the group-share diagnostic); they are the same detached weights the loss used.
    `reweighter.stats` set inside vmap are not readable afterwards; the study derives its own
    statistics from the returned weights.
    """

    def one_run(losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = reweighter.weights(losses.detach(), step=step)
        return reweighter.weighted_loss(losses, step=step, weights=w), w

    return torch.func.vmap(one_run)


def sgd_step(
    theta: torch.Tensor,
    xb: torch.Tensor,
    yb: torch.Tensor,
    lr: torch.Tensor,
    arms: Sequence[tuple[Reweighter, torch.Tensor]],
    step: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One weighted SGD step for every run at once.

    theta [R, d], xb [R, B, d], yb [R, B], lr [R]; `arms` pairs a Reweighter with the rows
    (runs) it drives. Per-sample loss l_i = (x_i . theta - y_i)^2 / 2; the runs' weighted losses
    are summed before one backward, which keeps their gradients separate (disjoint rows).
    Returns (new theta [R, d], weights [R, B]).
    """
    th = theta.detach().requires_grad_(True)
    losses = 0.5 * (torch.einsum("rbd,rd->rb", xb, th) - yb) ** 2
    weights = torch.zeros(losses.shape, dtype=torch.float32)
    total = losses.new_zeros(())
    for reweighter, rows in arms:
        loss, w = batched_weighted_loss(reweighter, step)(losses[rows])
        total = total + loss.sum()
        weights[rows] = w
    (grad,) = torch.autograd.grad(total, th)
    return theta - lr[:, None] * grad, weights


# -- running all arms x seeds together ------------------------------------------------------
@dataclass
class Trajectories:
    """Test loss and per-group weight share of every (arm, seed) run."""

    arms: list[Arm]
    seeds: list[int]
    test_loss: torch.Tensor  # [A, S, steps + 1]; inf after a run diverged
    group_share: torch.Tensor  # [A, S, steps, G]: share of the batch weight each group got
    max_weight: torch.Tensor  # [A, S, steps]: the largest weight in the batch
    diverged: torch.Tensor  # [A, S] bool
    checksums: list[list[str]]  # [A][S]: batch indices each run was actually fed


def _test_loss(theta: torch.Tensor, theta_star: torch.Tensor, moment: torch.Tensor) -> torch.Tensor:
    """Exact mean squared loss / 2 on the held-out set: e^T (X^T X / n) e / 2, e = theta - theta*."""
    e = theta - theta_star
    return 0.5 * torch.einsum("rd,rde,re->r", e, moment, e)


def _arm_groups(arms: Sequence[Arm], n_seeds: int) -> list[tuple[Reweighter, torch.Tensor]]:
    """One Reweighter per (strategy, temperature), with the run rows it drives."""
    rows: dict[tuple[str, float], list[int]] = {}
    for a, arm in enumerate(arms):
        rows.setdefault((arm.strategy, arm.temperature), []).extend(
            range(a * n_seeds, (a + 1) * n_seeds)
        )
    return [
        (Reweighter(strategy, temperature), torch.tensor(r))
        for (strategy, temperature), r in rows.items()
    ]


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: these tensors are tiny, so intra-op threads only add
    synchronisation (about 10x slower when other processes share the 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def simulate(problem: Problem, arms: Sequence[Arm], steps: int) -> Trajectories:
    """Train every arm on every seed; run r = arm * S + seed."""
    with single_thread():
        return _simulate(problem, arms, steps)


def _simulate(problem: Problem, arms: Sequence[Arm], steps: int) -> Trajectories:
    n_seeds = len(problem.seeds)
    n_runs = len(arms) * n_seeds
    seed_of = torch.arange(n_runs) % n_seeds  # which seed's data and batches each run uses
    lr = torch.tensor([arm.lr for arm in arms for _ in range(n_seeds)], dtype=DTYPE)
    groups = _arm_groups(arms, n_seeds)
    x, y, moment = problem.x[seed_of], problem.y[seed_of], problem.test_moment[seed_of]
    theta_star = problem.theta_star[seed_of]
    run_batches = problem.batches[seed_of]  # [R, steps, B]: what each run is fed
    n_groups = int(problem.group_of.max()) + 1
    group_onehot = torch.nn.functional.one_hot(problem.group_of[seed_of], n_groups).float()
    rows = torch.arange(n_runs)[:, None]

    theta = torch.zeros(n_runs, problem.x.shape[-1], dtype=DTYPE)
    losses = torch.full((n_runs, steps + 1), math.inf, dtype=DTYPE)
    shares = torch.zeros(n_runs, steps, n_groups)
    max_weight = torch.zeros(n_runs, steps)
    losses[:, 0] = _test_loss(theta, theta_star, moment)
    alive = torch.ones(n_runs, dtype=torch.bool)
    for t in range(steps):
        idx = run_batches[:, t]  # [R, B]
        new_theta, w = sgd_step(theta, x[rows, idx], y[rows, idx], lr, groups, t)
        shares[:, t] = torch.einsum("rb,rbg->rg", w, group_onehot[rows, idx])
        max_weight[:, t] = w.amax(dim=-1)
        loss = _test_loss(new_theta, theta_star, moment)
        # Freeze a diverged run (keep its last finite parameters) so no inf/NaN spreads.
        alive &= torch.isfinite(loss) & (loss <= DIVERGED_FACTOR * losses[:, 0])
        theta = torch.where(alive[:, None], new_theta, theta)
        losses[:, t + 1] = torch.where(alive, loss, math.inf)
    shape = (len(arms), n_seeds)
    checksums = [
        [batch_checksum(run_batches[a * n_seeds + s]) for s in range(n_seeds)]
        for a in range(len(arms))
    ]
    return Trajectories(
        arms=list(arms),
        seeds=problem.seeds,
        test_loss=losses.view(*shape, steps + 1),
        group_share=shares.view(*shape, steps, n_groups),
        max_weight=max_weight.view(*shape, steps),
        diverged=(~alive).view(shape),
        checksums=checksums,
    )


# -- the study plan -------------------------------------------------------------------------
def lr_grid(cfg: LinregConfig) -> list[float]:
    """The main lr and the sweep's lrs, ascending (the main lr is part of the sweep)."""
    return sorted({cfg.lr, *cfg.ablation_lrs})


def arm_for(cfg: LinregConfig, strategy: str, lr: float, temperature: float) -> Arm:
    # `uniform` ignores r, so its arm at any r is the one at the main r (run once, reused).
    return Arm(strategy, lr, cfg.temperature if strategy == "uniform" else temperature)


def plan_arms(cfg: LinregConfig) -> list[Arm]:
    """Every strategy at every lr of the grid at r = temperature, plus the small-r setting."""
    arms: list[Arm] = []
    settings = [(lr, cfg.temperature) for lr in lr_grid(cfg)]
    settings += [(lr, cfg.ablation_temperature) for lr in cfg.ablation_temperature_lrs]
    for lr, r in settings:
        for strategy in cfg.strategies:
            arm = arm_for(cfg, strategy, lr, r)
            if arm not in arms:
                arms.append(arm)
    return arms


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
            "loss": "per-sample (x . theta - y)^2 / 2; test loss = its mean on n_test held-out samples",
            "weights": "Reweighter(strategy, temperature).weighted_loss over each minibatch (scope = the batch)",
            "diverged_if": f"test loss non-finite or > {DIVERGED_FACTOR:g} x initial",
        },
    }


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
    from lossreweight.experiments import plotting as P  # matplotlib only when plotting

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
        P.plot_lines(
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
        band="none",
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


def write_report(
    out: Path, cfg: LinregConfig, summary: dict[str, Any], files: dict[str, str]
) -> Path:
    from lossreweight.experiments.plotting import Section, write_html_report

    groups = ", ".join(
        f"{g.name}: {g.fraction:.0%} of samples, feature std {g.scale_first:g} on the first half "
        f"of the coordinates and {g.scale_second:g} on the second"
        for g in cfg.groups
    )
    setup = [
        f"Least squares y = X theta*, no noise, d = {cfg.dim}, n = {cfg.n_train} training samples "
        f"(> d, so theta* interpolates every sample), {cfg.n_test} held-out test samples. Groups: {groups}.",
        f"Minibatch SGD from theta = 0, batch {cfg.batch_size}, {cfg.steps} steps, the same data "
        f"and minibatch order for every strategy within a seed. Weights from the library's "
        f"Reweighter over each minibatch. Seeds: {summary['seeds']}.",
        TARGET_RULE + f"; target = {cfg.target:g}. " + UNREACHED_RULE + ".",
    ]
    strategies = list(cfg.strategies)
    main_key = f"main: lr={cfg.lr:g}, r={cfg.temperature:g}"
    checks = [[seed, *row.values()] for seed, row in summary["batch_checksums"].items()]
    sections = [
        Section("Setup", setup),
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
    return write_html_report(out, "linreg: loss-based reweighting on toy least squares", sections)


# -- entry point ----------------------------------------------------------------------------
def run_linreg(
    out_dir: Path,
    *,
    quick: bool = False,
    seeds: list[int] | None = None,
    config: LinregConfig | None = None,
) -> dict[str, Any]:
    """Run the study; write summary.json, PNG plots and index.html into `out_dir`.

    quick: the test budget (fewer steps, seeds 0 and 1). `config` overrides the settings.
    Returns the summary (the content of summary.json).
    """
    start = time.perf_counter()
    cfg = config or (quick_config() if quick else LinregConfig())
    seeds = list(seeds) if seeds is not None else list(QUICK_SEEDS if quick else DEFAULT_SEEDS)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
    for s in cfg.strategies:
        get_strategy(s)  # fail early on a bad name, with the library's message
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    traj = simulate(make_problem(cfg, seeds), plan_arms(cfg), cfg.steps)
    summary = build_summary(cfg, traj, quick=quick)
    files = write_plots(out, cfg, traj, summary)
    files["html"] = write_report(out, cfg, summary, files).name
    summary["files"] = {"summary": "summary.json", **files}
    summary["runtime_s"] = round(time.perf_counter() - start, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary
