"""Tokenizers: the trained BPE, a Hugging Face folder, a tiktoken file."""

from __future__ import annotations

import json

import pytest
from conftest_data import small_config, small_data, small_docs

from lossreweight.data import check_vocab_fits, load_tokenizer, prepare_data
from lossreweight.data.tiktoken_bpe import _byte_decoder, read_tiktoken_file, write_tiktoken_file
from lossreweight.data.tokenizer import EOS_TOKEN, import_tiktoken
from lossreweight.errors import DataError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_data(tmp_path_factory.getbasetemp() / "data-cache")


@pytest.fixture(scope="module")
def docs():
    return small_docs()


@pytest.fixture(scope="module")
def tiktoken_file(data, tmp_path_factory):
    """Our BPE written as a tiktoken BPE file (ranks in merge order, like GPT-2's)."""
    pytest.importorskip("tiktoken")
    vocab = json.loads((data.tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"]
    decoder = _byte_decoder()
    ranks = {}
    for token, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        ranks[bytes(decoder[c] for c in token)] = len(ranks)
    path = tmp_path_factory.mktemp("tiktoken") / "tiny.tiktoken"
    write_tiktoken_file(ranks, path)
    return path


def test_bpe_round_trip_is_exact_on_every_domain(data, docs):
    tok = data.load_tokenizer()
    assert tok.vocab_size == data.vocab_size == 512
    for domain in data.domains:
        for doc in [d for d in docs if d.domain == domain][:3]:
            ids = tok.encode(doc.text)
            assert max(ids) < tok.vocab_size
            assert tok.decode(ids) == doc.text


def test_literal_end_of_text_in_a_document_is_not_a_boundary(data):
    tok = data.load_tokenizer()
    ids = tok.encode(f"a{EOS_TOKEN}b")
    assert tok.eos_id not in ids
    assert tok.decode(ids) == f"a{EOS_TOKEN}b"


def test_fast_path_matches_tokenizers_exactly(data, docs):
    pytest.importorskip("tiktoken")
    tok = data.load_tokenizer()
    texts = [d.text for d in docs]
    reference = [e.ids for e in tok._tok.encode_batch_fast(texts, add_special_tokens=False)]
    assert tok.encode_batch(texts) == reference  # first call checks the tiktoken twin
    assert tok._twin_checked
    assert tok.encode_batch(texts) == reference  # later calls use it


def test_bpe_folder_loads_with_autotokenizer(data):
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(
        str(data.tokenizer_dir), local_files_only=True
    )
    assert auto.eos_token == EOS_TOKEN and auto.eos_token_id == data.eos_id
    text = "def f(x):\n    return x  # ünïcode ✓\n"
    assert auto.encode(text, add_special_tokens=False) == data.load_tokenizer().encode(text)
    assert auto.decode(auto.encode(text, add_special_tokens=False)) == text


def test_hf_tokenizer_folder(data, docs, tmp_path):
    cfg = small_config(
        tmp_path,
        tokenizer={"kind": "hf", "path": str(data.tokenizer_dir)},
        domains=["math", "docs"],
    )
    hf = prepare_data(cfg, tmp_path / "out", progress=False)
    assert hf.index["tokenizer"]["kind"] == "hf"
    assert hf.vocab_size == data.vocab_size and hf.eos_id == data.eos_id
    text = next(d.text for d in docs if d.domain == "math")
    assert hf.load_tokenizer().encode(text) == data.load_tokenizer().encode(text)


def test_tiktoken_file(tiktoken_file, docs, tmp_path):
    tok = import_tiktoken(tiktoken_file, None, tmp_path / "tok")
    assert tok.eos_id == tok.vocab_size - 1 == len(read_tiktoken_file(tiktoken_file))
    for doc in docs[::40]:
        assert tok.decode(tok.encode(doc.text)) == doc.text
    again = load_tokenizer(tmp_path / "tok")
    assert again.encode(docs[0].text) == tok.encode(docs[0].text)


def test_tiktoken_prepare(tiktoken_file, tmp_path):
    cfg = small_config(
        tmp_path,
        tokenizer={"kind": "tiktoken", "path": str(tiktoken_file)},
        domains=["scripture", "code"],
    )
    data = prepare_data(cfg, tmp_path / "out", progress=False)
    assert data.index["tokenizer"]["kind"] == "tiktoken"
    tok = data.load_tokenizer()
    stream = data.tokens("train", "code")
    first = stream[: list(stream).index(data.eos_id)].tolist()
    assert tok.decode(first).startswith("# ")


def test_bad_tokenizer_paths(tmp_path):
    pytest.importorskip("tiktoken")
    (tmp_path / "broken.tiktoken").write_text("not base64 at all\n")
    with pytest.raises(DataError, match=r"broken.tiktoken:1: not a tiktoken BPE line"):
        import_tiktoken(tmp_path / "broken.tiktoken", None, tmp_path / "t")
    with pytest.raises(DataError, match="no such file"):
        import_tiktoken(tmp_path / "missing.tiktoken", None, tmp_path / "t")
    cfg = small_config(tmp_path, tokenizer={"kind": "hf", "path": str(tmp_path / "nope")})
    with pytest.raises(DataError, match="not a directory"):
        prepare_data(cfg, tmp_path / "out", progress=False)


def test_check_vocab_fits():
    check_vocab_fits(4096, 4096)
    check_vocab_fits(100, 4096)
    with pytest.raises(DataError, match="4097 tokens.*holds 4096.*at least 4097"):
        check_vocab_fits(4097, 4096)
