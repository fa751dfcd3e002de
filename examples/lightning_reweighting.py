"""Loss-based sample reweighting in a Lightning training_step, on a tiny GPT, in seconds on CPU.

    python examples/lightning_reweighting.py

Two synthetic domains: "counting" sequences (easy) and "noise" (random tokens, high loss).
`ReweightingMixin` turns per-sample losses into the reweighted loss and logs, once per
optimizer step over the whole accumulation window, `train/loss` (unweighted mean),
`train/weighted_loss` (what was backpropagated) and `reweight/*` statistics (here to a CSV
logger; TensorBoard or W&B work the same way). Weights stay uniform for a burn-in of 5% of
the steps, as in the paper and the pipeline's presets (the Reweighter's own default is 0).
Then each domain is evaluated on its own validation dataloader: `eval/<domain>/loss`,
`eval/domain_avg_loss`, `eval/worst_domain_loss`.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import warnings

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from lossreweight import Reweighter
from lossreweight.integrations.lightning import ReweightingMixin

VOCAB, SEQ = 64, 16
DOMAINS = ["counting", "noise"]


def two_domains(n: int = 64, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    counting = (start + torch.arange(SEQ)) % VOCAB
    noise = torch.randint(0, VOCAB, (n, SEQ), generator=g)
    domain = torch.arange(n) % 2
    ids = torch.where(domain[:, None] == 0, counting, noise)
    return [{"input_ids": ids[i], "labels": ids[i], "domain_ids": domain[i]} for i in range(n)]


class TinyGPT(torch.nn.Module):
    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, dim)
        self.pos = torch.nn.Parameter(torch.zeros(SEQ, dim))
        layer = torch.nn.TransformerEncoderLayer(dim, 2, 64, dropout=0.0, batch_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(dim, VOCAB, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        mask = torch.nn.Transformer.generate_square_subsequent_mask(t)
        return self.head(self.blocks(self.embed(ids) + self.pos[:t], mask=mask, is_causal=True))


class ReweightedLM(ReweightingMixin, L.LightningModule):
    reweight_domain_names = DOMAINS  # names for reweight/domain_weight_share/<name>

    def __init__(self, reweighter: Reweighter, lr: float = 3e-3) -> None:
        super().__init__()
        self.model = TinyGPT()
        self.reweighter = reweighter
        self.lr = lr

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["input_ids"])
        return self.causal_lm_reweighted_loss(
            logits, batch["labels"], domain_ids=batch["domain_ids"]
        )

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> torch.Tensor:
        logits = self.model(batch["input_ids"])  # dataloader k holds domain k
        return self.causal_lm_eval_loss(logits, batch["labels"], dataloader_idx=dataloader_idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategy", default="linupper")
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument(
        "--burn-in", type=float, default=0.05, help="share of the steps with uniform weights"
    )
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    L.seed_everything(0, verbose=False)

    reweighter = Reweighter(
        a.strategy,
        temperature=a.temperature,
        num_domains=len(DOMAINS),
        warmup_steps=round(a.burn_in * a.steps),  # the paper: 1,000 of 20,000 steps
    )
    module = ReweightedLM(reweighter)
    loader = torch.utils.data.DataLoader(two_domains(), batch_size=a.batch_size, shuffle=True)
    with tempfile.TemporaryDirectory() as out:
        trainer = L.Trainer(
            max_steps=a.steps,
            accumulate_grad_batches=a.grad_accum,
            accelerator="cpu",
            devices=1,
            logger=CSVLogger(out),
            log_every_n_steps=max(1, a.steps // 4),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, loader)
        held_out = two_domains(n=16, seed=1)
        per_domain = [
            torch.utils.data.DataLoader([r for r in held_out if int(r["domain_ids"]) == d], 8)
            for d in range(len(DOMAINS))
        ]
        trainer.validate(module, dataloaders=per_domain, verbose=False)
        evals = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("eval/")}
        trainer.logger.save()
        with open(os.path.join(trainer.logger.log_dir, "metrics.csv")) as f:
            rows = [r for r in csv.DictReader(f) if r.get("reweight/ess_fraction")]
    last = {k: float(v) for k, v in rows[-1].items() if v} if rows else {}
    shares = {
        k.rsplit("/", 1)[1]: round(v, 3) for k, v in last.items() if "domain_weight_share" in k
    }
    print(
        f"step {int(last.get('step', -1))}: loss {last.get('train/loss', float('nan')):.3f}  "
        f"weighted {last.get('train/weighted_loss', float('nan')):.3f}  "
        f"ess {last.get('reweight/ess_fraction', float('nan')):.3f}  weight share {shares}"
    )
    print("eval: " + "  ".join(f"{k} {v:.3f}" for k, v in sorted(evals.items())))
    return {**last, **evals}


if __name__ == "__main__":
    main()
