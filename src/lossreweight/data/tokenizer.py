"""Tokenizers: a byte-level BPE trained here, a local Hugging Face directory, or a local
tiktoken BPE file. Nothing is ever fetched from a hub.

Every kind is stored inside the prepared data's `tokenizer/` folder with a small
`tokenizer_info.json` (kind, end-of-text token and id, vocabulary size), so the data set is
self-contained and `load_tokenizer(dir)` needs nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lossreweight.data.tiktoken_bpe import (
    _tiktoken_pattern,
    _tiktoken_twin,
    read_tiktoken_file,
)
from lossreweight.errors import DataError

EOS_TOKEN = "<|endoftext|>"
INFO_FILE = "tokenizer_info.json"

# Weights and other large files never belong in a tokenizer folder copy.
_NOT_TOKENIZER = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".onnx",
    ".gguf",
)


class TextTokenizer:
    """What the data layer needs from a tokenizer: text <-> ids, and the end-of-text id."""

    kind: str
    vocab_size: int
    eos_id: int
    eos_token: str

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
            "eos_token": self.eos_token,
        }


class FastTokenizer(TextTokenizer):
    """A `tokenizers.Tokenizer` (our BPE, or a Hugging Face `tokenizer.json`)."""

    def __init__(self, tokenizer: Any, kind: str, eos_token: str) -> None:
        self._tok = tokenizer
        # Text that happens to contain "<|endoftext|>" must not forge a document boundary.
        self._tok.encode_special_tokens = True
        self.kind = kind
        self.eos_token = eos_token
        eos_id = tokenizer.token_to_id(eos_token)
        if eos_id is None:
            raise DataError(f"the tokenizer has no token {eos_token!r} to end documents with")
        self.eos_id = int(eos_id)
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        self._twin: Any = _tiktoken_twin(tokenizer)
        self._twin_checked = False

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        if self._twin is not None and self._twin_checked:
            return self._twin.encode_ordinary_batch(texts, num_threads=_threads())
        if _threads() == 1:  # encode_batch_fast would use every core
            ids = [self._tok.encode(t, add_special_tokens=False).ids for t in texts]
        else:
            ids = [e.ids for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]
        if self._twin is not None:
            # The twin is used only once it reproduced a whole first batch exactly.
            same = self._twin.encode_ordinary_batch(texts, num_threads=_threads()) == ids
            self._twin, self._twin_checked = (self._twin if same else None), same
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    @property
    def twin_state(self) -> bool | None:
        """True: the tiktoken twin was checked and is used; False: it is not used; None: not
        checked yet. Worker processes take the main process's verdict (`adopt_twin_state`)
        instead of each checking a batch again."""
        if self._twin is None:
            return False
        return True if self._twin_checked else None

    def adopt_twin_state(self, state: bool | None) -> None:
        if state is False:
            self._twin = None
        elif state is True and self._twin is not None:
            self._twin_checked = True


class AutoTokenizerAdapter(TextTokenizer):
    """A Hugging Face tokenizer without a `tokenizer.json` (e.g. sentencepiece only)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self.kind = "hf"
        if tokenizer.eos_token is None or tokenizer.eos_token_id is None:
            raise DataError(
                f"the tokenizer in {tokenizer.name_or_path} has no end-of-text token: set "
                "eos_token in its tokenizer_config.json"
            )
        self.eos_token = str(tokenizer.eos_token)
        self.eos_id = int(tokenizer.eos_token_id)
        self.vocab_size = len(tokenizer)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._tok.encode(t, add_special_tokens=False) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), clean_up_tokenization_spaces=False)


class TiktokenTokenizer(TextTokenizer):
    """A tiktoken `Encoding` from a local BPE file; end-of-text is the id after the ranks."""

    def __init__(self, file: Path, pattern: str) -> None:
        try:
            import tiktoken
        except ImportError:
            raise DataError(
                "tokenizer.kind 'tiktoken' needs: pip install 'lossreweight[data]'"
            ) from None
        ranks = read_tiktoken_file(file)
        self.kind = "tiktoken"
        self.eos_token = EOS_TOKEN
        self.eos_id = max(ranks.values()) + 1
        self.vocab_size = self.eos_id + 1
        self.pattern = pattern
        self._enc = tiktoken.Encoding(
            name=file.stem,
            pat_str=pattern,
            mergeable_ranks=ranks,
            special_tokens={EOS_TOKEN: self.eos_id},
        )

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(list(texts), num_threads=_threads())

    def decode(self, ids: Sequence[int]) -> str:
        return self._enc.decode(list(ids), errors="replace")

    def info(self) -> dict[str, Any]:
        return {**super().info(), "pattern": self.pattern}


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: Path) -> FastTokenizer:
    """Train a byte-level BPE on `texts` and save it in Hugging Face format in `out_dir`.

    Byte-level means every string round-trips exactly and no token is ever unknown.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    _write_json(
        out_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": EOS_TOKEN,
            "bos_token": EOS_TOKEN,
            "unk_token": EOS_TOKEN,
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 1 << 30,
        },
    )
    _write_json(
        out_dir / "special_tokens_map.json",
        {"eos_token": EOS_TOKEN, "bos_token": EOS_TOKEN, "unk_token": EOS_TOKEN},
    )
    result = FastTokenizer(Tokenizer.from_file(str(out_dir / "tokenizer.json")), "bpe", EOS_TOKEN)
    _write_json(out_dir / INFO_FILE, result.info())
    return result


def import_hf(path: str | Path, out_dir: Path) -> TextTokenizer:
    """Copy a local Hugging Face tokenizer directory into `out_dir` and load it."""
    src = Path(path).expanduser()
    if not src.is_dir():
        raise DataError(
            f"tokenizer.path {src} is not a directory: kind 'hf' needs a local tokenizer "
            "folder (with tokenizer.json or tokenizer_config.json)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.endswith(_NOT_TOKENIZER):
            shutil.copy2(f, out_dir / f.name)
    tok = _load_hf(out_dir, origin=src)
    _write_json(out_dir / INFO_FILE, tok.info())
    return tok


def import_tiktoken(path: str | Path, pattern: str | None, out_dir: Path) -> TiktokenTokenizer:
    """Copy a local tiktoken BPE file into `out_dir` and load it."""
    src = Path(path).expanduser()
    if not src.is_file():
        raise DataError(
            f"tokenizer.path {src}: no such file (kind 'tiktoken' needs a local BPE file)"
        )
    regex = _tiktoken_pattern(pattern, src.name)
    tok = TiktokenTokenizer(src, regex)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, out_dir / "tokenizer.tiktoken")
    _write_json(out_dir / INFO_FILE, tok.info())
    return tok


def load_tokenizer(tokenizer_dir: str | Path) -> TextTokenizer:
    """Load a tokenizer saved by `train_bpe`, `import_hf` or `import_tiktoken`."""
    d = Path(tokenizer_dir)
    info_path = d / INFO_FILE
    if not info_path.is_file():
        raise DataError(f"{d}: no {INFO_FILE}; re-run lossreweight prepare to rebuild the data")
    info = json.loads(info_path.read_text())
    kind = info.get("kind")
    if kind == "tiktoken":
        return TiktokenTokenizer(d / "tokenizer.tiktoken", info["pattern"])
    if kind == "bpe":
        from tokenizers import Tokenizer

        return FastTokenizer(
            Tokenizer.from_file(str(d / "tokenizer.json")), "bpe", info["eos_token"]
        )
    if kind == "hf":
        return _load_hf(d, origin=d, eos_token=info.get("eos_token"))
    raise DataError(f"{info_path}: unknown tokenizer kind {kind!r}")


_thread_limit: int | None = None


def set_threads(n: int | None) -> None:
    """Tokenizer threads per call in this process (None: one per core). Parallel preparation
    sets 1 in each worker process, and the worker count when it encodes in-process."""
    global _thread_limit
    _thread_limit = n


def _threads() -> int:
    return _thread_limit or max(1, os.cpu_count() or 1)


def _load_hf(d: Path, origin: Path, eos_token: str | None = None) -> TextTokenizer:
    if (d / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        except Exception as exc:  # the Rust side raises a bare Exception
            raise DataError(f"{origin}/tokenizer.json could not be read: {exc}") from None
        eos = (
            eos_token
            or _configured_eos(d)
            or (EOS_TOKEN if tok.token_to_id(EOS_TOKEN) is not None else None)
        )
        if eos is None:
            raise DataError(
                f"the tokenizer in {origin} has no end-of-text token: set eos_token in its "
                "tokenizer_config.json"
            )
        return FastTokenizer(tok, "hf", eos)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    try:
        auto = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"no Hugging Face tokenizer could be loaded from {origin}: {exc}") from None
    return AutoTokenizerAdapter(auto)


def _configured_eos(d: Path) -> str | None:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        f = d / name
        if f.is_file():
            eos = json.loads(f.read_text()).get("eos_token")
            if isinstance(eos, dict):
                eos = eos.get("content")
            if isinstance(eos, str) and eos:
                return eos
    return None


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")
