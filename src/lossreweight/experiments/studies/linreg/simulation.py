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
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from lossreweight.reweighting import Reweighter

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
    """Exact mean squared loss / 2 on the held-out set.

    It is e^T (X^T X / n) e / 2 with e = theta - theta*.
    """
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
