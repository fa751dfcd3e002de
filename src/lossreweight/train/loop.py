"""The training loop: one process or torchrun (DDP / FSDP2), any reweighting strategy.

Thin by design: it composes the named components (runtime, data loader, model, loss module,
optimizer + schedule, reweighter, evaluation, checkpoints, metrics), each in its own module.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from lossreweight.data import PreparedData, check_vocab_fits, prepare_data
from lossreweight.errors import ConfigError, UserError
from lossreweight.model import build_model
from lossreweight.model.run_dir import RESOLVED_CONFIG, find_latest_checkpoint
from lossreweight.reweighting import Reweighter, accumulate_step, combine_stats
from lossreweight.reweighting.weights import stats_to_python
from lossreweight.train.checkpoint import load_checkpoint, save_checkpoint
from lossreweight.train.config import RunConfig
from lossreweight.train.evaluate import evaluate
from lossreweight.train.files import read_json_object
from lossreweight.train.loss_module import PerSampleLoss
from lossreweight.train.metrics import MetricsLogger, check_logging_deps, truncate_metrics
from lossreweight.train.optim import build_optimizer, lr_at, set_lr
from lossreweight.train.runtime import PeerFailure, Runtime, fault_point, setup_runtime

FINAL_FILE = "final.json"
# Settings that may change between a run and its resume without changing its results.
RESUMABLE_CHANGES = {"train.max_steps", "train.threads", "log", "checkpoint", "eval.every", "train.compile"}
# Settings a user changes on purpose to get a diverged run past its NaNs (TrainingDiverged's
# advice): allowed on resume, with a note on stderr since the results then differ.
RECOVERY_CHANGES = {"train.lr", "train.grad_clip", "train.max_nonfinite_steps"}


class TrainingDiverged(UserError):
    """Too many non-finite steps in a row."""

    exit_code = 3


class Interrupted(UserError):
    """Stopped by a second Ctrl-C / SIGTERM, or by one before training started."""

    exit_code = 130


class OutOfMemory(UserError):
    """The device (or host) ran out of memory: a setting to change."""


class RunDirError(UserError):
    """The file system refused (disk full, read-only, not a directory, ...)."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    tokens: int
    final_eval: dict[str, Any]
    interrupted: bool = False


class _StopFlag:
    """SIGTERM / Ctrl-C while training ask for a checkpoint at the end of the current step; a
    second one interrupts at once. Before training starts (data preparation, set-up) there is
    nothing to save: the first one interrupts at once (KeyboardInterrupt, so `finally` blocks
    remove temporary files)."""

    def __init__(self) -> None:
        self.requested = False
        self.training = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested or not self.training:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _flatten_keys(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not key.startswith(("reweight.temperature", "data.mixture")):
            out.update(_flatten_keys(v, key + "."))
        else:
            out[key] = v
    return out


def _changed(a: dict[str, Any], b: dict[str, Any], allowed: set[str]) -> list[str]:
    return [
        k for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and not any(k == r or k.startswith(r + ".") for r in allowed)
    ]


def _check_same_run(saved: dict[str, Any], now: dict[str, Any], run_dir: Path) -> None:
    a, b = _flatten_keys(saved), _flatten_keys(now)
    diff = _changed(a, b, RESUMABLE_CHANGES | RECOVERY_CHANGES)
    if diff:
        shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:3])
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({shown}); re-run with the same config to "
            "resume, or choose a new --out directory"
        )
    recovery = _changed(a, b, RESUMABLE_CHANGES)
    if recovery:
        shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in recovery)
        print(f"lossreweight: note: resuming {run_dir} with changed settings ({shown})", file=sys.stderr)


def _read_saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config of the run in `run_dir`; None for a new (missing or empty) dir.
    Refuses a non-empty directory that is not a run, rather than writing into it."""
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} exists and is not a directory; choose another --out")
    file = run_dir / RESOLVED_CONFIG
    if not file.is_file():
        # Leftovers of an atomic write killed half-way are ours; anything else is the user's.
        if any(not p.name.endswith(".tmp") for p in run_dir.iterdir()):
            raise ConfigError(
                f"--out {run_dir} is a non-empty directory that holds no run ({RESOLVED_CONFIG} "
                "is missing); choose a new or empty --out directory"
            )
        return None
    return read_json_object(
        file, what="a run config", fix="it is damaged: restore it, or train into a new --out directory", error=ConfigError
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, data_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.data_dir = data_dir
        self.rt: Runtime = setup_runtime(cfg.train)

    # -- set-up ------------------------------------------------------------------------------
    def _prepare_data(self) -> PreparedData:
        # Rank 0 tokenizes (or finds the cache); the others wait, then open the same files.
        if self.rt.is_main:
            data = prepare_data(self.cfg.data, self.data_dir, progress=self.cfg.log.progress)
        self.rt.barrier()
        if not self.rt.is_main:
            data = prepare_data(self.cfg.data, self.data_dir, progress=False)
        return data

    def _check_run_dir(self, resolved: dict[str, Any]) -> None:
        """Read-only: is --out new, or the same run? Nothing is written before the whole set-up
        (checkpoint included) has succeeded, so bad input leaves no trace."""
        if not self.rt.is_main:
            return
        saved = _read_saved_config(self.run_dir)
        if saved is not None:
            _check_same_run(saved, resolved, self.run_dir)

    def _write_run_files(self, data: PreparedData, resolved: dict[str, Any], step: int) -> None:
        if not self.rt.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # resolved_config.json first: it marks the directory as a run (_read_saved_config).
        _atomic_write(self.run_dir / RESOLVED_CONFIG, json.dumps(resolved, indent=1))
        _atomic_write(self.run_dir / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        tok = self.run_dir / "tokenizer"
        if not tok.exists() and data.tokenizer_dir is not None and Path(data.tokenizer_dir).is_dir():
            # Copy then rename: a kill mid-copy must not leave a half tokenizer for good.
            tmp = self.run_dir / "tokenizer.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(data.tokenizer_dir, tmp)
            tmp.rename(tok)
        _atomic_write(self.run_dir / "data.json", json.dumps({"domains": data.domains, "stats": data.stats()}, indent=1))
        # Records after the checkpoint (or all of them, on a fresh start) are written again.
        truncate_metrics(self.run_dir, step)
        if step < self.cfg.train.max_steps:
            (self.run_dir / FINAL_FILE).unlink(missing_ok=True)  # stale: the run goes on

    def _wrap(self, model: torch.nn.Module) -> tuple[torch.nn.Module, PerSampleLoss]:
        cfg, rt = self.cfg.train, self.rt
        vocab = model.vocab_size
        fused = cfg.loss_path == "fused" or (cfg.loss_path == "auto" and vocab >= 16384)
        if cfg.compile:
            for block in model.blocks:  # per-block compile (torchtitan): small graphs, fast warm-up
                block.compile()
        module = PerSampleLoss(model, fused=fused, autocast_dtype=rt.autocast_dtype)
        if cfg.fsdp:
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mp = MixedPrecisionPolicy(param_dtype=rt.autocast_dtype, reduce_dtype=torch.float32) if rt.autocast_dtype else MixedPrecisionPolicy()
            for block in model.blocks:
                fully_shard(block, mp_policy=mp)
            fully_shard(module, mp_policy=mp)
            return module, module
        if rt.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [rt.device.index] if rt.device.type == "cuda" else None
            return DDP(module, device_ids=ids, broadcast_buffers=False), module
        return module, module

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train; errors a user can act on come out as UserError subclasses (one line each)."""
        self._step = 0
        stop = _StopFlag()
        try:
            with stop:
                return self._run(stop)
        except KeyboardInterrupt:
            raise Interrupted(self._interrupted_message(stop.training)) from None
        except OSError as exc:  # disk full, read-only or missing directory, ...
            what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            raise RunDirError(
                f"file system error ({what}); free disk space or fix the path/permissions, then {self._resume_hint()}"
            ) from None
        except RuntimeError as exc:
            if _is_out_of_memory(exc):
                raise OutOfMemory(
                    f"out of memory during step {self._step + 1} ({' '.join(str(exc).split())[:100]}); "
                    "lower train.batch_size (raise train.grad_accum to keep the batch), or train a "
                    f"smaller model or with train.fsdp=true; {self._resume_hint()}"
                ) from None
            if not (self.rt.distributed and _is_peer_failure(exc)):
                raise
            raise PeerFailure(
                f"rank {self.rt.rank}: another rank died or stopped answering during step "
                f"{self._step + 1} ({' '.join(str(exc).split())[:160]}); {self._resume_hint()}"
            ) from None

    def _resume_hint(self) -> str:
        with contextlib.suppress(OSError):
            latest = find_latest_checkpoint(self.run_dir)
            if latest is not None:
                return f"re-run the same command: it resumes from the last complete checkpoint {latest}"
        return "re-run the same command: no checkpoint was saved yet, so it starts from the beginning"

    def _interrupted_message(self, training: bool) -> str:
        if not training:
            return f"interrupted before training started, nothing new was saved; {self._resume_hint()}"
        return f"interrupted at once (second signal) during step {self._step + 1}, without saving it; {self._resume_hint()}"

    def _run(self, stop: _StopFlag) -> TrainResult:
        cfg, rt = self.cfg, self.rt
        data = self._prepare_data()
        model_vocab = cfg.model.vocab_size or data.vocab_size
        check_vocab_fits(data.vocab_size, model_vocab)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, model_vocab)
        resolved = cfg.to_dict()
        resolved["model"] = {**resolved["model"], **model.config_dict()} if cfg.model.hf is None else {**resolved["model"], "vocab_size": model_vocab}
        resolved["model"]["vocab_size"] = model_vocab
        self._check_run_dir(resolved)
        check_logging_deps(cfg.log.wandb_project)
        rt.barrier()
        model.to(rt.device)
        wrapped, loss_module = self._wrap(model)
        optimizer = build_optimizer(wrapped, cfg.train, rt.device)
        reweighter = Reweighter(
            cfg.reweight.strategy,
            cfg.reweight.temperature,
            delta=cfg.reweight.delta,
            warmup_steps=cfg.burn_in_steps,
            max_weight=cfg.reweight.max_weight,
            scope=cfg.reweight.scope,
            max_batch_size=cfg.train.batch_size * (cfg.train.grad_accum if cfg.reweight.scope == "step" else 1),
            num_domains=len(data.domains),
        )
        loader = data.train_loader(cfg.train.batch_size, seed=cfg.train.seed, rank=rt.rank, world_size=rt.world_size, mixture=cfg.data.mixture)
        val_batches = data.val_batches(cfg.eval.batch_size, rank=rt.rank, world_size=rt.world_size, max_sequences_per_domain=cfg.eval.max_sequences_per_domain)

        step, tokens = 0, 0
        latest = find_latest_checkpoint(self.run_dir)
        if latest is not None:
            state = load_checkpoint(latest, wrapped, optimizer, rt)
            step, tokens = state["step"], state["tokens"]
            loader.load_state_dict(state["loader"])
            try:
                reweighter.load_state_dict(state["reweighter"])
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        # Everything that can refuse bad input has run: only now is the run directory written.
        self._write_run_files(data, resolved, step)
        rt.barrier()
        self._step = step
        logger = MetricsLogger(
            self.run_dir,
            enabled=rt.is_main,
            tensorboard=cfg.log.tensorboard,
            wandb_project=cfg.log.wandb_project,
            wandb_run_name=cfg.log.wandb_run_name,
            config=resolved,
        )
        tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum * rt.world_size * data.seq_len
        flops_per_token = model.flops_per_token(data.seq_len)

        def save(done: int) -> None:
            save_checkpoint(
                self.run_dir, done, wrapped, optimizer,
                {"step": done, "tokens": tokens, "loader": loader.state_dict(), "reweighter": reweighter.state_dict()},
                rt, keep=cfg.checkpoint.keep,
            )

        progress = None
        if rt.is_main and cfg.log.progress:
            from tqdm import tqdm

            progress = tqdm(total=cfg.train.max_steps, initial=step, desc=f"{cfg.reweight.strategy}", unit="step", dynamic_ncols=True, leave=False)
        nonfinite_run = 0
        last_eval: dict[str, Any] = {}
        interrupted = False
        wrapped.train()
        t_log, tokens_at_log = time.perf_counter(), tokens
        stop.training = True
        try:
            while step < cfg.train.max_steps:
                self._step = step
                lr = lr_at(step, cfg.train)
                set_lr(optimizer, lr)
                batches = [next(loader) for _ in range(cfg.train.grad_accum)]
                stats = self._forward_backward(wrapped, reweighter, batches, step)
                grad_norm = self._clip(wrapped, loss_module)
                # Non-finite loss or gradient, or no valid sample at all (a NaN storm: all
                # weights 0, a zero gradient AdamW would still step on): skip the update.
                ok = torch.isfinite(grad_norm) & torch.isfinite(stats["weighted_loss"]) & (stats["num_samples"] > 0)
                finite = self._all_ranks(ok)  # the step's one sync
                if finite:
                    optimizer.step()
                    nonfinite_run = 0
                else:  # skipped: parameters and optimizer state stay as they were
                    nonfinite_run += 1
                optimizer.zero_grad(set_to_none=True)
                step += 1
                tokens += tokens_per_step
                if progress is not None:
                    progress.update(1)
                is_last = step == cfg.train.max_steps
                do_eval = is_last or (cfg.eval.every and step % cfg.eval.every == 0)
                do_log = do_eval or is_last or step % cfg.log.every == 0 or not finite
                if do_log:
                    now = time.perf_counter()
                    rate = (tokens - tokens_at_log) / max(now - t_log, 1e-9)
                    t_log, tokens_at_log = now, tokens
                    record = self._record(step, tokens, lr, stats, grad_norm, finite, rate, flops_per_token, data.domains)
                    if do_eval:
                        fault_point("eval", step, rt.rank)
                        last_eval = evaluate(wrapped, val_batches, data.domains, rt)
                        record.update(last_eval)
                        t_log = time.perf_counter()  # evaluation time is not training throughput
                    logger.log(record)
                    if progress is not None:
                        progress.set_postfix(loss=f"{record['train_loss']:.3f}", tok_s=f"{rate:,.0f}", ess=f"{record.get('ess_fraction', 1.0):.2f}")
                if not finite and nonfinite_run >= cfg.train.max_nonfinite_steps:
                    good = find_latest_checkpoint(self.run_dir)
                    raise TrainingDiverged(
                        f"{nonfinite_run} non-finite steps in a row (loss or gradient is NaN/inf), the last at step {step}; "
                        f"last good checkpoint: {good or 'none (no checkpoint was saved)'}; lower train.lr or raise "
                        "train.grad_clip (allowed on resume), then re-run the command to resume from it"
                    )
                fault_point("step", step, rt.rank)
                stop_now = self._agree(stop.requested)
                if is_last or stop_now or (cfg.checkpoint.every and step % cfg.checkpoint.every == 0):
                    save(step)
                if stop_now and not is_last:
                    interrupted = True
                    break
            self._step = step
            if not interrupted and not last_eval:
                # Nothing left to train (a re-run of a finished run): keep or redo the final eval.
                last_eval = self._final_eval(step) or evaluate(wrapped, val_batches, data.domains, rt)
        finally:
            if progress is not None:
                progress.close()
            logger.close()
        result = TrainResult(self.run_dir, step, tokens, last_eval, interrupted)
        if rt.is_main and not interrupted:
            _atomic_write(self.run_dir / FINAL_FILE, json.dumps({"steps": step, "tokens": tokens, **last_eval}, indent=1))
        return result

    def _final_eval(self, step: int) -> dict[str, Any]:
        """The evaluation in final.json when it is of this step, else {}."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            saved = json.loads((self.run_dir / FINAL_FILE).read_text())
            if saved.get("steps") == step and "val_loss" in saved:
                return {k: v for k, v in saved.items() if k not in ("steps", "tokens")}
        return {}

    def _all_ranks(self, ok: torch.Tensor) -> bool:
        """True when `ok` holds on every rank, so that all ranks skip the same steps."""
        if self.rt.distributed:
            flag = ok.to(torch.float32).reshape(1)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            return bool(flag.item())
        return bool(ok)

    def _forward_backward(self, wrapped: torch.nn.Module, rw: Reweighter, batches: list[dict[str, torch.Tensor]], step: int) -> dict[str, torch.Tensor]:
        dev = self.rt.device
        ids = [b["input_ids"].to(dev, non_blocking=True) for b in batches]
        doms = [b["domain_ids"].to(dev, non_blocking=True) for b in batches]
        if rw.scope == "step":
            return accumulate_step(wrapped, ids, rw, step=step, model=wrapped, domain_ids=doms).stats
        a = len(batches)
        collected: list[dict[str, torch.Tensor]] = []
        for i in range(a):
            sync_ctx = wrapped.no_sync() if (a > 1 and i < a - 1 and hasattr(wrapped, "no_sync")) else contextlib.nullcontext()
            with sync_ctx:
                losses = wrapped(ids[i])
                out = rw.reweight(losses, step=step, domain_ids=doms[i], accumulation_steps=a)
                out.loss.backward()
            collected.append(out.stats)
        # The step's statistics over its micro-batches (on device): counts add, means weight by samples.
        return combine_stats(collected)

    def _clip(self, wrapped: torch.nn.Module, loss_module: PerSampleLoss) -> torch.Tensor:
        max_norm = self.cfg.train.grad_clip or math.inf
        params = [p for p in wrapped.parameters() if p.grad is not None]
        if not params:
            return torch.zeros((), device=self.rt.device)
        # foreach=True: one fused kernel per dtype/device; with FSDP2 the DTensor norm is global.
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        return norm

    def _agree(self, requested: bool) -> bool:
        """All ranks stop at the same step if any of them got a signal."""
        if not self.rt.distributed:
            return requested
        flag = torch.tensor([1.0 if requested else 0.0], device=self.rt.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _record(self, step, tokens, lr, stats, grad_norm, finite, rate, flops_per_token, domains) -> dict[str, Any]:
        py = stats_to_python({**stats, "grad_norm": grad_norm.detach().float().reshape(())})
        record: dict[str, Any] = {
            "step": step,
            "tokens": tokens,
            "lr": lr,
            "train_loss": py.pop("mean_loss"),
            "weighted_loss": py.pop("weighted_loss"),
            "grad_norm": py.pop("grad_norm"),
            "skipped": not finite,
            "tokens_per_s": rate,
        }
        if self.rt.device.type == "cuda":
            peak = _peak_flops(self.rt.device)
            if peak:
                record["mfu"] = rate * flops_per_token / (peak * self.rt.world_size)
        for key in ("domain_weight_share", "domain_sample_share"):
            if key in py:
                py[key] = dict(zip(domains, py[key], strict=True))
        record.update(py)
        return record


def _is_out_of_memory(exc: RuntimeError) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(exc, oom) or "can't allocate memory" in str(exc)


def _is_peer_failure(exc: RuntimeError) -> bool:
    """A collective that failed because another rank died or hung (gloo / NCCL wording)."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(w in text for w in ("gloo", "nccl", "connection closed", "connection reset", "timed out", "timeout"))


def _peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the GPU, for MFU; None when unknown."""
    name = torch.cuda.get_device_name(device)
    table = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}
    return next((v for k, v in table.items() if k in name), None)


def train(cfg: RunConfig, run_dir: str | Path, *, data_dir: str | Path | None = None) -> TrainResult:
    return Trainer(cfg, run_dir, data_dir=data_dir).run()
