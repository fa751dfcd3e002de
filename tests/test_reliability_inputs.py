"""Bad input at every entry point: exit code 2, one line naming the file/key and the fix, no
traceback, nothing written. Tampered checkpoints are rejected and never run code."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability_helpers import one_line, snapshot
from train_utils import TINY_OVERRIDES

from lossreweight.cli import main
from lossreweight.config import (
    RunConfig,
    all_keys,
    apply_overrides,
    read_config_file,
    validate_config,
)
from lossreweight.errors import UserError
from lossreweight.integrity import write_manifest
from lossreweight.train import load_config, train

Case = Callable[[Path], tuple[list[str], str]]


def _file(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _yaml(tmp: Path, data: object) -> list[str]:
    return [str(_file(tmp, "cfg.yaml", yaml.safe_dump(data)))]


# Each case: the `lossreweight train` arguments after the config position, and a substring the
# one-line error must hold. CONFIG is replaced by "tiny" unless the case gives a file.
CASES: dict[str, Case] = {
    # config files
    "config missing": lambda t: ([str(t / "nope.yaml")], "neither a file nor a preset"),
    "config bad yaml": lambda t: (
        [str(_file(t, "c.yaml", "train: [unclosed\n"))],
        "not valid YAML",
    ),
    "config not a mapping": lambda t: (_yaml(t, [1, 2]), "must be a mapping"),
    "config binary": lambda t: (
        [str(_file(t, "c.yaml", b"\xff\xfe\x00garbage"))],
        "cannot read config",
    ),
    "config unknown section": lambda t: (_yaml(t, {"trian": {"lr": 1}}), "did you mean train"),
    "config wrong type": lambda t: (_yaml(t, {"train": {"max_steps": "many"}}), "train.max_steps"),
    "config section not a mapping": lambda t: (_yaml(t, {"train": 3}), "train"),
    "config nan lr": lambda t: (_yaml(t, {"train": {"lr": float("nan")}}), "train.lr"),
    "config inf lr": lambda t: (_yaml(t, {"train": {"lr": float("inf")}}), "train.lr"),
    # overrides
    "override unknown key": lambda t: (["tiny", "train.lrr=1"], "did you mean train.lr"),
    "override no equals": lambda t: (["tiny", "train.lr"], "key=value"),
    "override empty key": lambda t: (["tiny", "=3"], "unknown config key"),
    "override bad value": lambda t: (["tiny", "eval.every=-1"], "eval.every"),
    "override bad schedule": lambda t: (
        ["tiny", "reweight.temperature={kind: [1]}"],
        "temperature",
    ),
    "override bad mixture": lambda t: (["tiny", "data.mixture={code: -1}"], "mixture"),
    # command-line flags
    "flag max-steps 0": lambda t: (["tiny", "--max-steps", "0"], "--max-steps must be >= 1"),
    "flag max-steps text": lambda t: (["tiny", "--max-steps", "abc"], "invalid int value"),
    "flag checkpoint-every": lambda t: (["tiny", "--checkpoint-every", "-1"], "--checkpoint-every"),
    "flag unknown": lambda t: (["tiny", "--bogus"], "unrecognized arguments"),
    # data files, tokenizer files, data folders
    "data source missing": lambda t: (["tiny", f"data.sources=[{t / 'none'}]"], "source not found"),
    "data folder empty": lambda t: (
        ["tiny", f"data.sources=[{_file(t, 'e/x.bin', '').parent}]"],
        "no supported files",
    ),
    "data bad jsonl": lambda t: (
        ["tiny", f"data.sources=[{_file(t, 'd.jsonl', 'nope')}]"],
        "not valid JSON",
    ),
    "tokenizer garbage": lambda t: (
        [
            "tiny",
            "data.tokenizer.kind=hf",
            f"data.tokenizer.path={_file(t, 'tok/tokenizer.json', 'x').parent}",
        ],
        "tokenizer.json",
    ),
    "tokenizer missing": lambda t: (
        ["tiny", "data.tokenizer.kind=hf", f"data.tokenizer.path={t / 'tok'}"],
        "not a directory",
    ),
    "data-dir foreign": lambda t: (
        ["tiny", "--data-dir", str(_file(t, "mine/notes.txt", "x").parent)],
        "not empty",
    ),
    # output directory and logging
    "out is a file": lambda t: (["tiny", "--out", str(_file(t, "run", "x"))], "not a directory"),
    "out foreign dir": lambda t: (
        ["tiny", "--out", str(_file(t, "run/config.yaml", "mine").parent)],
        "holds no run",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    (config, *rest), message = CASES[case](tmp_path / "inputs")
    if "--out" not in rest:
        rest = ["--out", str(tmp_path / "run"), *rest]
    before = snapshot(tmp_path)
    tiny = TINY_OVERRIDES if config == "tiny" else []  # a broken file is tested on its own
    assert main(["train", config, *tiny, *rest]) == 2
    assert message in one_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before  # no --out created, no input touched


def test_wandb_project_without_wandb_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed (find_spec -> None)
    out = tmp_path / "run"
    assert main(["train", "tiny", *TINY_OVERRIDES, "--out", str(out), "log.wandb_project=x"]) == 2
    assert "wandb is not installed" in one_line(capsys.readouterr().err)
    assert not out.exists()


def test_wandb_project_without_api_key_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc with a wandb key
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    out = tmp_path / "run"
    assert main(["train", "tiny", *TINY_OVERRIDES, "--out", str(out), "log.wandb_project=x"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "wandb has no API key" in err and "WANDB_MODE=offline" in err
    assert not out.exists()


# -- fuzzing the config loader -----------------------------------------------------------------
KEYS = all_keys(RunConfig)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["constant", "step", "cosine", "natural", "uniform", "linupper", "bpe", "hf"]),
)
_keys = st.one_of(
    st.sampled_from(sorted({k.rsplit(".", 1)[-1] for k in KEYS} | {"kind", "r", "code"})),
    st.text(max_size=4),
    st.integers(),
    st.none(),
    st.booleans(),
)
_values = st.recursive(
    _scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(_keys, c, max_size=3),
    max_leaves=10,
)
_sections = st.dictionaries(
    st.one_of(
        st.sampled_from(["data", "model", "train", "reweight", "eval", "log", "checkpoint"]), _keys
    ),
    _values,
    max_size=4,
)
_override = st.builds(
    lambda k, v: f"{k}={v}",
    st.one_of(st.sampled_from(KEYS), st.text(max_size=12)),
    st.one_of(
        st.text(max_size=12),
        _scalars.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
    ),
)
BASE = read_config_file("tiny")
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ
@given(_sections)
def test_fuzz_validate_config_raises_only_user_errors(data: dict[Any, Any]) -> None:
    with contextlib.suppress(UserError):  # any other exception fails the test
        validate_config(data)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(sorted(BASE)), _values, max_size=2),
    st.lists(_override, max_size=4),
)
def test_fuzz_overrides_on_a_preset_raise_only_user_errors(
    patch: dict[str, Any], overrides: list[str]
) -> None:
    data = {**copy.deepcopy(BASE), **patch}
    with contextlib.suppress(UserError):
        validate_config(apply_overrides(data, overrides))


@pytest.mark.parametrize(
    "override",
    [
        "train.lr=" + "[" * 5000,
        "train.lr=&a [*a]",
        "reweight.temperature=&a {kind: *a}",
        "train.seed=18446744073709551616",
        "train.lr=.inf",
        "data.mixture={1: 1}",
        "1.2=3",
    ],
)
def test_config_edge_values_are_user_errors(override: str) -> None:
    """What the fuzzer found, and values it cannot reach (deep nesting, YAML self-reference)."""
    with pytest.raises(UserError):
        load_config("tiny", [override])


# -- checkpoints -------------------------------------------------------------------------------
RUN4 = [*TINY_OVERRIDES, "train.max_steps=4", "checkpoint.every=2"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run with checkpoints at steps 2 and 4 (copied by each test)."""
    out = tmp_path_factory.mktemp("pristine") / "run"
    train(load_config("tiny", RUN4), out)
    return out


class RunsCode:
    """Unpickling this would create the marker file: a checkpoint must never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_state(path: Path) -> None:
    state = json.loads(path.read_text())
    path.write_text(json.dumps({**state, "step": "4", "loader": None}))


TAMPER: dict[str, tuple[str, Callable[[Path], None]]] = {
    "code in optimizer.pt": (
        "optimizer.pt",
        lambda p: torch.save({"state": RunsCode(p.parent / "PWNED")}, p),
    ),
    "truncated optimizer.pt": ("optimizer.pt", _truncate),
    "truncated model.safetensors": ("model.safetensors", _truncate),
    "garbage model.safetensors": (
        "model.safetensors",
        lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage"),
    ),
    "garbage state.json": ("state.json", lambda p: p.write_bytes(b"\x00{not json")),
    "edited state.json": ("state.json", _edit_state),
    "truncated rng file": ("rng_rank0.safetensors", _truncate),
}


def reseal(ckpt: Path) -> None:
    """Rewrite the checkpoint's manifest for its current files (the hash check then passes)."""
    write_manifest(ckpt, int(ckpt.name.removeprefix("step_")), finite=True)


@pytest.mark.parametrize("case", list(TAMPER))
def test_tampered_checkpoint_is_rejected_and_runs_no_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished_run: Path, case: str
) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    name, tamper = TAMPER[case]
    newest = out / "checkpoints" / "step_00000004"
    tamper(newest / name)
    if case == "code in optimizer.pt":
        reseal(newest)  # a tamperer who rewrites the manifest too: torch.load must still refuse
    before = snapshot(out)
    assert main(["train", "tiny", "--out", str(out), *RUN4, "train.max_steps=6"]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{newest / name}" in err and f"delete {newest}" in err and "step_00000002" in err
    assert not (newest / "PWNED").exists()
    if case == "code in optimizer.pt":
        assert "could run code; refused" in err
    assert snapshot(out) == before  # the run directory is left as it was


def test_checkpoint_from_another_model_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished_run: Path
) -> None:
    other = tmp_path / "other"
    train(load_config("tiny", [*RUN4, "train.max_steps=2", "model.n_layers=1"]), other)
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    shutil.copy(
        other / "checkpoints" / "step_00000002" / "model.safetensors",
        out / "checkpoints" / "step_00000004",
    )
    reseal(out / "checkpoints" / "step_00000004")  # hashes pass: the shape check must catch it
    before = snapshot(out)
    assert main(["train", "tiny", "--out", str(out), *RUN4, "train.max_steps=6"]) == 2
    assert "another model shape" in one_line(capsys.readouterr().err)
    assert snapshot(out) == before
    # A whole other config on the same --out is refused before any checkpoint is read.
    assert main(["train", "tiny", "--out", str(out), *RUN4, "model.dim=64"]) == 2
    assert "other settings" in one_line(capsys.readouterr().err) and snapshot(out) == before


# -- library misuse: one-line TypeError/ValueError naming the argument (issue 19.6) ----------
def _library_cases() -> dict[str, tuple[Callable[[], object], str]]:
    from lossreweight.losses import per_sample_loss
    from lossreweight.reweighting import Reweighter, cap_weights, combine_stats, compute_weights

    losses = torch.tensor([1.0, 2.0, 3.0])
    both = torch.tensor([True, True])
    logits, labels = torch.randn(2, 4, 10), torch.randint(0, 10, (2, 4))
    stats = Reweighter().weights_and_stats(losses)[1]

    def cw(**kw: object) -> object:
        return compute_weights(kw.pop("losses", losses), **({"strategy": "linupper"} | kw))

    return {
        "compute_weights list": (lambda: cw(losses=[1.0, 2.0], temperature=1.0), "losses must"),
        "compute_weights name": (lambda: cw(strategy="nope", temperature=1.0), "unknown strategy"),
        "compute_weights r=0": (lambda: cw(temperature=0.0), "temperature=0.0 is outside"),
        "compute_weights r=str": (lambda: cw(temperature="1"), "temperature must be a number"),
        "compute_weights 2-D": (lambda: cw(losses=losses[:, None], temperature=1.0), "1-D"),
        "compute_weights ints": (
            lambda: cw(losses=torch.tensor([1, 2]), temperature=1.0),
            "floating-point",
        ),
        "compute_weights empty": (lambda: cw(losses=losses[:0], temperature=1.0), "empty"),
        "compute_weights delta": (lambda: cw(temperature=1.0, delta=0), "delta=0 is outside"),
        "compute_weights cap": (lambda: cw(temperature=1.0, max_weight=0.5), "max_weight must"),
        "compute_weights valid": (
            lambda: cw(temperature=1.0, valid=torch.ones(3)),
            "valid must be a boolean",
        ),
        "cap_weights list": (lambda: cap_weights([0.5, 0.5], both, 2.0), "weights must be"),
        "cap_weights no mask": (lambda: cap_weights(torch.tensor([0.5, 0.5]), None, 2.0), "valid"),
        "cap_weights c<1": (
            lambda: cap_weights(torch.tensor([0.9, 0.1]), both, 0.5),
            "max_weight must be a finite number >= 1",
        ),
        "cap_weights NaN": (
            lambda: cap_weights(torch.tensor([float("nan"), 0.1]), both, 2.0),
            "must be finite",
        ),
        "cap_weights shape": (
            lambda: cap_weights(torch.tensor([0.9, 0.1]), both[:1], 2.0),
            "valid shape (1,) must match weights",
        ),
        "combine_stats dict": (lambda: combine_stats(stats), "wrap one in a list"),
        "combine_stats None": (lambda: combine_stats(None), "list of statistics dicts"),
        "combine_stats ints": (lambda: combine_stats([1, 2]), "not a statistics dict"),
        "combine_stats python": (
            lambda: combine_stats([{"num_samples": 1.0}, {"num_samples": 2.0}]),
            "no tensor 'num_samples'",
        ),
        "combine_stats shapes": (
            lambda: combine_stats(
                [
                    {"num_samples": torch.tensor(1.0), "share": torch.zeros(2)},
                    {"num_samples": torch.tensor(1.0), "share": torch.zeros(3)},
                ]
            ),
            "'share' is not a tensor of one shape",
        ),
        "per_sample_loss ignore_index": (
            lambda: per_sample_loss(logits, labels, ignore_index="x"),
            "ignore_index must be an integer",
        ),
        "per_sample_loss shift": (
            lambda: per_sample_loss(logits, labels, shift="yes"),
            "shift must be True or False",
        ),
        "per_sample_loss chunk": (
            lambda: per_sample_loss(logits, labels, chunk_size=1.5),
            "chunk_size must be an integer",
        ),
        "per_sample_loss vocab 0": (
            lambda: per_sample_loss(torch.randn(2, 4, 0), labels),
            "vocabulary of size 0",
        ),
        "per_sample_loss int head": (
            lambda: per_sample_loss(
                hidden_states=torch.randn(2, 4, 8),
                labels=labels,
                lm_head_weight=torch.ones(10, 8, dtype=torch.long),
            ),
            "lm_head_weight must be a floating-point tensor",
        ),
        "explicit inf weights": (
            lambda: Reweighter().weighted_loss(losses, weights=torch.tensor([float("inf"), 0, 0])),
            "weights must be finite and >= 0 (got inf)",
        ),
    }


LIBRARY_CASES = _library_cases()


@pytest.mark.parametrize("case", list(LIBRARY_CASES))
def test_library_misuse_is_one_line_naming_the_argument(case: str) -> None:
    call, message = LIBRARY_CASES[case]
    with pytest.raises((TypeError, ValueError)) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert type(e.value).__module__ == "builtins"  # ours, not a torch RuntimeError


def test_a_dataclass_strategy_works_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import dataclass

    from lossreweight.reweighting import Reweighter, compute_weights, register_strategy, strategies

    # the registration is undone after the test: other tests list the registered names
    monkeypatch.setattr(strategies, "_REGISTRY", dict(strategies._REGISTRY))

    @dataclass
    class Scaled:  # eq=True makes it unhashable
        k: float = 1.0

        def __call__(self, x: torch.Tensor, delta: float) -> torch.Tensor:
            return self.k * x

    losses = torch.tensor([1.0, 2.0, 3.0])
    expected = compute_weights(losses, strategy="linear", temperature=0.5)
    assert torch.allclose(Reweighter(Scaled(0.5), 0.5).weights(losses), expected)
    assert torch.allclose(compute_weights(losses, strategy=Scaled(0.5), temperature=0.5), expected)
    register_strategy("scaled-dataclass", Scaled(0.5), overwrite=True)
    assert torch.allclose(Reweighter("scaled-dataclass", 0.5).weights(losses), expected)
