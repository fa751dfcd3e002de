"""math: worksheets of arithmetic and algebra problems with worked answers, generated here.

Worksheet k is a pure function of k (its own seeded `random.Random`), so any subset of the
domain is reproducible without generating the worksheets before it.
"""

from __future__ import annotations

import functools
import random
from fractions import Fraction
from math import gcd

from lossreweight.data.documents import LazyDocument

DOMAIN = "math"
PACKAGE = None
# Bump when the generator changes, so cached corpora are rebuilt.
GENERATOR_VERSION = 1
NUM_WORKSHEETS = 20_000  # about 10 MB of text; capped corpora read only a few


def version() -> str:
    return f"math-gen-{GENERATOR_VERSION}"


def documents() -> list[LazyDocument]:
    return [(f"worksheet-{k:05d}", functools.partial(worksheet, k)) for k in range(NUM_WORKSHEETS)]


def worksheet(k: int) -> str:
    rng = random.Random(f"lossreweight-math-{GENERATOR_VERSION}-{k}")
    lines = [f"Worksheet {k + 1}: arithmetic and algebra", ""]
    for i in range(rng.randint(6, 12)):
        question, answer = rng.choice(_PROBLEMS)(rng)
        lines += [f"Problem {i + 1}. {question}", f"Answer: {answer}", ""]
    return "\n".join(lines)


def _term(coef: int, var: str, first: bool = False) -> str:
    """`coef*var` written as a person would: x, -x, 3x, with its sign when not first."""
    if coef == 0:
        return ""
    mag = "" if abs(coef) == 1 and var else str(abs(coef))
    if first:
        return f"{'-' if coef < 0 else ''}{mag}{var}"
    return f" {'-' if coef < 0 else '+'} {mag}{var}"


def _p(n: int) -> str:
    """A number as an operand: negative ones in parentheses."""
    return str(n) if n >= 0 else f"({n})"


def _poly(*coefs_vars: tuple[int, str]) -> str:
    out = ""
    for coef, var in coefs_vars:
        out += _term(coef, var, first=not out)
    return out or "0"


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 9999), rng.randint(10, 9999)
    return f"Compute {a} + {b}.", f"{a} + {b} = {a + b}."


def _subtract(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 9999), rng.randint(10, 9999)
    a, b = max(a, b), min(a, b)
    return f"Compute {a} - {b}.", f"{a} - {b} = {a - b}."


def _multiply(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(12, 99), rng.randint(12, 99)
    tens, ones = b - b % 10, b % 10
    return (
        f"Compute {a} × {b}.",
        f"{a} × {b} = {a} × {tens} + {a} × {ones} = {a * tens} + {a * ones} = {a * b}.",
    )


def _divide(rng: random.Random) -> tuple[str, str]:
    d, q, r = rng.randint(2, 19), rng.randint(10, 500), 0
    r = rng.randint(0, d - 1)
    n = d * q + r
    return (
        f"Divide {n} by {d}.",
        f"{n} = {d} × {q} + {r}, so the quotient is {q} and the remainder is {r}.",
    )


def _order_of_operations(rng: random.Random) -> tuple[str, str]:
    a, b, c, d = (rng.randint(1, 20) for _ in range(4))
    inner = c + d
    return (
        f"Evaluate {a} + {b} × ({c} + {d}).",
        f"First the parentheses: {c} + {d} = {inner}. Then {b} × {inner} = {b * inner}. "
        f"Finally {a} + {b * inner} = {a + b * inner}.",
    )


def _fractions(rng: random.Random) -> tuple[str, str]:
    b, d = rng.randint(2, 12), rng.randint(2, 12)
    a, c = rng.randint(1, b - 1), rng.randint(1, d - 1)
    lcm = b * d // gcd(b, d)
    na, nc = a * lcm // b, c * lcm // d
    total = Fraction(a, b) + Fraction(c, d)
    reduced = "" if total == Fraction(na + nc, lcm) else f" = {total}"
    return (
        f"Add {a}/{b} + {c}/{d}.",
        f"The common denominator is {lcm}: {a}/{b} = {na}/{lcm} and {c}/{d} = {nc}/{lcm}, "
        f"so the sum is {na + nc}/{lcm}{reduced}.",
    )


def _gcd(rng: random.Random) -> tuple[str, str]:
    g = rng.randint(2, 30)
    a, b = g * rng.randint(2, 40), g * rng.randint(2, 40)
    a, b = max(a, b), min(a, b)
    steps, x, y = [], a, b
    while y:
        steps.append(f"{x} = {x // y} × {y} + {x % y}")
        x, y = y, x % y
    return f"Find gcd({a}, {b}).", "; ".join(steps) + f"; so gcd({a}, {b}) = {x}."


def _linear_equation(rng: random.Random) -> tuple[str, str]:
    a = rng.choice([i for i in range(-9, 10) if i not in (0, 1)])
    x, b = rng.randint(-20, 20), rng.randint(-30, 30)
    c = a * x + b
    move = f"Subtract {b} from both sides" if b >= 0 else f"Add {-b} to both sides"
    return (
        f"Solve {_poly((a, 'x'), (b, ''))} = {c}.",
        f"{move}: {_term(a, 'x', first=True)} = {c - b}. Divide both sides by {a}: x = {x}.",
    )


def _expand(rng: random.Random) -> tuple[str, str]:
    a, b, c, d = (rng.choice([i for i in range(-7, 8) if i]) for _ in range(4))
    left, right = _poly((a, "x"), (b, "")), _poly((c, "x"), (d, ""))
    return (
        f"Expand ({left})({right}).",
        f"({left})({right}) = {a * c}x^2 + ({a * d} + {_p(b * c)})x + {_p(b * d)} = "
        f"{_poly((a * c, 'x^2'), (a * d + b * c, 'x'), (b * d, ''))}.",
    )


def _evaluate(rng: random.Random) -> tuple[str, str]:
    a, b, c = rng.randint(1, 9), rng.randint(-9, 9), rng.randint(-9, 9)
    x = rng.randint(-6, 6)
    poly = _poly((a, "x^2"), (b, "x"), (c, ""))
    return (
        f"Evaluate f(x) = {poly} at x = {x}.",
        f"f({x}) = {a}·{x * x} + {_p(b)}·{_p(x)} + {_p(c)} = {a * x * x} + {_p(b * x)} + {_p(c)} = "
        f"{a * x * x + b * x + c}.",
    )


def _percent(rng: random.Random) -> tuple[str, str]:
    p, n = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 75]), 20 * rng.randint(1, 60)
    return (f"What is {p}% of {n}?", f"{p}% of {n} = {n} × {p} / 100 = {Fraction(n * p, 100)}.")


def _quadratic(rng: random.Random) -> tuple[str, str]:
    r, s = rng.randint(-9, 9), rng.randint(-9, 9)
    poly = _poly((1, "x^2"), (-(r + s), "x"), (r * s, ""))
    roots = f"x = {r}" if r == s else f"x = {min(r, s)} or x = {max(r, s)}"
    return (
        f"Solve {poly} = 0.",
        f"The roots multiply to {r * s} and add to {r + s}, so {poly} = "
        f"(x {'-' if r >= 0 else '+'} {abs(r)})(x {'-' if s >= 0 else '+'} {abs(s)}) "
        f"and {roots}.",
    )


_PROBLEMS = [
    _add,
    _subtract,
    _multiply,
    _divide,
    _order_of_operations,
    _fractions,
    _gcd,
    _linear_equation,
    _expand,
    _evaluate,
    _percent,
    _quadratic,
]
