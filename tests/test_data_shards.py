"""prepare_data and token shards: round trip, cache, atomic writes, damaged shards."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest_data import small_config, small_data, small_docs

import lossreweight.data.build as build_mod
import lossreweight.data.prepare as prepare_mod
from lossreweight.data import Corpus, PreparedData, prepare_data
from lossreweight.data.outdir import settings_of
from lossreweight.data.shards import INDEX_FILE, StreamWriter, dtype_for_vocab, file_dtype
from lossreweight.errors import DataError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_data(tmp_path_factory.getbasetemp() / "data-cache")


@pytest.fixture
def copy(data, tmp_path):
    """A private copy of the prepared data, to damage."""
    dst = tmp_path / "copy"
    shutil.copytree(data.root, dst)
    return dst


def test_shards_round_trip_the_documents(data):
    docs = small_docs()
    tok = data.load_tokenizer()
    for split in ("train", "val"):
        for domain in data.domains:
            expected = []
            for d in docs:
                if d.domain == domain and d.split == split:
                    expected += tok.encode(d.text) + [data.eos_id]
            assert data.tokens(split, domain).tolist() == expected, (split, domain)


def test_index_describes_the_data(data):
    idx = data.index
    assert idx["dtype"] == "uint16" and data.seq_len == 32
    assert idx["tokenizer"]["kind"] == "bpe"
    assert data.domains == sorted(data.domains) and len(data.domains) == 7
    total = 0
    for domain in data.domains:
        entry = idx["splits"]["train"][domain]
        # Each domain owns a contiguous range of training sequences.
        assert entry["first_sequence"] == total
        assert entry["sequences"] == entry["tokens"] // data.seq_len
        assert data.domain_of_train_sequence(total) == domain
        total += entry["sequences"]
        stats = data.stats()[domain]
        assert stats["tokens"] == stats["train_tokens"] + stats["val_tokens"]
        assert stats["val_sequences"] > 0 and stats["train_sequences"] > 0
    assert total == data.num_train_sequences


def test_sequences_never_cross_a_domain(data):
    for domain in data.domains:
        stream = data.tokens("train", domain)
        for i in (0, data.train_sequences(domain) - 1):
            seq = data.sequence("train", domain, i)
            assert np.array_equal(seq, stream[i * data.seq_len : (i + 1) * data.seq_len])


def test_many_small_shards(tmp_path):
    cfg = small_config(tmp_path, domains=["math", "docs"], shard_size_tokens=100)
    data = prepare_data(cfg, tmp_path / "out", progress=False)
    shards = data.index["splits"]["train"]["math"]["shards"]
    assert len(shards) > 10 and all(s["tokens"] == 96 for s in shards[:-1])  # 3 whole sequences
    one = prepare_data(
        small_config(tmp_path, domains=["math", "docs"]), tmp_path / "one", progress=False
    )
    for domain in data.domains:
        assert np.array_equal(data.tokens("train", domain), one.tokens("train", domain))
        n = data.train_sequences(domain)
        idx = np.arange(n)
        d = np.full(n, data.domains.index(domain))
        assert np.array_equal(
            data.read_sequences("train", d, idx), one.read_sequences("train", d, idx)
        )


def test_prepare_is_deterministic(tmp_path):
    cfg = small_config(tmp_path, domains=["drama", "math"])
    a = prepare_data(cfg, tmp_path / "a", progress=False)
    b = prepare_data(cfg, tmp_path / "b", progress=False)
    assert a.fingerprint == b.fingerprint
    for rel in ["tokenizer/tokenizer.json"] + [
        s["file"]
        for split in a.index["splits"].values()
        for e in split.values()
        for s in e["shards"]
    ]:
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel


def test_second_prepare_is_cached(data, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("re-tokenized although the data was cached")

    monkeypatch.setattr(prepare_mod, "build", no_build)
    again = prepare_data(small_config(data.root.parent.parent), progress=False)
    assert again.root == data.root


def test_settings_change_the_cache_key(data, tmp_path):
    cfg = small_config(data.root.parent.parent)
    assert settings_of(cfg, Corpus.from_config(cfg)) != settings_of(
        cfg.model_copy(update={"seq_len": 64}), Corpus.from_config(cfg)
    )
    # The mixture only changes the loader, not the shards.
    same = prepare_data(small_config(data.root.parent.parent, mixture="uniform"), progress=False)
    assert same.root == data.root and same.default_mixture == "uniform"


def test_a_crash_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_mod, "write_index", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(
            small_config(tmp_path, domains=["math", "docs"]), tmp_path / "out", progress=False
        )
    assert list(tmp_path.iterdir()) == []  # no output, no leftover temp folder


def test_data_prepared_with_other_settings_is_never_replaced_unasked(tmp_path):
    out = tmp_path / "out"
    first = prepare_data(small_config(tmp_path, domains=["math", "docs"]), out, progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = small_config(tmp_path, domains=["math", "docs"], seq_len=16)
    with pytest.raises(DataError) as e:
        prepare_data(other, out, progress=False)
    message = str(e.value)
    # One line: what differs, and both ways on.
    assert "\n" not in message and "seq_len is 32 there, 16 here" in message
    assert f"data.prepared={out}" in message and "--force" in message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # Asked to (prepare --force), it is replaced, leaving nothing beside it.
    second = prepare_data(other, out, progress=False, replace=True)
    assert second.fingerprint != first.fingerprint and PreparedData.open(out).seq_len == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refuses_a_folder_that_is_not_ours(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(DataError, match="not empty and holds no prepared data"):
        prepare_data(small_config(tmp_path, domains=["math", "docs"]), out, progress=False)
    assert (out / "notes.txt").read_text() == "precious"


def test_truncated_shard(copy):
    index = json.loads((copy / INDEX_FILE).read_text())
    shard = copy / index["splits"]["train"]["code"]["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"train shard .*0000-00000.bin.*'code'.*truncated"):
        PreparedData.open(copy)


def test_modified_shard_fails_the_checksum(copy):
    index = json.loads((copy / INDEX_FILE).read_text())
    shard = copy / index["splits"]["val"]["wiki"]["shards"][0]["file"]
    raw = bytearray(shard.read_bytes())
    raw[0] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="checksum"):
        PreparedData.open(copy)


def test_full_verify_catches_a_change_in_the_middle(copy, monkeypatch):
    import lossreweight.data.shards as shards_mod

    # Sample only 8 bytes at each end, so that the middle of a small shard is unsampled.
    monkeypatch.setattr(shards_mod, "_SAMPLE_BYTES", 8)
    index = json.loads((copy / INDEX_FILE).read_text())
    for split in index["splits"].values():
        for entry in split.values():
            for s in entry["shards"]:
                path = copy / s["file"]
                s["sample_crc32"] = shards_mod.sample_crc32(path, path.stat().st_size)
    (copy / INDEX_FILE).write_text(json.dumps(index))
    shard = copy / index["splits"]["train"]["drama"]["shards"][0]["file"]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    data = PreparedData.open(copy)  # the cheap check reads only the ends
    with pytest.raises(DataError, match="checksum"):
        data.verify()


def test_missing_shard_and_missing_index(copy):
    index = json.loads((copy / INDEX_FILE).read_text())
    (copy / index["splits"]["train"]["math"]["shards"][0]["file"]).unlink()
    with pytest.raises(DataError, match="'math'.* is missing"):
        PreparedData.open(copy)
    (copy / INDEX_FILE).unlink()
    with pytest.raises(DataError, match="no index.json"):
        PreparedData.open(copy)
    with pytest.raises(DataError, match="not a directory"):
        PreparedData.open(copy / "nowhere")


def test_other_format_version(copy):
    index = json.loads((copy / INDEX_FILE).read_text())
    index["format_version"] = 999
    (copy / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(DataError, match="another version of lossreweight.*format 999"):
        PreparedData.open(copy)


def test_dtype_follows_the_vocabulary(tmp_path):
    assert dtype_for_vocab(65536) == "uint16" and dtype_for_vocab(65537) == "uint32"
    w = StreamWriter(tmp_path, "train", 0, file_dtype("uint32"), shard_tokens=4)
    w.write(np.array([70000, 1, 2, 3, 4, 5], dtype=np.int64))
    shards = w.close()
    assert [s.tokens for s in shards] == [4, 2]
    back = np.fromfile(tmp_path / shards[0].file, dtype="<u4")
    assert back.tolist() == [70000, 1, 2, 3]
