"""Loaders: seeded order, exact resume, disjoint ranks, mixtures, validation batches."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from conftest_data import small_config, small_data

from lossreweight.data import prepare_data, resolve_mixture
from lossreweight.data.sampling import ROUND, EpochOrder, MixtureOrder, permute, round_counts
from lossreweight.errors import DataError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_data(tmp_path_factory.getbasetemp() / "data-cache")


def take(loader, n):
    return [next(loader) for _ in range(n)]


def rows(loader, batches):
    """(domain, sequence) of every row of the given global batches, for this loader's rank."""
    out = []
    for g in batches:
        d, i = loader.indices(g)
        out += list(zip(d.tolist(), i.tolist(), strict=True))
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 65536, 100_003])
def test_permute_is_a_bijection(n):
    image = permute(np.arange(n), n, key=42)
    assert sorted(image.tolist()) == list(range(n))
    if n > 16:
        assert not np.array_equal(image, np.arange(n))
        assert not np.array_equal(image, permute(np.arange(n), n, key=43))


def test_batches_are_token_ids_with_domains(data):
    batch = next(data.train_loader(8, seed=0))
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == (8, data.seq_len)
    assert batch["domain_ids"].dtype == torch.long and batch["domain_ids"].shape == (8,)
    assert int(batch["input_ids"].max()) < data.vocab_size
    loader = data.train_loader(8, seed=0)
    d, i = loader.indices(0)
    for row, (dom, seq) in enumerate(zip(d, i, strict=True)):
        expected = data.sequence("train", data.domains[dom], int(seq))
        assert batch["input_ids"][row].tolist() == expected.tolist()
        assert int(batch["domain_ids"][row]) == dom


def test_order_is_seeded_and_deterministic(data):
    a = take(data.train_loader(4, seed=3), 5)
    b = take(data.train_loader(4, seed=3), 5)
    c = take(data.train_loader(4, seed=4), 5)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize(
    "mixture",
    [
        "natural",
        "uniform",
        {"code": 3, "docs": 0, "drama": 1, "math": 1, "quotes": 1, "scripture": 1, "wiki": 1},
    ],
)
def test_resumed_loader_sees_the_same_batches(data, mixture):
    straight = take(data.train_loader(6, seed=1, mixture=mixture), 12)
    first = data.train_loader(6, seed=1, mixture=mixture)
    take(first, 5)
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint would store it
    resumed = data.train_loader(6, seed=1, mixture=mixture)
    resumed.load_state_dict(state)
    rest = take(resumed, 7)
    for x, y in zip(straight[5:], rest, strict=True):
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(
            x["domain_ids"], y["domain_ids"]
        )


def test_resume_rejects_other_settings(data):
    state = data.train_loader(4, seed=1).state_dict()
    for other in (
        data.train_loader(4, seed=2),
        data.train_loader(5, seed=1),
        data.train_loader(4, seed=1, rank=1, world_size=2),
    ):
        with pytest.raises(DataError, match="cannot resume"):
            other.load_state_dict(state)
    with pytest.raises(DataError, match="cannot resume.*mixture"):
        data.train_loader(4, seed=1, mixture="uniform").load_state_dict(state)
    with pytest.raises(DataError, match="not a train-loader state"):
        data.train_loader(4, seed=1).load_state_dict({"batch_index": 3})


def test_two_ranks_split_each_global_batch(data):
    single = data.train_loader(8, seed=5)
    r0 = data.train_loader(4, seed=5, rank=0, world_size=2)
    r1 = data.train_loader(4, seed=5, rank=1, world_size=2)
    for _ in range(6):
        whole, a, b = next(single), next(r0), next(r1)
        assert torch.equal(torch.cat([a["input_ids"], b["input_ids"]]), whole["input_ids"])
        assert torch.equal(torch.cat([a["domain_ids"], b["domain_ids"]]), whole["domain_ids"])


def test_two_ranks_are_disjoint_and_cover_an_epoch(data):
    n = data.num_train_sequences
    batch = 16
    epoch_batches = range(n // (2 * batch))
    r0 = rows(data.train_loader(batch, seed=0, rank=0, world_size=2), epoch_batches)
    r1 = rows(data.train_loader(batch, seed=0, rank=1, world_size=2), epoch_batches)
    assert not set(r0) & set(r1)
    assert len(set(r0)) == len(r0) and len(set(r1)) == len(r1)  # no repeats within an epoch
    # The natural order is exact epochs: one epoch of positions is every sequence once.
    epoch = EpochOrder([data.train_sequences(d) for d in data.domains], seed=0)
    d, i = epoch.lookup(np.arange(n))
    everything = {
        (dd, ii)
        for dd in range(len(data.domains))
        for ii in range(data.train_sequences(data.domains[dd]))
    }
    assert set(zip(d.tolist(), i.tolist(), strict=True)) == everything


def test_mixture_changes_how_often_domains_are_sampled(data):
    counts = [data.train_sequences(d) for d in data.domains]
    uniform = MixtureOrder(counts, [1.0] * len(counts), seed=0)
    doms, local = uniform.lookup(np.arange(ROUND))
    per_domain = Counter(doms.tolist())
    assert max(per_domain.values()) - min(per_domain.values()) <= 1  # exact per round
    # Within a domain: no repeat until its epoch is complete.
    for d in range(len(counts)):
        seen = local[doms == d][: counts[d]].tolist()
        assert sorted(seen) == list(range(counts[d]))
    skewed = MixtureOrder(counts, [8.0] + [1.0] * (len(counts) - 1), seed=0)
    doms, _ = skewed.lookup(np.arange(20_000))
    share = Counter(doms.tolist())[0] / 20_000
    assert abs(share - 8 / (8 + len(counts) - 1)) < 0.02
    loader = data.train_loader(
        64, seed=0, mixture={d: (1.0 if d == "math" else 0.0) for d in data.domains}
    )
    assert set(next(loader)["domain_ids"].tolist()) == {data.domains.index("math")}


def test_round_counts_apportion_exactly():
    counts = round_counts([0.5, 0.25, 0.25, 1e-9, 0.0])
    assert counts.sum() == ROUND and counts[3] == 1 and counts[4] == 0
    assert abs(counts[0] - ROUND / 2) <= 1


def test_resolve_mixture(data):
    train = {d: data.train_sequences(d) for d in data.domains}
    natural = resolve_mixture("natural", train)
    assert abs(sum(natural.values()) - 1) < 1e-12
    assert natural["math"] == pytest.approx(train["math"] / sum(train.values()))
    assert set(resolve_mixture("uniform", train).values()) == {1 / 7}
    with pytest.raises(DataError, match="no weight to domain"):
        resolve_mixture({"math": 1.0}, train)
    with pytest.raises(DataError, match="poetry that the data does not have"):
        resolve_mixture(dict.fromkeys(train, 1.0) | {"poetry": 1.0}, train)
    with pytest.raises(DataError, match="all zero"):
        resolve_mixture(dict.fromkeys(train, 0.0), train)


def test_val_batches(data):
    whole = data.val_batches(7)
    assert sum(b["input_ids"].shape[0] for b in whole) == data.num_val_sequences
    assert all(b["input_ids"].shape[0] == 7 for b in whole[:-1])
    assert whole[-1]["input_ids"].shape[0] <= 7
    again = data.val_batches(7)
    assert all(
        torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(whole, again, strict=True)
    )
    capped = data.val_batches(5, max_sequences_per_domain=3)
    per_domain = Counter(torch.cat([b["domain_ids"] for b in capped]).tolist())
    assert per_domain == dict.fromkeys(range(len(data.domains)), 3)
    # Two ranks: disjoint, and together the whole capped set.
    parts = [
        data.val_batches(4, rank=r, world_size=2, max_sequences_per_domain=3) for r in range(2)
    ]
    as_rows = [{tuple(row.tolist()) for b in p for row in b["input_ids"]} for p in parts]
    assert not as_rows[0] & as_rows[1]
    assert as_rows[0] | as_rows[1] == {
        tuple(row.tolist()) for b in capped for row in b["input_ids"]
    }


def test_bad_loader_arguments(data):
    with pytest.raises(DataError, match="rank 2 is not in"):
        data.train_loader(4, rank=2, world_size=2)
    with pytest.raises(DataError, match="batch_size"):
        data.train_loader(0)
    with pytest.raises(DataError, match="max_sequences_per_domain"):
        data.val_batches(4, max_sequences_per_domain=0)


def test_prepare_checks_the_mixture_against_the_domains(data):
    cache = data.root.parent.parent
    with pytest.raises(DataError, match="poetry"):
        prepare_data(small_config(cache, mixture={"poetry": 1.0}), progress=False)
    weights = {d: 1.0 for d in data.domains}
    prepared = prepare_data(small_config(cache, mixture=weights), progress=False)
    assert prepared.train_loader(4).state_dict()["weights"] == {d: 1 / 7 for d in data.domains}
