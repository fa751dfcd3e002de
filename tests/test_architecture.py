"""The package's shape (docs/architecture.md): no import cycles between modules (every import
statement counts: under TYPE_CHECKING and inside functions too), the dependency arrow between
layers pointing one way, no two modules of one name, and no module over 800 lines (a module
holds one concept whole rather than splitting it)."""

from __future__ import annotations

import ast
from pathlib import Path

import lossreweight

PACKAGE_ROOT = Path(lossreweight.__file__).resolve().parent
MAX_LINES = 800

# What each layer may import of ours. Layers not named here are the top (cli, commands).
# errors / locking / extras / metric_names / plugins / safe_files are leaves that anything may use.
LEAVES = {"errors", "locking", "extras", "metric_names", "plugins", "safe_files"}
ALLOWED: dict[str, set[str]] = {
    "reweighting": set(),  # the method: pure torch, nothing of ours
    "losses": {"reweighting"},
    "integrations": {"reweighting", "losses"},
    "rundir": set(),
    "integrity": {"rundir"},
    "data": set(),
    "model": {"rundir", "integrity"},
    "config": {"data", "model", "reweighting"},
    "train": {"config", "data", "model", "losses", "reweighting", "rundir", "integrity"},
    "evaluation": {"train", "model", "data", "config", "rundir", "integrity"},
    "experiments": {
        "train",
        "evaluation",
        "config",
        "data",
        "model",
        "losses",
        "reweighting",
        "rundir",
        "integrity",
    },
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules a module imports: `from pkg import sub` counts as `pkg.sub` when sub is a
    module, else as `pkg`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in known:
                    found.add(sub)
                elif node.module in known:
                    found.add(node.module)
    return found


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles():
    known = modules()
    graph = {name: imports_of(path, known) - {name} for name, path in known.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of design.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in stack:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in done:
                visit(nxt, [*stack, nxt], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_no_module_over_800_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert {n: k for n, k in long.items() if k > MAX_LINES} == {}


# Parallel parts of one pattern may share names with modules elsewhere: a command per CLI
# command, a study per study.
PARALLEL = ("lossreweight.commands.", "lossreweight.experiments.studies.")


def test_no_two_modules_of_one_name():
    by_name: dict[str, list[str]] = {}
    for name in modules():
        if "." in name and not name.startswith(PARALLEL):
            by_name.setdefault(name.rsplit(".", 1)[1], []).append(name)
    dupes = {n: where for n, where in by_name.items() if len(where) > 1}
    assert not dupes, f"modules of one name: {dupes}"


def test_dependency_arrow_points_one_way():
    known = modules()
    wrong = []
    for name, path in known.items():
        src = layer(name)
        if src not in ALLOWED:
            continue
        for target in imports_of(path, known):
            dst = layer(target)
            if dst and dst != src and dst not in LEAVES and dst not in ALLOWED[src]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "; ".join(sorted(wrong))
