"""`lossreweight eval RUN_DIR`: per-domain validation loss of the newest complete checkpoint;
with --tasks, downstream scores through lm-evaluation-harness; with --all-checkpoints, a curve
over every saved checkpoint. See docs/evaluation.md."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from lossreweight.errors import ConfigError

DTYPES = ("float32", "bfloat16")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


def _batch_size(text: str) -> int | str:
    if text == "auto" or text.startswith("auto:"):
        return text  # lm-eval finds the largest batch that fits
    return _int_at_least(1)(text)


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `lossreweight train`")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--device", metavar="D", help="auto, cpu, cuda or cuda:N (default: the run's train.device)"
    )
    p.add_argument(
        "--all-checkpoints",
        action="store_true",
        help="evaluate every saved complete checkpoint into RUN_DIR/eval/curve.json (+ .png); "
        "train with checkpoint.keep high enough to keep them",
    )
    g = p.add_argument_group(
        "downstream tasks (lm-evaluation-harness; pip install 'lossreweight[eval]')"
    )
    g.add_argument(
        "--tasks", metavar="TASKS", help="comma-separated lm-eval task names, e.g. sciq,piqa"
    )
    g.add_argument(
        "--num-fewshot",
        type=_int_at_least(0),
        metavar="K",
        help="few-shot examples (default: the task's own, else 0)",
    )
    g.add_argument(
        "--limit",
        type=_int_at_least(1),
        metavar="N",
        help="only the first N examples of each task (quick checks, not comparable scores)",
    )
    g.add_argument(
        "--batch-size",
        type=_batch_size,
        default=8,
        metavar="B",
        help="sequences per forward pass, or auto (default: 8)",
    )
    g.add_argument(
        "--include-path",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of your own lm-eval task YAMLs (repeatable)",
    )
    g.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="weights of the exported model (default: float32)",
    )
    g.add_argument(
        "--output-path",
        type=Path,
        metavar="DIR",
        help="also write lm-eval's own result files there (lm-eval's --output_path)",
    )
    g.add_argument(
        "--log-samples",
        action="store_true",
        help="with --output-path: every prompt, answer and score, one file per task",
    )


def run(args: argparse.Namespace) -> int:
    spec = _downstream_spec(args)
    if spec is not None:
        from lossreweight.evaluation.downstream import require_lm_eval

        require_lm_eval()  # one line now, not after minutes of work
    from lossreweight.rundir import trainer_of

    trainer = trainer_of(args.run_dir)
    code = _run(args, spec)
    if trainer:  # allowed (a checkpoint is whole once COMPLETE), but said; a failure says it too
        print(
            f"lossreweight eval: note: {args.run_dir} is being trained ({trainer}); "
            "the checkpoints saved until now were evaluated",
            file=sys.stderr,
        )
    return code


def _run(args: argparse.Namespace, spec: Any) -> int:
    if args.all_checkpoints:
        return _run_curve(args, spec)
    if spec is not None:
        return _run_downstream(args, spec)
    from lossreweight.metric_names import (
        DOMAIN_AVG_LOSS,
        LOSS,
        PPL,
        domain_losses,
        perplexity,
        worst_domain,
    )
    from lossreweight.train.evaluate import open_run

    result = open_run(args.run_dir, args.device).evaluate()
    if args.json:
        # The record as final.json keeps it (lossreweight.metric_names), with where it came from.
        print(json.dumps({**result, "worst_domain": worst_domain(result)}, indent=1))
        return 0
    print(f"checkpoint {result['checkpoint']} (step {result['step']})")
    w = max([12, *(len(name) for name in domain_losses(result))])  # long domain names fit
    print(f"{'domain':<{w}} {'loss':>8} {'ppl':>9}")
    for name, loss in domain_losses(result).items():
        print(f"{name:<{w}} {loss:8.4f} {perplexity(loss):9.2f}")
    print(f"{'overall':<{w}} {result[LOSS]:8.4f} {result[PPL]:9.2f}")
    print(f"{'domain avg':<{w}} {result[DOMAIN_AVG_LOSS]:8.4f}")
    return 0


def _downstream_spec(args: argparse.Namespace) -> Any:
    if not args.tasks:
        given = [
            flag
            for flag, value in (
                ("--num-fewshot", args.num_fewshot),
                ("--limit", args.limit),
                ("--include-path", args.include_path),
                ("--batch-size", None if args.batch_size == 8 else args.batch_size),
                ("--dtype", None if args.dtype == "float32" else args.dtype),
                ("--output-path", args.output_path),
                ("--log-samples", args.log_samples or None),
            )
            if value is not None and value != []
        ]
        if given:
            raise ConfigError(f"{given[0]} applies to downstream tasks; add --tasks TASKS")
        return None
    from lossreweight.evaluation.downstream import DownstreamSpec

    if args.log_samples and args.output_path is None:
        raise ConfigError("--log-samples needs --output-path DIR (where lm-eval writes them)")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise ConfigError(
            "--tasks is empty; give comma-separated lm-eval task names, e.g. sciq,piqa"
        )
    return DownstreamSpec(
        tasks=list(dict.fromkeys(tasks)),
        num_fewshot=args.num_fewshot,
        limit=args.limit,
        batch_size=args.batch_size,
        include_paths=list(args.include_path),
        dtype=args.dtype,
        output_path=args.output_path,
        log_samples=args.log_samples,
    )


def _prepare_tasks(spec: Any) -> Any:
    from lossreweight.evaluation.downstream import check_tasks_load, task_manager

    tm = task_manager(spec)
    check_tasks_load(tm, spec)
    return tm


def _run_downstream(args: argparse.Namespace, spec: Any) -> int:
    from lossreweight.evaluation.downstream import evaluate_downstream
    from lossreweight.evaluation.results import EVAL_DIR, downstream_stem, write_new_json
    from lossreweight.rundir import require_checkpoint
    from lossreweight.train.evaluate import resolve_device, validated_run_config

    run_dir = Path(args.run_dir)
    cfg = validated_run_config(run_dir)
    require_checkpoint(run_dir)
    device = resolve_device(cfg.train.device, args.device)
    (run_dir / EVAL_DIR).mkdir(exist_ok=True)  # a read-only run fails now, not after the work
    tm = _prepare_tasks(spec)
    record = evaluate_downstream(run_dir, None, spec, device, tm)
    path = write_new_json(run_dir / EVAL_DIR, downstream_stem(record["step"]), record)
    if args.json:
        print(json.dumps({**record, "file": str(path)}, indent=1))
        return 0
    shots = "task default shots" if spec.num_fewshot is None else f"{spec.num_fewshot}-shot"
    limit = f", first {spec.limit} examples per task" if spec.limit else ""
    print(f"checkpoint {record['checkpoint']} (step {record['step']}), {shots}{limit}")
    print(f"{'task':<20} {'metric':<16} {'value':>8} {'stderr':>8}")
    metrics = record["metrics"]
    for name, value in metrics.items():
        if name.endswith("_stderr"):
            continue
        _, task, metric = name.split("/", 2)
        err = metrics.get(f"{name}_stderr")
        print(f"{task:<20} {metric:<16} {_num(value):>8} {_num(err):>8}")
    print(f"wrote {path}")
    return 0


def _run_curve(args: argparse.Namespace, spec: Any) -> int:
    from lossreweight.evaluation.results import EVAL_DIR
    from lossreweight.rundir import require_checkpoint
    from lossreweight.train.evaluate import validated_run_config

    run_dir = Path(args.run_dir)
    validated_run_config(run_dir)
    require_checkpoint(run_dir)
    eval_dir = run_dir / EVAL_DIR
    created = not eval_dir.exists()
    eval_dir.mkdir(exist_ok=True)  # a read-only run fails now, not after the work
    try:
        return _curve(args, spec, run_dir)
    finally:  # a failure (a full disk) leaves no empty eval/ folder behind that it made
        if created:
            with contextlib.suppress(OSError):
                eval_dir.rmdir()  # only when empty


def _curve(args: argparse.Namespace, spec: Any, run_dir: Path) -> int:
    from lossreweight.evaluation.curve import evaluate_curve
    from lossreweight.metric_names import LOSS, WORST_DOMAIN_LOSS

    tm = _prepare_tasks(spec) if spec is not None else None

    def show(point: dict[str, Any]) -> None:
        if args.json:
            return
        m = point["metrics"]
        extra = "".join(
            f"  {k.removeprefix('downstream/')} {_num(v)}"
            for k, v in m.items()
            if k.startswith("downstream/") and not k.endswith("_stderr")
        )
        print(
            f"step {point['step']:>8}  tokens {point['tokens']:>12,}  loss {_num(m[LOSS])}  "
            f"worst {point['worst_domain']} {_num(m.get(WORST_DOMAIN_LOSS))}{extra}",
            flush=True,
        )

    path, png, curve = evaluate_curve(run_dir, device=args.device, spec=spec, tm=tm, on_point=show)
    if args.json:
        print(json.dumps({**curve, "file": str(path), "plot": str(png) if png else None}, indent=1))
        return 0
    print(f"wrote {path}" + (f" and {png}" if png else " (no plot: matplotlib is not installed)"))
    if len(curve["points"]) == 1:
        print(
            "only one checkpoint was kept; train with checkpoint.keep=N "
            "(N >= the number of saves) for a curve"
        )
    return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
