"""What the two code-emitting ``ops`` handlers (C++, Triton) share: the value class, constants,
common-subexpression elimination and emission into the current scope.  A language supplies
its literals, its assignment statement, its index printer and what a value's dtype computes
in; the ops themselves stay in ``cpp_ops`` and ``triton_ops``."""
from __future__ import annotations

import abc
import contextlib

import sympy
import torch

from ..ops_protocol import OpsHandler
from ..symbolic import simplify_index


class Var:
    """A value in generated code: an expression or a temporary's name, and its torch dtype."""
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype

    def __str__(self):
        return self.name


class CodeHandler(OpsHandler, abc.ABC, abstract=True):
    """Statements go to ``lines``, the current scope's; an expression already emitted in the
    scope (same text, same dtype: ``_cse_key``) is reused, not recomputed.  Temporaries are
    numbered across scopes, so names stay unique in a kernel."""

    def __init__(self):
        self.lines: list = []
        self.cse: dict = {}
        self.counter = 0
        self.loads: dict[str, torch.dtype] = {}   # buffer → dtype, in the order first loaded
        self.stores: dict[str, torch.dtype] = {}
        self.symbols: set = set()                 # the size symbols the indices use
        self.ranges: dict = {}                    # loop variable → extent, for index simplification
        self.locals: dict[str, Var] = {}          # buffers kept in variables (see define_local)
        self._rounded: dict = {}                  # variable → (dtype, the value its cast rounded to dtype)

    # ---------------------------------------------------------------- what a language supplies
    @staticmethod
    @abc.abstractmethod
    def literal(value, dtype: torch.dtype) -> str:
        """``value`` as a literal of ``dtype``."""

    @abc.abstractmethod
    def _assignment(self, name: str, expr: str, dtype: torch.dtype) -> str:
        """The statement that declares temporary ``name`` = ``expr``."""

    @abc.abstractmethod
    def _print(self, expr: sympy.Expr) -> str:
        """An index expression in the language."""

    def _value_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype a value of ``dtype`` is held as."""
        return dtype

    def _cse_key(self, expr: str, dtype: torch.dtype) -> str:
        return f"{expr}:{dtype}"

    def _note_rounding(self, rounded: Var, dtype: torch.dtype, source) -> Var:
        """``rounded`` is ``source`` cast to the narrow float ``dtype`` (see ``unrounded``)."""
        self._rounded.setdefault(rounded.name, (dtype, source))
        return rounded

    def unrounded(self, value, dtype: torch.dtype) -> str:
        """What storing ``value`` as ``dtype`` may narrow: the value a cast to ``dtype`` rounded,
        where it is one.  Narrowing rounds the same way, so rounding first is a wasted
        conversion (storing an fp8 cast ran 3x slower)."""
        rounds_to, source = self._rounded.get(str(value), (None, None))
        return str(source) if rounds_to == dtype else str(value)

    # ---------------------------------------------------------------- shared
    @contextlib.contextmanager
    def scope(self):
        """Emit into fresh ``lines`` (yielded) with nothing to reuse from before, as a loop body
        or a row's epilogue needs; the enclosing scope is back afterwards."""
        saved = self.lines, self.cse
        self.lines, self.cse = [], {}
        try:
            yield self.lines
        finally:
            self.lines, self.cse = saved

    def _emit(self, expr: str, dtype: torch.dtype, prefix: str = "tmp") -> Var:
        key = self._cse_key(expr, dtype)
        if key in self.cse:
            return self.cse[key]
        name = f"{prefix}{self.counter}"
        self.counter += 1
        self.lines.append(self._assignment(name, expr, dtype))
        var = Var(name, dtype)
        self.cse[key] = var
        return var

    def index(self, expr) -> str:
        """An index expression as text, simplified over the loop ranges; its size symbols
        become the kernel's parameters."""
        expr = simplify_index(sympy.sympify(expr), self.ranges)
        self.symbols |= set(expr.free_symbols)
        return self._print(expr)

    def constant(self, value, dtype):
        dtype = self._value_dtype(dtype)
        return Var(self.literal(value, dtype), dtype)
