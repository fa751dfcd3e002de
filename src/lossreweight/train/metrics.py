"""Where metrics go: metrics.jsonl (always), TensorBoard, optional Weights & Biases.

A record is flat: `step` and `tokens` (the x axes) and metric names such as `train/loss` or
`eval/<domain>/loss` (docs/metrics.md). The same names are the TensorBoard tags and the
wandb keys; the step is the x axis there, never a scalar."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lossreweight.metric_names import CONFIG_TAG, X_AXES
from lossreweight.rundir import METRICS_FILE, TENSORBOARD_DIR, read_metrics


def _finite(v: Any) -> Any:
    # JSON has no NaN/inf; write null so every consumer can parse the file.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """On resume, drop records newer than the checkpoint: they will be written again."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    keep = [r for r in read_metrics(run_dir) if r.get("step", 0) <= after_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    tmp.replace(path)


def check_logging_deps(wandb_project: str | None) -> None:
    """Fail before anything is written when a configured sink cannot work."""
    if not wandb_project:
        return
    import importlib.util

    from lossreweight.errors import ConfigError

    if importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            "log.wandb_project is set but wandb is not installed; "
            "pip install 'lossreweight[wandb]', or unset log.wandb_project"
        )
    if not _wandb_can_log():
        raise ConfigError(
            "log.wandb_project is set but wandb has no API key; run `wandb login`, or set "
            "WANDB_MODE=offline to log into the run directory, or unset log.wandb_project"
        )


def _wandb_can_log() -> bool:
    """Without this, wandb.init raises (or prompts) only after the run directory exists."""
    import netrc
    import os

    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class MetricsLogger:
    """Writes on the main rank only; every sink is optional but the jsonl file."""

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        tensorboard: bool,
        wandb_project: str | None,
        wandb_run_name: str | None,
        config: dict[str, Any],
    ) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))
            # The resolved config as text (tag `config`), as the HF Trainer writes its `args`;
            # indented four spaces so TensorBoard's markdown shows it verbatim.
            text = json.dumps(config, indent=1, sort_keys=True, default=str)
            self._tb.add_text(CONFIG_TAG, "\n".join("    " + ln for ln in text.splitlines()))
        if wandb_project:
            import wandb  # checked by check_logging_deps before the run wrote anything

            self._wandb = wandb.init(
                project=wandb_project,
                name=wandb_run_name,
                config=config,
                resume="allow",
                dir=str(run_dir),  # offline runs stay with the run, not in the current folder
            )

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = _finite(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        step = record["step"]
        scalars = {
            k: float(v)
            for k, v in record.items()
            if isinstance(v, bool | int | float) and k not in X_AXES
        }
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            # `tokens` too: wandb lets a chart use any logged key as its x axis.
            self._wandb.log({**scalars, "tokens": record.get("tokens")}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
