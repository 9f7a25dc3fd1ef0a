"""Integer ``//`` (floor_divide, div's rounding modes), ``%`` (remainder) and fmod: every integer
dtype, tensor by tensor and by scalar, mixed dtypes, on the host and a Triton target, against
eager; division by zero raises as eager's CPU kernels do."""

import pytest
import torch

import torch_hetero
from torch_hetero.runtime import triton_run
from utils import check, compile_hetero, compiled_kernels

HOST, TRITON = {}, {"device": "h100", "executor": "interpret"}
TARGETS = pytest.mark.parametrize("options", [HOST, TRITON], ids=["host", "triton"])
INTEGERS = [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64]


def divisions(a, b):
    return (a // b, torch.div(a, b, rounding_mode="floor"), torch.div(a, b, rounding_mode="trunc"),
            a % b, torch.fmod(a, b))


def _in_range(values, dtype):
    info = torch.iinfo(dtype)
    return torch.tensor([v for v in values if info.min <= v <= info.max], dtype=dtype)


def _dividends(dtype):
    """Both signs, the extremes, and values that divide exactly; a column, to pair with each divisor."""
    info = torch.iinfo(dtype)
    return _in_range([info.min, info.min + 1, info.max, -7, 7, -6, 6, -1, 0, 1, 5, 100], dtype)[:, None]


def _divisors(dtype):
    """A row without zero (see test_division_by_zero_*).  -1 only where C computes in int
    (8 and 16 bits): x86 traps on INT_MIN / -1, and so eager dies there on int32 and int64."""
    info = torch.iinfo(dtype)
    small = dtype in (torch.int8, torch.uint8, torch.int16)
    values = [2, -2, 3, -3, 7, -7, 1, 5, -5, 100, info.max, info.min + 1] + ([-1, info.min] if small else [])
    return _in_range([v for v in values if v != 0],
                     dtype)[None, :]


@TARGETS
@pytest.mark.parametrize("dtype", INTEGERS, ids=str)
def test_tensor_by_tensor(dtype, options):
    check(divisions, _dividends(dtype), _divisors(dtype), options=options, native=True)


@TARGETS
@pytest.mark.parametrize("dtype", INTEGERS, ids=str)
@pytest.mark.parametrize("scalar", [3, -3, 300, -1000], ids=str)
def test_tensor_by_python_int_keeps_the_dtype_and_wraps_the_scalar(dtype, scalar, options):
    """eager casts the scalar to the tensor's dtype: an int8 tensor // 300 divides by 44, a
    uint8 one % -3 by 253."""
    check(lambda a: divisions(a, scalar), _dividends(dtype), options=options, native=True)


@TARGETS
def test_mixed_dtypes_promote_as_eager(options):
    """uint8 by int8 computes in int16; an int8 tensor by a 0-dim int64 tensor stays int8;
    a bool tensor by an int becomes int64; int16 by int64 becomes int64."""
    a8, b8 = _dividends(torch.uint8), _divisors(torch.int8)
    check(lambda a, b: divisions(a, b) + divisions(b, a.clamp(min=1)), a8, b8, options=options, native=True)
    check(lambda a, b: divisions(a, b), _dividends(torch.int8), torch.tensor(-3), options=options, native=True)
    check(lambda a: divisions(a, 2), torch.tensor([[True], [False]]), options=options, native=True)
    check(divisions, _dividends(torch.int16), _divisors(torch.int64), options=options, native=True)


@pytest.mark.parametrize("dtype", INTEGERS, ids=str)
@pytest.mark.parametrize("op", [
    pytest.param(lambda a, b: a // b, id="floor_divide"),
    pytest.param(lambda a, b: torch.div(a, b, rounding_mode="trunc"), id="trunc"),
    pytest.param(lambda a, b: a % b, id="remainder"),
    pytest.param(torch.fmod, id="fmod"),
])
def test_division_by_zero_raises_on_the_host_as_eager(dtype, op):
    """eager CPU raises RuntimeError("ZeroDivisionError"); a compiled kernel must not trap
    (SIGFPE would end the process): it raises the same error, and the next call runs."""
    a, b = _dividends(dtype), _divisors(dtype)
    zero = b.clone()
    zero[0, 4] = 0
    torch._dynamo.reset()
    compiled = compile_hetero(lambda x, y: op(x, y) + 1, native=True)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        op(a, zero)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        compiled(a, zero)
    torch.testing.assert_close(compiled(a, b), op(a, b) + 1)


def test_division_by_a_scalar_zero_raises_on_the_host():
    torch._dynamo.reset()
    compiled = compile_hetero(lambda x: x // 0, native=True)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        compiled(_dividends(torch.int16))


def test_only_kernels_dividing_by_a_value_check_for_zero():
    report = torch_hetero.explain(lambda a, b: (a // 3 + a % -5, a // b), _dividends(torch.int8), _divisors(torch.int8))
    checks = report.code["inference.py"].count("check_zero_division()")
    assert checks == 1, report.code["inference.py"]


def test_small_integer_division_compiles_ahead_of_time_for_a_gpu():
    """The Triton kernel of int8/uint8/int16 divisions builds for a real target, not only
    under the interpreter."""
    inputs = (_dividends(torch.int8), _divisors(torch.uint8), _divisors(torch.int16))

    def fn(a, b, c):
        return divisions(a, 3) + divisions(a, b) + divisions(a, c)
    report = torch_hetero.explain(fn, *inputs, device="h100")
    torch._dynamo.reset()
    _, kernels = compiled_kernels(fn, inputs, {"device": "h100"})
    shared = triton_run.compile_ahead(report.code["inference.triton.py"], kernels,
                                      torch_hetero.device_models.get_profile("h100").triton_target)
    assert set(shared) == {k.name for k in kernels}
