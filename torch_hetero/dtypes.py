"""The type each code generator stores a dtype as: C++ for the host, Triton for the rest,
and the bit layouts of the 8-bit floats both convert in software.

Data, not code generation: the lowering needs the dtypes both generators handle
(``graph.GENERATED_DTYPES``) to send any other to ATen before codegen exists, and the two
``ops`` handlers render these names."""
from __future__ import annotations

import dataclasses
import functools

import torch


@dataclasses.dataclass(frozen=True)
class Float8Format:
    """An 8-bit float's layout: 1 sign bit, ``7 - mantissa`` exponent bits, ``mantissa`` bits.
    Both code generators store it as its byte and convert through float32 in integer
    arithmetic (``hetero_f2fp8`` / ``_to_fp8``), rounding to nearest even like c10's
    conversions, so casts match eager bit for bit on every target, whatever fp8 instructions
    (if any) the device has."""
    dtype: torch.dtype
    mantissa: int          # mantissa bits
    bias: int              # exponent bias
    max_code: int          # the largest finite magnitude's byte
    nan_code: int          # what a NaN input becomes (its sign kept, except where -0 is NaN)
    inf_code: int          # infinity's byte; -1: the format has none
    negative_zero: bool    # False for the "fnuz" formats: the byte 0x80 is their NaN

    @property
    def overflow_code(self) -> int:
        """What a magnitude beyond ``max_code`` becomes: the eager build's own answer (c10
        saturates e4m3fn to 448 in recent releases, earlier ones gave NaN), probed once."""
        return _overflow_code(self.dtype)

    @property
    def encode_params(self) -> str:
        """The float → byte conversion's template / constexpr arguments, in their order."""
        return _joined(self.mantissa, self.bias, self.max_code, self.overflow_code, self.nan_code,
                       int(self.negative_zero))

    @property
    def decode_params(self) -> str:
        """The byte → float conversion's template / constexpr arguments, in their order."""
        return _joined(self.mantissa, self.bias, self.max_code, self.inf_code, int(self.negative_zero))


def _joined(*values) -> str:
    return ", ".join(str(v) for v in values)


FLOAT8 = {fmt.dtype: fmt for fmt in (
    Float8Format(torch.float8_e4m3fn, 3, 7, 0x7E, 0x7F, -1, True),
    Float8Format(torch.float8_e5m2, 2, 15, 0x7B, 0x7F, 0x7C, True),
    Float8Format(torch.float8_e4m3fnuz, 3, 8, 0x7F, 0x80, -1, False),
    Float8Format(torch.float8_e5m2fnuz, 2, 16, 0x7F, 0x80, -1, False))}


@functools.cache
def _overflow_code(dtype: torch.dtype) -> int:
    return int(torch.tensor([3.0e38]).to(dtype).view(torch.uint8)[0])


# bool buffers are bytes: g++ 12 does not vectorize a loop that loads a C++ bool into a select
# (an attention mask's where), and converts a loaded byte to bool in vector registers.
STORAGE_CTYPE = {
    torch.float32: "float", torch.float64: "double", torch.float16: "uint16_t",
    torch.bfloat16: "uint16_t", torch.int8: "int8_t", torch.uint8: "uint8_t",
    torch.int16: "int16_t", torch.int32: "int32_t", torch.int64: "int64_t", torch.bool: "uint8_t",
    **dict.fromkeys(FLOAT8, "uint8_t"),
}
TL_DTYPE = {
    torch.float32: "tl.float32", torch.float64: "tl.float64", torch.float16: "tl.float16",
    torch.bfloat16: "tl.bfloat16", torch.int8: "tl.int8", torch.uint8: "tl.uint8", torch.int16: "tl.int16",
    torch.int32: "tl.int32", torch.int64: "tl.int64", torch.bool: "tl.int1",
    **dict.fromkeys(FLOAT8, "tl.uint8"),   # a launch passes the tensor's bytes (TritonKernel.arg_views)
}
