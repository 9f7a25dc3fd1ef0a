"""The type each code generator stores a dtype as: C++ for the host, Triton for the rest.

Data, not code generation: the lowering needs the dtypes both generators handle
(``graph.GENERATED_DTYPES``) to send any other to ATen before codegen exists, and the two
``ops`` handlers render these names."""
from __future__ import annotations

import torch

# bool buffers are bytes: g++ 12 does not vectorize a loop that loads a C++ bool into a select
# (an attention mask's where), and converts a loaded byte to bool in vector registers.
STORAGE_CTYPE = {
    torch.float32: "float", torch.float64: "double", torch.float16: "uint16_t",
    torch.bfloat16: "uint16_t", torch.int8: "int8_t", torch.uint8: "uint8_t",
    torch.int16: "int16_t", torch.int32: "int32_t", torch.int64: "int64_t", torch.bool: "uint8_t",
}
TL_DTYPE = {
    torch.float32: "tl.float32", torch.float64: "tl.float64", torch.float16: "tl.float16",
    torch.bfloat16: "tl.bfloat16", torch.int8: "tl.int8", torch.uint8: "tl.uint8", torch.int16: "tl.int16",
    torch.int32: "tl.int32", torch.int64: "tl.int64", torch.bool: "tl.int1",
}
