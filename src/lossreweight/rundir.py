"""The run directory: every file name in it, and the one rule for "is this the same run?".

Pure (no torch): the trainer, the checkpointer, `eval`, `export-hf` and the studies all read
names and the rule from here. Layout of `lossreweight train --out RUN`:

    RUN/.lock                       held by the one process writing the run (locking.py)
    RUN/resolved_config.json        written first: it marks the directory as a run
    RUN/config.yaml                 the config as given (before the model was resolved)
    RUN/data.json                   the data's domains, statistics and content fingerprint
    RUN/tokenizer/                  the tokenizer the run trained with
    RUN/metrics.jsonl               one record per logged step (the source of truth)
    RUN/tensorboard/                when log.tensorboard is on
    RUN/final.json                  the final evaluation; present only when the run finished
    RUN/train_time.json             wall seconds spent training (written by the studies)
    RUN/checkpoints/step_00001000/  model.safetensors, optimizer.pt, rng_rank*.safetensors,
                                    state.json, manifest.json, COMPLETE (written last)
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from lossreweight.errors import CheckpointError, ConfigError, DataError, UserError
from lossreweight.locking import LOCK_FILE, DirectoryLock, describe_holder
from lossreweight.metric_names import from_legacy

# -- file names ---------------------------------------------------------------------------
RESOLVED_CONFIG = "resolved_config.json"
CONFIG_YAML = "config.yaml"
RUN_CONFIG_FILES = (RESOLVED_CONFIG, CONFIG_YAML)
DATA_FILE = "data.json"
TOKENIZER_DIR = "tokenizer"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
FINAL_FILE = "final.json"
TIMING_FILE = "train_time.json"
CHECKPOINTS_DIR = "checkpoints"
# Inside a checkpoint directory.
MODEL_WEIGHTS = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
COMPLETE_MARKER = "COMPLETE"
# Any of these makes a directory (part of) a training run.
RUN_MARKERS = (RESOLVED_CONFIG, METRICS_FILE, CHECKPOINTS_DIR, FINAL_FILE, CONFIG_YAML)
TMP_SUFFIX = ".tmp"  # atomic writes: FILE.tmp, renamed onto FILE when whole

_STEP_DIR = re.compile(r"step_(\d+)")


def checkpoint_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def checkpoint_step(path: str | Path) -> int | None:
    """The step of a `step_XXXXXXXX` directory name, else None."""
    m = _STEP_DIR.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoint directories of a run (a COMPLETE marker), oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [
        (step, d)
        for d in root.iterdir()
        if (step := checkpoint_step(d)) is not None and (d / COMPLETE_MARKER).is_file()
    ]
    return [d for _, d in sorted(found)]


def find_latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint directory with the highest step, or None."""
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def require_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete checkpoint of a run; one line when there is none."""
    latest = find_latest_checkpoint(run_dir)
    if latest is None:
        if trainer := trainer_of(run_dir):
            raise CheckpointError(
                f"{run_dir} is being trained ({trainer}) and has no complete checkpoint yet; "
                "re-run once the first one is saved (checkpoint.every)"
            )
        raise CheckpointError(
            f"{run_dir} has no complete checkpoint ({CHECKPOINTS_DIR}/step_XXXXXXXX with a "
            f"{COMPLETE_MARKER} file); train until one is saved, or check the path"
        )
    return latest


def is_run_dir(path: str | Path) -> bool:
    """Does `path` hold (part of) a training run?"""
    return any((Path(path) / m).exists() for m in RUN_MARKERS)


def user_entries(directory: str | Path) -> list[Path]:
    """What is in `directory` besides our lock file and leftovers of an atomic write: the
    entries that make it "not empty" (a lock file alone never does)."""
    return [
        p
        for p in Path(directory).iterdir()
        if p.name != LOCK_FILE and not p.name.endswith(TMP_SUFFIX)
    ]


def atomic_write(path: str | Path, text: str) -> None:
    """Write `path` whole or not at all (a temporary sibling renamed onto it); a failed write
    (a full disk) leaves no temporary file behind."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


# -- the one "same run" rule --------------------------------------------------------------
# Every config key falls in one of four classes (a key also covers its sub-keys):
# Settings that never change what a run computes: where logs go, how often checkpoints are
# written, CPU threads, where the data cache lives. Free to change, on resume and in a cache.
NEVER_CHANGE_RESULTS: tuple[str, ...] = ("log", "checkpoint", "train.threads", "data.cache_dir")
# Settings that change how long a run goes or how it is looked at, not what a step computes:
# free to change on resume (train further, evaluate more often); but a finished run with other
# values of them is another result, so a study's cache does not reuse it.
RESUMABLE: tuple[str, ...] = ("train.max_steps", "eval.every", "train.compile")
# Settings a user changes on purpose to get a diverged run past its NaNs (the divergence
# error's advice): allowed on resume, with a note, since the results then differ.
RECOVERY: tuple[str, ...] = ("train.lr", "train.grad_clip", "train.max_nonfinite_steps")
# Everything else is *blocking*: another value makes it another run, which cannot resume here.
# Values compared whole (a temperature schedule, a mixture), not key by key:
_WHOLE = ("reweight.temperature", "data.mixture")
# Where prepared data lives: no part of a run's identity when the data's fingerprint matches.
DATA_LOCATIONS: tuple[str, ...] = ("data.prepared",)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"lr": 1}}` -> `{"train.lr": 1}`; a schedule or a mixture stays one value."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and key not in _WHOLE:
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = v
    return out


def _in(key: str, groups: tuple[str, ...]) -> bool:
    return any(key == g or key.startswith(g + ".") for g in groups)


@dataclass(frozen=True)
class RunDiff:
    """How a wanted config differs from a run's saved one, key by key, by class."""

    blocking: tuple[str, ...]
    recovery: tuple[str, ...]
    resumable: tuple[str, ...]
    ignored: tuple[str, ...]
    saved: Mapping[str, Any]  # both configs, flattened, for messages
    wanted: Mapping[str, Any]

    @property
    def can_resume(self) -> bool:
        """The run may go on with the wanted config (the trainer's rule)."""
        return not self.blocking

    @property
    def same_results(self) -> bool:
        """A finished run of the saved config is a finished run of the wanted one (a cache hit)."""
        return not (self.blocking or self.recovery or self.resumable)

    def describe(self, keys: tuple[str, ...], limit: int = 3) -> str:
        """'train.lr: 0.001 -> 0.0005, ...' for the first `limit` keys."""
        return ", ".join(
            f"{k}: {self.saved.get(k)!r} -> {self.wanted.get(k)!r}" for k in keys[:limit]
        )


def compare_runs(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> RunDiff:
    """Compare a run's saved resolved config with a wanted config (nested dicts).

    The trainer resolves `None` model fields (vocab size, kv heads, ffn width, an hf model's
    config) from the data and saves them; a `None` asked for, or a model key not asked for at
    all, matches whatever was resolved."""
    have, want = flatten_config(saved), flatten_config(wanted)
    classes: dict[str, list[str]] = {"blocking": [], "recovery": [], "resumable": [], "ignored": []}
    for key in sorted(set(have) | set(want)):
        if key.startswith("model.") and want.get(key) is None and key in have:
            continue  # resolved by the trainer
        if key == "train.schedule_steps" and None in (have.get(key), want.get(key)):
            continue  # resolved at a run's first start (train/continuation.py); older runs lack it
        if have.get(key) == want.get(key):
            continue
        if _in(key, NEVER_CHANGE_RESULTS):
            cls = "ignored"
        elif _in(key, RESUMABLE):
            cls = "resumable"
        elif _in(key, RECOVERY):
            cls = "recovery"
        else:
            cls = "blocking"
        classes[cls].append(key)
    return RunDiff(**{k: tuple(v) for k, v in classes.items()}, saved=have, wanted=want)


def results_hash(config: Mapping[str, Any]) -> str:
    """A short fingerprint of every setting that can change a run's results (all but
    NEVER_CHANGE_RESULTS): equal hashes <=> `compare_runs(...).same_results`, None fields aside."""
    flat = {k: v for k, v in flatten_config(config).items() if not _in(k, NEVER_CHANGE_RESULTS)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


# -- reading a run ------------------------------------------------------------------------
def read_json_object(file: Path, *, what: str, fix: str, error: type[UserError]) -> dict[str, Any]:
    """A JSON object from `file`; unreadable, malformed or non-object content raises `error`
    with one line naming the file and ending with `fix`."""
    try:
        data = json.loads(Path(file).read_text())
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {file}: {' '.join(str(exc).split())[:120]}; {fix}") from None
    if not isinstance(data, dict):
        raise error(f"{file} is not {what} (not a mapping); {fix}")
    return data


def read_saved_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The resolved config of the run in `run_dir`; None for a new (missing or empty) dir.
    Refuses a non-empty directory that is not a run, rather than writing into it."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} exists and is not a directory; choose another --out")
    file = run_dir / RESOLVED_CONFIG
    if not file.is_file():
        # Our lock and leftovers of an atomic write killed half-way are ours;
        # the rest is the user's.
        if user_entries(run_dir):
            raise ConfigError(
                f"--out {run_dir} is a non-empty directory that holds no run ({RESOLVED_CONFIG} "
                "is missing); choose a new or empty --out directory"
            )
        return None
    return read_json_object(
        file,
        what="a run config",
        fix="it is damaged: restore it, or train into a new --out directory",
        error=ConfigError,
    )


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The config a run was trained with, as saved (resolved_config.json; config.yaml for a
    run that has only that): what `eval`, `export-hf` and the model loader read. One line
    (CheckpointError) when the directory holds no run or the file is damaged."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; check the path")
    file = run_dir / RESOLVED_CONFIG
    if file.is_file():
        return read_json_object(
            file, what="a run config", fix="the run directory is damaged", error=CheckpointError
        )
    file = run_dir / CONFIG_YAML
    if not file.is_file():
        raise CheckpointError(
            f"{run_dir} is not a run directory: it has no {RESOLVED_CONFIG} or {CONFIG_YAML}; "
            "give the --out of `lossreweight train`"
        )
    import yaml  # the pipeline's extra; only runs without resolved_config.json need it

    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise CheckpointError(
            f"cannot read {file}: {' '.join(str(exc).split())[:120]}; the run directory is damaged"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} is not a run config (not a mapping); it is damaged")
    return data


def read_final(run_dir: str | Path) -> dict[str, Any] | None:
    """final.json of a finished run under the metric vocabulary (an older run's `val_loss`,
    ... read through metric_names.from_legacy); None while the run is not finished."""
    file = Path(run_dir) / FINAL_FILE
    if not file.is_file():
        return None
    data = read_json_object(
        file,
        what="a final evaluation",
        fix="delete it and re-run the same `train` command to evaluate again",
        error=CheckpointError,
    )
    return from_legacy(data)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl, one per logged step, under the metric vocabulary as
    written (docs/metrics.md); [] before the first. A line cut short by a crash is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
    return rows


def read_data_fingerprint(run_dir: str | Path) -> str | None:
    """The data fingerprint saved with a run (data.json), or None (a run from before
    fingerprints, or no data.json yet)."""
    value = _data_record(run_dir).get("fingerprint")
    return value if isinstance(value, str) else None


def _data_record(run_dir: str | Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(run_dir) / DATA_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def trainer_of(run_dir: str | Path) -> str | None:
    """Who is training the run now ('pid 123 on host (lossreweight train ...)'), or None.

    A read-only probe of the run's lock: a shared lock taken and dropped at once, refused
    while a trainer holds it exclusively. Nothing is created or written."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return describe_holder(path)
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# -- the data a run trains on --------------------------------------------------------------
def data_fingerprint(index: Mapping[str, Any], tokenizer_dir: str | Path | None) -> str:
    """sha256 of the content of prepared data: every shard's token count and full CRC-32
    (from the data's index, which the trainer checks against the shards' bytes first:
    `PreparedData.verify`), the layout, and the bytes of every tokenizer file. Where the data
    lives plays no part, so moving the data keeps the fingerprint."""
    splits = index.get("splits", {})
    content = {
        "seq_len": index.get("seq_len"),
        "dtype": index.get("dtype"),
        "domains": index.get("domains"),
        "tokenizer": {k: v for k, v in dict(index.get("tokenizer", {})).items() if k != "dir"},
        "shards": {
            split: {
                d: [[s.get("tokens"), s.get("crc32")] for s in e.get("shards", [])]
                for d, e in doms.items()
            }
            for split, doms in splits.items()
        },
    }
    h = hashlib.sha256(json.dumps(content, sort_keys=True).encode())
    _hash_folder(h, tokenizer_dir)
    return h.hexdigest()


def tokenizer_hash(tokenizer_dir: str | Path | None) -> str | None:
    """sha256 of a tokenizer folder's files (names and bytes); None without one."""
    if tokenizer_dir is None or not Path(tokenizer_dir).is_dir():
        return None
    h = hashlib.sha256()
    _hash_folder(h, tokenizer_dir)
    return h.hexdigest()


def _hash_folder(h: Any, folder: str | Path | None) -> None:
    if folder is None or not Path(folder).is_dir():
        return
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())


def check_same_data(run_dir: str | Path, data_fp: str | None, *, doing: str) -> None:
    """Refuse (DataError) when the data a command is about to use is not the data the run
    trained on (its fingerprint in data.json), or when the run's data.json was lost. `doing`
    names the command's act for the message ("resume", "evaluate")."""
    run_dir = Path(run_dir)
    if not (run_dir / DATA_FILE).is_file():
        if find_latest_checkpoint(run_dir) is None and not (run_dir / FINAL_FILE).exists():
            return  # set-up never finished: nothing was trained on any data yet
        raise DataError(
            f"{run_dir / DATA_FILE} is missing (it records the data the run trained on), so "
            f"nothing can show that the data is the same; restore it from a backup to {doing}, "
            "or train into a new --out directory"
        )
    before = read_data_fingerprint(run_dir)
    if before is not None and data_fp is not None and before != data_fp:
        raise DataError(
            f"{run_dir} was trained on other data: the prepared data (its shards or tokenizer) "
            f"changed since (fingerprint {before[:12]} -> {data_fp[:12]}); restore the data it "
            f"was trained on to {doing}, or train into a new --out directory"
        )


def check_run_tokenizer(run_dir: str | Path) -> None:
    """Refuse (DataError) when RUN/tokenizer/ is not the tokenizer the run trained with (its
    hash in data.json; runs from before the hash are not checked)."""
    run_dir = Path(run_dir)
    saved = _data_record(run_dir).get("tokenizer_sha256")
    if not isinstance(saved, str):
        return
    now = tokenizer_hash(run_dir / TOKENIZER_DIR)
    if now != saved:
        what = "is missing" if now is None else "changed since the run trained with it"
        raise DataError(
            f"{run_dir / TOKENIZER_DIR} {what}: a model exported with it would read other "
            "tokens; restore the run's tokenizer folder"
        )


# -- may this run go on with these settings and this data? ---------------------------------
def check_resume(run_dir: str | Path, wanted: Mapping[str, Any], data_fp: str | None) -> str | None:
    """Read-only check before training into `run_dir`: a new directory, or the same run.

    Raises DataError when the run trained on other data (checked first: changed data also
    changes resolved settings such as the vocabulary size, which must not be blamed on the
    config), ConfigError when a blocking setting differs. Returns a note to print when a
    recovery setting changed, else None."""
    run_dir = Path(run_dir)
    saved = read_saved_config(run_dir)
    if saved is None:
        return None
    check_same_data(run_dir, data_fp, doing="resume")
    diff = compare_runs(saved, wanted)
    if data_fp is not None and read_data_fingerprint(run_dir) == data_fp:
        # The fingerprint is the data's identity: prepared data moved, or named by another
        # path, is the same data.
        diff = dataclasses.replace(
            diff, blocking=tuple(k for k in diff.blocking if k not in DATA_LOCATIONS)
        )
    if not diff.can_resume:
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({diff.describe(diff.blocking)}); re-run "
            "with the same config to resume, or choose a new --out directory"
        )
    if diff.recovery:
        return (
            f"resuming {run_dir} with changed settings ({diff.describe(diff.recovery, limit=99)})"
        )
    return None


# -- one writer per run directory ----------------------------------------------------------
class RunDirLock:
    """The run directory's lock (`DirectoryLock` on `RUN/.lock`), held from before the first
    check until training ends, so two `train` processes never write one run.

    Bad input must leave no trace, yet the lock lives in the directory: on release, when the
    directory holds no run (no resolved_config.json), the lock file goes again if this process
    created it, and the directory (with any parents) too if this process created it and it is
    empty."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._lock: DirectoryLock | None = None
        self._created: list[Path] = []  # folders this process made for the lock, deepest first
        self._created_lock = False

    def acquire(self) -> RunDirLock:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(
                f"--out {self.run_dir} exists and is not a directory; choose another --out"
            )
        for _ in range(10):
            self._created = self._created or _missing_dirs(self.run_dir)
            self._created_lock = not (self.run_dir / LOCK_FILE).exists()
            lock = DirectoryLock(self.run_dir, what="run directory").acquire()
            if _same_file(lock):
                self._lock = lock
                return self
            # Locked a lock file that its last holder was removing (a failed set-up): retry.
            lock.release()
        raise ConfigError(
            f"could not lock {self.run_dir / LOCK_FILE} (it keeps disappearing); retry"
        )

    def release(self) -> None:
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            # resolved_config.json is written first: without it no run was ever written here.
            if self.run_dir.is_dir() and not (self.run_dir / RESOLVED_CONFIG).exists():
                if self._created_lock:
                    (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
                for folder in self._created:
                    if any(folder.iterdir()):
                        break
                    folder.rmdir()
        self._lock.release()  # after the clean-up: no other writer can start in between
        self._lock = None

    def __enter__(self) -> RunDirLock:
        return self if self._lock is not None else self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _missing_dirs(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for folder in (path, *path.absolute().parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _same_file(lock: DirectoryLock) -> bool:
    """Is the locked file still the one at `lock.path`? (Not one unlinked by a process that
    released it after a failed set-up, while we waited to open it.)"""
    try:
        return os.fstat(lock._fd).st_ino == os.stat(lock.path).st_ino  # noqa: SLF001
    except (OSError, TypeError):
        return False
