"""Data-layer benchmark: tokenization throughput and peak memory, and loader throughput
against what a tiny model's training step consumes, all measured in one run.

    .venv/bin/python benchmarks/bench_data.py            # embedded corpus + 200 MB jsonl
    .venv/bin/python benchmarks/bench_data.py --quick    # 20 MB jsonl, fewer steps
    .venv/bin/python benchmarks/bench_data.py --workers-only   # prepare --workers 2 vs 1

Each prepare runs in a fresh subprocess, so its peak RSS is its own; the RSS right after
`import lossreweight` (which imports torch) is reported beside it as the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child_prepare(cfg_json: str, out: str, workers: str = "0") -> None:
    """Run one prepare_data and print its cost as JSON (used through a subprocess)."""
    import resource

    from lossreweight.data import DataConfig, prepare_data

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    data = prepare_data(
        DataConfig.model_validate_json(cfg_json), out, progress=False, workers=int(workers) or None
    )
    seconds = time.perf_counter() - t
    stats = data.stats()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "tokens": sum(s["tokens"] for s in stats.values()),
                "characters": sum(s["characters"] for s in stats.values()),
                "base_rss_mb": base_rss / 1024,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                # CPU seconds of this process and of its (worker) children: what the work
                # costs whatever else runs on the machine.
                "cpu_main_s": _cpu(resource.RUSAGE_SELF),
                "cpu_workers_s": _cpu(resource.RUSAGE_CHILDREN),
            }
        )
    )


def _cpu(who: int) -> float:
    import resource

    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_prepare(cfg: dict, out: Path, workers: int = 0) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child-prepare", json.dumps(cfg), str(out), str(workers)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"prepare failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def generate_jsonl(path: Path, size_mb: int, source_docs: list) -> None:
    """size_mb of jsonl records made of lines of the embedded corpus, with their domains."""
    rng = random.Random(0)
    by_domain: dict[str, list[str]] = {}
    for d in source_docs:
        by_domain.setdefault(d.domain, []).extend(d.text.splitlines(keepends=True))
    domains = sorted(by_domain)
    target = size_mb * 1_000_000
    written = 0
    with open(path, "w") as f:
        while written < target:
            domain = rng.choice(domains)
            lines = by_domain[domain]
            start = rng.randrange(len(lines))
            text = "".join(lines[start : start + rng.randint(20, 80)])
            record = json.dumps({"text": text, "domain": domain}) + "\n"
            f.write(record)
            written += len(record)


def tiny_model_samples_per_second(vocab: int, seq_len: int, batch: int, steps: int) -> float:
    """Forward + backward + AdamW step of a ~1.5M-parameter causal transformer (fp32, CPU)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    dim, layers, heads = 128, 4, 4
    layer = nn.TransformerEncoderLayer(
        dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
    )
    model = nn.ModuleDict(
        {
            "emb": nn.Embedding(vocab, dim),
            "body": nn.TransformerEncoder(layer, layers, enable_nested_tensor=False),
            "head": nn.Linear(dim, vocab, bias=False),
        }
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    mask = nn.Transformer.generate_square_subsequent_mask(seq_len)
    x = torch.randint(0, vocab, (batch, seq_len))

    def step() -> None:
        h = model["body"](model["emb"](x), mask=mask, is_causal=True)
        logits = model["head"](h)
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def loader_samples_per_second(data, batch: int, batches: int, mixture: str) -> float:
    loader = data.train_loader(batch, seed=0, mixture=mixture)
    next(loader)
    t = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batch * batches / (time.perf_counter() - t)


def bench_workers(tmp: Path, size_mb: int, rounds: int) -> None:
    """`prepare --workers 2` against `--workers 1` on the same generated jsonl, alternated
    round by round (the machine is shared: a ratio from neighbouring runs is fairer), and the
    outputs compared byte for byte."""
    import hashlib
    import shutil
    import statistics

    from lossreweight.data import Corpus, DataConfig, prepare_data

    tok = prepare_data(DataConfig(cache_dir=str(tmp / "cache")), tmp / "tok", progress=False)
    path = tmp / "workers.jsonl"
    generate_jsonl(path, size_mb, Corpus.from_config(DataConfig()).embedded_documents())
    cfg = {"sources": [str(path)], "tokenizer": {"kind": "hf", "path": str(tok.tokenizer_dir)}}
    ratios, times, cpu = [], {1: [], 2: []}, {1: [], 2: []}
    for r in range(rounds):
        outs = {}
        for workers in (1, 2) if r % 2 == 0 else (2, 1):
            out = tmp / f"w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            result = run_prepare(cfg, out, workers)
            times[workers].append(result["seconds"])
            cpu[workers].append((result["cpu_main_s"], result["cpu_workers_s"]))
            outs[workers] = {
                str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in sorted(out.rglob("*.bin")) + [out / "index.json"]
            }
        if outs[1] != outs[2]:
            sys.exit("workers=2 wrote other bytes than workers=1")
        ratios.append(times[1][-1] / times[2][-1])
        load = os.getloadavg()[0]
        print(
            f"  round {r + 1}: 1 worker {times[1][-1]:.1f} s (cpu {cpu[1][-1][0]:.1f} s), "
            f"2 workers {times[2][-1]:.1f} s (cpu: main {cpu[2][-1][0]:.1f} s, workers "
            f"{cpu[2][-1][1]:.1f} s), ratio {ratios[-1]:.2f}x, same bytes; load average {load:.1f}"
        )
    mb = path.stat().st_size / 1e6
    print(
        f"\nprepare {mb:.0f} MB jsonl, --workers 2 vs 1: median ratio "
        f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}); "
        f"1 worker {mb / statistics.median(times[1]):.1f} MB/s, "
        f"2 workers {mb / statistics.median(times[2]):.1f} MB/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 MB jsonl and fewer steps")
    parser.add_argument("--jsonl-mb", type=int, default=None, help="size of the generated jsonl")
    parser.add_argument("--workers-only", action="store_true", help="only --workers 2 vs 1")
    parser.add_argument("--workers-mb", type=int, default=None, help="jsonl size for --workers")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --workers 2 vs 1")
    parser.add_argument(
        "--child-prepare", nargs=3, metavar=("CONFIG_JSON", "OUT", "W"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child_prepare:
        child_prepare(*args.child_prepare)
        return
    workers_mb = args.workers_mb or (20 if args.quick else 60)
    if args.workers_only:
        with tempfile.TemporaryDirectory() as tmp_dir:
            bench_workers(Path(tmp_dir), workers_mb, args.rounds)
        return
    jsonl_mb = args.jsonl_mb or (20 if args.quick else 200)
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from lossreweight.data import Corpus, DataConfig, PreparedData

    print(
        f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
        f"torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cache = str(tmp / "cache")
        # 1. The embedded corpus, cold (corpus + BPE training + tokenization), then cached.
        embedded_cfg = {"cache_dir": cache}
        cold = run_prepare(embedded_cfg, tmp / "embedded")
        warm = run_prepare(embedded_cfg, tmp / "embedded")
        print(
            f"\nembedded corpus, default settings: {cold['characters'] / 1e6:.1f}M chars, "
            f"{cold['tokens'] / 1e6:.2f}M tokens"
        )
        print(
            f"  cold prepare {cold['seconds']:.1f} s (corpus + 4k BPE training + tokenizing) = "
            f"{cold['tokens'] / cold['seconds']:,.0f} tokens/s end to end; "
            f"peak RSS {cold['peak_rss_mb']:.0f} MB (after imports {cold['base_rss_mb']:.0f} MB)"
        )
        print(f"  cached prepare {warm['seconds'] * 1000:.0f} ms")

        # 2. A generated jsonl, tokenized with the embedded data's tokenizer (no BPE training).
        data = PreparedData.open(tmp / "embedded")
        path = tmp / "generated.jsonl"
        t = time.perf_counter()
        generate_jsonl(path, jsonl_mb, Corpus.from_config(DataConfig()).embedded_documents())
        size = path.stat().st_size
        print(f"\ngenerated {size / 1e6:.0f} MB jsonl in {time.perf_counter() - t:.1f} s")
        big = run_prepare(
            {
                "sources": [str(path)],
                "cache_dir": cache,
                "tokenizer": {"kind": "hf", "path": str(data.tokenizer_dir)},
            },
            tmp / "jsonl",
        )
        print(
            f"  prepare {big['seconds']:.1f} s: {big['tokens'] / big['seconds']:,.0f} tokens/s, "
            f"{size / 1e6 / big['seconds']:.1f} MB/s; peak RSS {big['peak_rss_mb']:.0f} MB "
            f"(after imports {big['base_rss_mb']:.0f} MB)"
        )

        # 3. Loader throughput against the step rate of a tiny model, same process.
        batch, steps = 16, (5 if args.quick else 20)
        model_rate = tiny_model_samples_per_second(data.vocab_size, data.seq_len, batch, steps)
        print(
            f"\ntiny model (dim 128, 4 layers, vocab {data.vocab_size}, seq {data.seq_len}, "
            f"batch {batch}, fp32): {model_rate:,.0f} samples/s forward+backward+step"
        )
        jsonl_data = PreparedData.open(tmp / "jsonl")
        for name, d, mixture in (
            ("embedded", data, "natural"),
            ("embedded", data, "uniform"),
            (f"{jsonl_mb} MB jsonl", jsonl_data, "natural"),
        ):
            rate = loader_samples_per_second(d, batch, 200 if args.quick else 2000, mixture)
            print(
                f"  loader, {name}, {mixture}: {rate:,.0f} samples/s = "
                f"{rate / model_rate:,.0f}x what the model consumes"
            )

        # 4. Parallel preparation.
        bench_workers(tmp, workers_mb, args.rounds)


if __name__ == "__main__":
    main()
