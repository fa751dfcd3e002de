"""Core benchmarks, each a ratio against a baseline measured in the same run.

1. Training-step time, reweighted (linupper) / uniform, on a small Llama-style LM
   (interleaved pairs, median of per-pair ratios). Target <= 1.02.
2. Per-sample loss forward+backward extra peak memory, ours / the common recipe
   (`logits[:, :-1].contiguous()` + `cross_entropy(reduction="none")`), at vocab 50304.
   Target <= 0.5. CPU: peak RSS of a fresh subprocess; CUDA: max_memory_allocated.
3. On a GPU: the same two on a GPT-2-small-sized model in bf16, plus tokens/s.

    .venv/bin/python benchmarks/bench_core.py [--quick] [--device cpu|cuda] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from lossreweight import Reweighter, per_sample_loss
from lossreweight.model import ModelConfig, build_model


def common_recipe(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    shifted = logits[:, :-1].contiguous()
    targets = labels[:, 1:].contiguous()
    b, t, v = shifted.shape
    tok = F.cross_entropy(shifted.float().view(-1, v), targets.view(-1), reduction="none").view(
        b, t
    )
    return tok.mean(1)


# -- 1. step time ---------------------------------------------------------------------------
def step_time_ratio(
    device: str, model_cfg: ModelConfig, batch: int, seq: int, vocab: int, pairs: int, bf16: bool
) -> dict:
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(model_cfg, vocab).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    ids = torch.randint(0, vocab, (batch, seq), device=dev)
    rws = {"uniform": Reweighter("uniform"), "linupper": Reweighter("linupper", 0.4, num_domains=6)}
    doms = torch.randint(0, 6, (batch,), device=dev)
    fused = vocab >= 16384

    def step(rw: Reweighter) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            if fused:
                losses, _ = per_sample_loss(
                    hidden_states=model.hidden_states(ids),
                    lm_head_weight=model.output_weight,
                    labels=ids,
                )
            else:
                losses, _ = per_sample_loss(model(ids), ids)
        # The whole library call a training loop makes: weights, loss and statistics.
        rw.reweight(losses, step=10, domain_ids=doms).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(3):  # warm-up
        step(rws["uniform"])
        step(rws["linupper"])
    ratios, tu, tr = [], [], []
    for i in range(pairs):
        order = ["uniform", "linupper"] if i % 2 == 0 else ["linupper", "uniform"]
        t = {name: step(rws[name]) for name in order}
        tu.append(t["uniform"])
        tr.append(t["linupper"])
        ratios.append(t["linupper"] / t["uniform"])
    med_u = statistics.median(tu)
    return {
        "params": model.num_parameters(),
        "batch": batch,
        "seq_len": seq,
        "vocab": vocab,
        "pairs": pairs,
        "median_step_s_uniform": med_u,
        "median_step_s_linupper": statistics.median(tr),
        "ratio_linupper_over_uniform": statistics.median(ratios),
        "tokens_per_s_uniform": batch * seq / med_u,
    }


# -- 2. memory --------------------------------------------------------------------------------
def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the peak-RSS counter (ru_maxrss survives exec, so the parent's peak would leak
    in) and return the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _proc_status_bytes("VmRSS")


def _memory_child(kind: str, device: str, b: int, t: int, v: int, d: int) -> None:
    """Runs in a fresh process: prints the extra peak bytes of one forward+backward."""
    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    labels = torch.randint(0, v, (b, t), generator=g).to(dev)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    if kind == "fused":
        hidden = torch.randn(b, t, d, generator=g).to(dev, dtype).requires_grad_()
        weight = torch.randn(v, d, generator=g).to(dev, dtype).requires_grad_()
        inputs = (hidden, weight)
    else:
        logits = torch.randn(b, t, v, generator=g).to(dev, dtype).requires_grad_()
        inputs = (logits,)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_peak_rss()
    if kind == "ours":
        losses, _ = per_sample_loss(inputs[0], labels)
    elif kind == "fused":
        losses, _ = per_sample_loss(
            hidden_states=inputs[0], lm_head_weight=inputs[1], labels=labels
        )
    else:
        losses = common_recipe(inputs[0], labels)
    losses.sum().backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _proc_status_bytes("VmHWM")
    # The input gradient is part of any recipe; count it in both, as the issue asks for the
    # extra peak over holding the inputs.
    print(
        json.dumps(
            {
                "extra_peak_bytes": peak - base,
                "logits_bytes": b * t * v * (2 if dtype == torch.bfloat16 else 4),
            }
        )
    )


def memory_ratio(device: str, b: int, t: int, v: int, d: int) -> dict:
    out = {}
    for kind in ("common", "ours", "fused"):
        res = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-child",
                kind,
                "--device",
                device,
                "--mem-shape",
                f"{b},{t},{v},{d}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        out[kind] = json.loads(res.stdout.strip().splitlines()[-1])
    common = out["common"]["extra_peak_bytes"]
    return {
        "shape": {"batch": b, "seq_len": t, "vocab": v, "dim": d},
        "logits_mib": out["common"]["logits_bytes"] / 2**20,
        "extra_peak_mib": {k: r["extra_peak_bytes"] / 2**20 for k, r in out.items()},
        "ratio_ours_over_common": out["ours"]["extra_peak_bytes"] / common,
        "ratio_fused_over_common": out["fused"]["extra_peak_bytes"] / common,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json")
    ap.add_argument("--memory-child")
    ap.add_argument("--mem-shape")
    args = ap.parse_args()
    if args.memory_child:
        b, t, v, d = map(int, args.mem_shape.split(","))
        _memory_child(args.memory_child, args.device, b, t, v, d)
        return
    results: dict = {"device": args.device, "torch": torch.__version__}
    if args.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name()
    if args.device == "cpu":
        torch.set_num_threads(2)
        cfg = ModelConfig(dim=256, n_layers=4, n_heads=4, multiple_of=64, max_seq_len=256)
        results["step_time"] = step_time_ratio(
            "cpu", cfg, batch=16, seq=256, vocab=4096, pairs=10 if args.quick else 30, bf16=False
        )
        results["memory"] = memory_ratio("cpu", 4, 512, 50304, 768)
    else:
        cfg = ModelConfig(dim=768, n_layers=12, n_heads=12, ffn_hidden=2048, max_seq_len=1024)
        results["step_time"] = step_time_ratio(
            "cuda", cfg, batch=16, seq=1024, vocab=50304, pairs=10 if args.quick else 30, bf16=True
        )
        results["memory"] = memory_ratio("cuda", 16, 1024, 50304, 768)
    st, mem = results["step_time"], results["memory"]
    gpu = " " + results.get("gpu", "") if args.device == "cuda" else ""
    print(f"device {args.device}{gpu}, torch {torch.__version__}")
    print(
        f"step time  linupper/uniform = {st['ratio_linupper_over_uniform']:.3f}  "
        f"(median of {st['pairs']} interleaved pairs; {st['params'] / 1e6:.1f}M params, "
        f"batch {st['batch']}x{st['seq_len']}, uniform {st['tokens_per_s_uniform']:,.0f} tok/s)"
        "  target <= 1.02"
    )
    extra = ", ".join(f"{k} {v:.0f}" for k, v in mem["extra_peak_mib"].items())
    print(
        f"loss memory ours/common = {mem['ratio_ours_over_common']:.3f}, "
        f"fused/common = {mem['ratio_fused_over_common']:.3f}  "
        f"(extra peak MiB {extra}; logits {mem['logits_mib']:.0f} MiB)  target <= 0.5"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
