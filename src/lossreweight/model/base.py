"""`CausalLM`: the one interface the trainer sees, for our decoder and for `transformers` models."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CausalLM(nn.Module):
    """A decoder-only language model.

    Subclasses set `vocab_size`, `dim`, `max_seq_len`, `n_layers` and `attn_width`
    (query heads * head_dim), provide `blocks` (the transformer blocks in order, an
    `nn.ModuleList` that FSDP2 shards one by one), and implement the methods that raise here.
    """

    blocks: nn.ModuleList
    vocab_size: int
    dim: int
    max_seq_len: int | None
    n_layers: int
    attn_width: int

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, T] token ids -> [B, T, dim] final-normed hidden states.

        The states are taken before the output projection.
        """
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, T] token ids -> [B, T, vocab] logits."""
        raise NotImplementedError

    @property
    def output_weight(self) -> torch.Tensor:
        """The output projection [vocab, dim]: logits = hidden_states @ output_weight.T."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this model (and to export it)."""
        raise NotImplementedError

    def _embedding_weights(self) -> list[torch.Tensor]:
        # Lookup tables (token and learned position embeddings): parameters that cost no FLOPs.
        return [m.weight for m in self.modules() if isinstance(m, nn.Embedding)]

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameters counted once each (a tied embedding/output matrix counts once).

        `exclude_embeddings` drops the embedding tables; with tied embeddings that is
        the output projection too.
        """
        params = {id(p): p.numel() for p in self.parameters()}
        if exclude_embeddings:
            for w in self._embedding_weights():
                params.pop(id(w), None)
        return sum(params.values())

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6 * (matmul parameters) + 12 * layers * attn_width * seq_len.

        Matmul parameters are all but the embedding lookups, plus the output projection once
        (also when it is tied). The attention term counts the full T x T score matrix, as
        PaLM and most MFU reports do, although a causal kernel skips half of it.
        """
        matmul = self.num_parameters(exclude_embeddings=True)
        if any(w is self.output_weight for w in self._embedding_weights()):
            matmul += self.output_weight.numel()
        return 6.0 * matmul + 12.0 * self.n_layers * self.attn_width * seq_len
