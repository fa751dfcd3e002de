"""`lossreweight sample RUN`: text from a checkpoint, without an export (nanoGPT's sample.py)."""

from __future__ import annotations

import pytest
import torch
from cli_utils import run_cli
from train_utils import TINY_OVERRIDES

from lossreweight.commands.sample import SEPARATOR, generate


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "run"
    rc, _, err = run_cli("train", "tiny", "--out", str(out), *TINY_OVERRIDES, "train.max_steps=3")
    assert rc == 0, err
    return out


class _Counter(torch.nn.Module):
    """Logits that always favour (last token + 1) mod V, strongly, and never token 0 first."""

    def __init__(self, vocab: int = 8) -> None:
        super().__init__()
        self.vocab, self.seen = vocab, []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.seen.append(ids.shape[1])
        nxt = (ids + 1) % self.vocab
        return torch.nn.functional.one_hot(nxt, self.vocab).float() * 10.0


def test_generate_greedy_top_k_context_and_eos():
    m = _Counter()
    out = generate(m, torch.tensor([[3]]), 4, temperature=0)
    assert out.tolist() == [[3, 4, 5, 6, 7]]
    # top_k=1 is greedy whatever the temperature; the context window caps what the model sees.
    m = _Counter()
    out = generate(m, torch.tensor([[1, 2, 3]]), 5, temperature=5.0, top_k=1, context=2)
    assert out.tolist() == [[1, 2, 3, 4, 5, 6, 7, 0]] and max(m.seen) == 2
    # end-of-text ends the sample
    assert generate(_Counter(), torch.tensor([[5]]), 10, temperature=0, eos_id=7).tolist() == [
        [5, 6, 7]
    ]


def test_generate_is_seeded():
    def draw(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        flat = torch.nn.Module()
        flat.forward = lambda ids: torch.zeros(1, ids.shape[1], 50)  # uniform over 50 tokens
        return generate(flat, torch.tensor([[0]]), 20, temperature=1.0, generator=gen)[0].tolist()

    assert draw(1) == draw(1) and draw(1) != draw(2)


def test_sample_command(run_dir):
    args = ("sample", str(run_dir), "--prompt", "The", "--max-new-tokens", "8", "--seed", "3")
    rc, out, err = run_cli(*args, "--num-samples", "2")
    assert rc == 0, err
    assert "sampling from" in err and "step_00000003" in err
    first, second = out.rstrip("\n").split(f"\n{SEPARATOR}\n")
    assert first.startswith("The") and second.startswith("The")
    assert run_cli(*args, "--num-samples", "2")[1] == out  # the seed decides the text
    rc, greedy, _ = run_cli(*args[:-2], "--temperature", "0", "--no-stop-at-eos")
    assert rc == 0 and greedy.startswith("The") and len(greedy) > len("The\n")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "-1"], "--temperature must be"),
        (["--top-k", "0"], "--top-k must be >= 1"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
        (["--prompt", "FILE:/nonexistent/prompt.txt"], "cannot read"),
    ],
)
def test_sample_bad_flags_are_one_line(run_dir, flags, message):
    rc, _, err = run_cli("sample", str(run_dir), *flags)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_sample_needs_a_run(tmp_path):
    rc, _, err = run_cli("sample", str(tmp_path / "nowhere"))
    assert rc == 2 and "does not exist" in err
