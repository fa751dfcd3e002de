"""`lossreweight eval RUN_DIR`: per-domain validation loss of the newest complete checkpoint."""

from __future__ import annotations

import argparse
import json


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a directory written by `lossreweight train`")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from lossreweight.train.evaluate_run import evaluate_run

    result = evaluate_run(args.run_dir)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"checkpoint {result['checkpoint']} (step {result['step']})")
    print(f"{'domain':<12} {'loss':>8} {'ppl':>9}")
    for name, loss in result["val_loss_by_domain"].items():
        print(f"{name:<12} {loss:8.4f} {result['val_ppl_by_domain'][name]:9.2f}")
    print(f"{'overall':<12} {result['val_loss']:8.4f} {result['val_ppl']:9.2f}")
    print(f"{'domain avg':<12} {result['val_loss_domain_avg']:8.4f}")
    return 0
