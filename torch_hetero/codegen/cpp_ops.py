"""The C++ ``ops`` handler: re-running an IR inner function under it emits C++ statements.

Values are :class:`code_handler.Var` (a C expression or temporary, plus its torch dtype).
float16, bfloat16 and the 8-bit floats live in float32 registers; they are rounded only on an
explicit cast and when stored, as eager does per op for fp32 math."""
from __future__ import annotations

import math
import re

import sympy
import torch

from ..device_models import special_functions
from ..dtypes import FLOAT8, STORAGE_CTYPE
from ..ops_protocol import SPECIAL_FUNCTIONS
from ..printer import cexpr
from .code_handler import CodeHandler, Var



def _float8_functions(fmt) -> tuple:
    """The prelude's conversions of one 8-bit float format, instantiated for its layout."""
    return (f"hetero_fp82f<{fmt.decode_params}>", f"hetero_f2fp8<{fmt.encode_params}>",
            f"hetero_round_fp8<{fmt.encode_params.rsplit(', ', 1)[0]}, {fmt.inf_code}, {int(fmt.negative_zero)}>")


# dtype → (widen a stored value to float, narrow a float to storage, round a float as a store would)
LOW_PRECISION = {torch.float16: ("hetero_h2f", "hetero_f2h", "hetero_round_half"),
                 torch.bfloat16: ("hetero_b2f", "hetero_f2b", "hetero_round_bf16"),
                 **{dtype: _float8_functions(fmt) for dtype, fmt in FLOAT8.items()}}


def compute_ctype(dtype: torch.dtype) -> str:
    if dtype in LOW_PRECISION:
        return "float"
    if dtype == torch.bool:
        return "bool"
    if dtype not in STORAGE_CTYPE:
        raise NotImplementedError(f"dtype {dtype} has no C++ lowering")
    return STORAGE_CTYPE[dtype]


# a float literal (see ``literal``) that is not NaN
_ORDERED_FLOAT = re.compile(r"-?(?:[0-9]+\.[0-9]*(?:e[-+]?[0-9]+)?|[0-9]+e[-+]?[0-9]+|INFINITY)f?")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def literal(value, dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "true" if value else "false"
    if dtype.is_floating_point:
        value = float(value)
        suffix = "" if dtype == torch.float64 else "f"
        if math.isnan(value):
            return f"{'' if suffix else '(double)'}NAN"
        if math.isinf(value):
            return ("-" if value < 0 else "") + "INFINITY"
        return f"{value!r}{suffix}"
    value = int(value)
    return f"INT64_C({value})" if dtype == torch.int64 else str(value)


_UNARY_FLOAT = {
    "exp": "std::exp", "exp2": "std::exp2", "expm1": "std::expm1", "log": "std::log", "log2": "std::log2",
    "log10": "std::log10", "log1p": "std::log1p", "sqrt": "std::sqrt", "sin": "std::sin",
    "cos": "std::cos", "tan": "std::tan", "asin": "std::asin", "acos": "std::acos", "atan": "std::atan",
    "sinh": "std::sinh", "cosh": "std::cosh", "tanh": "std::tanh", "asinh": "std::asinh",
    "acosh": "std::acosh", "atanh": "std::atanh", "erf": "std::erf", "erfc": "std::erfc",
    "floor": "std::floor", "ceil": "std::ceil", "trunc": "std::trunc", "round": "std::nearbyint",
    "lgamma": "std::lgamma", "sigmoid": "hetero_sigmoid", "gelu": "hetero_gelu", "gelu_grad": "hetero_gelu_grad",
}
# float functions the prelude provides as hetero_<name>f (vector libm where available)
_VECTOR_MATH = {"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "asin", "acos",
                "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf", "erfc"}
_BINARY_INFIX = {"add": "+", "sub": "-", "mul": "*", "bitwise_and": "&",
                 "bitwise_or": "|", "bitwise_xor": "^", "lshift": "<<", "rshift": ">>"}
_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_BINARY_FLOAT = {"atan2": "std::atan2", "copysign": "std::copysign", "hypot": "std::hypot",
                 "nextafter": "std::nextafter"}


def _nonzero_literal(text: str) -> bool:
    """Is ``text`` an integer literal (see ``literal``) other than 0?"""
    digits = text[len("INT64_C("):-1] if text.startswith("INT64_C(") else text
    return digits.lstrip("-").isdigit() and int(digits) != 0


# how a scatter-reduce store combines the stored value {0} with the new one {1}
_COMBINE = {"sum": "{0} + {1}", "prod": "{0} * {1}", "amax": "hetero_max({0}, {1})", "amin": "hetero_min({0}, {1})"}


class CppOps(CodeHandler):
    """Collects the statements of one loop body; CSE'd by expression text."""
    GENERATED = {"_call": tuple(_UNARY_FLOAT), "_infix": tuple(_BINARY_INFIX), "_compare": tuple(_COMPARE),
                 "_binary_call": tuple(_BINARY_FLOAT), "_special": tuple(SPECIAL_FUNCTIONS)}
    literal = staticmethod(literal)

    def __init__(self):
        super().__init__()
        self.indent = ""
        self.headers: set = set()         # extra headers the statements need
        self.may_divide_by_zero = False   # an integer division by a value (see _integer_division)
        self._divisions = 0               # integer divisions by values emitted so far
        self._guards: list = []           # (mask, what it depends on) of the masked bodies being emitted
        self._depends: dict = {}          # variable → the loop variables and symbols its value depends on

    # ---------------------------------------------------------------- plumbing
    def _emit(self, expr: str, dtype: torch.dtype, prefix: str = "tmp") -> Var:
        var = super()._emit(expr, dtype, prefix)
        self._depends.setdefault(var.name, self.dependencies(expr))
        return var

    def dependencies(self, text: str) -> frozenset:
        """The identifiers ``text`` reads, through the variables it names (function names
        included: they only ever add)."""
        found = set()
        for name in IDENTIFIER.findall(text):
            found |= self._depends.get(name, {name})
        return frozenset(found)

    def _assignment(self, name: str, expr: str, dtype: torch.dtype) -> str:
        return f"{self.indent}{compute_ctype(dtype)} {name} = {expr};"

    def _print(self, expr) -> str:
        return cexpr(expr)

    def _narrow(self, expr: str, dtype) -> str:
        """C promotes small ints to int; cast results back to the value's dtype."""
        return f"static_cast<{compute_ctype(dtype)}>({expr})" if dtype in (torch.int8, torch.uint8, torch.int16, torch.bool) else expr

    # ---------------------------------------------------------------- memory
    def load(self, name: str, index, dtype):
        if name in self.locals:
            return self.locals[name]
        self.loads.setdefault(name, dtype)
        index_text = self.index(index)
        pointer = name if self.loads[name] == dtype else f"reinterpret_cast<const {STORAGE_CTYPE[dtype]}*>({name})"
        text = f"{pointer}[{index_text}]"  # the kernel's parameter has its first load's type (a dtype view)
        if dtype in LOW_PRECISION:
            text = f"{LOW_PRECISION[dtype][0]}({text})"
        if any(depends & self.dependencies(index_text) for _, depends in self._guards):
            # inside a masked body, an index the mask constrains: read only where the masks hold
            # (a masked vector load).  One that shares nothing with them (a per-channel
            # parameter) is read as it is: its value is in bounds wherever the body's is used
            text = f"({' && '.join(mask for mask, _ in self._guards)}) ? {text} : {literal(0, dtype)}"
        return self._emit(text, dtype)

    def store(self, name: str, index, value: Var, dtype, mode=None):
        """``mode`` (sum, prod, amax, amin): combine with the stored value (a scatter-reduce;
        the kernel runs serially)."""
        self.stores.setdefault(name, dtype)
        target = f"{name}[{self.index(index)}]"
        text = str(value)
        if mode is not None:
            current = f"{LOW_PRECISION[dtype][0]}({target})" if dtype in LOW_PRECISION else target
            text = self._narrow(_COMBINE[mode].format(current, text), dtype)
        if dtype in LOW_PRECISION:
            text = f"{LOW_PRECISION[dtype][1]}({self.unrounded(value, dtype) if mode is None else text})"
        self.lines.append(f"{self.indent}{target} = {text};")

    def define_local(self, name: str, value: Var, dtype, variable: str | None = None) -> Var:
        """A buffer's value for this outer iteration in a variable (``variable``, default the
        buffer's name), which the kernel's later nodes read instead of memory.  Rounded to
        ``dtype`` as a store would be."""
        text = str(value)
        if dtype in LOW_PRECISION:
            text = f"{LOW_PRECISION[dtype][2]}({text})"
        elif value.dtype != dtype:
            text = f"static_cast<{compute_ctype(dtype)}>({text})"
        variable = variable or name
        self.lines.append(f"{self.indent}{compute_ctype(dtype)} {variable} = {text};")
        self.locals[name] = Var(variable, dtype)
        return self.locals[name]

    def index_expr(self, expr, dtype):
        return self._emit(f"static_cast<{compute_ctype(dtype)}>({self.index(expr)})", dtype)

    def indirect_indexing(self, value: Var, size):
        """A data-dependent index (gather/embedding): wrapped like Python for negatives."""
        var = self._emit(f"static_cast<int64_t>({value})", torch.int64, prefix="idx")
        bound = self.index(size)
        wrapped = self._emit(f"{var} < 0 ? {var} + {bound} : {var}", torch.int64, prefix="idx")
        return sympy.Symbol(wrapped.name, integer=True)

    def masked(self, mask: Var, body, other, dtype):
        """``mask ? body() : other``.  The body is computed in every iteration, each of its loads
        reading memory only where the mask holds (``mask ? buf[i] : 0``: a masked vector load)
        and the result selected, so the loop stays vectorized (a padded input's border, a
        gather's bounds); a body with an integer division by a value, which would flag a
        division by zero where the mask does not hold, is evaluated inside an ``if``."""
        start, cse, divisions = len(self.lines), dict(self.cse), self._divisions
        self._guards.append((str(mask), self.dependencies(str(mask))))
        try:
            value = body()
            if value.dtype != dtype:
                value = self.to_dtype(value, dtype)
        finally:
            self._guards.pop()
        if self._divisions == divisions:
            return self._emit(f"{mask} ? {value} : {literal(other, dtype)}", dtype)
        del self.lines[start:]
        self.cse = cse
        return self._masked_branch(mask, body, other, dtype)

    def _masked_branch(self, mask: Var, body, other, dtype):
        """``mask ? body() : other``, evaluating body (and its loads) only where mask holds."""
        result = self._emit(literal(other, dtype), dtype)
        self.cse = {k: v for k, v in self.cse.items() if v is not result}
        self.lines.append(f"{self.indent}if ({mask}) {{")
        saved_cse, saved_indent = dict(self.cse), self.indent
        self.indent += "    "
        value = body()
        if value.dtype != dtype:
            value = self.to_dtype(value, dtype)
        self.lines.append(f"{self.indent}{result} = {value};")
        self.cse, self.indent = saved_cse, saved_indent
        self.lines.append(f"{self.indent}}}")
        return result

    # ---------------------------------------------------------------- casts
    def to_dtype(self, x: Var, dtype):
        if x.dtype == dtype:
            return x
        if dtype in LOW_PRECISION:
            src = x if x.dtype.is_floating_point else self._emit(f"static_cast<float>({x})", torch.float32)
            return self._note_rounding(self._emit(f"{LOW_PRECISION[dtype][2]}({src})", dtype), dtype, src)
        if dtype == torch.bool:
            return self._emit(f"{x} != 0", dtype)
        return self._emit(f"static_cast<{compute_ctype(dtype)}>({x})", dtype)

    # ---------------------------------------------------------------- math
    def _call(self, name: str, x):
        fn = f"hetero_{name}f" if name in _VECTOR_MATH and compute_ctype(x.dtype) == "float" else _UNARY_FLOAT[name]
        return self._emit(f"{fn}({x})", x.dtype)

    def _infix(self, name: str, a, b):
        return self._emit(self._narrow(f"{a} {_BINARY_INFIX[name]} {b}", a.dtype), a.dtype)

    def _compare(self, name: str, a, b):
        return self._emit(f"{a} {_COMPARE[name]} {b}", torch.bool)

    def _binary_call(self, name: str, a, b):
        return self._emit(f"{_BINARY_FLOAT[name]}({a}, {b})", a.dtype)

    def _special(self, name: str, *args):
        """ATen's own implementation (``device_models.special_functions``)."""
        self.headers.add(special_functions.ATEN_MATH_HEADER)
        return self._emit(f"{special_functions.CPP[name]}({', '.join(map(str, args))})", args[0].dtype)

    def fmod(self, a, b):
        if a.dtype.is_floating_point:
            return self._emit(f"std::fmod({a}, {b})", a.dtype)
        return self._integer_division("hetero_truncmod", a, b)

    def neg(self, x):
        return self._emit(self._narrow(f"-{x}", x.dtype), x.dtype)

    def abs(self, x):
        return self._emit(f"std::abs({x})" if x.dtype != torch.bool else str(x), x.dtype)

    def rsqrt(self, x):
        return self._emit(f"1 / std::sqrt({x})", x.dtype)

    def reciprocal(self, x):
        return self._emit(f"1 / {x}", x.dtype)

    def sign(self, x):
        return self._emit(f"hetero_sign({x})", x.dtype)

    def truediv(self, a, b):
        """A float divided by a kernel-local value (a row's softmax sum: fixed across the inner
        loop) is a multiply by its reciprocal, which g++ hoists: a vector division per 16
        elements made softmax's last pass 3x slower.  ATen's CPU softmax does the same."""
        if a.dtype.is_floating_point and any(b is local for local in self.locals.values()):
            return self._emit(f"{a} * (1 / {b})", a.dtype)
        return self._emit(self._narrow(f"{a} / {b}", a.dtype), a.dtype)

    def floordiv(self, a, b):
        if a.dtype.is_floating_point:
            return self._emit(f"std::floor({a} / {b})", a.dtype)
        return self._integer_division("hetero_floordiv", a, b)

    def truncdiv(self, a, b):
        if a.dtype.is_floating_point:
            return self._emit(f"std::trunc({a} / {b})", a.dtype)
        return self._integer_division("hetero_truncdiv", a, b)

    def mod(self, a, b):
        if a.dtype.is_floating_point:
            return self._emit(f"static_cast<{compute_ctype(a.dtype)}>(hetero_fmod_py({a}, {b}))", a.dtype)
        return self._integer_division("hetero_mod", a, b)

    def _integer_division(self, helper: str, a, b):
        """A prelude division helper in the type C computes in (int for 8- and 16-bit values, as
        eager's kernels do; then narrowed, wrapping around like eager's), so that a literal
        divisor converts.  A divisor that may be zero makes the kernel ``may_divide_by_zero``."""
        if not _nonzero_literal(str(b)):
            self.may_divide_by_zero = True
            self._divisions += 1
        ctype = "int32_t" if a.dtype in (torch.int8, torch.uint8, torch.int16) else compute_ctype(a.dtype)
        return self._emit(self._narrow(f"{helper}<{ctype}>({a}, {b})", a.dtype), a.dtype)

    def pow(self, a, b):
        if a.dtype.is_floating_point:
            return self._emit(f"std::pow({a}, {b})", a.dtype)
        return self._emit(self._narrow(f"hetero_ipow<int64_t>({a}, {b})", a.dtype), a.dtype)

    def maximum(self, a, b):
        return self._extremum("max", ">", a, b)

    def minimum(self, a, b):
        return self._extremum("min", "<", a, b)

    def _extremum(self, name: str, beats: str, a, b):
        """NaN-propagating max/min.  Against a float constant that is not NaN (ReLU's 0, ReLU6's
        6, a clamp's bounds) ``c > x ? c : x`` propagates x's NaN by itself and is one vector
        max; ``hetero_max`` checks both operands (MobileNetV2's batch norm + ReLU6: 1.9x)."""
        for bound, x in ((b, a), (a, b)):
            if a.dtype.is_floating_point and _ORDERED_FLOAT.fullmatch(str(bound)):
                return self._emit(f"{bound} {beats} {x} ? {bound} : {x}", a.dtype)
        return self._emit(f"hetero_{name}<{compute_ctype(a.dtype)}>({a}, {b})", a.dtype)

    def where(self, cond, a, b):
        return self._emit(f"{cond} ? {a} : {b}", a.dtype)

    def logical_and(self, a, b):
        return self._emit(f"{a} && {b}", torch.bool)

    def logical_or(self, a, b):
        return self._emit(f"{a} || {b}", torch.bool)

    def logical_xor(self, a, b):
        return self._emit(f"(bool){a} != (bool){b}", torch.bool)

    def logical_not(self, x):
        return self._emit(f"!{x}", torch.bool)

    def bitwise_not(self, x):
        return self._emit(f"!{x}" if x.dtype == torch.bool else self._narrow(f"~{x}", x.dtype), x.dtype)

    def isnan(self, x):
        return self._emit(f"std::isnan({x})" if x.dtype.is_floating_point else "false", torch.bool)

    def isinf(self, x):
        return self._emit(f"std::isinf({x})" if x.dtype.is_floating_point else "false", torch.bool)
