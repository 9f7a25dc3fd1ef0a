"""Sympy helpers for sizes, strides and index expressions.

Sizes are sympy expressions over the graph's size symbols (``s0``, ``s1``... from Dynamo's
ShapeEnv); loop indices are non-negative integer symbols.  ``FloorDiv``/``ModularIndexing``
are the ones Dynamo's ShapeEnv already emits, so one set of printers handles both."""
from __future__ import annotations

import functools
import operator
from typing import Sequence

import sympy
import torch
from torch.utils._sympy.functions import FloorDiv, ModularIndexing

__all__ = ["FloorDiv", "ModularIndexing", "Expr", "sym", "index_symbols", "contiguous_strides",
           "product", "is_float_symbol", "linear_form", "simplify_index"]

Expr = sympy.Expr


def sym(value) -> sympy.Expr:
    """int / SymInt / sympy → sympy expression."""
    if isinstance(value, torch.SymInt):
        return sympy.sympify(value.node.expr)
    if isinstance(value, (bool, int)):
        return sympy.Integer(int(value))
    if isinstance(value, sympy.Expr):
        return value
    raise TypeError(f"not a size: {value!r}")


@functools.lru_cache(maxsize=None)
def index_symbols(prefix: str, count: int) -> tuple[sympy.Symbol, ...]:
    return tuple(sympy.Symbol(f"{prefix}{i}", integer=True, nonnegative=True) for i in range(count))


def is_float_symbol(symbol: sympy.Symbol) -> bool:
    """Float scalars the wrapper computes (see ``GraphLowering._define_scalar``)."""
    return symbol.name.startswith("fsym")


def product(values: Sequence[sympy.Expr]) -> sympy.Expr:
    return functools.reduce(operator.mul, values, sympy.Integer(1))


def contiguous_strides(sizes: Sequence[sympy.Expr]) -> list[sympy.Expr]:
    strides, acc = [], sympy.Integer(1)
    for size in reversed(sizes):
        strides.append(acc)
        acc = acc * size
    return list(reversed(strides))


def linear_form(expr: sympy.Expr, variables: Sequence[sympy.Symbol]):
    """Split ``expr`` as ``offset + sum(coef_i * var_i)``; None if it is not linear in them
    (e.g. it contains FloorDiv of an index)."""
    expr = sympy.expand(expr)
    coefs = []
    for var in variables:
        coef = expr.coeff(var, 1)
        if coef.free_symbols & set(variables):
            return None
        coefs.append(coef)
    offset = sympy.expand(expr - sum(c * v for c, v in zip(coefs, variables)))
    if offset.free_symbols & set(variables):
        return None
    return offset, coefs


def simplify_index(expr: sympy.Expr, ranges: dict) -> sympy.Expr:
    """Undo the div/mod that reshapes introduce where loop ranges make them redundant:
    ``ModularIndexing(i, 1, n) → i`` and ``FloorDiv(i, n) → 0`` when ``i < n``, and
    ``n*c*FloorDiv(x, d*n) + c*ModularIndexing(x, d, n) → c*FloorDiv(x, d)``."""
    expr = sympy.expand(expr)
    if not expr.has(FloorDiv, ModularIndexing):
        return expr

    def fits(x, n) -> bool:
        return x in ranges and (sympy.expand(n - ranges[x]).is_nonnegative is True)

    def visit(e):
        if isinstance(e, ModularIndexing):
            x, d, n = e.args
            if d == 1 and fits(x, n):
                return x
        if isinstance(e, FloorDiv):
            x, n = e.args
            if fits(x, n):
                return sympy.Integer(0)
        return e
    expr = sympy.expand(expr.replace(lambda e: isinstance(e, (FloorDiv, ModularIndexing)), visit))
    changed = True
    while changed and expr.is_Add:
        changed = False
        terms = {}
        for term in expr.args:
            coef, rest = term.as_coeff_Mul()
            terms[rest] = terms.get(rest, 0) + coef
        for mod in [t for t in terms if isinstance(t, ModularIndexing)]:
            x, d, n = mod.args
            div = FloorDiv(x, d * n)
            if div in terms and sympy.expand(terms[div] - terms[mod] * n) == 0:
                merged = x if d == 1 else FloorDiv(x, d)
                expr = sympy.expand(expr - terms[div] * div - terms[mod] * mod + terms[mod] * merged)
                changed = True
                break
    return expr
