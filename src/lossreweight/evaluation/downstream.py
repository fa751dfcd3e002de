"""Downstream tasks through lm-evaluation-harness, on a run's checkpoint exported to Hugging Face
format on the fly.

The checkpoint is written as a `LlamaForCausalLM` (or the run's own transformers model) with
the run's tokenizer into a temporary folder and handed to lm-eval's `HFLM`, so the scores are
those of the exact model `lossreweight export-hf` gives. Nothing here fetches anything: lm-eval
downloads a task's data set from the hub only for hub tasks, and only with network access.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lossreweight.errors import CheckpointError, ConfigError, DataError
from lossreweight.metric_names import downstream_metrics
from lossreweight.model.hf_export import export_hf
from lossreweight.model.load import load_run_model
from lossreweight.rundir import TOKENIZER_DIR
from lossreweight.train.checkpoint import read_state

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager


INSTALL_HINT = "pip install 'lossreweight[eval]'"
HUB_URL = "https://huggingface.co"


@dataclass
class DownstreamSpec:
    """What to evaluate, as on lm-eval's own command line."""

    tasks: list[str]
    num_fewshot: int | None = None
    limit: int | None = None
    batch_size: int | str = 8
    include_paths: list[Path] = field(default_factory=list)
    dtype: str = "float32"
    # lm-eval's own result files (`--output_path`), and every prompt and answer in them
    # (`--log_samples`): what lm-eval's command line writes, beside our record.
    output_path: Path | None = None
    log_samples: bool = False

    def settings(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "num_fewshot": self.num_fewshot,
            "limit": self.limit,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "include_paths": [str(p) for p in self.include_paths],
            "output_path": None if self.output_path is None else str(self.output_path),
            "log_samples": self.log_samples,
        }


def require_lm_eval() -> None:
    """Import lm-eval now, so a missing install is one line before any work is done."""
    from lossreweight.extras import require_extra

    require_extra("eval")
    try:  # installed but broken (a dependency of lm-eval missing): still one line
        import lm_eval  # noqa: F401
        from lm_eval.models.huggingface import HFLM  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"--tasks needs lm-evaluation-harness, which cannot be imported ({exc.name or exc}); "
            f"install it with {INSTALL_HINT}"
        ) from None


def task_manager(spec: DownstreamSpec) -> TaskManager:
    """lm-eval's task registry with the user's --include-path folders; unknown names are a
    ConfigError that suggests close matches."""
    from lm_eval.tasks import TaskManager

    for folder in spec.include_paths:
        if not folder.is_dir():
            raise ConfigError(
                f"--include-path {folder} is not a directory; give a folder of task YAMLs"
            )
    paths = [str(p) for p in spec.include_paths]
    if paths and (local := _local_only(TaskManager, paths, spec.tasks)) is not None:
        return local
    tm = TaskManager(include_path=paths or None)
    known = set(tm.all_tasks)
    for name in spec.tasks:
        if name not in known and not Path(name).is_file():
            close = difflib.get_close_matches(name, tm.all_tasks, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"unknown lm-eval task {name!r}{hint}; list them with `lm-eval ls tasks`, "
                "or add a folder of your own task YAMLs with --include-path DIR"
            )
    return tm


def _local_only(manager: Any, paths: list[str], tasks: list[str]) -> Any:
    """A registry of the user's folders alone when every task is a plain task there: indexing
    lm-eval's ~15k built-in tasks takes seconds, and groups may name built-ins. None otherwise,
    and on lm-eval versions without the registry's `Kind` index."""
    try:
        from lm_eval.tasks._index import Kind

        local = manager(include_path=paths, include_defaults=False)
        kinds = [getattr(local.task_index.get(t), "kind", None) for t in tasks]
    except (ImportError, AttributeError, TypeError):
        return None
    return local if all(k in (Kind.TASK, Kind.PY_TASK) for k in kinds) else None


def check_tasks_load(tm: TaskManager, spec: DownstreamSpec) -> None:
    """Build the tasks (and so load their data) once before any model is exported, one at a
    time: a hub task without network, or a local task with a missing file, fails here in one
    line that names that task. With the hub unreachable, `datasets` reads its cache only
    instead of retrying for a minute (`hub_offline_unless_reachable`)."""
    with hub_offline_unless_reachable(), _bars_only_on_a_terminal():
        for name in spec.tasks:
            try:
                tm.load([name])
            except ConnectionError as exc:
                raise DataError(
                    f"cannot load the data of {name}: {_one_line(exc)}; hub tasks need network "
                    "access the first time (lm-eval downloads them with `datasets`), or use a "
                    "local task with --include-path DIR"
                ) from None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(
                    f"lm-eval cannot build the task {name}: {_one_line(exc)}; check the task "
                    "YAML and its data files"
                ) from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers at all (any HTTP status) within `timeout` s."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(HUB_URL, method="HEAD"), timeout=timeout
        ):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False


# The offline switches of huggingface_hub and datasets, read when they are used (their
# environment variables are read once, at import).
_OFFLINE_FLAGS = (
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_DATASETS_OFFLINE"),
)


@contextlib.contextmanager
def hub_offline_unless_reachable() -> Iterator[None]:
    """The hub's libraries retry an unreachable hub for about a minute per file, printing each
    retry; when it does not answer now, put them in their offline mode (cached data only,
    which fails at once when the data is not cached) while the block runs."""
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        yield  # already offline, by the user's choice
        return
    if hub_reachable():
        yield
        return
    saved = []
    for module_name, flag in _OFFLINE_FLAGS:
        with contextlib.suppress(ImportError):
            module = importlib.import_module(module_name)
            if hasattr(module, flag):
                saved.append((module, flag, getattr(module, flag)))
                setattr(module, flag, True)
    try:
        yield
    finally:
        for module, flag, value in saved:
            setattr(module, flag, value)


def evaluate_downstream(
    run_dir: Path,
    checkpoint: Path | None,
    spec: DownstreamSpec,
    device: torch.device,
    tm: TaskManager,
) -> dict[str, Any]:
    """Scores of one checkpoint (default: the newest complete one) on `spec.tasks`, as the
    record that `downstream_step_XXXXXXXX.json` holds."""
    from lm_eval import simple_evaluate

    model, ckpt = load_run_model(run_dir, checkpoint)
    state = read_state(ckpt)
    tokenizer = run_dir / TOKENIZER_DIR
    if not tokenizer.is_dir():
        raise CheckpointError(
            f"{run_dir} has no {TOKENIZER_DIR}/ folder; downstream evaluation needs the run's "
            "tokenizer (runs trained on prepared data copy it there)"
        )
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="lossreweight-eval-") as tmp:
        hf_dir = Path(tmp) / "hf"
        export_hf(model, hf_dir, tokenizer, dtype=getattr(torch, spec.dtype))
        del model  # lm-eval loads its own copy from the export
        lm = _local_hflm(hf_dir, device, spec)
        tracker = _tracker(spec)
        try:
            with hub_offline_unless_reachable(), _bars_only_on_a_terminal():
                out = simple_evaluate(
                    model=lm,
                    tasks=list(spec.tasks),
                    num_fewshot=spec.num_fewshot,
                    limit=spec.limit,
                    task_manager=tm,
                    log_samples=spec.log_samples,
                    evaluation_tracker=tracker,
                )
        except ConnectionError as exc:
            raise DataError(f"lm-eval could not reach the hub: {_one_line(exc)}") from None
    assert out is not None  # single process: rank 0 always gets the results
    if tracker is not None:
        _save_lm_eval_files(tracker, out, spec.log_samples)
    return {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt.relative_to(run_dir)) if ckpt.is_relative_to(run_dir) else str(ckpt),
        "step": state["step"],
        "tokens": state["tokens"],
        "device": str(device),
        **spec.settings(),
        "metrics": downstream_metrics(out["results"]),
        "n_shot": out.get("n-shot", {}),
        "n_samples": out.get("n-samples", {}),
        "lm_eval": {
            "version": out.get("lm_eval_version"),
            "results": _finite(out["results"]),
            "versions": out.get("versions", {}),
        },
        "seconds": round(time.time() - started, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@contextlib.contextmanager
def _bars_only_on_a_terminal() -> Iterator[None]:
    """`datasets` draws its progress bars on stderr even into a log file: not there."""
    try:
        import datasets
    except ImportError:
        yield
        return
    quiet = not sys.stderr.isatty() and not datasets.are_progress_bars_disabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if quiet:
            datasets.enable_progress_bars()


def _tracker(spec: DownstreamSpec) -> Any:
    """lm-eval's EvaluationTracker writing to `spec.output_path` (None: no lm-eval files)."""
    if spec.output_path is None:
        return None
    from lm_eval.loggers import EvaluationTracker

    return EvaluationTracker(output_path=str(spec.output_path))


def _save_lm_eval_files(tracker: Any, out: dict[str, Any], log_samples: bool) -> None:
    """What lm-eval's command line writes with --output_path (and --log_samples): its results
    file and one samples file per task, under output_path/<model>/ with a timestamp."""
    samples = out.pop("samples", None) if log_samples else None
    tracker.save_results_aggregated(results=out, samples=samples)
    if samples:
        for task in out.get("configs", {}):
            if task in samples:
                tracker.save_results_samples(task_name=task, samples=samples[task])


def _local_hflm(hf_dir: Path, device: torch.device, spec: DownstreamSpec) -> Any:
    from lm_eval.models.huggingface import HFLM

    class LocalHFLM(HFLM):
        def get_model_info(self) -> dict[str, Any]:
            # HFLM's own asks the hub for the model's revision; ours is a local export.
            return {
                "model_num_parameters": self._model.num_parameters(),
                "model_dtype": str(self._model.dtype),
            }

    try:
        return LocalHFLM(
            pretrained=str(hf_dir),
            tokenizer=str(hf_dir),
            device=str(device),
            dtype=spec.dtype,
            batch_size=spec.batch_size,
        )
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            "transformers cannot load the exported model or the run's tokenizer: "
            f"{_one_line(exc)}; downstream evaluation needs a Hugging Face tokenizer "
            "(tokenizer.json) in RUN_DIR/tokenizer"
        ) from None


def _finite(value: Any) -> Any:
    """lm-eval's results with NaN/inf as None and non-JSON values as strings (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
