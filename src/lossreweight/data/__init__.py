"""Data: the embedded multi-domain corpus or the user's files, tokenized into memory-mapped
token shards, and seeded, resumable, rank-aware loaders over them.

    from lossreweight.data import DataConfig, prepare_data
    data = prepare_data(DataConfig())            # cached: the second call costs nothing
    loader = data.train_loader(batch_size=16, seed=0, rank=0, world_size=1)
    batch = next(loader)                         # {"input_ids": [16, seq_len], "domain_ids": [16]}
"""

from __future__ import annotations

from lossreweight.data.corpus import Corpus, DataWarning
from lossreweight.data.data_config import DataConfig, TokenizerConfig
from lossreweight.data.documents import Document
from lossreweight.data.embedded import CORPUS_EXTRA, EMBEDDED
from lossreweight.data.loader import TrainLoader
from lossreweight.data.mixture import resolve_mixture
from lossreweight.data.prepare import cache_root, prepare_data
from lossreweight.data.prepared import PreparedData
from lossreweight.data.tokenizer import TextTokenizer, load_tokenizer
from lossreweight.errors import DataError


def check_vocab_fits(data_vocab_size: int, model_vocab_size: int) -> None:
    """Raise DataError when the data's token ids cannot all be embedded by the model."""
    if data_vocab_size > model_vocab_size:
        raise DataError(
            f"the tokenizer has {data_vocab_size} tokens but the model's vocabulary holds "
            f"{model_vocab_size}: set the model's vocab_size to at least {data_vocab_size} "
            "(or prepare the data with a smaller tokenizer)"
        )


__all__ = [
    "CORPUS_EXTRA",
    "EMBEDDED",
    "Corpus",
    "DataConfig",
    "DataWarning",
    "Document",
    "PreparedData",
    "TextTokenizer",
    "TokenizerConfig",
    "TrainLoader",
    "cache_root",
    "check_vocab_fits",
    "load_tokenizer",
    "prepare_data",
    "resolve_mixture",
]
