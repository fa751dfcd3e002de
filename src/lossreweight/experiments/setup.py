"""The setup of a study as measured from its runs: parameters, tokens, tokens per parameter,
burn-in, learning-rate warm-up, temperature (or schedule), seeds; and the regime it is in.

Read from each run's resolved config and final.json, so the table says what was trained, not
what was meant to be.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from lossreweight.experiments.plotting import Table
from lossreweight.experiments.summary import Records

# The paper's GPT-2 code: 20,000 steps x 32 x 512 tokens for 124M parameters.
PAPER_TOKENS_PER_PARAM = 20_000 * 32 * 512 / 124e6
# A run is "in the paper's regime" from this many tokens per parameter, with a burn-in.
REGIME_TOKENS_PER_PARAM = 1.0


@lru_cache(maxsize=64)
def _params(model_json: str) -> int:
    from lossreweight.model import ModelConfig
    from lossreweight.model.build import build_model

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
    return {
        "params": params,
        "tokens": tokens,
        "tokens_per_param": tokens / params if tokens and params else None,
        "steps": final.get("steps", steps),
        "burn_in_fraction": fraction(rw, "warmup_fraction", "warmup_steps", steps),
        "lr_warmup_fraction": fraction(train, "lr_warmup_fraction", "lr_warmup_steps", steps),
        "temperature": rw.get("temperature"),
        "strategy": rw.get("strategy"),
    }


def _resolved(run: Any) -> Mapping[str, Any]:
    from lossreweight.model.run_dir import RESOLVED_CONFIG

    try:
        return json.loads((run.run_dir / RESOLVED_CONFIG).read_text())
    except (OSError, ValueError):
        return run.config


def setup_rows(records: Records) -> list[dict[str, Any]]:
    """One row per distinct setup (arms that share it listed together)."""
    rows: dict[str, dict[str, Any]] = {}
    for arm, by_seed in records.items():
        for seed, run in sorted(by_seed.items()):
            d = describe(_resolved(run), run.final)
            r = (
                "uniform weights"
                if d["strategy"] == "uniform"
                else temperature_text(d["temperature"])
            )
            key = json.dumps(
                [
                    d["params"],
                    d["tokens"],
                    d["steps"],
                    round(d["burn_in_fraction"], 6),
                    round(d["lr_warmup_fraction"], 6),
                    r,
                ]
            )
            row = rows.setdefault(
                key,
                {
                    **{k: v for k, v in d.items() if k not in ("temperature", "strategy")},
                    "temperature": r,
                    "arms": [],
                    "seeds": [],
                },
            )
            if arm not in row["arms"]:
                row["arms"].append(arm)
            if seed not in row["seeds"]:
                row["seeds"].append(seed)
    return list(rows.values())


def setup_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    cols = [
        "arms",
        "parameters",
        "tokens",
        "tokens/param",
        "steps",
        "burn-in",
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
                f"{r['burn_in_fraction']:.1%}",
                f"{r['lr_warmup_fraction']:.1%}",
                r["temperature"],
                ", ".join(str(s) for s in sorted(r["seeds"])),
            ]
        )
    return Table(
        cols,
        out,
        "setup, as trained (burn-in: uniform weights before reweighting starts; "
        f"the paper's GPT-2 code: {PAPER_TOKENS_PER_PARAM:.1f} tokens/param, burn-in 5%)",
    )


def _int(v: Any) -> str | None:
    return None if v is None else f"{int(v):,}"


def regime_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Which regime the runs are in, in words.

    E.g. "in the paper's regime (1.2M parameters, 2.6 tokens/param, 5% burn-in)" or
    "in a short-run regime, not the paper's (0.14 tokens/param, ...)".
    """
    if not rows:
        return "regime unknown"
    tpp = [r["tokens_per_param"] for r in rows if r.get("tokens_per_param")]
    params = [r["params"] for r in rows if r.get("params")]
    burn = max(r["burn_in_fraction"] for r in rows)
    if not tpp or not params:
        return "regime unknown"
    lo, hi = min(tpp), max(tpp)
    tp = f"{lo:.2g}" if hi - lo < 0.01 * hi else f"{lo:.2g}-{hi:.2g}"
    pa = (
        _short(min(params))
        if min(params) == max(params)
        else f"{_short(min(params))}-{_short(max(params))}"
    )
    paper = lo >= REGIME_TOKENS_PER_PARAM and burn > 0
    where = "in the paper's regime" if paper else "in a short-run regime, not the paper's"
    return f"{where} ({pa} parameters, {tp} tokens/param, {burn:.0%} burn-in)"


def _short(n: int) -> str:
    return f"{n / 1e6:.2g}M" if n >= 1e5 else f"{n / 1e3:.3g}k"
