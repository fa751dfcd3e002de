"""Lightning integration: the mixin's loss scale, what it logs per optimizer step (over the
whole accumulation window), and the optional import."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

L = pytest.importorskip("lightning")
from lightning.pytorch.loggers import Logger  # noqa: E402

from lossreweight import Reweighter  # noqa: E402
from lossreweight.integrations.lightning import ReweightingMixin  # noqa: E402
from lossreweight.losses import per_sample_loss  # noqa: E402
from lossreweight.reweighting import combine_stats, stats_to_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VOCAB, SEQ = 32, 6


class Bigram(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, 16)
        self.head = torch.nn.Linear(16, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(ids)))


class Module(ReweightingMixin, L.LightningModule):
    reweight_domain_names = ["a", "b"]

    def __init__(self, reweighter: Reweighter, lr: float = 0.5) -> None:
        super().__init__()
        self.model = Bigram()
        self.reweighter = reweighter
        self.lr = lr

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        labels = batch.get("labels", batch["ids"])
        return self.causal_lm_reweighted_loss(
            self.model(batch["ids"]), labels, domain_ids=batch["dom"]
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class Recorder(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append({**metrics, "_step": step})


def rows(n: int = 8, masked: tuple[int, ...] = ()) -> list[dict[str, torch.Tensor]]:
    """Rows of ids (their own labels) and a domain; `masked` rows have no target (invalid)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (n, SEQ), generator=g)
    out = []
    for i in range(n):
        labels = torch.full_like(ids[i], -100) if i in masked else ids[i]
        out.append({"ids": ids[i], "labels": labels, "dom": torch.tensor(i % 2)})
    return out


def fit(
    module: Module, data: list, *, accumulate: int, steps: int, logger: Logger | bool = False
) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        accumulate_grad_batches=accumulate,
        accelerator="cpu",
        devices=1,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=2, shuffle=False))
    return trainer


def test_mixin_update_is_the_weighted_gradient_with_accumulation() -> None:
    r, lr = 0.3, 0.5
    data = rows()
    module = Module(Reweighter("linupper", temperature=r, num_domains=2), lr=lr)
    ref = Bigram()
    fit(module, data, accumulate=2, steps=1)
    # Hand-computed: weights per micro-batch (SPEC micro scope), each micro-batch / 2.
    total = torch.zeros(())
    for mb in (data[0:2], data[2:4]):
        ids = torch.stack([row["ids"] for row in mb])
        logits = ref(ids)
        tok = F.cross_entropy(
            logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1), reduction="none"
        )
        losses = tok.view(2, -1).mean(1)
        d = losses.detach()
        x = (2 * d - d.max() - d.min()) / (d.max() - d.min())
        w = torch.softmax(torch.clamp(x + 1, max=1.0) / r, 0)
        total = total + (w * losses).sum() / 2
    total.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= lr * p.grad
    diff = max(
        (p - q).abs().max().item()
        for p, q in zip(module.model.parameters(), ref.parameters(), strict=True)
    )
    assert diff < 1e-6


def test_mixin_logs_losses_and_stats_each_step() -> None:
    logger = Recorder()
    module = Module(Reweighter("linupper", temperature=0.5, num_domains=2))
    fit(module, rows(), accumulate=1, steps=3, logger=logger)
    logged = [m for m in logger.metrics if "reweight/ess_fraction" in m]
    # The pipeline's x axis: optimizer steps done (1 after the first), and its names.
    assert [m["_step"] for m in logged] == [1, 2, 3]
    assert all(m["train/lr"] > 0 for m in logged)
    last = logged[-1]
    assert (
        isinstance(last["reweight/ess_fraction"], float) and 0 < last["reweight/ess_fraction"] <= 1
    )
    assert last["reweight/domain_weight_share/a"] + last[
        "reweight/domain_weight_share/b"
    ] == pytest.approx(1.0)
    assert last["reweight/domain_sample_share/a"] == pytest.approx(0.5)
    assert last["train/weighted_loss"] > last["train/loss"] > 0
    assert "reweight/mean_loss" not in last


def _window_stats(data, r=0.5):
    """What combine_stats (the trainer's rule) gives for the 4 micro-batches of the first window."""
    ref = Bigram()
    parts = []
    with torch.no_grad():
        for k in range(0, 8, 2):
            ids = torch.stack([row["ids"] for row in data[k : k + 2]])
            labels = torch.stack([row["labels"] for row in data[k : k + 2]])
            losses, _ = per_sample_loss(ref(ids), labels)
            parts.append(Reweighter("linupper", temperature=r).weights_and_stats(losses)[1])
    return stats_to_python(combine_stats(parts))


def test_mixin_logs_the_whole_accumulation_window() -> None:
    """4 micro-batches per step, one sample without a target: one log per optimizer step with
    num_invalid = 1, num_samples = 7, and the window's losses (not its last micro-batch's)."""
    data = rows(masked=(5,))
    logger = Recorder()
    module = Module(Reweighter("linupper", temperature=0.5, num_domains=2))
    fit(module, data, accumulate=4, steps=1, logger=logger)
    (logged,) = [m for m in logger.metrics if "reweight/ess_fraction" in m]
    want = _window_stats(data)
    assert logged["reweight/num_invalid"] == 1 and logged["reweight/num_samples"] == 7
    assert logged["train/loss"] == pytest.approx(want["mean_loss"], abs=1e-6)
    assert logged["train/weighted_loss"] == pytest.approx(want["weighted_loss"], abs=1e-6)
    assert logged["reweight/ess_fraction"] == pytest.approx(want["ess_fraction"], abs=1e-6)


def test_reweight_log_false_logs_nothing() -> None:
    logger = Recorder()
    module = Module(Reweighter("linupper", temperature=0.5, num_domains=2))
    module.reweight_log = False
    fit(module, rows(), accumulate=2, steps=2, logger=logger)
    assert not any("train/loss" in m for m in logger.metrics)
    assert not module._reweight_window()  # the window is still emptied each step


def test_step_scope_is_refused() -> None:
    module = Module(Reweighter("linupper", scope="step"))
    with pytest.raises(ValueError, match="scope='micro'"):
        module.reweighted_loss(torch.ones(2))


def test_example_runs() -> None:
    spec = importlib.util.spec_from_file_location(
        "lightning_example", ROOT / "examples" / "lightning_reweighting.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    last = mod.main(["--steps", "4", "--grad-accum", "2"])
    assert last["reweight/domain_weight_share/noise"] > 0.5
    assert last["train/weighted_loss"] > last["train/loss"] > 0
    # Per-domain evaluation: random tokens are harder than counting.
    assert last["eval/worst_domain_loss"] == last["eval/noise/loss"] > last["eval/counting/loss"]
    # --burn-in reaches the Reweighter: all 4 steps in the burn-in have uniform weights.
    burnt = mod.main(["--steps", "4", "--burn-in", "1.0"])
    assert burnt["reweight/ess_fraction"] == 1.0
    share = burnt["reweight/domain_sample_share/noise"]
    assert burnt["reweight/domain_weight_share/noise"] == pytest.approx(share)


def test_integrations_package_does_not_import_lightning_or_transformers() -> None:
    code = (
        "import sys, lossreweight.integrations as I; "
        "assert not {'lightning', 'pytorch_lightning', 'transformers'} & set(sys.modules), "
        "sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_integrations_need_no_pipeline_dependencies() -> None:
    """The HF and Lightning adapters import only the core library (reweighting, losses), never
    the pipeline's config/training stack or its dependencies (pydantic, tensorboard, ...)."""
    code = (
        "import sys\n"
        "for name in ('pydantic', 'tensorboard', 'wandb'): sys.modules[name] = None\n"
        "import lossreweight.integrations.hf_trainer, lossreweight.integrations.hf_loss\n"
        "import lossreweight.integrations.lightning\n"
        "ours = {m.split('.')[1] for m in sys.modules if m.startswith('lossreweight.')}\n"
        # metric_names: the names every path writes; plugins: strategies from entry points
        # (both leaves of plain Python)
        "assert ours <= {'integrations', 'reweighting', 'losses', 'metric_names', 'plugins'}, "
        "ours\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    import ast

    for path in [
        *(ROOT / "src/lossreweight/integrations").glob("*.py"),
        *(ROOT / "src/lossreweight/reweighting").glob("*.py"),
        ROOT / "src/lossreweight/losses.py",
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for name in names:
                    assert name.split(".")[0] not in {
                        "yaml",
                        "pydantic",
                        "tensorboard",
                        "matplotlib",
                    }, (path, name)


def test_missing_lightning_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes import fail
    monkeypatch.delitem(sys.modules, "lossreweight.integrations.lightning")
    with pytest.raises(ImportError, match=r"lossreweight\[lightning\]"):
        importlib.import_module("lossreweight.integrations.lightning")


# -- per-domain evaluation ----------------------------------------------------------------------
class EvalModule(Module):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        logits = self.model(batch["ids"])
        return self.causal_lm_eval_loss(logits, batch["labels"], dataloader_idx=dataloader_idx)


class EvalByIds(Module):
    def validation_step(self, batch, batch_idx):
        logits = self.model(batch["ids"])
        return self.causal_lm_eval_loss(logits, batch["labels"], domain_ids=batch["dom"])


def _hand_eval(data: list) -> dict[str, float]:
    ids = torch.stack([r["ids"] for r in data])
    labels = torch.stack([r["labels"] for r in data])
    with torch.no_grad():
        losses, _ = per_sample_loss(Bigram()(ids), labels)
    dom = torch.stack([r["dom"] for r in data])
    out = {}
    for d, name in enumerate(["a", "b"]):
        keep = (dom == d) & torch.isfinite(losses)
        out[f"eval/{name}/loss"] = losses[keep].mean().item()
    out["eval/loss"] = losses[torch.isfinite(losses)].mean().item()
    out["eval/domain_avg_loss"] = (out["eval/a/loss"] + out["eval/b/loss"]) / 2
    out["eval/worst_domain_loss"] = max(out["eval/a/loss"], out["eval/b/loss"])
    return out


def _validate(module, loaders, logger) -> dict[str, float]:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, dataloaders=loaders, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.parametrize("by", ["dataloader", "domain_ids"])
def test_per_domain_evaluation(by: str) -> None:
    """One validation dataloader per domain (HF's dict eval_dataset), or domain ids per sample:
    eval/<domain>/loss, eval/loss, eval/domain_avg_loss, eval/worst_domain_loss, as computed
    by hand (a sample without a target left out; uneven last batch)."""
    data = rows(n=9, masked=(4,))
    want = _hand_eval(data)
    logger = Recorder()
    loader = lambda part: torch.utils.data.DataLoader(part, batch_size=2)  # noqa: E731
    if by == "dataloader":
        module = EvalModule(Reweighter("linupper", num_domains=2))
        loaders = [loader([r for r in data if int(r["dom"]) == d]) for d in (0, 1)]
    else:
        module = EvalByIds(Reweighter("linupper", num_domains=2))
        loaders = loader(data)
    got = _validate(module, loaders, logger)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    (logged,) = [m for m in logger.metrics if "eval/worst_domain_loss" in m]
    assert logged["eval/worst_domain_loss"] == pytest.approx(want["eval/worst_domain_loss"])
    assert not module._eval_sums()  # emptied for the next validation


def test_domain_ids_need_a_domain_count() -> None:
    module = EvalByIds(Reweighter("linupper"))
    module.reweight_domain_names = None
    with pytest.raises(ValueError, match="number of domains"):
        module.add_eval_losses(torch.ones(2), domain_ids=torch.tensor([0, 1]))
