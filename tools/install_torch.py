"""Install the CPU build of torch into this interpreter's environment, never the CUDA one.

`make` runs this when .venv has no torch. The CPU route is PyTorch's own index (`--index`,
the Makefile's TORCH_INDEX). When that index does not answer (a PyPI-only proxy, an offline
mirror), the pin is resolved through pip's own configuration instead, and installed only if
a dry run (`pip install --dry-run --report`) shows no CUDA package: on Linux, plain PyPI's
torch pulls about 17 nvidia/cuda wheels (several GB) that a CPU machine never uses.

Exit status: 0 installed (or, with --dry-run, would install a CPU build); 1 the resolution
is a CUDA build (nothing installed); 3 pip could not resolve the pin at all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_CUDA_NAMES = ("nvidia-", "cuda-")
_CUDA_ONLY = {"triton", "pytorch-triton"}  # torch's CUDA builds need them, the CPU ones do not


def cuda_packages(report: dict[str, Any]) -> list[str]:
    """The `name==version` of each CUDA package a `pip install --report` would install."""
    found = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        name = str(meta.get("name", "")).lower().replace("_", "-")
        version = str(meta.get("version", ""))
        if name.startswith(_CUDA_NAMES) or name in _CUDA_ONLY or "+cu" in version:
            found.append(f"{name}=={version}")
    return found


def index_answers(url: str, timeout: float) -> bool:
    """Whether the index serves its torch page within `timeout` s (pip would retry for minutes)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout) as resp:
            return 200 <= resp.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def resolve(specs: list[str], route: list[str]) -> dict[str, Any] | None:
    """pip's dry-run report for installing `specs` into an empty environment; None if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed"]
        done = subprocess.run([*cmd, "--report", str(out), *specs, *route], check=False)
        if done.returncode != 0 or not out.exists():
            return None
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="torch==2.13.0", help="the torch requirement")
    ap.add_argument("--index", default=CPU_INDEX, help="PyTorch's CPU wheel index")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the index")
    ap.add_argument(
        "--with",
        dest="also",
        action="append",
        default=[],
        help="requirements installed next (checked for CUDA packages too, not installed here)",
    )
    ap.add_argument("--dry-run", action="store_true", help="check and print, install nothing")
    args = ap.parse_args(argv)

    reachable = index_answers(args.index, args.timeout)
    route = ["--index-url", args.index] if reachable else []
    where = f"the CPU index {args.index}" if reachable else "pip's configured indexes"
    report = resolve([args.spec, *args.also], route)
    if report is None:
        what = " ".join([args.spec, *args.also])
        print(f"install_torch: error: pip could not resolve {what} from {where}", flush=True)
        return 3
    bad = cuda_packages(report)
    if bad:
        why = "" if reachable else f"{args.index} did not answer and "
        print(
            f"install_torch: error: {why}`pip install {' '.join([args.spec, *args.also])}` "
            f"from {where} resolves the CUDA build ({len(bad)} CUDA packages: "
            f"{', '.join(bad[:3])}, ...); make the CPU index reachable, point TORCH_INDEX at a "
            "mirror of it, or install the torch you want into .venv first (make then leaves "
            "it alone)",
            flush=True,
        )
        return 1
    names = sorted(str(i["metadata"]["name"]) for i in report.get("install", []))
    print(
        f"install_torch: {' '.join([args.spec, *args.also])} from {where}: {len(names)} "
        "packages, no CUDA" + (f" ({', '.join(names)}) [dry run]" if args.dry_run else ""),
        flush=True,
    )
    if args.dry_run:
        return 0
    cmd = [sys.executable, "-m", "pip", "install", "-q", args.spec, *route]
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
