"""The ops protocol: every op an IR inner function may call on ``ops``, with its parameters,
in one table.  Each handler (the C++ and Triton code emitters, the cost analysis's counter,
the load recorder) subclasses :class:`OpsHandler`, which refuses at class creation a handler
that lacks an op, takes other parameters, or hides ops behind ``__getattr__``: a misspelled op
is an error where it is written, not a silently wrong kernel or count."""
from __future__ import annotations

import inspect

import sympy

from .device_models import special_functions
from .device_models.host_ops import TRANSCENDENTAL_PRICED

_UNARY, _BINARY = ("x",), ("a", "b")

# ops that read, write, convert or branch: what a handler must treat one by one
VALUES = {
    "load": ("name", "index", "dtype"),
    "store": ("name", "index", "value", "dtype", "mode"),
    "constant": ("value", "dtype"),
    "index_expr": ("expr", "dtype"),
    "indirect_indexing": ("value", "size"),
    "masked": ("mask", "body", "other", "dtype"),
    "to_dtype": ("x", "dtype"),
}
OPTIONAL = {("store", "mode"): None}   # (op, parameter) → its default
# the special functions (``device_models.special_functions``) that take two arguments
_SPECIAL_BINARY = {"zeta", "igamma", "igammac", "polygamma"} | {
    name for name in special_functions.CPP if "_polynomial_" in name}
SPECIAL_FUNCTIONS = frozenset(special_functions.CPP)
COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
# the ops whose result is a bool whatever their arguments
PREDICATES = COMPARISONS | {"logical_and", "logical_or", "logical_xor", "logical_not", "isnan", "isinf"}
# evaluations of a transcendental function: the host measures each (libm calls and the
# prelude's functions, ``host_ops``); special functions are series of them
TRANSCENDENTAL = frozenset(TRANSCENDENTAL_PRICED) | SPECIAL_FUNCTIONS

# the unary transcendentals are those the host prices (so a new one is measured before it is used)
_MATH_UNARY = {"neg", "abs", "sign", "sqrt", "rsqrt", "reciprocal", "floor", "ceil", "trunc", "round",
               "logical_not", "bitwise_not", "isnan", "isinf"} | {
    name for name in TRANSCENDENTAL_PRICED if name not in ("pow", "atan2")}
_MATH_BINARY = {"add", "sub", "mul", "truediv", "floordiv", "truncdiv", "mod", "fmod", "pow", "maximum",
                "minimum", "atan2", "copysign", "hypot", "nextafter", "bitwise_and", "bitwise_or",
                "bitwise_xor", "lshift", "rshift", "logical_and", "logical_or", "logical_xor"} | COMPARISONS

# op name → its parameters
OPS = {
    **VALUES,
    **dict.fromkeys(sorted(_MATH_UNARY), _UNARY),
    **dict.fromkeys(sorted(_MATH_BINARY), _BINARY),
    "where": ("cond", "a", "b"),
    **{name: _BINARY if name in _SPECIAL_BINARY else _UNARY for name in sorted(SPECIAL_FUNCTIONS)},
}
MATH = frozenset(OPS) - set(VALUES)   # every op that computes a value from values


def _signature(name: str) -> inspect.Signature:
    """Op ``name``'s signature as a method's (``self`` first)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter("self", kind)] + [
        inspect.Parameter(p, kind, default=OPTIONAL.get((name, p), inspect.Parameter.empty)) for p in OPS[name]])


def _generated(name: str, hook: str):
    """The method ``name`` of a handler that does one thing for a family of ops: it calls
    ``self.<hook>(name, *args)`` with the protocol's parameters (bound, so checked, at each call)."""
    method_signature = _signature(name)
    arity = len(OPS[name])

    def method(self, *args, **kwargs):
        if len(args) == arity and not kwargs:  # the common call, without binding's cost
            return getattr(self, hook)(name, *args)
        try:
            bound = method_signature.bind(self, *args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{type(self).__name__}.{name}: {error}") from None
        bound.apply_defaults()
        return getattr(self, hook)(name, *bound.args[1:])
    method.__name__ = method.__qualname__ = name
    method.__signature__ = method_signature
    return method


class OpsHandler:
    """Base of every ``ops`` handler.  ``GENERATED`` (hook method → op names) lists the ops a
    handler class does alike: each gets a method calling the hook with its name.  A subclass made with
    ``abstract=True`` (a base for handlers) is checked only for ``__getattr__``."""
    GENERATED: dict = {}

    def __init_subclass__(cls, abstract: bool = False, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__getattr__" in vars(cls):
            raise TypeError(f"ops handler {cls.__name__} defines __getattr__: implement the ops protocol's ops "
                            f"(torch_hetero/ops_protocol.py) by name instead")
        for hook, names in vars(cls).get("GENERATED", {}).items():
            unknown = sorted(set(names) - set(OPS))
            if unknown:
                raise TypeError(f"ops handler {cls.__name__} generates {', '.join(unknown)}: not in the ops protocol")
            if not callable(getattr(cls, hook, None)):
                raise TypeError(f"ops handler {cls.__name__} generates ops through {hook}, which it lacks")
            for name in names:
                if name not in vars(cls):
                    setattr(cls, name, _generated(name, hook))
        if not abstract:
            _check(cls)


def _check(cls) -> None:
    missing = [name for name in OPS if not callable(getattr(cls, name, None))]
    if missing:
        raise TypeError(f"ops handler {cls.__name__} lacks ops {', '.join(missing)} of the ops protocol")
    for name, params in OPS.items():
        got = tuple(inspect.signature(getattr(cls, name)).parameters)[1:]
        if got != params:
            raise TypeError(f"ops handler {cls.__name__}.{name} takes ({', '.join(got)}); "
                            f"the ops protocol says ({', '.join(params)})")


class LoadRecorder(OpsHandler):
    """An ``ops`` handler that only records loads (name, index, and each buffer's dtype as
    loaded); every other op computes nothing."""
    GENERATED = {"_nothing": tuple(sorted(set(OPS) - {"load", "indirect_indexing", "masked"}))}

    def __init__(self):
        self.loads: list = []
        self.dtypes: dict = {}
        self.indirect = 0

    def load(self, name, index, dtype):
        self.loads.append((name, sympy.sympify(index)))
        self.dtypes[name] = dtype

    def indirect_indexing(self, value, size):
        self.indirect += 1
        return sympy.Symbol(f"indirect{self.indirect}", integer=True)

    def masked(self, mask, body, other, dtype):
        return body()

    def _nothing(self, name, *args):
        return None
