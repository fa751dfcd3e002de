"""Training throughput of the built-in decoder against transformers' LlamaForCausalLM of the
same shape (same weights), measured in one run: prints tokens/s and the ratio.

    python benchmarks/bench_model.py                     # tiny preset, CPU float32
    python benchmarks/bench_model.py --preset small --compile   # on a GPU: bf16 autocast
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from lossreweight.model import ModelConfig, build_model, export_hf

PRESETS = {
    "tiny": ({"dim": 128, "n_layers": 4, "n_heads": 4, "max_seq_len": 128}, 4096, 128, 16),
    "small": ({"dim": 768, "n_layers": 12, "n_heads": 12, "max_seq_len": 1024}, 50304, 1024, 8),
    "gqa": (
        {"dim": 2048, "n_layers": 4, "n_heads": 16, "n_kv_heads": 4, "max_seq_len": 2048},
        32000,
        2048,
        4,
    ),
}


def throughput(forward, params, batch: torch.Tensor, device: str, steps: int) -> float:
    """Tokens per second of forward + backward + SGD step, after two warm-up steps."""
    opt = torch.optim.SGD(params, lr=1e-4)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    x, y = batch[:, :-1], batch[:, 1:]

    def step():
        with torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
            logits = forward(x)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return x.numel() * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=PRESETS, default="tiny")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile(fullgraph=True)"
    )
    args = parser.parse_args()
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    section, vocab, seq_len, batch_size = PRESETS[args.preset]
    torch.manual_seed(0)
    ours = build_model(ModelConfig(**section), vocab)
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(ours, f"{tmp}/hf")
        hf = transformers.AutoModelForCausalLM.from_pretrained(f"{tmp}/hf", local_files_only=True)
    ours.to(device).train()
    hf.to(device).train()
    batch = torch.randint(0, vocab, (batch_size, seq_len + 1), device=device)

    def hf_forward(x):
        return hf(input_ids=x, use_cache=False).logits

    results = {
        "ours": throughput(ours, ours.parameters(), batch, device, args.steps),
        "transformers": throughput(hf_forward, hf.parameters(), batch, device, args.steps),
    }
    if args.compile:
        compiled = torch.compile(ours, fullgraph=True)  # fullgraph: fails on any graph break
        results["ours, compiled"] = throughput(
            compiled, ours.parameters(), batch, device, args.steps
        )
    print(
        f"{args.preset} on {device}: {ours.num_parameters() / 1e6:.1f}M parameters, "
        f"batch {batch_size}x{seq_len}"
    )
    for name, tps in results.items():
        print(
            f"  {name:16s} {tps:12,.0f} tokens/s   "
            f"x{tps / results['transformers']:.2f} vs transformers"
        )


if __name__ == "__main__":
    main()
