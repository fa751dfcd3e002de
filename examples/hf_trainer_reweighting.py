"""Loss-based sample reweighting with the Hugging Face Trainer, on a tiny Llama, in seconds on CPU.

    python examples/hf_trainer_reweighting.py
    # 2 CPU ranks:
    python -m torch.distributed.run --nproc_per_node 2 examples/hf_trainer_reweighting.py

Two synthetic domains: "counting" sequences (easy, their loss drops fast) and "noise"
(uniformly random tokens, loss stays high). `linupper` moves weight towards the high-loss
samples; the logged `reweight/domain_weight_share/*` shows where it went. The logged `loss` is
the unweighted mean per-sample loss (comparable with `eval_loss`), `weighted_loss` what was
backpropagated. Each domain is also evaluated on its own (`eval_dataset` as a dict):
`eval_counting_loss`, `eval_noise_loss`, `eval_domain_avg_loss`, `eval_worst_domain_loss`.
Weights stay uniform for a burn-in of 5% of the steps, as in the paper (1,000 of 20,000) and
the pipeline's presets; the Reweighter's own default is no burn-in (`warmup_steps=0`).
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault(
    "HF_HUB_OFFLINE", "1"
)  # nothing is downloaded: the model is built from a config

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from lossreweight import Reweighter
from lossreweight.integrations.hf_trainer import ReweightingTrainer

VOCAB, SEQ = 64, 16
DOMAINS = ["counting", "noise"]


class TwoDomains(torch.utils.data.Dataset):
    """Rows of {"input_ids", "labels", "domain_ids"}; `domain_ids` is not a model input."""

    def __init__(self, n: int = 64, seed: int = 0, only: int | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (n, 1), generator=g)
        stride = torch.randint(1, 4, (n, 1), generator=g)
        counting = (start + stride * torch.arange(SEQ)) % VOCAB
        noise = torch.randint(0, VOCAB, (n, SEQ), generator=g)
        self.domain = torch.arange(n) % 2 if only is None else torch.full((n,), only)
        self.ids = torch.where(self.domain[:, None] == 0, counting, noise)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i], "domain_ids": self.domain[i]}


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=SEQ,
        bos_token_id=0,
        eos_token_id=0,
    )
    return LlamaForCausalLM(cfg)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategy", default="linupper")
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--scope", choices=["micro", "step"], default="micro")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--optim", default="adamw_torch")
    p.add_argument(
        "--save-params", help="write the final parameters here (torch.save), from rank 0"
    )
    p.add_argument("--no-eval", action="store_true", help="skip the per-domain evaluation")
    p.add_argument(
        "--burn-in", type=float, default=0.05, help="share of the steps with uniform weights"
    )
    a = p.parse_args(argv)
    hf_logging.set_verbosity_error()

    reweighter = Reweighter(
        a.strategy,
        temperature=a.temperature,
        scope=a.scope,
        warmup_steps=round(a.burn_in * a.steps),  # optimizer steps (HF's global_step)
    )
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            max_steps=a.steps,
            per_device_train_batch_size=a.batch_size,
            gradient_accumulation_steps=a.grad_accum,
            learning_rate=a.lr,
            optim=a.optim,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            logging_steps=max(1, a.steps // 4),
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
            dataloader_drop_last=True,
            ddp_find_unused_parameters=False,
            per_device_eval_batch_size=a.batch_size,
        )
        # One evaluation set per domain: the Trainer names the metrics after the dict keys.
        eval_sets = {name: TwoDomains(16, seed=1, only=d) for d, name in enumerate(DOMAINS)}
        trainer = ReweightingTrainer(
            model=tiny_llama(),
            args=args,
            train_dataset=TwoDomains(),
            eval_dataset=None if a.no_eval else eval_sets,
            reweighter=reweighter,
            domain_names=DOMAINS,
        )
        trainer.remove_callback(PrinterCallback)  # keep the output to the summary lines below
        trainer.train()
        metrics = {} if a.no_eval else trainer.evaluate()
    logs = [h for h in trainer.state.log_history if "reweight/ess_fraction" in h]
    last = {**(logs[-1] if logs else {}), **metrics}
    if trainer.is_world_process_zero():
        shares = {
            k.rsplit("/", 1)[1]: round(v, 3) for k, v in last.items() if "domain_weight_share" in k
        }
        print(
            f"step {last.get('step')}: loss {last.get('loss', float('nan')):.3f}  "
            f"weighted_loss {last.get('weighted_loss', float('nan')):.3f}  "
            f"ess {last.get('reweight/ess_fraction', float('nan')):.3f}  weight share {shares}"
        )
        if metrics:
            per_domain = "  ".join(f"{n} {metrics[f'eval_{n}_loss']:.3f}" for n in DOMAINS)
            print(
                f"eval: {per_domain}  avg {metrics['eval_domain_avg_loss']:.3f}  "
                f"worst {metrics['eval_worst_domain_loss']:.3f}"
            )
        if a.save_params:
            torch.save(
                {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}, a.save_params
            )
    return last


if __name__ == "__main__":
    main()
