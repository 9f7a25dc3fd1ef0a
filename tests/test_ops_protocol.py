"""The ops protocol is the one list of ops: a handler that lacks one, misspells one, takes
other parameters or hides ops behind ``__getattr__`` is refused when its class is made, and
``ops.<name>`` outside the protocol raises wherever it is written."""
from __future__ import annotations

import pytest
import torch

from torch_hetero.codegen.code_handler import Var
from torch_hetero.codegen.cpp_ops import CppOps
from torch_hetero.codegen.triton_ops import TritonOps
from torch_hetero.lowering import pointwise, special
from torch_hetero.ops_protocol import OPS, OpsHandler
from torch_hetero.planning.kernel_analysis import CountingOps
from torch_hetero.ops_protocol import LoadRecorder
from torch_hetero.virtualized import ops, set_ops_handler


def _all_but(*left_out):
    return {"_any": tuple(sorted(set(OPS) - set(left_out)))}


def test_a_handler_lacking_an_op_is_refused_at_class_creation():
    with pytest.raises(TypeError, match=r"ops handler Partial lacks ops sin\b"):
        class Partial(OpsHandler):
            GENERATED = _all_but("sin")

            def _any(self, name, *args):
                return None


def test_a_misspelled_op_is_refused_at_class_creation():
    with pytest.raises(TypeError, match=r"ops handler Misspelled lacks ops trunc\b"):
        class Misspelled(OpsHandler):
            GENERATED = _all_but("trunc")

            def _any(self, name, *args):
                return None

            def trnc(self, x):
                return x


def test_an_op_with_other_parameters_is_refused():
    with pytest.raises(TypeError, match=r"WrongParameters.where takes \(c, a, b\); the ops protocol says \(cond, a, b\)"):
        class WrongParameters(OpsHandler):
            GENERATED = _all_but("where")

            def _any(self, name, *args):
                return None

            def where(self, c, a, b):
                return a


def test_generating_an_op_outside_the_protocol_is_refused():
    with pytest.raises(TypeError, match="Extra generates tanhh: not in the ops protocol"):
        class Extra(OpsHandler):
            GENERATED = {"_any": ("tanh", "tanhh")}


def test_a_family_without_its_hook_is_refused():
    with pytest.raises(TypeError, match="NoHook generates ops through _any, which it lacks"):
        class NoHook(OpsHandler):
            GENERATED = _all_but()


def test_a_catch_all_getattr_is_refused():
    with pytest.raises(TypeError, match="CatchAll defines __getattr__"):
        class CatchAll(OpsHandler, abstract=True):
            def __getattr__(self, name):
                return lambda *args: None


def test_a_generated_op_checks_its_arguments_at_the_call():
    counter = CountingOps({}, None, {})
    with pytest.raises(TypeError, match=r"CountingOps\.add: missing a required argument: 'b'"):
        counter.add(counter.constant(1.0, torch.float32))


def test_a_misspelled_op_raises_where_it_is_called():
    with set_ops_handler(CppOps()):
        with pytest.raises(AttributeError, match=r"ops\.tanhh: no such op in the ops protocol"):
            ops.tanhh(Var("x", torch.float32))
        assert str(ops.tanh(Var("x", torch.float32))) == "tmp0"


@pytest.mark.parametrize("name", sorted(set(pointwise._UNARY.values()) | set(special._UNARY.values())
                                        | set(special._BINARY.values())))
def test_every_op_a_lowering_names_is_in_the_protocol(name):
    assert name in OPS


def test_triton_refuses_a_special_function_libdevice_lacks():
    with pytest.raises(NotImplementedError, match="TritonOps.zeta: libdevice has no zeta"):
        TritonOps().zeta(Var("x", torch.float32), Var("q", torch.float32))


@pytest.mark.parametrize("handler", [CppOps, TritonOps])
def test_a_scope_emits_apart_and_restores_the_enclosing_one(handler):
    code = handler()
    x = Var("x", torch.float32)
    outer = code.exp(x)
    with code.scope() as inner:
        again = code.exp(x)               # nothing reused from the enclosing scope
        assert code.exp(x) is again       # but reused inside its own
    assert len(inner) == 1 and again.name != outer.name
    assert len(code.lines) == 1 and code.exp(x) is outer


def test_a_generated_op_takes_the_protocols_defaults_and_keywords():
    recorder = LoadRecorder()
    assert recorder.store("buf0", 0, None, torch.float32) is None
    assert recorder.store("buf0", 0, None, torch.float32, mode="sum") is None
    with pytest.raises(TypeError, match=r"LoadRecorder\.store: got an unexpected keyword argument 'how'"):
        recorder.store("buf0", 0, None, torch.float32, how="sum")
