"""The Triton ``ops`` handler: re-running an IR inner function under it emits Triton (Python)
statements over blocks.

Values are :class:`code_handler.Var` (an expression or temporary, plus its torch dtype).  float16,
bfloat16 and the 8-bit floats are loaded and computed as float32 and rounded on explicit casts
and stores, as on the host; an 8-bit float's buffer is its bytes (``dtypes.TL_DTYPE``).  Every load and store is masked by the current mask (``xmask & rmask`` inside an
inner loop, plus any ``ops.masked`` condition); masked-off lanes load 0."""
from __future__ import annotations

import math
import operator

import sympy
import torch

from ..device_models import special_functions
from ..dtypes import FLOAT8, TL_DTYPE
from ..ops_protocol import SPECIAL_FUNCTIONS
from ..printer import PythonPrinter
from ..symbolic import simplify_index
from .code_handler import CodeHandler, Var

LOW_PRECISION = (torch.float16, torch.bfloat16, *FLOAT8)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in TL_DTYPE:
        raise NotImplementedError(f"dtype {dtype} has no Triton lowering")
    return torch.float32 if dtype in LOW_PRECISION else dtype


def narrow(text: str, dtype: torch.dtype) -> str:
    """``text`` converted to ``dtype``'s storage; bfloat16 through the prelude's ``_to_bf16``,
    which the interpreter replaces (it truncates instead of rounding to nearest even), an 8-bit
    float through ``_to_fp8`` (its byte)."""
    if dtype in FLOAT8:
        return f"_to_fp8({text}, {FLOAT8[dtype].encode_params})"
    return f"_to_bf16({text})" if dtype == torch.bfloat16 else f"({text}).to({TL_DTYPE[dtype]})"


# the matrix units' type of each fp8 encoding (an operand is passed to tl.dot in it)
TL_FP8 = {torch.float8_e4m3fn: "tl.float8e4nv", torch.float8_e5m2: "tl.float8e5",
          torch.float8_e4m3fnuz: "tl.float8e4b8", torch.float8_e5m2fnuz: "tl.float8e5b16"}


def dot_operand(text: str, dtype: torch.dtype) -> str:
    """A ``tl.dot`` operand in ``dtype`` from ``text`` as stored: an fp8 one's bytes become
    the fp8 type (the prelude's ``_fp8_operand``), others are used as they are."""
    if dtype not in FLOAT8:
        return text
    return f"_fp8_operand({text}, {TL_FP8[dtype]}, {FLOAT8[dtype].decode_params})"


def widen(text: str, dtype: torch.dtype) -> str:
    """A stored ``dtype`` value (LOW_PRECISION) as the float32 it is computed in."""
    if dtype in FLOAT8:
        return f"_from_fp8({text}, {FLOAT8[dtype].decode_params})"
    return f"{text}.to(tl.float32)"


class TritonPrinter(PythonPrinter):
    """Index expressions over Triton integer blocks (non-negative, so ``//`` and ``%`` are exact)."""

    def minmax(self, which: str, args: list) -> str:
        out = args[0]
        for arg in args[1:]:
            out = f"tl.{which}imum({out}, {arg})"
        return out


texpr = TritonPrinter()


def literal(value, dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "True" if value else "False"
    if dtype.is_floating_point:
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            return f'float("{value}")'
        return repr(value)
    return str(int(value))


# float → float functions: tl.math where it has them, else libdevice (``hmath`` in the source;
# the runtime binds it to libdevice on GPUs and to an interpreter shim on the CPU)
_TL_MATH = {"exp": "tl.exp", "exp2": "tl.exp2", "log": "tl.log", "log2": "tl.log2", "sqrt": "tl.sqrt",
            "sin": "tl.sin", "cos": "tl.cos", "erf": "tl.math.erf", "floor": "tl.floor", "ceil": "tl.ceil"}
_LIBDEVICE = {"expm1", "log10", "log1p", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh",
              "acosh", "atanh", "erfc", "trunc", "lgamma"}
_BINARY_LIBDEVICE = {"atan2", "copysign", "hypot", "nextafter"}
_SQRT1_2, _INV_SQRT_2PI = repr(math.sqrt(0.5)), repr(1 / math.sqrt(2 * math.pi))   # GELU's constants
_BINARY_INFIX = {"add": "+", "sub": "-", "mul": "*", "bitwise_and": "&", "bitwise_or": "|",
                 "bitwise_xor": "^", "lshift": "<<", "rshift": ">>"}
_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_FOLD = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}


class TritonOps(CodeHandler):
    """Collects the statements of one block body; CSE'd by expression text under the current mask."""
    GENERATED = {"_tl_math": tuple(_TL_MATH), "_libdevice": tuple(_LIBDEVICE),
                 "_binary_libdevice": tuple(_BINARY_LIBDEVICE), "_infix": tuple(_BINARY_INFIX),
                 "_compare": tuple(_COMPARE), "_special": tuple(SPECIAL_FUNCTIONS)}
    literal = staticmethod(literal)

    def __init__(self):
        super().__init__()
        self.masks: list = ["xmask"]      # the current mask is their conjunction
        self.constants: dict = {}         # literal text → its Python value
        self.block = "xindex"             # an index of the program's block shape (constant addresses broadcast over it)
        self.block_symbols = frozenset()  # the symbols spanning the block: a store's address lacking one is broadcast
        self.plain_loads: dict = {}       # variable → (its tl.load text, the stored dtype): a matmul operand's

    # ---------------------------------------------------------------- plumbing
    def _assignment(self, name: str, expr: str, dtype: torch.dtype) -> str:
        return f"{name} = {expr}"

    def _print(self, expr) -> str:
        return texpr(expr)

    def _value_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return compute_dtype(dtype)

    def _cse_key(self, expr: str, dtype: torch.dtype) -> str:
        return f"{expr}:{dtype}:{self.mask}"

    @property
    def mask(self) -> str:
        return " & ".join(self.masks)

    def address(self, expr, span=frozenset()) -> str:
        """An index as a block (a constant one, or one lacking a symbol of ``span``, is broadcast
        over the program's block: a store's address must have the shape of its mask)."""
        text = self.index(expr)
        free = simplify_index(sympy.sympify(expr), self.ranges).free_symbols
        blocks = [s for s in free if s in self.ranges or s.name.startswith("tmp")]
        return text if blocks and span <= free else f"{text} + 0 * {self.block}"

    # ---------------------------------------------------------------- memory
    def load(self, name: str, index, dtype):
        if name in self.locals:
            return self.locals[name]
        self.loads.setdefault(name, dtype)
        pointer = name if self.loads[name] == dtype else f"{name}.to(tl.pointer_type({TL_DTYPE[dtype]}), bitcast=True)"
        stored = f"tl.load({pointer} + ({self.address(index)}), mask={self.mask}, other=0)"
        expr = widen(stored, dtype) if dtype in LOW_PRECISION else stored
        if name in self.stores and self._cse_key(expr, compute_dtype(dtype)) not in self.cse:
            self.lines.append("tl.debug_barrier()")  # written earlier in this kernel by other threads of the program
        var = self._emit(expr, compute_dtype(dtype))
        self.plain_loads.setdefault(var.name, (stored, dtype))
        return var

    def store(self, name: str, index, value: Var, dtype, mode=None):
        """``mode`` sum/amax/amin: an atomic combine (a scatter-reduce from parallel programs)."""
        self.stores.setdefault(name, dtype)
        how = {None: "tl.store", "sum": "tl.atomic_add", "amax": "tl.atomic_max", "amin": "tl.atomic_min"}[mode]
        self.lines.append(f"{how}({name} + ({self.address(index, self.block_symbols)}), {self._cast(value, dtype)}, "
                          f"mask={self.mask})")

    def define_local(self, name: str, value: Var, dtype):
        """A buffer's value kept in registers (a reduction's row result, a matmul's output
        tile), rounded as a store would round it."""
        var = f"{name}_v"
        cast = self._cast(value, dtype)
        self.lines.append(f"{var} = {widen(cast, dtype) if dtype in LOW_PRECISION else cast}")
        self.locals[name] = Var(var, compute_dtype(dtype))

    def _cast(self, value: Var, dtype) -> str:
        """A literal is made a scalar of its type first: a Python float has no ``.to``."""
        if value.dtype == dtype:
            return str(value)
        text = self.unrounded(value, dtype)
        if text in self.constants:
            text = f"tl.full([], {text}, {TL_DTYPE[value.dtype]})"
        return narrow(text, dtype)

    def constant(self, value, dtype):
        var = super().constant(value, dtype)
        self.constants[var.name] = value
        return var

    def index_expr(self, expr, dtype):
        expr = sympy.sympify(expr)
        text = str(int(expr)) if expr.is_number else self.index(expr)
        if text.lstrip("-").isdigit():  # a number, or an index the loop ranges fold to one (o over range 1)
            return self.constant(int(text), dtype)
        return self._emit(f"({text}).to({TL_DTYPE[compute_dtype(dtype)]})", compute_dtype(dtype))

    def indirect_indexing(self, value: Var, size):
        """A data-dependent index (gather/embedding): wrapped like Python for negatives.  A
        literal position (kthvalue's k) is an index expression, not a block."""
        if value.name in self.constants:
            position = int(self.constants[value.name])
            return sympy.Integer(position) if position >= 0 else sympy.sympify(size) + position
        var = self._emit(f"({value}).to(tl.int64)", torch.int64)
        wrapped = self._emit(f"tl.where({var} < 0, {var} + {self.index(size)}, {var})", torch.int64)
        return sympy.Symbol(wrapped.name, integer=True)

    def masked(self, mask: Var, body, other, dtype):
        """``where(mask, body(), other)``, with body's loads masked too."""
        self.masks.append(f"({mask})")
        value = body()
        self.masks.pop()
        value = self.to_dtype(value, dtype) if value.dtype != dtype else value
        return self._emit(f"tl.where({mask}, {value}, {literal(other, compute_dtype(dtype))})", compute_dtype(dtype))

    # ---------------------------------------------------------------- casts and math
    def to_dtype(self, x: Var, dtype):
        if x.dtype == dtype:
            return x
        if x.name in self.constants:  # a Python literal: convert it here (rounded like a cast)
            value = torch.tensor(self.constants[x.name]).to(dtype).item()
            return self.constant(value, torch.float32 if dtype in FLOAT8 else dtype)  # never a byte literal
        if dtype in LOW_PRECISION:  # round through the 16-bit type, keep computing in fp32
            return self._note_rounding(self._emit(widen(narrow(str(x), dtype), dtype), torch.float32), dtype, x)
        if dtype == torch.bool:
            return self._emit(f"({x}) != 0", dtype)
        return self._emit(f"({x}).to({TL_DTYPE[dtype]})", dtype)

    def _tl_math(self, name: str, x):
        return self._emit(f"{_TL_MATH[name]}({self._float(x)})", x.dtype)

    def _libdevice(self, name: str, x):
        return self._emit(f"hmath.{name}({self._float(x)})", x.dtype)

    def _binary_libdevice(self, name: str, a, b):
        return self._emit(f"hmath.{name}({a}, {b})", a.dtype)

    def _infix(self, name: str, a, b):
        return self._emit(f"{a} {_BINARY_INFIX[name]} {b}", a.dtype)

    def _compare(self, name: str, a, b):
        if str(a) in self.constants and str(b) in self.constants:  # fold: no Python bools in masks
            return self.constant(_FOLD[name](self.constants[str(a)], self.constants[str(b)]), torch.bool)
        return self._emit(f"{a} {_COMPARE[name]} {b}", torch.bool)

    def _special(self, name: str, *args):
        """libdevice's, where it has the function; the lowering refuses the others
        (``special_functions.native_on``), so reaching one here is a bug."""
        if name not in special_functions.LIBDEVICE:
            raise NotImplementedError(f"TritonOps.{name}: libdevice has no {name} (special_functions.LIBDEVICE)")
        return self._emit(f"hmath.{special_functions.LIBDEVICE[name]}({self._float(args[0])})", args[0].dtype)

    def _float(self, x: Var) -> str:
        if x.dtype.is_floating_point:
            return str(x)
        return str(self.to_dtype(x, torch.float32)) if x.name in self.constants else f"({x}).to(tl.float32)"

    def truediv(self, a, b):
        return self._emit(f"{a} / {b}", a.dtype)

    def neg(self, x):
        return self._emit(f"-{x}", x.dtype)

    def abs(self, x):
        return self._emit(f"tl.abs({x})" if x.dtype != torch.bool else str(x), x.dtype)

    def rsqrt(self, x):
        return self._emit(f"1.0 / tl.sqrt({x})", x.dtype)

    def reciprocal(self, x):
        return self._emit(f"1.0 / {x}", x.dtype)

    def sigmoid(self, x):
        return self._emit(f"1.0 / (1.0 + tl.exp(-{x}))", x.dtype)

    def gelu(self, x):
        v = self._float(x)
        return self._emit(f"0.5 * {v} * (1.0 + tl.math.erf({v} * {_SQRT1_2}))", x.dtype)

    def gelu_grad(self, x):
        v = self._float(x)
        return self._emit(f"0.5 * (1.0 + tl.math.erf({v} * {_SQRT1_2})) + {v} * {_INV_SQRT_2PI} * tl.exp(-0.5 * {v} * {v})",
                          x.dtype)

    def sign(self, x):
        zero = literal(0, x.dtype)
        return self._emit(f"tl.where({x} > {zero}, 1, tl.where({x} < {zero}, -1, {x})).to({TL_DTYPE[x.dtype]})",
                          x.dtype)

    def round(self, x):
        return self._emit(f"hmath.nearbyint({x})", x.dtype)

    def floordiv(self, a, b):
        if a.dtype.is_floating_point:
            return self._emit(f"tl.floor({a} / {b})", a.dtype)
        quotient = self._emit(f"{a} // {b}", a.dtype)
        return self._emit(f"tl.where((({a} % {b}) != 0) & (({a} < 0) != ({b} < 0)), {quotient} - 1, {quotient})",
                          a.dtype)

    def truncdiv(self, a, b):
        if a.dtype.is_floating_point:
            return self._emit(f"hmath.trunc({a} / {b})", a.dtype)
        return self._emit(f"{a} // {b}", a.dtype)

    def mod(self, a, b):
        remainder = self._emit(f"hmath.fmod({a}, {b})" if a.dtype.is_floating_point else f"{a} % {b}", a.dtype)
        return self._emit(f"tl.where(({remainder} != 0) & (({remainder} < 0) != ({b} < 0)), "
                          f"{remainder} + {b}, {remainder})", a.dtype)

    def fmod(self, a, b):
        return self._emit(f"hmath.fmod({a}, {b})" if a.dtype.is_floating_point else f"{a} % {b}", a.dtype)

    def pow(self, a, b):
        if a.dtype.is_floating_point:
            return self._emit(f"hmath.pow({a}, {self._float(b)})", a.dtype)
        return self._emit(f"_ipow({a}, {b}).to({TL_DTYPE[a.dtype]})", a.dtype)

    def maximum(self, a, b):
        return self._emit(f"tl.where(({a} != {a}) | ({a} > {b}), {a}, {b})", a.dtype)

    def minimum(self, a, b):
        return self._emit(f"tl.where(({a} != {a}) | ({a} < {b}), {a}, {b})", a.dtype)

    def where(self, cond, a, b):
        return self._emit(f"tl.where({cond}, {a}, {b})", a.dtype)

    def logical_and(self, a, b):
        for known, other in ((a, b), (b, a)):
            if str(known) in self.constants:  # a constant condition: keep masks blocks of int1
                if not self.constants[str(known)]:
                    return self.constant(False, torch.bool)
                return other if other.dtype == torch.bool else self._emit(f"{other} != 0", torch.bool)
        return self._emit(f"({a} != 0) & ({b} != 0)", torch.bool)

    def logical_or(self, a, b):
        return self._emit(f"({a} != 0) | ({b} != 0)", torch.bool)

    def logical_xor(self, a, b):
        return self._emit(f"({a} != 0) ^ ({b} != 0)", torch.bool)

    def logical_not(self, x):
        return self._emit(f"{x} == 0", torch.bool)

    def bitwise_not(self, x):
        return self._emit(f"{x} == 0" if x.dtype == torch.bool else f"~{x}", x.dtype)

    def isnan(self, x):
        return self._emit(f"{x} != {x}" if x.dtype.is_floating_point else "False", torch.bool)

    def isinf(self, x):
        return self._emit(f"tl.abs({x}) == float('inf')" if x.dtype.is_floating_point else "False", torch.bool)
