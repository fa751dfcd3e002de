"""The user's own data: folders, text, .jsonl, .parquet, and every kind of bad input."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest_data import sentences, write_jsonl

import lossreweight.data.readers as files_mod
from lossreweight.data import Corpus, DataConfig, prepare_data
from lossreweight.errors import DataError


def config(tmp_path, sources, **overrides):
    base = {
        "sources": [str(s) for s in sources],
        "seq_len": 16,
        "tokenizer": {"vocab_size": 300},
        "cache_dir": str(tmp_path / "cache"),
    }
    return DataConfig(**(base | overrides))


def prepare(tmp_path, sources, **overrides):
    return prepare_data(config(tmp_path, sources, **overrides), tmp_path / "out", progress=False)


def test_folder_subfolders_are_domains(tmp_path):
    root = tmp_path / "corpus"
    for domain, suffix in (("poems", ".txt"), ("notes", ".md"), ("scripts", ".py")):
        (root / domain).mkdir(parents=True)
        for i, text in enumerate(sentences(4, domain)):
            (root / domain / f"{i}{suffix}").write_text(text)
    (root / "poems" / "skip.bin").write_bytes(b"\x00\x01")  # unsupported: ignored
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.txt").write_text("hidden")
    data = prepare(tmp_path, [root])
    assert data.domains == ["notes", "poems", "scripts"]
    stats = data.stats()
    assert all(s["documents"] == 4 and s["val_sequences"] > 0 for s in stats.values())


def test_jsonl_with_and_without_domain(tmp_path):
    records = [{"text": t, "domain": "alpha"} for t in sentences(5, "alpha")]
    records += [{"text": t} for t in sentences(5, "beta")]  # no domain: the file's name
    records.insert(3, {"text": "   "})  # blank documents are skipped
    path = write_jsonl(tmp_path / "beta.jsonl", records)
    data = prepare(tmp_path, [path])
    assert data.domains == ["alpha", "beta"]
    assert data.stats()["alpha"]["documents"] == 5 and data.stats()["beta"]["documents"] == 5
    tok = data.load_tokenizer()
    stream = data.tokens("train", "alpha").tolist()
    assert tok.decode(stream[: stream.index(data.eos_id)]) == sentences(5, "alpha")[0]


def test_a_single_path_is_a_list_of_one():
    assert DataConfig(sources="corpus/").sources == ["corpus/"]
    assert DataConfig(sources="embedded").sources == "embedded"


def test_gzipped_jsonl_and_domain_prefix(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in sentences(4, "gz"))
    data = prepare(tmp_path, [f"news={path}"])
    assert data.domains == ["news"]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = sentences(6, "p") + sentences(6, "q")
    table = pa.table({"text": texts, "domain": ["p"] * 6 + ["q"] * 6, "id": list(range(12))})
    pq.write_table(table, tmp_path / "data.parquet", row_group_size=4)
    data = prepare(tmp_path, [tmp_path / "data.parquet"])
    assert data.domains == ["p", "q"] and data.stats()["q"]["documents"] == 6


def test_embedded_and_files_together(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"text": t} for t in sentences(4, "mine")])
    data = prepare(
        tmp_path, ["embedded", path], domains=["math", "mine"], max_chars_per_domain=20_000
    )
    assert data.domains == ["math", "mine"]


def test_large_text_file_is_streamed_in_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(files_mod, "TEXT_CHUNK_CHARS", 1000)
    big = tmp_path / "book.txt"
    big.write_text("\n".join(f"Line {i} of a long book, with some words." for i in range(500)))
    docs = list(Corpus.from_config(config(tmp_path, [big])).documents())
    assert len(docs) > 10 and all(len(d.text) < 1100 for d in docs)
    assert "".join(d.text for d in docs) == big.read_text()
    assert docs[1].where.endswith("(part 2)")


def test_cap_applies_to_files(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in sentences(50, "a")])
    docs = list(Corpus.from_config(config(tmp_path, [path], max_chars_per_domain=2000)).documents())
    assert sum(len(d.text) for d in docs) <= 2000 and len(docs) >= 2


def test_jsonl_line_without_text(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, {"text": "fine"}, {"body": "oops"}])
    with pytest.raises(DataError, match=r"bad.jsonl:3: .*no 'text' field"):
        prepare(tmp_path, [path])


def test_jsonl_line_that_is_not_json(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        prepare(tmp_path, [path])


def test_parquet_without_text_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"content": ["a", "b"]}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t.parquet: no 'text' column \(columns: content\)"):
        prepare(tmp_path, [tmp_path / "t.parquet"])


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match=r"source not found: .*nowhere.jsonl"):
        prepare(tmp_path, [tmp_path / "nowhere.jsonl"])


def test_unsupported_file_and_empty_folder(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type"):
        prepare(tmp_path, [tmp_path / "x.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no supported files"):
        prepare(tmp_path, [tmp_path / "empty"])


def test_empty_corpus(tmp_path):
    path = write_jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": "  \n"}])
    with pytest.raises(DataError, match="empty corpus"):
        prepare(tmp_path, [path])


def test_domain_without_validation_documents(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [{"text": t} for t in sentences(5, "a")]
        + [{"text": "a lonely document " * 20, "domain": "solo"}],
    )
    with pytest.raises(
        DataError, match=r"domain 'solo' has a single document \(.*a.jsonl:6\).*validation"
    ):
        prepare(tmp_path, [path])


def test_validation_shorter_than_a_sequence(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl", [{"text": "long training text " * 50}, {"text": "tiny"}]
    )
    with pytest.raises(
        DataError, match=r"domain 'a': its val documents hold \d+ tokens.*seq_len=16"
    ):
        prepare(tmp_path, [path])


def test_non_utf8_text(tmp_path):
    (tmp_path / "latin.txt").write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt:2: not UTF-8"):
        prepare(tmp_path, [tmp_path / "latin.txt"])


def test_domains_filter_naming_an_absent_domain(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in sentences(4, "a")])
    with pytest.raises(DataError, match="names zzz, but no document"):
        prepare(tmp_path, [path], domains=["a", "zzz"])
