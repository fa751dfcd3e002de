"""Real corpus layouts, each made here in the exact layout: SlimPajama (.jsonl.zst, domain at
meta.redpajama_set_name), FineWeb-style parquet, .jsonl.gz, and Hugging Face save_to_disk
folders; and damaged files, which end in one line naming the file and the fix."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest_data import sentences

from lossreweight.data import DataConfig, prepare_data
from lossreweight.errors import DataError

SLIMPAJAMA_SETS = ["RedPajamaC4", "RedPajamaGithub", "RedPajamaWikipedia"]


def config(tmp_path: Path, sources: list[Path], **overrides) -> DataConfig:
    base = {
        "sources": [str(s) for s in sources],
        "seq_len": 16,
        "tokenizer": {"vocab_size": 300},
        "cache_dir": str(tmp_path / "cache"),
    }
    return DataConfig(**(base | overrides))


def prepare(tmp_path: Path, sources: list[Path], **overrides):
    return prepare_data(config(tmp_path, sources, **overrides), tmp_path / "out", progress=False)


def slimpajama_records(n_per_set: int = 6) -> list[dict]:
    """Records as SlimPajama's chunks hold them: text, and the source set under meta."""
    records = []
    for k in range(n_per_set):
        for name in SLIMPAJAMA_SETS:
            text = sentences(n_per_set, name)[k]
            records.append({"text": text, "meta": {"redpajama_set_name": name}})
    return records


def write_zst(path: Path, records: list[dict], frames: int = 1) -> Path:
    zstandard = pytest.importorskip("zstandard")
    lines = [(json.dumps(r) + "\n").encode() for r in records]
    step = -(-len(lines) // frames)
    # Several frames back to back, as concatenated chunks are.
    path.write_bytes(
        b"".join(
            zstandard.ZstdCompressor().compress(b"".join(lines[i : i + step]))
            for i in range(0, len(lines), step)
        )
    )
    return path


def test_slimpajama_jsonl_zst_with_a_dotted_domain_field(tmp_path):
    folder = tmp_path / "SlimPajama-627B" / "train" / "chunk1"
    folder.mkdir(parents=True)
    records = slimpajama_records()
    write_zst(folder / "example_train_0.jsonl.zst", records[:9], frames=2)
    write_zst(folder / "example_train_1.jsonl.zst", records[9:])
    data = prepare(tmp_path, [folder], domain_field="meta.redpajama_set_name")
    assert data.domains == sorted(SLIMPAJAMA_SETS)
    assert all(s["documents"] == 6 for s in data.stats().values())
    tok = data.load_tokenizer()
    stream = data.tokens("train", "RedPajamaC4").tolist()
    assert tok.decode(stream[: stream.index(data.eos_id)]) == records[0]["text"]


def test_fineweb_parquet_with_metadata_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [
        {
            "text": t,
            "id": f"<urn:uuid:{i}>",
            "dump": "CC-MAIN-2024-10" if i % 2 else "CC-MAIN-2023-50",
            "url": f"https://example.org/{i}",
            "language": "en",
            "language_score": 0.9,
            "token_count": len(t.split()),
        }
        for i, t in enumerate(sentences(12, "web"))
    ]
    path = tmp_path / "000_00000.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=5)
    data = prepare(tmp_path, [path], domain_field="dump")
    assert data.domains == ["CC-MAIN-2023-50", "CC-MAIN-2024-10"]
    # Without a domain field the file's name is the domain; metadata columns are ignored.
    assert prepare_data(config(tmp_path, [path]), tmp_path / "plain", progress=False).domains == [
        "000_00000"
    ]


def test_parquet_with_a_struct_column_and_a_missing_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "sp.parquet"
    pq.write_table(pa.Table.from_pylist(slimpajama_records()), path)
    data = prepare(tmp_path, [path], domain_field="meta.redpajama_set_name")
    assert data.domains == sorted(SLIMPAJAMA_SETS)
    with pytest.raises(DataError, match=r"sp.parquet: no 'source' column for data.domain_field"):
        prepare_data(config(tmp_path, [path], domain_field="source"), tmp_path / "x")


def test_jsonl_gz_with_its_own_text_and_domain_fields(tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    records = [
        {"content": t, "source": {"name": "alpha" if i % 2 else "beta"}}
        for i, t in enumerate(sentences(10, "gz"))
    ]
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    data = prepare(tmp_path, [path], text_field="content", domain_field="source.name")
    assert data.domains == ["alpha", "beta"]
    # A record without the named domain is an error naming the key, not a silent default.
    path.write_bytes(gzip.compress((json.dumps({"content": "x"}) + "\n").encode()))
    with pytest.raises(DataError, match=r"docs.jsonl.gz:1: the record has no 'source.name'"):
        cfg = config(tmp_path, [path], text_field="content", domain_field="source.name")
        prepare_data(cfg, tmp_path / "other", progress=False)


def _hf_records() -> list[dict]:
    return [
        {"text": t, "meta": {"subset": "news" if i % 3 else "books"}}
        for i, t in enumerate(sentences(15, "hf"))
    ]


def test_hugging_face_save_to_disk_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "my_corpus"
    datasets.Dataset.from_list(_hf_records()).save_to_disk(str(folder), num_shards=2)
    data = prepare(tmp_path, [folder])
    assert data.domains == ["my_corpus"] and data.stats()["my_corpus"]["documents"] == 15
    data = prepare_data(
        config(tmp_path, [folder], domain_field="meta.subset"), tmp_path / "by_subset"
    )
    assert data.domains == ["books", "news"]


def test_hugging_face_save_to_disk_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    records = _hf_records()
    folder = tmp_path / "dd"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(records[:10]),
            "test": datasets.Dataset.from_list(records[10:]),
        }
    ).save_to_disk(str(folder))
    data = prepare(tmp_path, [f"corpus={folder}"])
    # The dict's splits are not domains: every row is a document of the source's domain.
    assert data.domains == ["corpus"] and data.stats()["corpus"]["documents"] == 15


def test_a_missing_zstandard_names_the_extra(tmp_path, monkeypatch):
    path = write_zst(tmp_path / "a.jsonl.zst", slimpajama_records(2))
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(DataError, match=r"a.jsonl.zst: .*zstandard.*lossreweight\[data\]"):
        prepare(tmp_path, [path])


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_a_truncated_download_is_one_line_naming_the_file(tmp_path, suffix):
    whole = tmp_path / f"whole{suffix}"
    records = [{"text": t} for t in sentences(400, "cut")]
    if suffix == ".jsonl.gz":
        whole.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    else:
        write_zst(whole, records)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        prepare(tmp_path, [cut])
    message = str(e.value)
    assert "\n" not in message and str(cut) in message
    assert "the file is truncated/corrupt" in message and "re-download it" in message
    assert not (tmp_path / "out").exists()


def test_a_gz_that_is_not_gzip_says_so(tmp_path):
    path = tmp_path / "plain.jsonl.gz"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in sentences(4, "p")))
    with pytest.raises(DataError, match=r"plain.jsonl.gz: not a gzip file.*rename it to .jsonl"):
        prepare(tmp_path, [path])


def test_a_line_over_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import lossreweight.data.readers as readers

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"text": "word " * 500}) + "\n")
    with pytest.raises(DataError, match=r"big.jsonl:1: a line longer than"):
        prepare(tmp_path, [path])


def test_a_long_document_is_encoded_in_pieces_with_the_same_ids(tmp_path):
    import numpy as np

    import lossreweight.data.pieces as enc
    from lossreweight.data.tokenizer import train_bpe

    text = " ".join(f"w{i % 97} x{i % 13}." for i in range(3000)) + "\n\nend  of  it"
    pieces = enc.split_long(text, limit=500)
    assert "".join(pieces) == text and max(map(len, pieces)) <= 500 and len(pieces) > 10
    tok = train_bpe([text], 400, tmp_path / "tok")
    whole = tok.encode(text) + [tok.eos_id]
    enc_limit = enc.MAX_PIECE_CHARS
    try:
        enc.MAX_PIECE_CHARS = 500
        (ids,) = enc.encode_texts(tok, [text], np.dtype("<u2"))
    finally:
        enc.MAX_PIECE_CHARS = enc_limit
    assert ids.tolist() == whole


@pytest.mark.slow  # ~25 s: tokenizing 50 MB on one core
def test_memory_stays_bounded_for_one_50_mb_document(tmp_path):
    """The reliability report measured 7.9 GB for a single 50 MB line (8.1 GB here before the
    fix); now the document is read as one line and tokenized in 1 MiB pieces (~360 MB)."""
    path = tmp_path / "huge.jsonl"
    words = " ".join(f"word{i % 1000}" for i in range(10_000))
    with open(path, "w") as f:
        for t in sentences(4, "small"):
            f.write(json.dumps({"text": t}) + "\n")
        f.write(json.dumps({"text": (words + "\n") * (50_000_000 // (len(words) + 1))}) + "\n")
    script = textwrap.dedent(
        f"""
        import resource, sys
        from lossreweight.data import DataConfig, prepare_data
        from lossreweight.data.tokenizer import train_bpe
        from pathlib import Path
        train_bpe(["word1 word2 small"] * 10, 300, Path({str(tmp_path / "tok")!r}))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cfg = DataConfig(sources=[{str(path)!r}], seq_len=16, val_fraction=0.5,
                         tokenizer={{"kind": "hf", "path": {str(tmp_path / "tok")!r}}})
        prepare_data(cfg, {str(tmp_path / "out")!r}, progress=False, workers=1)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(base, peak)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    base_kb, peak_kb = map(int, out.stdout.split())
    grew_mb = (peak_kb - base_kb) / 1024
    assert grew_mb < 1024, f"peak RSS grew by {grew_mb:.0f} MB for one 50 MB document"
