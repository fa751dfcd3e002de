"""Training throughput of `lossreweight train` against a minimal hand-written loop on the same
model and batches (target >= 0.97), and reweighted (linupper) against uniform within our
trainer (target >= 0.98). Runs are interleaved in rounds; rates are medians over 10-step
windows, the first window of each run (warm-up, compilation) dropped; ratios are paired
within each round and the median over rounds is reported.

    .venv/bin/python benchmarks/bench_train.py [--preset tiny|small] [--steps N] [--rounds R] \
        [--compile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from lossreweight.data import prepare_data
from lossreweight.losses import per_sample_loss
from lossreweight.model import build_model
from lossreweight.rundir import read_metrics
from lossreweight.train import load_config, train
from lossreweight.train.optim import build_optimizer, lr_at, set_lr

WINDOW = 10


MFU: list[float] = []  # the trainer's model FLOPs utilisation per window (GPU only)


def trainer_rates(cfg, strategy: str) -> list[float]:
    cfg = cfg.model_copy(deep=True)
    cfg.reweight.strategy = strategy
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run")
        rows = read_metrics(Path(tmp) / "run")
    windows = [r for r in rows if r["step"] % WINDOW == 0 and "eval/loss" not in r][1:]
    MFU.extend(r["train/mfu"] for r in windows if r.get("train/mfu") is not None)
    return [r["train/tokens_per_s"] for r in windows]


def minimal_loop_rates(cfg) -> list[float]:
    """nanoGPT-style loop: forward, mean loss, backward, clip, AdamW step. Nothing else."""
    dev = torch.device("cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu")
    data = prepare_data(cfg.data, None, progress=False)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, cfg.model.vocab_size or data.vocab_size).to(dev)
    if cfg.train.compile:
        for block in model.blocks:
            block.compile()
    opt = build_optimizer(model, cfg.train, dev)
    loader = data.train_loader(cfg.train.batch_size, seed=cfg.train.seed)
    bf16 = dev.type == "cuda"
    fused = model.vocab_size >= 16384
    tokens_per_step = cfg.train.batch_size * data.seq_len
    rates = []
    t0 = time.perf_counter()
    for step in range(cfg.train.max_steps):
        set_lr(opt, lr_at(step, cfg.train))
        ids = next(loader)["input_ids"].to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            if fused:
                losses, _ = per_sample_loss(
                    hidden_states=model.hidden_states(ids),
                    lm_head_weight=model.output_weight,
                    labels=ids,
                )
            else:
                losses, _ = per_sample_loss(model(ids), ids)
        losses.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % WINDOW == 0:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            rates.append(tokens_per_step * WINDOW / (now - t0))
            t0 = now
    return rates[1:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    overrides = [
        f"train.max_steps={args.steps}",
        f"log.every={WINDOW}",
        "log.progress=false",
        "log.tensorboard=false",
        "eval.every=0",
        "eval.max_sequences_per_domain=1",
        "checkpoint.every=0",
        "train.lr_warmup_steps=5",
        f"train.compile={args.compile}",
        *args.overrides,
    ]
    cfg = load_config(args.preset, overrides)
    # The trainer turns TF32 on for its fp32 matmuls; give the minimal loop the same flags.
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    prepare_data(cfg.data, None, progress=True)
    runs: dict[str, list[float]] = {"minimal": [], "uniform": [], "linupper": []}
    # Paired per round: machine load drifts over minutes, so each round's ratio compares runs
    # made next to each other, and the reported ratio is the median over rounds.
    paired: dict[str, list[float]] = {"uniform/minimal": [], "linupper/uniform": []}
    for r in range(args.rounds):
        order = (
            ["minimal", "uniform", "linupper"] if r % 2 == 0 else ["linupper", "uniform", "minimal"]
        )
        round_med = {}
        for name in order:
            rates = minimal_loop_rates(cfg) if name == "minimal" else trainer_rates(cfg, name)
            runs[name] += rates
            round_med[name] = statistics.median(rates)
            print(f"round {r} {name:9s} median {round_med[name]:,.0f} tok/s", file=sys.stderr)
        paired["uniform/minimal"].append(round_med["uniform"] / round_med["minimal"])
        paired["linupper/uniform"].append(round_med["linupper"] / round_med["uniform"])
    med = {k: statistics.median(v) for k, v in runs.items()}
    res = {
        "preset": args.preset,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "compile": args.compile,
        "steps_per_run": args.steps,
        "rounds": args.rounds,
        "median_tokens_per_s": med,
        "ratio_trainer_uniform_over_minimal": statistics.median(paired["uniform/minimal"]),
        "ratio_linupper_over_uniform": statistics.median(paired["linupper/uniform"]),
        "per_round_ratios": paired,
    }
    if torch.cuda.is_available():
        res["gpu"] = torch.cuda.get_device_name()
    if MFU:
        res["median_mfu_trainer"] = statistics.median(MFU)
    print(json.dumps(res, indent=1))
    spread = {k: f"{min(v):.3f}-{max(v):.3f}" for k, v in paired.items()}
    print(
        f"trainer(uniform)/minimal loop = {res['ratio_trainer_uniform_over_minimal']:.3f} "
        f"(rounds {spread['uniform/minimal']}; target >= 0.97); "
        f"linupper/uniform = {res['ratio_linupper_over_uniform']:.3f} "
        f"(rounds {spread['linupper/uniform']}; target >= 0.98); "
        f"tok/s minimal {med['minimal']:,.0f}, uniform {med['uniform']:,.0f}, "
        f"linupper {med['linupper']:,.0f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
