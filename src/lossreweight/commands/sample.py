"""`lossreweight sample RUN_DIR [--prompt TEXT] [--max-new-tokens N] [--temperature T] ...`:
text from a run's checkpoint, no export needed (nanoGPT's sample.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lossreweight.errors import ConfigError

if TYPE_CHECKING:  # torch is imported when the command runs: `lossreweight --help` stays fast
    import torch

SEPARATOR = "---------------"


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir", metavar="RUN_DIR", type=Path, help="a run directory written by `train`"
    )
    p.add_argument(
        "--prompt",
        default="",
        help="text to continue; FILE:path reads it from a file (default: start a new document)",
    )
    p.add_argument("--num-samples", type=int, default=1, help="samples to draw (default: 1)")
    p.add_argument(
        "--max-new-tokens", type=int, default=200, help="tokens per sample (default: 200)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="softmax temperature: < 1 sharper, > 1 more random, 0 greedy (default: 0.8)",
    )
    p.add_argument(
        "--top-k", type=int, default=200, help="sample among the k likeliest tokens (default: 200)"
    )
    p.add_argument("--seed", type=int, default=1337, help="random seed (default: 1337)")
    p.add_argument(
        "--checkpoint", type=Path, help="a checkpoint directory (default: the run's newest)"
    )
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA if present"
    )
    p.add_argument(
        "--stop-at-eos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="end a sample at the end-of-text token (default: on)",
    )


def generate(
    model: torch.nn.Module,
    ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    context: int | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend `ids` [1, T] by up to `max_new_tokens` tokens (fewer when `eos_id` comes out),
    each drawn from softmax(logits / temperature) over the `top_k` likeliest (greedy at 0).
    The model sees at most its last `context` tokens (no KV cache: a forward per token)."""
    import torch

    for _ in range(max_new_tokens):
        window = ids if context is None else ids[:, -context:]
        with torch.no_grad():
            logits = model(window)[:, -1, :].float()
        if temperature == 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.size(-1):
                kth = torch.topk(logits, top_k).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(ids.device)
        ids = torch.cat([ids, nxt], dim=1)
        if eos_id is not None and int(nxt) == eos_id:
            break
    return ids


def _check(args: argparse.Namespace) -> str:
    """The prompt text; bad flags are one-line errors."""
    for flag, value, low in (
        ("--num-samples", args.num_samples, 1),
        ("--max-new-tokens", args.max_new_tokens, 1),
        ("--top-k", args.top_k, 1),
    ):
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    if not args.temperature >= 0 or args.temperature == float("inf"):
        raise ConfigError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    prompt = args.prompt
    if prompt.startswith("FILE:"):
        path = Path(prompt[5:])
        try:
            prompt = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--prompt {args.prompt}: cannot read {path}: {exc}") from None
    return prompt


def run(args: argparse.Namespace) -> int:
    import torch

    from lossreweight.data.tokenizer import load_tokenizer
    from lossreweight.errors import CheckpointError
    from lossreweight.model.load import load_run_model
    from lossreweight.rundir import TOKENIZER_DIR

    prompt = _check(args)
    tok_dir = args.run_dir / TOKENIZER_DIR
    if args.run_dir.is_dir() and not tok_dir.is_dir():
        raise CheckpointError(
            f"{args.run_dir} has no {TOKENIZER_DIR}/; sampling needs the run's tokenizer "
            "(runs trained by `lossreweight train` on prepared data have it)"
        )
    model, ckpt = load_run_model(args.run_dir, args.checkpoint)
    tokenizer = load_tokenizer(tok_dir)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available here; use --device cpu")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    model.to(device).eval()
    # An empty prompt starts a new document: after end-of-text, as the training data runs.
    start = tokenizer.encode(prompt) if prompt else [tokenizer.eos_id]
    if not start:
        start = [tokenizer.eos_id]
    context = getattr(model, "max_seq_len", None)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"sampling from {ckpt} ({len(start)} prompt tokens)", file=sys.stderr)
    for i in range(args.num_samples):
        ids = torch.tensor([start], dtype=torch.long, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_cuda):
            out = generate(
                model,
                ids,
                args.max_new_tokens,
                temperature=args.temperature,
                top_k=args.top_k,
                context=context,
                eos_id=tokenizer.eos_id if args.stop_at_eos else None,
                generator=generator,
            )
        new = out[0, len(start) :].tolist()
        if args.stop_at_eos and new and new[-1] == tokenizer.eos_id:
            new = new[:-1]
        if i:
            print(SEPARATOR)
        print(prompt + tokenizer.decode(new), flush=True)
    return 0
