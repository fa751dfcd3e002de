"""The data layer's modules: no import cycles (every import statement counts, those under
TYPE_CHECKING and inside functions included) and none over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import lossreweight

PACKAGE_ROOT = Path(lossreweight.__file__).resolve().parent
DATA = PACKAGE_ROOT / "data"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(DATA.rglob("*.py"))}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """The data modules a module imports: `from pkg import sub` counts as `pkg.sub` when sub is
    a module."""
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


def test_no_import_cycles_in_the_data_layer():
    known = modules()
    graph = {name: imports_of(path, known) - {name} for name, path in known.items()}
    cycles = []

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


def test_no_data_module_over_400_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert {n: k for n, k in long.items() if k > 400} == {}
