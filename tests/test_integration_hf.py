"""Hugging Face integrations: ReweightingTrainer and ReweightedLossFunc against the plain Trainer.

Tiny models from configs (no downloads), fp32, CPU, no dropout. The equality checks use plain
SGD without clipping: Adam would hide a wrong constant loss scale (it is nearly invariant to it).
Run as a script, this file is the torchrun worker of `test_two_gloo_ranks_equal_one_process`.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from lossreweight import Reweighter
from lossreweight.integrations.hf_loss import ReweightedLossFunc
from lossreweight.integrations.hf_trainer import ReweightingTrainer

hf_logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parents[1]
VOCAB, SEQ = 64, 8


class TokenRows(torch.utils.data.Dataset):
    """Random token rows; labels = inputs, optionally with position 0 set to -100."""

    def __init__(self, n: int = 16, first_ignored: bool = False, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, SEQ), generator=g)
        self.first_ignored = first_ignored

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        labels = self.ids[i].clone()
        if self.first_ignored:
            labels[0] = -100
        return {"input_ids": self.ids[i], "labels": labels, "domain_ids": torch.tensor(i % 2)}


def llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            bos_token_id=0,
            eos_token_id=0,
        )
    )


def gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=SEQ,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
        )
    )


def targs(out: str, ga: int, *, lr: float = 0.5, batch: int = 2, **kw) -> TrainingArguments:
    base = dict(
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=ga,
        max_steps=3,
        learning_rate=lr,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        report_to=[],
        use_cpu=True,
        seed=0,
        logging_steps=1,
        save_strategy="no",
        train_sampling_strategy="sequential",
        disable_tqdm=True,
    )
    base.update(kw)
    return TrainingArguments(out, **base)


def train(cls, model, ds, ga: int, *, attach=None, callbacks=None, args_kw=None, **kw) -> Trainer:
    with tempfile.TemporaryDirectory() as out:
        t = cls(
            model=model,
            args=targs(out, ga, **(args_kw or {})),
            train_dataset=ds,
            callbacks=callbacks,
            **kw,
        )
        t.remove_callback(PrinterCallback)
        if attach is not None:
            attach.attach(t)
        t.train()
    return t


def max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(
        (p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def linupper_weights(losses: torch.Tensor, r: float) -> torch.Tensor:
    """SPEC 2 re-derived: normalise to [-1, 1], min(x + 1, 1), softmax(s / r)."""
    x = (2 * losses - losses.max() - losses.min()) / (losses.max() - losses.min())
    return torch.softmax(torch.clamp(x + 1, max=1.0) / r, dim=0)


def sample_losses(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Per-sample mean next-token CE, the textbook way (independent of per_sample_loss)."""
    logits = model(input_ids=ids).logits
    tok = F.cross_entropy(
        logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1), reduction="none"
    )
    return tok.view(ids.shape[0], -1).mean(1)


# -- uniform == plain Trainer ---------------------------------------------------------------
@pytest.mark.parametrize("first_ignored", [False, True], ids=["labels=inputs", "labels[0]=-100"])
@pytest.mark.parametrize("ga", [1, 2, 4])
def test_uniform_equals_plain_trainer(ga: int, first_ignored: bool) -> None:
    base = llama()
    ds = TokenRows(first_ignored=first_ignored)
    plain = train(Trainer, copy.deepcopy(base), ds, ga)
    assert max_diff(plain.model, base) > 1e-2  # it trained
    for scope in ("micro", "step"):
        rw = train(
            ReweightingTrainer,
            copy.deepcopy(base),
            ds,
            ga,
            reweighter=Reweighter("uniform", scope=scope),
        )
        assert max_diff(plain.model, rw.model) < 1e-5, scope
        logged = [h["loss"] for h in rw.state.log_history if "loss" in h]
        want = [h["loss"] for h in plain.state.log_history if "loss" in h]
        assert logged == pytest.approx(want, abs=1e-5)  # uniform, equal lengths: every mean agrees
        assert [h["weighted_loss"] for h in rw.state.log_history if "loss" in h] == pytest.approx(
            want, abs=1e-5
        )


def test_gpt2_plain_trainer_counts_position_zero() -> None:
    """transformers 5.23: GPT2LMHeadModel has no `loss_type`, so the Trainer counts position 0 in
    `num_items_in_batch` although it is never a target: with labels = inputs its loss is
    (T-1)/T of the token mean. With labels[0] = -100 both agree exactly."""
    base = gpt2()
    ds = TokenRows()
    plain = train(Trainer, copy.deepcopy(base), ds, 2)
    rw = train(ReweightingTrainer, copy.deepcopy(base), ds, 2, reweighter=Reweighter("uniform"))
    assert max_diff(plain.model, rw.model) > 1e-4
    scaled = train(
        ReweightingTrainer,
        copy.deepcopy(base),
        ds,
        2,
        reweighter=Reweighter("uniform"),
        args_kw={"lr": 0.5 * (SEQ - 1) / SEQ},
    )
    assert max_diff(plain.model, scaled.model) < 1e-5
    ds0 = TokenRows(first_ignored=True)
    plain0 = train(Trainer, copy.deepcopy(base), ds0, 2)
    rw0 = train(ReweightingTrainer, copy.deepcopy(base), ds0, 2, reweighter=Reweighter("uniform"))
    assert max_diff(plain0.model, rw0.model) < 1e-5


@pytest.mark.parametrize("ga", [1, 2, 4])
def test_compute_loss_func_uniform_equals_plain_trainer(ga: int) -> None:
    # 12 rows of batch 2 = 6 micro-batches: with ga=4 the last window holds only 2.
    base = llama()
    ds = TokenRows(n=12)
    kw = {"args_kw": {"max_steps": -1, "num_train_epochs": 1}}
    plain = train(Trainer, copy.deepcopy(base), ds, ga, **kw)
    loss_func = ReweightedLossFunc(Reweighter("uniform"))
    rw = train(Trainer, copy.deepcopy(base), ds, ga, attach=loss_func, **kw)
    assert max_diff(plain.model, rw.model) < 1e-5
    assert any("reweight/ess_fraction" in h for h in rw.state.log_history)


def test_partial_last_window_equals_plain_trainer() -> None:
    base = llama()
    ds = TokenRows(n=12)
    kw = {"args_kw": {"max_steps": -1, "num_train_epochs": 1}}
    plain = train(Trainer, copy.deepcopy(base), ds, 4, **kw)
    for scope in ("micro", "step"):
        rw = train(
            ReweightingTrainer,
            copy.deepcopy(base),
            ds,
            4,
            reweighter=Reweighter("uniform", scope=scope),
            **kw,
        )
        assert max_diff(plain.model, rw.model) < 1e-5, scope


# -- non-uniform weights: the hand-computed update ------------------------------------------
@pytest.mark.parametrize("scope", ["micro", "step"])
def test_linupper_update_is_the_weighted_gradient(scope: str) -> None:
    base, ds, lr, r, ga = llama(), TokenRows(), 0.5, 0.3, 2
    rw = train(
        ReweightingTrainer,
        copy.deepcopy(base),
        ds,
        ga,
        reweighter=Reweighter("linupper", temperature=r, scope=scope),
        args_kw={"max_steps": 1},
    )
    ref = copy.deepcopy(base)
    ids = ds.ids[:4]  # sequential sampler: micro-batches [0, 1] and [2, 3]
    losses = sample_losses(ref, ids)
    if scope == "micro":  # weights per micro-batch, each micro-batch's loss divided by ga
        w = (
            torch.cat(
                [linupper_weights(losses[:2].detach(), r), linupper_weights(losses[2:].detach(), r)]
            )
            / ga
        )
    else:  # weights over the whole window
        w = linupper_weights(losses.detach(), r)
    assert w.max() / w.min() > 1.5  # really non-uniform
    (w * losses).sum().backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= lr * p.grad
    assert max_diff(rw.model, ref) < 1e-5
    # The higher-loss sample of each pair moved more than under uniform weights.
    uni = train(
        ReweightingTrainer,
        copy.deepcopy(base),
        ds,
        ga,
        reweighter=Reweighter("uniform"),
        args_kw={"max_steps": 1},
    )
    with torch.no_grad():
        drop_rw = losses - sample_losses(rw.model, ids)
        drop_uni = losses - sample_losses(uni.model, ids)
    top = losses.argmax()
    assert drop_rw[top] > drop_uni[top]


def test_step_scope_equals_one_process_whole_batch() -> None:
    base, ds = llama(), TokenRows()
    reweighter = Reweighter("linupper", temperature=0.3, scope="step")
    acc = train(ReweightingTrainer, copy.deepcopy(base), ds, 4, reweighter=reweighter)
    whole = train(
        ReweightingTrainer,
        copy.deepcopy(base),
        ds,
        1,
        reweighter=Reweighter("linupper", temperature=0.3),
        args_kw={"batch": 8},
    )
    assert max_diff(acc.model, whole.model) < 1e-5


def test_hidden_states_path_equals_logits_path() -> None:
    base, ds = gpt2(), TokenRows(first_ignored=True)  # GPT-2 ties its head to the embedding
    a = train(
        ReweightingTrainer,
        copy.deepcopy(base),
        ds,
        2,
        reweighter=Reweighter("linupper", temperature=0.5),
    )
    b = train(
        ReweightingTrainer,
        copy.deepcopy(base),
        ds,
        2,
        reweighter=Reweighter("linupper", temperature=0.5),
        loss_from="hidden_states",
    )
    assert max_diff(a.model, b.model) < 1e-5


def test_padded_rows_give_mean_of_sample_means() -> None:
    """The documented gap: uniform is the mean of per-sample means, not the token mean."""
    model = llama()
    with tempfile.TemporaryDirectory() as out:
        t = ReweightingTrainer(model=model, args=targs(out, 1), reweighter=Reweighter("uniform"))
    ids = TokenRows(n=2).ids
    labels = ids.clone()
    labels[1, 3:] = -100  # row 1 has 2 targets, row 0 has 7
    model.train()
    loss = t.compute_loss(model, {"input_ids": ids, "labels": labels})
    logits = model(input_ids=ids).logits.detach()
    tok = F.cross_entropy(
        logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), reduction="none"
    ).view(2, -1)
    per_sample = torch.stack([tok[0].mean(), tok[1, :2].mean()])
    assert loss.item() == pytest.approx(per_sample.mean().item(), abs=1e-5)
    assert loss.item() != pytest.approx(tok.sum().item() / 9, abs=1e-3)


# -- domain ids, logging -------------------------------------------------------------------
class Recorder(TrainerCallback):
    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_domain_ids_survive_remove_unused_columns_and_stats_reach_callbacks() -> None:
    datasets = pytest.importorskip("datasets")
    src = TokenRows(n=8)
    ds = datasets.Dataset.from_dict(
        {
            "input_ids": src.ids.tolist(),
            "labels": src.ids.tolist(),
            "domain_ids": [0, 0, 0, 1, 0, 0, 0, 1],
            "text": ["unused"] * 8,
        }
    )
    model = llama()
    seen: list[set[str]] = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(set(kw)), with_kwargs=True)
    rec = Recorder()
    t = train(
        ReweightingTrainer,
        model,
        ds,
        2,
        callbacks=[rec],
        reweighter=Reweighter("linupper", temperature=0.5),
        domain_names=["web", "code"],
        args_kw={"max_steps": 2, "logging_steps": 2},
    )
    assert t.args.remove_unused_columns
    assert seen and all("domain_ids" not in kw and "text" not in kw for kw in seen)
    (logs,) = [log for log in rec.logs if "loss" in log]
    # 8 rows of which 2 are "code", combined over the two steps' micro-batches.
    assert logs["reweight/domain_sample_share/code"] == pytest.approx(0.25)
    assert logs["reweight/domain_weight_share/web"] + logs[
        "reweight/domain_weight_share/code"
    ] == pytest.approx(1.0)
    assert logs["reweight/num_samples"] == 8  # counts add over the interval
    assert logs["reweight/max_weight_x_m"] > 1.0
    assert "reweight/ess_fraction" in t.state.log_history[0]


class Masked(TokenRows):
    """TokenRows where the rows in `masked` have no target (labels all -100): invalid samples."""

    def __init__(self, n: int = 8, masked: tuple[int, ...] = (), seed: int = 0) -> None:
        super().__init__(n, seed=seed)
        self.masked = set(masked)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = super().__getitem__(i)
        if i in self.masked:
            row["labels"] = torch.full_like(row["labels"], -100)
        return row


@pytest.mark.parametrize("path", ["trainer", "loss_func"])
def test_logged_loss_is_unweighted_beside_the_weighted_loss(path: str) -> None:
    """`loss` = the unweighted mean per-sample loss (comparable with eval_loss and across
    strategies), `weighted_loss` = what was backpropagated; at the end `train_loss` and
    `train_weighted_loss` likewise."""
    base, ds, r = llama(), TokenRows(), 0.3
    rw = Reweighter("linupper", temperature=r)
    if path == "trainer":
        t = train(
            ReweightingTrainer, copy.deepcopy(base), ds, 2, reweighter=rw, args_kw={"max_steps": 1}
        )
    else:
        t = train(
            Trainer,
            copy.deepcopy(base),
            ds,
            2,
            attach=ReweightedLossFunc(rw),
            args_kw={"max_steps": 1},
        )
    with torch.no_grad():
        losses = sample_losses(base, ds.ids[:4])  # micro-batches [0, 1] and [2, 3]
    weighted = (
        sum((linupper_weights(losses[k : k + 2], r) * losses[k : k + 2]).sum() for k in (0, 2)) / 2
    )
    (logs,) = [h for h in t.state.log_history if "loss" in h]
    assert logs["loss"] == pytest.approx(losses.mean().item(), abs=1e-5)
    assert logs["weighted_loss"] == pytest.approx(weighted.item(), abs=1e-5)
    assert logs["weighted_loss"] > logs["loss"] + 1e-3  # linupper leans on the high losses
    assert "reweight/mean_loss" not in logs and "reweight/weighted_loss" not in logs
    (final,) = [h for h in t.state.log_history if "train_loss" in h]
    assert final["train_loss"] == pytest.approx(logs["loss"], abs=1e-6)
    assert final["train_weighted_loss"] == pytest.approx(logs["weighted_loss"], abs=1e-5)


def test_train_output_reports_the_unweighted_loss() -> None:
    with tempfile.TemporaryDirectory() as out:
        t = ReweightingTrainer(
            model=llama(),
            args=targs(out, 1, max_steps=2),
            train_dataset=TokenRows(),
            reweighter=Reweighter("linupper", temperature=0.3),
        )
        t.remove_callback(PrinterCallback)
        result = t.train()
    assert result.training_loss == result.metrics["train_loss"]
    assert result.metrics["train_weighted_loss"] != pytest.approx(result.training_loss, abs=1e-4)


@pytest.mark.parametrize("path", ["trainer", "loss_func"])
def test_per_domain_evaluation_the_trainer_way(path: str) -> None:
    """eval_dataset={"a": ..., "b": ...} gives eval_a_loss, eval_b_loss (each the mean of
    per-sample means, also over an uneven last batch), then eval_domain_avg_loss and
    eval_worst_domain_loss, in the returned metrics and in the logs."""
    model = llama()
    domains = {"a": TokenRows(n=5, seed=1), "b": Masked(n=3, seed=2)}
    with tempfile.TemporaryDirectory() as out:
        args = targs(out, 1, per_device_eval_batch_size=2)
        if path == "trainer":
            t = ReweightingTrainer(
                model=model, args=args, eval_dataset=domains, reweighter=Reweighter()
            )
        else:
            t = Trainer(model=model, args=args, eval_dataset=domains)
            ReweightedLossFunc(Reweighter()).attach(t)
        t.remove_callback(PrinterCallback)
        metrics = t.evaluate()
    model.eval()
    with torch.no_grad():
        want = {name: sample_losses(model, ds.ids).mean().item() for name, ds in domains.items()}
    assert metrics["eval_a_loss"] == pytest.approx(want["a"], abs=1e-5)
    assert metrics["eval_b_loss"] == pytest.approx(want["b"], abs=1e-5)
    assert metrics["eval_domain_avg_loss"] == pytest.approx((want["a"] + want["b"]) / 2, abs=1e-5)
    assert metrics["eval_worst_domain_loss"] == pytest.approx(max(want.values()), abs=1e-5)
    logged = [h for h in t.state.log_history if "eval_worst_domain_loss" in h]
    assert len(logged) == 1 and logged[0]["eval_domain_avg_loss"] == metrics["eval_domain_avg_loss"]


def test_worst_domain_can_pick_the_best_model() -> None:
    with tempfile.TemporaryDirectory() as out:
        args = targs(
            out,
            1,
            max_steps=2,
            eval_strategy="steps",
            eval_steps=1,
            save_strategy="steps",
            save_steps=1,
            metric_for_best_model="eval_worst_domain_loss",
            greater_is_better=False,
        )
        t = ReweightingTrainer(
            model=llama(),
            args=args,
            train_dataset=TokenRows(),
            eval_dataset={"a": TokenRows(n=2, seed=1), "b": TokenRows(n=2, seed=2)},
            reweighter=Reweighter("linupper", temperature=0.5),
        )
        t.remove_callback(PrinterCallback)
        t.train()
        assert t.state.best_metric == min(
            h["eval_worst_domain_loss"]
            for h in t.state.log_history
            if "eval_worst_domain_loss" in h
        )


@pytest.mark.parametrize("scope", ["micro", "step"])
def test_invalid_samples_counted_once_like_the_trainer(scope: str) -> None:
    """4 micro-batches, one sample without a target: num_invalid = 1 and num_samples = 7 in the
    logs, as combine_stats (the trainer's rule) gives for the same 4 micro-batches."""
    ds = Masked(n=8, masked=(5,))
    base = llama()
    rw = Reweighter("linupper", temperature=0.5, scope=scope)
    t = train(
        ReweightingTrainer, copy.deepcopy(base), ds, 4, reweighter=rw, args_kw={"max_steps": 1}
    )
    (logs,) = [h for h in t.state.log_history if "loss" in h]
    assert logs["reweight/num_invalid"] == 1 and logs["reweight/num_samples"] == 7
    from lossreweight.losses import per_sample_loss
    from lossreweight.reweighting import combine_stats, stats_to_python

    ids = ds.ids
    labels = torch.stack([ds[i]["labels"] for i in range(8)])
    with torch.no_grad():
        losses, _ = per_sample_loss(base(input_ids=ids).logits, labels)
    parts = [
        Reweighter("linupper", temperature=0.5).weights_and_stats(losses[k : k + 2])[1]
        for k in range(0, 8, 2)
    ]
    want = stats_to_python(combine_stats(parts))
    assert want["num_invalid"] == 1 and want["num_samples"] == 7
    if scope == "micro":
        assert logs["loss"] == pytest.approx(want["mean_loss"], abs=1e-5)
        assert logs["reweight/ess_fraction"] == pytest.approx(want["ess_fraction"], abs=1e-5)
    loss_func = ReweightedLossFunc(Reweighter("linupper", temperature=0.5))
    t2 = train(Trainer, copy.deepcopy(base), ds, 4, attach=loss_func, args_kw={"max_steps": 1})
    (logs2,) = [h for h in t2.state.log_history if "loss" in h]
    assert logs2["reweight/num_invalid"] == 1 and logs2["reweight/num_samples"] == 7


def test_rejects_compute_loss_func_and_step_scope_loss_func() -> None:
    with tempfile.TemporaryDirectory() as out, pytest.raises(ValueError, match="compute_loss_func"):
        ReweightingTrainer(
            model=llama(),
            args=targs(out, 1),
            reweighter=Reweighter(),
            compute_loss_func=lambda *a, **k: 0,
        )
    with pytest.raises(ValueError, match="scope='micro'"):
        ReweightedLossFunc(Reweighter(scope="step"))


# -- examples, and 2 gloo ranks under torchrun ------------------------------------------------
def load_example():
    spec = importlib.util.spec_from_file_location(
        "hf_example", ROOT / "examples" / "hf_trainer_reweighting.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_runs() -> None:
    last = load_example().main(["--steps", "4"])
    assert last["reweight/domain_weight_share/noise"] > last["reweight/domain_sample_share/noise"]
    # --burn-in reaches the Reweighter: every step in the burn-in has uniform weights.
    burnt = load_example().main(["--steps", "4", "--burn-in", "1.0", "--no-eval"])
    assert burnt["reweight/ess_fraction"] == 1.0
    share = burnt["reweight/domain_sample_share/noise"]
    assert burnt["reweight/domain_weight_share/noise"] == pytest.approx(share)


DIST_RUNS = {  # name: (example arguments per rank, arguments of the one-process reference)
    "micro": (
        ["--grad-accum", "2", "--batch-size", "2"],
        ["--grad-accum", "2", "--batch-size", "4"],
    ),
    "step": (["--scope", "step", "--grad-accum", "2", "--batch-size", "2"], ["--batch-size", "8"]),
}
COMMON = ["--steps", "3", "--optim", "sgd", "--lr", "0.5", "--temperature", "0.3"]


@pytest.mark.xdist_group("dist")
@pytest.mark.timeout(300)
def test_two_gloo_ranks_equal_one_process(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(Path(__file__).resolve()),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    example = load_example()
    for name, (_, ref_args) in DIST_RUNS.items():
        ref = tmp_path / f"ref_{name}.pt"
        example.main([*COMMON, *ref_args, "--save-params", str(ref)])
        dist, one = torch.load(tmp_path / f"dist_{name}.pt"), torch.load(ref)
        assert max((dist[k] - one[k]).abs().max().item() for k in one) < 1e-5, name


if __name__ == "__main__":  # torchrun worker: the example under DDP (gloo), both scopes
    out_dir = Path(sys.argv[1])
    example = load_example()
    for name, (rank_args, _) in DIST_RUNS.items():
        example.main([*COMMON, *rank_args, "--save-params", str(out_dir / f"dist_{name}.pt")])
