"""The one metric vocabulary (lossreweight.metric_names): names of a training step and of an
evaluation, the reading of older runs' names and of the Hugging Face Trainer's log keys."""

from __future__ import annotations

import math

import pytest

from lossreweight.metric_names import (
    domain_losses,
    downstream_metrics,
    eval_record,
    from_hf,
    from_legacy,
    step_metrics,
    worst_domain,
)


def test_step_metrics_names() -> None:
    values = {
        "mean_loss": 2.0,
        "weighted_loss": 2.5,
        "grad_norm": 0.3,
        "num_samples": 4.0,
        "num_invalid": 0.0,
        "ess_fraction": 0.9,
        "domain_weight_share": [0.25, 0.75],
    }
    rec = step_metrics(values, lr=1e-3, domains=["code", "wiki"], skipped=False)
    assert rec == {
        "train/loss": 2.0,
        "train/weighted_loss": 2.5,
        "train/lr": 1e-3,
        "train/grad_norm": 0.3,
        "train/skipped": False,
        "reweight/num_samples": 4,
        "reweight/num_invalid": 0,
        "reweight/ess_fraction": 0.9,
        "reweight/domain_weight_share/code": 0.25,
        "reweight/domain_weight_share/wiki": 0.75,
    }


def test_eval_record_names_and_worst_domain():
    rec = eval_record({"code": 2.0, "wiki": 3.5, "a/b": 1.0}, 2.5, 100)
    assert rec == {
        "eval/loss": 2.5,
        "eval/ppl": pytest.approx(math.exp(2.5)),
        "eval/domain_avg_loss": pytest.approx(6.5 / 3),
        "eval/worst_domain_loss": 3.5,
        "eval/code/loss": 2.0,
        "eval/wiki/loss": 3.5,
        "eval/a/b/loss": 1.0,
        "eval/tokens": 100,
    }
    assert domain_losses(rec) == {"code": 2.0, "wiki": 3.5, "a/b": 1.0}
    assert worst_domain(rec) == "wiki" and worst_domain({"eval/loss": 1.0}) is None


def test_older_runs_read_under_the_vocabulary():
    old = {
        "steps": 6,
        "val_loss": 2.5,
        "val_ppl": 12.2,
        "val_loss_domain_avg": 2.75,
        "val_loss_by_domain": {"code": 2.0, "wiki": 3.5},
        "val_ppl_by_domain": {"code": 7.4, "wiki": 33.1},
        "val_tokens": 64,
    }
    assert from_legacy(old) == {
        "steps": 6,
        "eval/loss": 2.5,
        "eval/ppl": 12.2,
        "eval/domain_avg_loss": 2.75,
        "eval/code/loss": 2.0,
        "eval/wiki/loss": 3.5,
        "eval/worst_domain_loss": 3.5,
        "eval/tokens": 64,
    }
    new = eval_record({"code": 2.0}, 2.0, 8)
    assert from_legacy(new) == new


def test_older_metrics_records_read_under_the_vocabulary():
    old = {
        "step": 5,
        "tokens": 640,
        "lr": 1e-3,
        "train_loss": 3.0,
        "weighted_loss": 3.2,
        "grad_norm": 0.5,
        "skipped": False,
        "tokens_per_s": 100.0,
        "max_weight_x_m": 1.5,
        "temperature": 1.0,
        "domain_weight_share": {"code": 0.6, "wiki": 0.4},
        "val_loss": 2.5,
    }
    new = from_legacy(old)
    assert new == {
        "step": 5,
        "tokens": 640,
        "train/lr": 1e-3,
        "train/loss": 3.0,
        "train/weighted_loss": 3.2,
        "train/grad_norm": 0.5,
        "train/skipped": False,
        "train/tokens_per_s": 100.0,
        "reweight/max_weight_x_m": 1.5,
        "reweight/temperature": 1.0,
        "reweight/domain_weight_share/code": 0.6,
        "reweight/domain_weight_share/wiki": 0.4,
        "eval/loss": 2.5,
    }
    assert from_legacy(new) == new


def test_hugging_face_log_keys_under_the_vocabulary():
    logs = {
        "loss": 2.0,
        "weighted_loss": 2.5,
        "learning_rate": 1e-3,
        "grad_norm": 0.5,
        "epoch": 0.5,
        "reweight/ess_fraction": 0.9,
        "reweight/domain_weight_share/code": 0.4,
        "eval_loss": 2.2,
        "eval_code_loss": 2.1,
        "eval_domain_avg_loss": 2.3,
        "eval_runtime": 1.0,
    }
    assert from_hf(logs, eval_domains=["code"]) == {
        "train/loss": 2.0,
        "train/weighted_loss": 2.5,
        "train/lr": 1e-3,
        "train/grad_norm": 0.5,
        "train/epoch": 0.5,
        "reweight/ess_fraction": 0.9,
        "reweight/domain_weight_share/code": 0.4,
        "eval/loss": 2.2,
        "eval/code/loss": 2.1,
        "eval/domain_avg_loss": 2.3,
        "eval/runtime": 1.0,
    }


def test_downstream_metric_names():
    results = {
        "sciq": {
            "alias": "sciq",
            "acc,none": 0.5,
            "acc_stderr,none": 0.1,
            "acc_norm,none": 0.25,
            "acc_norm_stderr,none": "N/A",
            "sample_len": 10,
        },
        "gsm8k": {"exact_match,strict-match": 0.125, "exact_match,flexible-extract": math.nan},
    }
    assert downstream_metrics(results) == {
        "downstream/sciq/acc": 0.5,
        "downstream/sciq/acc_stderr": 0.1,
        "downstream/sciq/acc_norm": 0.25,
        "downstream/gsm8k/exact_match/strict-match": 0.125,
        "downstream/gsm8k/exact_match/flexible-extract": None,
    }


def test_hugging_face_tensorboard_writes_the_pipeline_names(tmp_path):
    """A ReweightingTrainer reporting to TensorBoard writes the names the pipeline and the
    Lightning mixin write (train/lr, reweight/..., eval/<domain>/loss), at step 1, 2, ..."""
    pytest.importorskip("transformers")
    pytest.importorskip("tensorboard")
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

    from lossreweight import Reweighter
    from lossreweight.integrations.hf_trainer import ReweightingTrainer

    class Rows(torch.utils.data.Dataset):
        def __init__(self, seed: int) -> None:
            self.ids = torch.randint(0, 32, (4, 6), generator=torch.Generator().manual_seed(seed))

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": self.ids[i], "labels": self.ids[i], "domain_ids": i % 2}

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    )
    args = TrainingArguments(
        str(tmp_path / "out"),
        per_device_train_batch_size=2,
        max_steps=2,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        report_to=["tensorboard"],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = ReweightingTrainer(
        model=model,
        args=args,
        train_dataset=Rows(0),
        eval_dataset={"a": Rows(1), "b": Rows(2)},
        reweighter=Reweighter("linupper", temperature=0.5),
        domain_names=["a", "b"],
    )
    trainer.train()
    (events,) = [p.parent for p in (tmp_path / "out").rglob("events.out.tfevents.*")]
    acc = EventAccumulator(str(events))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {
        "train/loss",
        "train/weighted_loss",
        "train/lr",
        "reweight/ess_fraction",
        "reweight/domain_weight_share/a",
        "eval/a/loss",
        "eval/b/loss",
        "eval/domain_avg_loss",
        "eval/worst_domain_loss",
    } <= tags, tags
    assert not any(t.startswith("train/reweight/") or t.endswith("_loss/") for t in tags)
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    assert [e.step for e in acc.Scalars("eval/a/loss")] == [2]
