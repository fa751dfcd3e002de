"""The statistics of a study, from its finished runs: per-arm means and spreads over seeds,
paired differences to a baseline with 95% t-intervals across seeds, steps to reach the
baseline's final loss, weight diagnostics over time, and the setup as trained (parameters,
tokens per parameter, burn-in: the regime).

Pure functions of `RunRecord`s (final.json, metrics.jsonl, resolved config); no training, no
plotting. Runs are read under the metric vocabulary (lossreweight.metric_names: eval/loss,
eval/<domain>/loss, train/loss, reweight/<stat>, reweight/<stat>/<domain>). `summarize` writes
the one summary.json schema every study shares, the studies' own output: per arm under "runs"
(its numbers named for what they summarise: `val_loss` the mean final eval/loss over seeds,
`val_loss_domain_avg` of eval/domain_avg_loss, `worst_domain_loss` the highest eval/<domain>/loss,
`val_loss_by_domain`, `weights` the means of the reweight/ statistics under their statistic
names), and each arm's paired differences under "diff_vs_<baseline>".
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from lossreweight.experiments.runs import RunRecord
from lossreweight.metric_names import (
    DOMAIN_AVG_LOSS,
    LOSS,
    TRAIN_LOSS,
    domain_loss_name,
    domain_losses,
    reweight_name,
)

Records = Mapping[str, Mapping[int, RunRecord]]  # arm -> seed -> run

# Per-step weight diagnostics averaged over training (SPEC 5, logged by the trainer as
# reweight/<statistic>; summarised under the statistic's name).
WEIGHT_KEYS: tuple[str, ...] = (
    "max_weight_x_m",
    "ess_fraction",
    "weight_loss_corr",
    "frac_above_2_over_m",
    "entropy_fraction",
)


# -- small statistics -----------------------------------------------------------------------
def finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def mean(xs: Sequence[float | None]) -> float | None:
    """Mean of the values, or None when any is missing (a missing seed is not silently dropped)."""
    if not xs or any(not finite(x) for x in xs):
        return None
    return float(statistics.fmean(xs))


def std(xs: Sequence[float | None]) -> float | None:
    """Sample std over seeds; None for one seed or a missing value."""
    if len(xs) < 2 or any(not finite(x) for x in xs):
        return None
    return float(statistics.stdev(xs))


def ci95(xs: Sequence[float | None]) -> list[float] | None:
    """The 95% t-interval of the mean over seeds, [lo, hi]; None for one seed or a missing value.

    Seeds are the independent replicates, so the interval is mean +- t(0.975, n-1) * s / sqrt(n).
    """
    m, s = mean(xs), std(xs)
    if m is None or s is None:
        return None
    half = t975(len(xs) - 1) * s / math.sqrt(len(xs))
    return [m - half, m + half]


# Student's t 0.975 quantiles for 1..30 degrees of freedom (scipy is not a dependency).
# fmt: off
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
# fmt: on


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion around the normal quantile; < 1e-3 off above 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def spread(xs: Sequence[float | None]) -> dict[str, Any]:
    return {"per_seed": list(xs), "mean": mean(xs), "std": std(xs), "ci95": ci95(xs)}


# -- curves ---------------------------------------------------------------------------------
def series(run: RunRecord, key: str, *, evals_only: bool = False) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric (its name, e.g. eval/loss or reweight/max_weight_x_m) over
    a run's records that have it."""
    rows = run.evals if evals_only else run.metrics
    pts = [(r["step"], r.get(key)) for r in rows]
    pts = [(s, float(v)) for s, v in pts if finite(v)]
    return [s for s, _ in pts], [v for _, v in pts]


def stacked(
    runs: Sequence[RunRecord], key: str, *, evals_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A metric of several runs (seeds) on their common steps: (steps [T], values [runs, T])."""
    per = [dict(zip(*series(r, key, evals_only=evals_only), strict=True)) for r in runs]
    common = sorted(set.intersection(*(set(p) for p in per))) if per else []
    return np.asarray(common, dtype=float), np.asarray(
        [[p[s] for s in common] for p in per], dtype=float
    )


def steps_to_reach(steps: Sequence[float], losses: Sequence[float], target: float) -> float | None:
    """First step at which a validation-loss curve reaches `target`, interpolating linearly
    between evaluation points; None if it never does. A curve already below the target at
    its first evaluation returns that step (the curve says nothing earlier)."""
    prev: tuple[float, float] | None = None
    for s, v in zip(steps, losses, strict=True):
        if v <= target:
            if prev is None or prev[1] == v:
                return float(s)
            s0, v0 = prev
            return float(s0 + (v0 - target) / (v0 - v) * (s - s0))
        prev = (s, v)
    return None


# -- one run --------------------------------------------------------------------------------
def mean_domain_loss(run: RunRecord, domains: Sequence[str]) -> float | None:
    """The final validation loss averaged over `domains` (e.g. the clean natural-text ones)."""
    by = domain_losses(run.final)
    return mean([by.get(d) for d in domains])


def share_after(run: RunRecord, statistic: str, domain: str, after: float | None) -> float | None:
    """A per-domain reweighting statistic (e.g. domain_weight_share) averaged over the logged
    steps after `after` (the burn-in's end); None when there are none or `after` is None."""
    if after is None:
        return None
    xs, ys = series(run, reweight_name(statistic, domain))
    vals = [y for x, y in zip(xs, ys, strict=True) if x > after]
    return mean(vals) if vals else None


def measured_burn_in(final: Mapping[str, Any]) -> dict[str, Any]:
    """Where a run's burn-in ended, as the trainer measured it (final.json's `burn_in`: step,
    rule, validation loss, unigram entropy); {} for runs from before it was recorded."""
    return final.get("burn_in") or {}


def worst_domain_loss(run: RunRecord) -> float | None:
    """The highest final validation loss over the domains (the GPT-2 code's third metric)."""
    vals = [v for v in domain_losses(run.final).values() if finite(v)]
    return max(vals) if vals else None


def _by_domain(run: RunRecord, domain: str) -> float | None:
    return run.final.get(domain_loss_name(domain))


# The final values every arm is summarised on, and paired with the baseline on, per seed
# (besides each domain's loss): summary key -> its value in a run.
FINAL: dict[str, Callable[[RunRecord], float | None]] = {
    "val_loss": lambda r: r.final.get(LOSS),
    "val_loss_domain_avg": lambda r: r.final.get(DOMAIN_AVG_LOSS),
    "worst_domain_loss": worst_domain_loss,
}


def weight_means(run: RunRecord) -> dict[str, Any]:
    """Each weight diagnostic averaged over the logged steps (max_weight_x_m also its max)."""
    out: dict[str, Any] = {}
    for key in WEIGHT_KEYS:
        _, v = series(run, reweight_name(key))
        out[key] = float(np.mean(v)) if v else None
    _, mw = series(run, reweight_name("max_weight_x_m"))
    out["max_weight_x_m_max"] = float(np.max(mw)) if mw else None
    for key in ("domain_weight_share", "domain_sample_share"):
        rows = [row for r in run.metrics if (row := per_domain(r, key))]
        if rows:
            out[key] = {
                d: float(np.mean([row[d] for row in rows if finite(row.get(d))])) for d in rows[0]
            }
    return out


def per_domain(record: Mapping[str, Any], statistic: str) -> dict[str, Any]:
    """`{domain: value}` of a per-domain statistic (reweight/<statistic>/<domain>) in a record."""
    prefix = reweight_name(statistic) + "/"
    return {k[len(prefix) :]: v for k, v in record.items() if k.startswith(prefix)}


def first_train_loss(run: RunRecord) -> float | None:
    """train/loss logged at step 1: the loss of the first batch under the initial weights,
    equal across strategies that share init and batches (None when step 1 was not logged)."""
    first = run.metrics[0] if run.metrics else {}
    return first.get(TRAIN_LOSS) if first.get("step") == 1 else None


# -- all arms -------------------------------------------------------------------------------
def _domains(records: Records) -> list[str]:
    seen: list[str] = []
    for by_seed in records.values():
        for run in by_seed.values():
            seen += [d for d in domain_losses(run.final) if d not in seen]
    return seen


def _arm_summary(runs: list[RunRecord], domains: list[str]) -> dict[str, Any]:
    steps, tokens = [r.final.get("steps") for r in runs], [r.final.get("tokens") for r in runs]
    per_seed: dict[str, Any] = {k: [get(r) for r in runs] for k, get in FINAL.items()}
    per_seed["val_loss_by_domain"] = {d: [_by_domain(r, d) for r in runs] for d in domains}
    weights = [weight_means(r) for r in runs]
    return {
        "seeds": [r.seed for r in runs],
        "steps": steps[0] if len(set(steps)) == 1 else steps,
        "tokens": tokens[0] if len(set(tokens)) == 1 else tokens,
        **{k: mean(per_seed[k]) for k in FINAL},
        "val_loss_by_domain": {d: mean(xs) for d, xs in per_seed["val_loss_by_domain"].items()},
        "per_seed": {"steps": steps, "tokens": tokens, **per_seed},
        "std": {
            **{k: std(per_seed[k]) for k in FINAL},
            "val_loss_by_domain": {d: std(xs) for d, xs in per_seed["val_loss_by_domain"].items()},
        },
        "weights": _mean_of_dicts(weights),
        "weights_per_seed": weights,
        "first_train_loss": [first_train_loss(r) for r in runs],
        "batch_checksums": [r.batch_checksum for r in runs],
        "run_dirs": [str(r.run_dir) for r in runs],
        "status": [r.status for r in runs],
        "train_seconds": [r.train_seconds for r in runs],  # when each run was trained
        "seconds_this_invocation": [round(r.seconds, 2) for r in runs],
    }


def _mean_of_dicts(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in dicts[0].items():
        if isinstance(v, Mapping):
            out[key] = {d: mean([x[key].get(d) for x in dicts if key in x]) for d in v}
        else:
            out[key] = mean([x.get(key) for x in dicts])
    return out


def paired(
    arm: Sequence[RunRecord], base: Sequence[RunRecord], domains: Sequence[str]
) -> dict[str, Any]:
    """arm - baseline per seed (negative: the arm is better) for the validation loss, its
    domain average, the worst domain and each domain, each with its 95% t-interval across
    seeds; and the steps the arm takes to reach the baseline's final validation loss."""
    pairs = list(zip(arm, base, strict=True))

    def diffs(get: Callable[[RunRecord], float | None]) -> list[float | None]:
        return [x - y if finite(x := get(a)) and finite(y := get(b)) else None for a, b in pairs]

    def to_target(run: RunRecord, b: RunRecord) -> float | None:
        target = b.final.get(LOSS)
        return (
            steps_to_reach(*series(run, LOSS, evals_only=True), target) if finite(target) else None
        )

    reach = [to_target(a, b) for a, b in pairs]
    own = [to_target(b, b) for _, b in pairs]  # where the baseline first reaches its final
    speedup = [o / r if r and o else None for r, o in zip(reach, own, strict=True)]
    val = diffs(FINAL["val_loss"])
    return {
        **{k: spread(diffs(get)) for k, get in FINAL.items()},
        "val_loss_by_domain": {d: spread(diffs(lambda r, d=d: _by_domain(r, d))) for d in domains},
        "seeds_better": sum(1 for v in val if v is not None and v < 0),
        "steps_to_baseline_final": {
            **spread(reach),
            "reached": sum(s is not None for s in reach),
            "of": len(reach),
        },
        "speedup": spread(speedup),  # the baseline's steps / the arm's, to the baseline's final
    }


def summarize(
    records: Records,
    *,
    baseline: str | None = "uniform",
    batch_groups: Mapping[str, str] | None = None,
    pairs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """{"runs": {arm: {...}}, "baseline", "seeds", "domains", "same_batches"} for the arms.

    Per arm: final values (mean over seeds; one seed: that run's), "per_seed" lists, "std",
    time-averaged weight diagnostics, and with a baseline among the arms "diff_vs_<baseline>":
    arm - baseline per seed with mean and std, and the steps the arm takes to reach the
    baseline's final validation loss (interpolated between evaluations). `pairs` maps an arm
    to the arm it is paired with instead (e.g. uniform at the same model size; named under
    "paired_with"); an arm is paired only at seeds its partner has.

    `batch_groups` maps arms to groups that should share batches (e.g. arms with the same
    data mixture); by default every arm should see the same batches as every other.
    """
    domains = _domains(records)
    seeds = sorted({s for by_seed in records.values() for s in by_seed})
    baseline = baseline if baseline in records else None
    runs: dict[str, Any] = {}
    for arm, by_seed in records.items():
        ordered = sorted(by_seed)
        runs[arm] = _arm_summary([by_seed[s] for s in ordered], domains)
        partner = (pairs or {}).get(arm, baseline)
        if baseline and partner in records and set(by_seed) <= set(records[partner]):
            other = [records[partner][s] for s in ordered]
            runs[arm][f"diff_vs_{baseline}"] = paired([by_seed[s] for s in ordered], other, domains)
            if partner != baseline:
                runs[arm]["paired_with"] = partner
    group = {arm: (batch_groups or {}).get(arm, "") for arm in records}
    same = {
        str(s): all(
            len({r[s].batch_checksum for a, r in records.items() if group[a] == g and s in r}) <= 1
            for g in set(group.values())
        )
        for s in seeds
    }
    return {
        "baseline": baseline,
        "seeds": seeds,
        "domains": domains,
        "runs": runs,
        "same_batches_per_seed": same,
        "same_batches": all(same.values()),
    }


def fmt_ci(d: Mapping[str, Any] | None, digits: int = 4) -> str:
    """ "m [lo, hi]" for a spread with a 95% interval (or just m)."""
    if not d or d.get("mean") is None:
        return "\u2014"
    ci = d.get("ci95")
    if not ci:
        return f"{d['mean']:+.{digits}f}"
    return f"{d['mean']:+.{digits}f} [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"


def excludes_zero(d: Mapping[str, Any] | None) -> bool | None:
    """Does the 95% interval exclude 0? None without an interval."""
    ci = (d or {}).get("ci95")
    return None if not ci else (ci[0] > 0 or ci[1] < 0)


def fmt_pm(m: float | None, s: float | None, digits: int = 4) -> str:
    """ "m ± s" (or just m, or an em dash when missing) for tables."""
    if m is None:
        return "\u2014"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} \u00b1 {s:.{digits}f}"


# -- the setup as trained ----------------------------------------------------------------
# The paper's GPT-2 code: 20,000 steps x 32 x 512 tokens for 124M parameters.
PAPER_TOKENS_PER_PARAM = 20_000 * 32 * 512 / 124e6


@lru_cache(maxsize=64)
def _params(model_json: str) -> int:
    from lossreweight.model import ModelConfig
    from lossreweight.model.factory import build_model

    model = build_model(ModelConfig.from_dict(json.loads(model_json), where="model"))
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


def count_params(model_cfg: Mapping[str, Any]) -> int | None:
    """Parameters of the model a resolved config describes (embeddings included, as the
    paper's 124M counts them); None when the vocabulary size is unresolved."""
    if not model_cfg.get("vocab_size"):
        return None
    return _params(json.dumps(dict(model_cfg), sort_keys=True))


def fraction(section: Mapping[str, Any], frac_key: str, steps_key: str, steps: int) -> float:
    """A warm-up as a fraction of training: the fraction key when the config has it and sets
    it, else the step count over the run's steps."""
    f = section.get(frac_key)
    if isinstance(f, int | float) and not isinstance(f, bool):
        return float(f)
    return float(section.get(steps_key) or 0) / max(steps, 1)


def temperature_text(t: Any) -> str:
    if isinstance(t, Mapping):
        kind = t.get("kind", "schedule")
        if "r_start" in t:
            return f"{kind} {t['r_start']:g} -> {t.get('r_end', '?'):g}"
        if "r_warm" in t:
            return f"{kind}: {t['r_warm']:g} until step {t.get('switch_step')}, then {t.get('r'):g}"
        return f"{kind} {json.dumps(t, sort_keys=True)}"
    return f"{t:g}" if isinstance(t, int | float) else str(t)


def describe(config: Mapping[str, Any], final: Mapping[str, Any]) -> dict[str, Any]:
    """The setup of one run from its resolved config and final.json."""
    train, rw = config.get("train", {}), config.get("reweight", {})
    steps = int(train.get("max_steps") or 0)
    params = count_params(config.get("model", {}))
    tokens = final.get("tokens")
    burn = measured_burn_in(final)
    return {
        "seq_len": (config.get("data") or {}).get("seq_len"),
        "vocab_size": (config.get("model") or {}).get("vocab_size"),
        "burn_in_end_step": burn.get("end_step"),
        "burn_in_val_loss": burn.get("val_loss"),
        "unigram_entropy": burn.get("unigram_entropy"),
        "params": params,
        "tokens": tokens,
        "tokens_per_param": tokens / params if tokens and params else None,
        "steps": final.get("steps", steps),
        "burn_in_fraction": fraction(rw, "warmup_fraction", "warmup_steps", steps),
        "lr_warmup_fraction": fraction(train, "lr_warmup_fraction", "lr_warmup_steps", steps),
        "temperature": rw.get("temperature"),
        "strategy": rw.get("strategy"),
    }


_MEASURED_BURN_IN = ("burn_in_end_step", "burn_in_val_loss", "unigram_entropy")


def setup_rows(records: Records) -> list[dict[str, Any]]:
    """One row per distinct setup: the arms and seeds that share it, and where their burn-in
    ended (step, validation loss, unigram entropy), averaged over the row's runs."""
    rows: dict[str, dict[str, Any]] = {}
    for arm, by_seed in records.items():
        for seed, run in sorted(by_seed.items()):
            d = describe(run.config, run.final)
            uniform = d.pop("strategy") == "uniform"
            d["temperature"] = "uniform weights" if uniform else temperature_text(d["temperature"])
            measured = {k: d.pop(k) for k in _MEASURED_BURN_IN}
            fractions = {k: round(d[k], 6) for k in ("burn_in_fraction", "lr_warmup_fraction")}
            key = json.dumps({**d, **fractions}, sort_keys=True, default=str)
            row = rows.setdefault(key, {**d, "arms": [], "seeds": [], "_measured": []})
            row["_measured"].append(measured)
            row["arms"] += [arm] if arm not in row["arms"] else []
            row["seeds"] += [seed] if seed not in row["seeds"] else []
    for row in rows.values():
        measured = row.pop("_measured")
        row.update({k: mean([m[k] for m in measured]) for k in _MEASURED_BURN_IN})
    return list(rows.values())


def _burn_in_position(rows: Sequence[Mapping[str, Any]]) -> tuple[float, float | None] | None:
    """Where the reweighted arms' burn-in ended: (validation loss, unigram entropy), means."""
    ended = [
        r
        for r in rows
        if r.get("burn_in_val_loss") is not None and r.get("temperature") != "uniform weights"
    ]
    if not ended:
        return None
    v = mean([r["burn_in_val_loss"] for r in ended])
    return (v, mean([r.get("unigram_entropy") for r in ended])) if v is not None else None


def _range(values: Sequence[float], fmt: Callable[[float], str], rel: float = 0.0) -> str:
    """One value, or lo-hi when they differ by `rel` of the largest or more."""
    lo, hi = min(values), max(values)
    return fmt(lo) if lo == hi or hi - lo < rel * hi else f"{fmt(lo)}-{fmt(hi)}"


def regime_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The conditions the runs tested, in words, for a verdict sentence: model size, tokens per
    parameter, sequence length, burn-in and where it ended against the unigram entropy.

    E.g. "at 0.48M parameters, 2.6 tokens/param, sequence 128, a 5% burn-in ending at
    validation loss 6.87 (unigram entropy 6.80)". Whether that resembles the paper's runs is
    the fidelity table's to say, not a label's.
    """
    tpp = [r["tokens_per_param"] for r in rows if r.get("tokens_per_param")]
    params = [r["params"] for r in rows if r.get("params")]
    if not tpp or not params:
        return "conditions unknown"
    seqs = sorted({r["seq_len"] for r in rows if r.get("seq_len")})
    seq = f", sequence {'/'.join(str(x) for x in seqs)}" if seqs else ""
    burns = sorted({round(r["burn_in_fraction"], 4) for r in rows})
    burn = ", ".join(f"{b:.0%}" for b in burns)
    burn = f"a {burn} burn-in" if len(burns) == 1 else f"burn-ins of {burn}"
    tp = _range(tpp, lambda t: f"{t:.2g}", rel=0.01)
    text = f"at {_range(params, _short)} parameters, {tp} tokens/param{seq}, {burn}"
    if pos := _burn_in_position(rows):
        v, h = pos
        text += f" ending at validation loss {v:.2f}"
        text += f" (unigram entropy {h:.2f})" if h is not None else ""
    return text


def fidelity_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """The study's conditions next to the paper's GPT-2 runs, from what the runs measured:
    [condition, the paper, this study, match]. A study with its own (e.g. `conditions`) sets
    summary["fidelity"] instead."""
    rows = summary.get("setup") or []
    if not rows:
        return []

    def values(key: str, fmt: Callable[[Any], str] = str) -> str:
        vs = sorted({r[key] for r in rows if r.get(key) is not None})
        return ", ".join(fmt(v) for v in vs) if vs else "?"

    tpp = [r["tokens_per_param"] for r in rows if r.get("tokens_per_param")]
    tp_ok = bool(tpp) and all(abs(t / PAPER_TOKENS_PER_PARAM - 1) < 0.1 for t in tpp)
    if pos := _burn_in_position(rows):
        v, h = pos
        where = f"validation loss {v:.2f}" + (
            f" vs unigram entropy {h:.2f}" if h is not None else ""
        )
        where_match = (
            "closer (past word frequencies)"
            if h is not None and v < h
            else "differs (before the model knows word frequencies)"
        )
    else:
        where, where_match = "not measured (runs from before it was recorded)", "unknown"
    seq, burn = values("seq_len"), values("burn_in_fraction", lambda f: f"{f:.0%}")
    reweighted = {r["temperature"] for r in rows if r.get("temperature") != "uniform weights"}
    tp_text = values("tokens_per_param", lambda t: f"{t:.2f}")
    return [
        ["tokens per parameter", f"{PAPER_TOKENS_PER_PARAM:.1f}", tp_text, _match(tp_ok)],
        ["model size", "124M", values("params", _short), "differs"],
        ["sequence length", "512", seq, _match(seq == "512")],
        ["vocabulary", "GPT-2 BPE, 50,257", values("vocab_size", lambda v: f"{v:,}"), "differs"],
        ["burn-in", "5% (1,000 of 20,000 steps)", burn, _match(burn == "5%")],
        ["burn-in position", "far below the unigram entropy", where, where_match],
        ["temperature r", "0.4", ", ".join(sorted(reweighted)) or "?", "see the arms"],
        [
            "redundancy",
            "SlimPajama: boilerplate, licences, near-duplicates",
            f"domains {', '.join(summary.get('domains') or []) or '?'}",
            "differs unless a repeated or easy block is in the mix",
        ],
    ]


def _match(ok: bool) -> str:
    return "matches" if ok else "differs"


def _short(n: int) -> str:
    return f"{n / 1e6:.2g}M" if n >= 1e5 else f"{n / 1e3:.3g}k"
