"""Sympy index/size expressions → C++ and Python source text."""
from __future__ import annotations

import sympy
from torch.utils._sympy.functions import (CleanDiv, FloorDiv, Max, Min, ModularIndexing, PythonMod,
                                          Mod)


class ExprPrinter:
    """Prints integer expressions.  Indices are non-negative wherever FloorDiv/ModularIndexing
    appear (loads guarded by a mask are only evaluated where the mask holds), so C's
    truncating ``/`` and ``%`` are exact there."""

    def __call__(self, expr) -> str:
        return self.print(sympy.sympify(expr))

    def print(self, expr) -> str:
        if expr.is_Integer:
            return self.integer(int(expr))
        if expr.is_Symbol:
            return expr.name
        if expr.is_Add:
            terms = sorted(expr.args, key=lambda t: (t.is_number, sympy.default_sort_key(t)))
            out = self.print(terms[0])
            for term in terms[1:]:
                text = self.print(term)
                out += f" - {text[1:]}" if text.startswith("-") else f" + {text}"
            return out
        if expr.is_Mul:
            factors = sorted(expr.args, key=sympy.default_sort_key)
            if factors[0].is_Integer and factors[0] < 0:
                return "-" + self.print(sympy.Mul(-factors[0], *factors[1:]))
            return " * ".join(self._atom(f) for f in factors)
        if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
            return " * ".join([self._atom(expr.base)] * int(expr.exp))
        if isinstance(expr, (FloorDiv, CleanDiv)):
            return self.floordiv(self._atom(expr.args[0]), self._atom(expr.args[1]))
        if isinstance(expr, ModularIndexing):
            base, div, mod = expr.args
            inner = self._atom(base) if div == 1 else self.floordiv(self._atom(base), self._atom(div))
            return self.mod(inner, self._atom(mod))
        if isinstance(expr, (PythonMod, Mod)) or type(expr) is sympy.Mod:
            return self.mod(self._atom(expr.args[0]), self._atom(expr.args[1]))
        if isinstance(expr, (Max, sympy.Max)):
            return self.minmax("max", [self.print(a) for a in expr.args])
        if isinstance(expr, (Min, sympy.Min)):
            return self.minmax("min", [self.print(a) for a in expr.args])
        raise NotImplementedError(f"cannot print index expression {expr} ({type(expr).__name__})")

    def _atom(self, expr) -> str:
        """``expr`` printed so it can stand as an operand of ``*``, ``/`` or ``%``."""
        text = self.print(expr)
        compound = expr.is_Add or expr.is_Mul or expr.is_Pow  # a power prints as a product
        return f"({text})" if compound or (expr.is_Integer and expr < 0) else text

    def integer(self, value: int) -> str:
        return str(value) if abs(value) < 2**31 else f"INT64_C({value})"

    def floordiv(self, a: str, b: str) -> str:
        return f"({a} / {b})"

    def mod(self, a: str, b: str) -> str:
        return f"({a} % {b})"

    def minmax(self, which: str, args: list) -> str:
        out = args[0]
        for arg in args[1:]:
            out = f"hetero_i{which}({out}, {arg})"
        return out


class PythonPrinter(ExprPrinter):
    """For the wrapper: sizes of allocations and kernel arguments (Python semantics)."""

    def integer(self, value: int) -> str:
        return str(value)

    def floordiv(self, a: str, b: str) -> str:
        return f"({a} // {b})"

    def minmax(self, which: str, args: list) -> str:
        return f"{which}({', '.join(args)})"


cexpr = ExprPrinter()
pexpr = PythonPrinter()
