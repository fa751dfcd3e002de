"""The training loop: one process or torchrun (DDP / FSDP2), any reweighting strategy.

Thin by design: it composes the named components (runtime, data loader, model, loss module,
optimizer + schedule, reweighter, evaluation, checkpoints, metrics), each in its own module.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from lossreweight.config import RunConfig, dump_yaml
from lossreweight.data import PreparedData, check_vocab_fits, prepare_data
from lossreweight.errors import UserError
from lossreweight.metric_names import LOSS, eval_metrics, worst_domain
from lossreweight.model import build_model
from lossreweight.reweighting import Reweighter
from lossreweight.rundir import (
    CONFIG_YAML,
    DATA_FILE,
    FINAL_FILE,
    RESOLVED_CONFIG,
    TOKENIZER_DIR,
    RunDirLock,
    atomic_write,
    check_resume,
    data_fingerprint,
    find_latest_checkpoint,
    read_final,
    tokenizer_hash,
)
from lossreweight.train.burn_in import BurnIn
from lossreweight.train.checkpoint import Checkpointer, Counters
from lossreweight.train.continuation import continuation_note, resolve_schedule
from lossreweight.train.evaluate import Evaluator
from lossreweight.train.failures import (
    Interrupted,
    OutOfMemory,
    RunDirError,
    TrainingDiverged,
    is_out_of_memory,
    is_peer_failure,
)
from lossreweight.train.guard import StepGuard, StopSignals
from lossreweight.train.metrics import check_logging_deps, truncate_metrics
from lossreweight.train.optim import build_optimizer, lr_at, set_lr
from lossreweight.train.parallel import wrap_model
from lossreweight.train.reporter import StepReporter
from lossreweight.train.runtime import PeerFailure, Runtime, fault_point, setup_runtime
from lossreweight.train.step import build_reweighter, clip_gradients, forward_backward

__all__ = [
    "Interrupted",
    "OutOfMemory",
    "RunDirError",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "train",
]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    tokens: int
    final_eval: dict[str, Any]
    interrupted: bool = False


@dataclass
class _Parts:
    """The components of one run, as the loop uses them."""

    model: torch.nn.Module  # the PerSampleLoss module, wrapped by DDP/FSDP when distributed
    optimizer: torch.optim.Optimizer
    loader: Any
    reweighter: Reweighter
    burn_in: BurnIn
    counters: Counters
    checkpointer: Checkpointer
    evaluator: Evaluator
    reporter: StepReporter  # with the metrics logger and the console
    guard: StepGuard
    tokens_per_step: int


_atomic_write = atomic_write  # lossreweight.rundir's: no temporary file left on failure


class Trainer:
    def __init__(
        self, cfg: RunConfig, run_dir: str | Path, *, data_dir: str | Path | None = None
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.data_dir = data_dir
        self._data_fp: str | None = None  # the data's fingerprint (rank 0), saved in data.json
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

    def _check_run_dir(self, resolved: dict[str, Any], data: PreparedData) -> None:
        """Read-only: is --out new, or the same run on the same data (lossreweight.rundir's
        rule)? Nothing is written before the whole set-up (checkpoint included) has
        succeeded, so bad input leaves no trace."""
        if not self.rt.is_main:
            return
        # The fingerprint is built from the index's checksums: check them against the bytes
        # first, so it is about the data this run reads (docs/benchmarks.md: ~2 s per GB).
        data.verify()
        self._data_fp = data_fingerprint(data.index, data.tokenizer_dir)
        note = check_resume(self.run_dir, resolved, self._data_fp)
        if note:
            print(f"lossreweight: note: {note}", file=sys.stderr)

    def _write_run_files(self, data: PreparedData, resolved: dict[str, Any], step: int) -> None:
        if not self.rt.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # resolved_config.json first: it marks the directory as a run (rundir.read_saved_config).
        _atomic_write(self.run_dir / RESOLVED_CONFIG, json.dumps(resolved, indent=1))
        _atomic_write(self.run_dir / CONFIG_YAML, dump_yaml(self.cfg.to_dict()))
        tok = self.run_dir / TOKENIZER_DIR
        if (
            not tok.exists()
            and data.tokenizer_dir is not None
            and Path(data.tokenizer_dir).is_dir()
        ):
            # Copy then rename: a kill mid-copy must not leave a half tokenizer for good.
            tmp = self.run_dir / "tokenizer.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                shutil.copytree(data.tokenizer_dir, tmp)
                tmp.rename(tok)
            finally:  # a full disk mid-copy leaves no half copy behind
                shutil.rmtree(tmp, ignore_errors=True)
        # The data's fingerprint: a resume on changed data is refused (rundir.check_resume).
        data_info = {
            "domains": data.domains,
            "fingerprint": self._data_fp,
            "tokenizer_sha256": tokenizer_hash(data.tokenizer_dir),  # export-hf checks it
            "stats": data.stats(),
        }
        _atomic_write(self.run_dir / DATA_FILE, json.dumps(data_info, indent=1))
        # Records after the checkpoint (or all of them, on a fresh start) are written again.
        truncate_metrics(self.run_dir, step)
        if step < self.cfg.train.max_steps:
            (self.run_dir / FINAL_FILE).unlink(missing_ok=True)  # stale: the run goes on

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train; errors a user can act on come out as UserError subclasses (one line each)."""
        self._step = 0
        stop = StopSignals()
        try:
            # One writer per run directory (rank 0 holds the lock for all ranks).
            with stop, self._run_dir_lock():
                return self._run(stop)
        except KeyboardInterrupt:
            raise Interrupted(self._interrupted_message(stop.training)) from None
        except OSError as exc:  # disk full, read-only or missing directory, ...
            what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            raise RunDirError(
                f"file system error ({what}); free disk space or fix the path/permissions, "
                f"then {self._resume_hint()}"
            ) from None
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(
                    f"out of memory during step {self._step + 1} "
                    f"({' '.join(str(exc).split())[:100]}); "
                    "lower train.batch_size (raise train.grad_accum to keep the batch), or train a "
                    f"smaller model or with train.fsdp=true; {self._resume_hint()}"
                ) from None
            if not (self.rt.distributed and is_peer_failure(exc)):
                raise
            raise PeerFailure(
                f"rank {self.rt.rank}: another rank died or stopped answering during step "
                f"{self._step + 1} ({' '.join(str(exc).split())[:160]}); {self._resume_hint()}"
            ) from None

    def _run_dir_lock(self) -> contextlib.AbstractContextManager[Any]:
        """Rank 0 locks --out; every rank learns whether it could, so none waits for a rank
        that refused to start."""
        lock: RunDirLock | None = None
        error: Exception | None = None
        if self.rt.is_main:
            try:
                lock = RunDirLock(self.run_dir).acquire()
            except (UserError, OSError) as exc:  # OSError: --out's parent is a file, read-only, ...
                error = exc
        if self.rt.distributed:
            flag = torch.tensor([0.0 if error is None else 1.0], device=self.rt.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and error is None:
                if lock is not None:
                    lock.release()
                raise UserError(
                    f"run directory {self.run_dir} could not be locked by rank 0; see its error"
                )
        if error is not None:
            raise error
        return lock if lock is not None else contextlib.nullcontext()

    def _resume_hint(self) -> str:
        with contextlib.suppress(OSError):
            latest = find_latest_checkpoint(self.run_dir)
            if latest is not None:
                return (
                    "re-run the same command: it resumes from the last complete checkpoint "
                    f"{latest}"
                )
        return (
            "re-run the same command: no checkpoint was saved yet, so it starts from the beginning"
        )

    def _interrupted_message(self, training: bool) -> str:
        if not training:
            return (
                f"interrupted before training started, nothing new was saved; {self._resume_hint()}"
            )
        return (
            f"interrupted at once (second signal) during step {self._step + 1}, "
            f"without saving it; {self._resume_hint()}"
        )

    def _run(self, stop: StopSignals) -> TrainResult:
        # A continued run keeps the schedule length it started with (train/continuation.py).
        self.cfg = cfg = resolve_schedule(self.cfg, self.run_dir)
        rt = self.rt
        data = self._prepare_data()
        model_vocab = cfg.model.vocab_size or data.vocab_size
        check_vocab_fits(data.vocab_size, model_vocab)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, model_vocab)
        resolved = cfg.to_dict()
        resolved["model"] = (
            {**resolved["model"], **model.config_dict()}
            if cfg.model.hf is None
            else {**resolved["model"], "vocab_size": model_vocab}
        )
        resolved["model"]["vocab_size"] = model_vocab
        self._check_run_dir(resolved, data)
        check_logging_deps(cfg.log.wandb_project)
        rt.barrier()
        model.to(rt.device)
        wrapped = wrap_model(model, cfg.train, rt)
        optimizer = build_optimizer(wrapped, cfg.train, rt.device)
        reweighter = build_reweighter(cfg, len(data.domains))
        burn_in = BurnIn.for_run(cfg, data, reweighter)  # sets the Reweighter's burn-in
        loader = data.train_loader(
            cfg.train.batch_size,
            seed=cfg.train.seed,
            rank=rt.rank,
            world_size=rt.world_size,
            mixture=cfg.data.mixture,
        )
        val_batches = data.val_batches(
            cfg.eval.batch_size,
            rank=rt.rank,
            world_size=rt.world_size,
            max_sequences_per_domain=cfg.eval.max_sequences_per_domain,
        )
        counters = Counters()
        checkpointer = Checkpointer(
            self.run_dir,
            rt,
            model=wrapped,
            optimizer=optimizer,
            counters=counters,
            # burn_in before reweighter: it restores the burn-in the Reweighter's state checks
            parts={"loader": loader, "burn_in": burn_in, "reweighter": reweighter},
            every=cfg.checkpoint.every,
            keep=cfg.checkpoint.keep,
        )
        resumed_from = checkpointer.restore()
        # Everything that can refuse bad input has run: only now is the run directory written.
        self._write_run_files(data, resolved, counters.step)
        rt.barrier()
        self._step = counters.step
        evaluator = Evaluator(wrapped, val_batches, data.domains, rt, every=cfg.eval.every)
        reporter = StepReporter.for_run(
            cfg,
            self.run_dir,
            rt,
            evaluator=evaluator,
            domains=data.domains,
            flops_per_token=model.flops_per_token(data.seq_len),
            initial_step=counters.step,
            config=resolved,
        )
        logger, console = reporter.logger, reporter.console
        if resumed_from is not None:
            console.resumed(counters.step, resumed_from, continuation_note(cfg, counters.step))
        reporter.observers.append(burn_in.observe)
        p = _Parts(
            model=wrapped,
            optimizer=optimizer,
            loader=loader,
            reweighter=reweighter,
            burn_in=burn_in,
            counters=counters,
            checkpointer=checkpointer,
            evaluator=evaluator,
            reporter=reporter,
            guard=StepGuard(optimizer, rt.device, distributed=rt.distributed),
            tokens_per_step=cfg.train.batch_size
            * cfg.train.grad_accum
            * rt.world_size
            * data.seq_len,
        )
        started = time.perf_counter()
        try:
            interrupted = self._loop(p, stop)
            last_eval = p.evaluator.last
            if not interrupted and not last_eval:
                # Nothing left to train (a re-run of a finished run): keep or redo the final eval.
                last_eval = self._final_eval(counters.step) or p.evaluator.run()
        finally:
            console.close()
            logger.close()
        step, tokens = counters.step, counters.tokens
        result = TrainResult(self.run_dir, step, tokens, last_eval, interrupted)
        if rt.is_main and not interrupted:
            _atomic_write(
                self.run_dir / FINAL_FILE,
                json.dumps(
                    {"steps": step, "tokens": tokens, **last_eval, "burn_in": burn_in.summary()},
                    indent=1,
                ),
            )
            console.summary(
                step, tokens, time.perf_counter() - started, last_eval, worst_domain(last_eval)
            )
        return result

    def _loop(self, p: _Parts, stop: StopSignals) -> bool:
        """Train to train.max_steps; True when a signal stopped it first (after a checkpoint).

        The host never waits for the device inside a step: the skip decision is applied on
        device (StepGuard) and each step's flags and metrics travel to the host without
        blocking (Pending), to be read one step later, or at once at a step that evaluates or
        saves anyway."""
        cfg, c = self.cfg.train, p.counters
        p.reporter.start(c.tokens)
        p.model.train()
        stop.training = True
        while c.step < cfg.max_steps:
            self._step = c.step
            if p.burn_in.eval_due(c.step):  # where reweighting starts, on the loss curve
                p.reporter.console.info(p.burn_in.measured(p.evaluator.run()))
            lr = lr_at(c.step, cfg)
            set_lr(p.optimizer, lr)
            batches = [next(p.loader) for _ in range(cfg.grad_accum)]
            stats = forward_backward(p.model, p.reweighter, batches, c.step, self.rt.device)
            grad_norm = clip_gradients(p.model, cfg.grad_clip, self.rt.device)
            if stop.requested and self.rt.distributed:
                p.guard.request_stop()  # the other ranks learn of it with this step's flags
            flags = p.guard.step(grad_norm, stats)  # update, or skip it on device
            p.optimizer.zero_grad(set_to_none=True)
            c.step += 1
            c.tokens += p.tokens_per_step
            p.reporter.console.advance()
            p.reporter.queue(c.step, c.tokens, lr, {**flags, "grad_norm": grad_norm, **stats})
            last = c.step == cfg.max_steps
            sync = last or p.evaluator.due(c.step) or p.checkpointer.due(c.step)
            agreed = p.reporter.report(keep=0 if sync else 1)  # log / evaluate the steps done
            p.burn_in.apply(c.step)  # a progress target read in those steps ends the burn-in
            fault_point("step", c.step, self.rt.rank)
            stopping = agreed if self.rt.distributed else stop.requested
            if p.checkpointer.due(c.step, last=last, stopping=stopping):
                p.reporter.report()  # the whole step is known before it is saved
                p.checkpointer.save()
            if stopping and not last:
                return True
        return False

    def _final_eval(self, step: int) -> dict[str, Any]:
        """The evaluation in final.json when it is of this step, else {}."""
        with contextlib.suppress(UserError, OSError):
            saved = read_final(self.run_dir) or {}
            if saved.get("steps") == step and LOSS in saved:
                return eval_metrics(saved)
        return {}


def train(
    cfg: RunConfig, run_dir: str | Path, *, data_dir: str | Path | None = None
) -> TrainResult:
    return Trainer(cfg, run_dir, data_dir=data_dir).run()
