"""Installed size of lossreweight's core and of each extra, torch counted apart.

    .venv/bin/python benchmarks/install_size.py             # from the installed metadata
    .venv/bin/python benchmarks/install_size.py --pip DIR   # and a real `pip install --target`

Sizes come from each installed distribution's RECORD (the bytes of its files, without the
bytecode pip compiles on install), over the dependency closure of `lossreweight` (the core)
or `lossreweight[EXTRA]`, at the versions installed in this environment (`make` installs
`.[all,test]`). torch and its own dependencies are reported apart: users bring the torch
build they want. `--pip DIR` installs the closure of `[all]` without torch into DIR with
`pip install --no-deps --target` and reports `du` (bytecode included): what a disk sees.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

EXTRAS = ["train", "data", "corpus", "report", "hf", "lightning", "wandb", "eval"]


def closure(name: str, extras: set[str]) -> set[str]:
    """Canonical names of `name[extras]` and everything it requires, recursively."""
    seen: dict[str, set[str]] = {}
    todo = [(name, extras)]
    while todo:
        dist_name, want = todo.pop()
        key = canonicalize_name(dist_name)
        if key in seen and want <= seen[key]:
            continue
        seen[key] = seen.get(key, set()) | want
        for text in md.distribution(dist_name).requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in (want or {""})]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, set(req.extras)))
    return set(seen)


def mb(names: set[str]) -> float:
    total = 0
    for n in names:
        total += sum(f.size or 0 for f in md.distribution(n).files or [])
    return total / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pip", metavar="DIR", help="also pip-install [all] without torch into DIR"
    )
    args = parser.parse_args()
    torch = closure("torch", set())
    core = closure("lossreweight", set()) - {"lossreweight"}
    every = closure("lossreweight", {"all"}) - {"lossreweight"}
    print(f"torch {md.version('torch')} and its {len(torch) - 1} dependencies: {mb(torch):.0f} MB")
    print(
        f"core: {len(core - torch)} packages, {mb(core - torch):.0f} MB without torch, "
        f"{mb(core):.0f} MB with it"
    )
    for extra in EXTRAS:
        added = closure("lossreweight", {extra}) - core - {"lossreweight"}
        print(f"  [{extra}] adds {len(added)} packages, {mb(added):.0f} MB")
    print(
        f"all: {len(every - torch)} packages, {mb(every - torch):.0f} MB without torch, "
        f"{mb(every):.0f} MB with it"
    )
    if args.pip:
        target = Path(args.pip)
        pins = [f"{n}=={md.version(n)}" for n in sorted(every - torch)]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(target),
                *pins,
            ],
            check=True,
        )
        du = subprocess.run(["du", "-sm", str(target)], capture_output=True, text=True, check=True)
        print(
            "pip install --target (all without torch, bytecode included): "
            f"{du.stdout.split()[0]} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
