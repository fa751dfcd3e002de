"""Domain mixture weights: how often the loader samples each domain."""

from __future__ import annotations

from collections.abc import Mapping

from lossreweight.data.data_config import check_mixture_weights
from lossreweight.errors import DataError

Mixture = str | Mapping[str, float]


def resolve_mixture(mixture: Mixture, train_sequences: Mapping[str, int]) -> dict[str, float]:
    """Normalised weights for every domain of the data.

    - "natural": proportional to each domain's training sequences (each sequence about once
      per epoch);
    - "uniform": 1/num_domains, as in the paper;
    - a mapping domain -> weight (DoGE/DoReMi-style static weights): every domain of the data
      must be named (0 leaves one out); weights are normalised to sum to 1.
    """
    domains = list(train_sequences)
    if mixture == "natural":
        total = sum(train_sequences.values())
        return {d: train_sequences[d] / total for d in domains}
    if mixture == "uniform":
        return {d: 1.0 / len(domains) for d in domains}
    if isinstance(mixture, str):
        raise DataError(f"mixture must be 'natural', 'uniform' or a mapping, got {mixture!r}")
    weights = {str(k): v for k, v in mixture.items()}
    try:
        check_mixture_weights(weights)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    unknown = sorted(set(weights) - set(domains))
    if unknown:
        raise DataError(
            f"mixture names domain(s) {', '.join(unknown)} that the data does not have "
            f"(domains: {', '.join(domains)})"
        )
    missing = [d for d in domains if d not in weights]
    if missing:
        raise DataError(
            f"mixture gives no weight to domain(s) {', '.join(missing)}; give every domain a "
            "weight (0 leaves a domain out)"
        )
    total = float(sum(weights.values()))
    return {d: float(weights[d]) / total for d in domains}
