"""Training data with labelled corruption, for the `noise` study.

The corruption is its own source domain, so the loader knows which sequences are corrupted
(their domain id) and the trainer's per-domain weight share measures how much weight they get:

- noise: documents of random tokens, enough that no noise sequence repeats in a run. Each
  token is drawn uniformly from the clean tokenizer's "word" tokens (a space followed by
  letters): text is what the data layer reads, and only those tokens survive decode ->
  encode unchanged (checked), so the trained-on token ids are exactly the random ones.
  Drawing from the whole vocabulary instead would re-encode into mostly short byte pieces
  (at the 512-token quick vocabulary: 45% more tokens, entropy 4.4 instead of ln 512 = 6.2).
- repeat: a few real sequences (the first training sequences of the wiki domain, decoded),
  which the mixture then samples over and over: exact repeats.

The data mixture gives the corrupted domain its share of the training sequences and the
clean domains the rest, in their natural proportions. Every condition tokenizes with the same
tokenizer (the one trained on the clean corpus, copied next to the files), so token ids mean
the same thing in every arm; validation of the clean domains is untouched. The files are a
pure function of their settings and are cached by them under the data cache.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

NOISE_DOMAIN = "noise"
REPEAT_DOMAIN = "repeat"
REPEAT_SEQUENCES = 8  # "a few sequences": the repeat domain's distinct training sequences
REPEAT_SOURCE = "wiki"


def _root(base_overrides: Sequence[str]) -> Path:
    from lossreweight.data.prepare import cache_root
    from lossreweight.train import load_config

    cfg = load_config("tiny", list(base_overrides))
    key = hashlib.sha256(json.dumps(list(base_overrides)).encode()).hexdigest()[:12]
    return cache_root(cfg.data) / "experiments" / f"noise-{key}"


def clean_tokenizer(base_overrides: Sequence[str]) -> Path:
    """The tokenizer trained on the clean corpus, copied to a stable folder; its path."""
    from lossreweight.data import prepare_data
    from lossreweight.train import load_config

    out = _root(base_overrides) / "tokenizer"
    if not (out / "tokenizer.json").is_file():
        data = prepare_data(load_config("tiny", list(base_overrides)).data, progress=False)
        tmp = out.with_name("tokenizer.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(data.tokenizer_dir, tmp)
        tmp.replace(out)
    return out


def _write_jsonl(path: Path, domain: str, texts: Sequence[str]) -> Path:
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            "".join(json.dumps({"text": t, "domain": domain}) + "\n" for t in texts),
            encoding="utf-8",
        )
        tmp.replace(path)
    return path


def word_tokens(tokenizer_dir: Path) -> list[int]:
    """The token ids that decode to a space followed by letters (self-delimiting words)."""
    from lossreweight.data.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    out = []
    for i in range(tok.vocab_size):
        text = tok.decode([i])
        if i != tok.eos_id and len(text) > 1 and text[0] == " " and text[1:].isalpha():
            out.append(i)
    return out


def noise_file(
    base_overrides: Sequence[str], tokenizer_dir: Path, sequences: int, seq_len: int, seed: int = 0
) -> Path:
    """`sequences` sequences' worth of random-token documents (4 sequences per document)."""
    from lossreweight.data.tokenizer import load_tokenizer

    path = _root(base_overrides) / f"noise-words-{sequences}x{seq_len}-seed{seed}.jsonl"
    if path.is_file():
        return path
    tok = load_tokenizer(tokenizer_dir)
    ids = word_tokens(tokenizer_dir)
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(-(-sequences // 4)):
        x = rng.choice(ids, size=4 * seq_len).tolist()
        text = tok.decode(x)
        if tok.encode(text) != x:  # the property the study rests on: never silently lost
            raise RuntimeError(
                "random word tokens did not survive decode -> encode; the noise would not be random"
            )
        texts.append(text)
    return _write_jsonl(path, NOISE_DOMAIN, texts)


def repeat_file(base_overrides: Sequence[str]) -> Path:
    """REPEAT_SEQUENCES real sequences of the clean corpus, one document each (plus one more
    document for the domain's validation split)."""
    from lossreweight.data import prepare_data
    from lossreweight.train import load_config

    path = _root(base_overrides) / f"repeat-{REPEAT_SEQUENCES}.jsonl"
    if path.is_file():
        return path
    data = prepare_data(load_config("tiny", list(base_overrides)).data, progress=False)
    tok = data.load_tokenizer()
    texts = [
        tok.decode(data.sequence("train", REPEAT_SOURCE, i).tolist())
        for i in range(REPEAT_SEQUENCES + 1)
    ]
    return _write_jsonl(path, REPEAT_DOMAIN, texts)


def natural_counts(base_overrides: Sequence[str]) -> dict[str, int]:
    from lossreweight.data import prepare_data
    from lossreweight.train import load_config

    data = prepare_data(load_config("tiny", list(base_overrides)).data, progress=False)
    return {d: data.train_sequences(d) for d in data.domains}


def mixture_value(counts: dict[str, int], extra: str, share: float) -> str:
    """The clean domains in their natural proportions with `1 - share`, `extra` with `share`."""
    total = sum(counts.values())
    weights = {d: (1 - share) * n / total for d, n in counts.items()}
    weights[extra] = share
    return "{" + ", ".join(f"{d}: {w:.6g}" for d, w in weights.items()) + "}"
