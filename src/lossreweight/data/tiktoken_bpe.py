"""tiktoken BPE files (`<base64 token> <rank>` per line), the pre-tokenizer patterns, and the
tiktoken "twin" of a plain byte-level BPE (the same ids, several times faster)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from lossreweight.errors import DataError

# The GPT-2 (r50k/p50k) pre-tokenizer, and cl100k's.
_GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
TIKTOKEN_PATTERNS = {
    "gpt2": _GPT2_PATTERN,
    "r50k": _GPT2_PATTERN,
    "p50k": _GPT2_PATTERN,
    "cl100k": _CL100K_PATTERN,
}


def read_tiktoken_file(file: Path) -> dict[bytes, int]:
    """Parse a tiktoken BPE file: one '<base64 token> <rank>' per line."""
    ranks: dict[bytes, int] = {}
    with open(file, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError:
                raise DataError(
                    f"{file}:{lineno}: not a tiktoken BPE line (expected '<base64 token> <rank>')"
                ) from None
    if not ranks:
        raise DataError(f"{file}: empty tiktoken BPE file")
    return ranks


def write_tiktoken_file(ranks: dict[bytes, int], file: Path) -> None:
    """Write ranks in tiktoken's BPE file format."""
    with open(file, "wb") as f:
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _tiktoken_twin(tokenizer: Any) -> Any:
    """A tiktoken `Encoding` with the same vocabulary as a plain byte-level BPE (GPT-2 style,
    like ours), or None. tiktoken's pre-tokenizer is several times faster than the one in
    `tokenizers`; FastTokenizer uses it only after it reproduced a whole batch exactly."""
    try:
        import tiktoken
    except ImportError:
        return None
    spec = json.loads(tokenizer.to_str())
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if (
        model.get("type") != "BPE"
        or spec.get("normalizer") is not None
        or pre.get("type") != "ByteLevel"
        or pre.get("add_prefix_space")
        or not pre.get("use_regex", True)
        or model.get("dropout")
        or model.get("continuing_subword_prefix")
        or model.get("end_of_word_suffix")
        or model.get("byte_fallback")
        or any(not t.get("special") for t in spec.get("added_tokens", []))
    ):
        return None
    decoder = _byte_decoder()
    try:
        ranks = {bytes(decoder[c] for c in token): int(i) for token, i in model["vocab"].items()}
    except KeyError:
        return None  # a token outside the byte-level alphabet
    if len(set(ranks.values())) != len(ranks) or any(bytes([b]) not in ranks for b in range(256)):
        return None
    try:
        return tiktoken.Encoding(
            name="bpe-twin", pat_str=_GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={}
        )
    except Exception:  # tiktoken rejects some vocabularies (e.g. duplicate byte strings)
        return None


def _tiktoken_pattern(pattern: str | None, filename: str) -> str:
    if pattern is None:
        pattern = "cl100k" if "cl100k" in filename else "gpt2"
    return TIKTOKEN_PATTERNS.get(pattern, pattern)
