"""The GPU checks owed by issues 15 and 18, in one call of about 8 minutes on one H100/H200.

1. `tests`: the GPU tests (bf16 autocast, torch.compile, FSDP2, the sync-debug checks that no
   training step waits for the device): tests/test_*_gpu.py.
2. `bench`: benchmarks/bench_train.py on the `small` and `gpt2-paper` presets: the trainer's
   tokens/s over a minimal hand-written loop on the same model and batches, LinUpper over
   uniform, and the trainer's MFU.
3. `conditions`: `lossreweight experiment conditions` at the largest model that reads the
   embedded corpus at most once (1.4M parameters at 2.6 tokens/param), 5 seeds, many runs
   side by side on the one GPU (`--jobs`).

The device has no network and maybe not the corpus's source packages, so the data is prepared
on the CPU machine first, into a cache folder inside the checkout that the call carries:

    .venv/bin/python benchmarks/gpu_evidence.py prepare             # here: .gpu-cache/ (~50 MB)
    # device call: carry [".gpu-cache"], command:
    python benchmarks/gpu_evidence.py run --out $OUT                  # there
    .venv/bin/python benchmarks/gpu_evidence.py run --dry-run --out /tmp/ge   # CPU rehearsal

`--dry-run` runs every stage at the smallest size on the CPU (what the tests run), so the
script is known to work before device time is spent on it. Every stage has its own time
limit; `evidence.json` says what each stage did, how long it took and where its output is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ".gpu-cache"  # relative: the study's tokenizer path is then the same string there
CONDITIONS_SIZE, CONDITIONS_SEEDS, JOBS = "1.4M", 5, 12
# The bench presets read a slice of the corpus (enough for their steps), so the carried data
# stays small; the model and the batch are the presets' own.
BENCH_DATA = ("data.max_chars_per_domain=3000000",)
BENCHES = {"small": (60, 2), "gpt2-paper": (60, 2)}  # preset -> (steps, rounds)
LIMITS = {"tests": 120, "bench": 200, "conditions": 240}  # seconds per stage (~8.5 min)
GPU_TESTS = ("tests/test_train_gpu.py", "tests/test_losses_gpu.py", "tests/test_model_gpu.py")


CONDITIONS_SIZE_ENV = "LOSSREWEIGHT_CONDITIONS_SIZE"
CONDITIONS_SEEDS_ENV = "LOSSREWEIGHT_CONDITIONS_SEEDS"


def _env(dry: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    if not dry:  # the carried data; a rehearsal uses the caller's cache
        env.setdefault("LOSSREWEIGHT_CACHE", CACHE)
        env[CONDITIONS_SIZE_ENV] = CONDITIONS_SIZE
        env[CONDITIONS_SEEDS_ENV] = str(CONDITIONS_SEEDS)
    return env


def stage_commands(out: Path, dry: bool) -> dict[str, list[list[str]]]:
    py = sys.executable
    bench = []
    for preset, (steps, rounds) in BENCHES.items():
        if dry:  # the tiny preset at test scale, on the CPU
            preset, steps, rounds = "tiny", 30, 1
        cmd = [py, "benchmarks/bench_train.py", "--preset", preset, "--steps", str(steps)]
        cmd += ["--rounds", str(rounds), "--json", str(out / f"bench_{preset}.json")]
        cmd += [*BENCH_DATA] if not dry else [*_dry_overrides()]
        bench.append(cmd)
        if dry:
            break
    study = [py, "-m", "lossreweight.cli", "experiment", "conditions"]
    study += ["--out", str(out / "conditions-runs"), "--jobs", "2" if dry else str(JOBS)]
    return {
        "tests": [
            [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *GPU_TESTS]
            + (["--collect-only"] if dry else [])
        ],
        "bench": bench,
        "conditions": [study + (["--quick"] if dry else [])],
    }


def _dry_overrides() -> tuple[str, ...]:
    """The studies' --quick scale (seconds per run on one CPU core): its data and model."""
    from lossreweight.experiments.scales import QUICK_BASE

    return tuple(o for o in QUICK_BASE if o.startswith(("data.", "model.", "train.threads")))


def prepare(out_cache: Path) -> None:
    """Everything the device's stages read, prepared here (the corpus sources are here)."""
    os.environ["LOSSREWEIGHT_CACHE"] = str(out_cache)  # what the call carries, whatever is set
    os.environ[CONDITIONS_SIZE_ENV] = CONDITIONS_SIZE
    os.environ[CONDITIONS_SEEDS_ENV] = str(CONDITIONS_SEEDS)
    from lossreweight.data import prepare_data
    from lossreweight.experiments.studies import get_study
    from lossreweight.train import load_config

    plan = get_study("conditions").plan(False)
    seen = set()
    for arm in plan.arms:
        cfg = load_config(plan.config, [*plan.overrides, *arm.overrides])
        key = json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True)
        if key not in seen:
            seen.add(key)
            data = prepare_data(cfg.data, progress=True)
            print(f"conditions {arm.name}: {data.root}", file=sys.stderr)
    for preset in BENCHES:
        data = prepare_data(load_config(preset, list(BENCH_DATA)).data, progress=True)
        print(f"bench {preset}: {data.root}", file=sys.stderr)
    size = sum(p.stat().st_size for p in out_cache.rglob("*") if p.is_file())
    print(f"{out_cache}: {size / 2**20:.1f} MiB to carry (the device call carries 64 MiB in all)")


def run(out: Path, dry: bool, stages: list[str] | None = None) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    env = _env(dry)
    report: dict[str, object] = {"dry_run": dry, "stages": {}}
    for name, cmds in stage_commands(out, dry).items():
        if stages and name not in stages:
            continue
        t0, rc = time.perf_counter(), 0
        log = out / f"{name}.log"
        with open(log, "w") as f:
            for cmd in cmds:
                left = LIMITS[name] - (time.perf_counter() - t0)
                try:
                    rc = subprocess.run(
                        cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=left
                    ).returncode
                except subprocess.TimeoutExpired:
                    rc = 124
                if rc:
                    break
        report["stages"][name] = {  # type: ignore[index]
            "returncode": rc,
            "seconds": round(time.perf_counter() - t0, 1),
            "log": log.name,
            "commands": [" ".join(c) for c in cmds],
        }
        print(f"{name}: rc {rc} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    summary = out / "conditions-runs" / "summary.json"
    if summary.is_file():  # the files that come back from the device: a few, flat
        shutil.copy(summary, out / "conditions_summary.json")
    (out / "evidence.json").write_text(json.dumps(report, indent=1))
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="prepare every stage's data into .gpu-cache (CPU)")
    p.add_argument("--cache", default=CACHE)
    r = sub.add_parser("run", help="run the stages (on the GPU, or --dry-run on the CPU)")
    r.add_argument("--out", default="gpu-evidence")
    r.add_argument("--dry-run", action="store_true", help="every stage at test scale, on CPU")
    r.add_argument(
        "--stages", default="", help=f"comma-separated subset of {', '.join(LIMITS)} (default all)"
    )
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(Path(args.cache))
        return 0
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(LIMITS))
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(LIMITS)}")
    report = run(Path(args.out), args.dry_run, stages)
    return max(s["returncode"] for s in report["stages"].values())  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main())
