"""Number formats a model may be audited in, each a conversion of a copy of the model written
in plain torch (no quantization library needed), and the accuracy of a low-precision model's
outputs against the fp32 model's eager outputs.

- ``fp32``, ``bf16``, ``fp16``: every floating parameter, buffer and input in that dtype.
- ``int8wo``: bf16, with each linear layer's weight int8 and a bf16 scale per output channel
  (symmetric, absmax / 127), computed as ``(x @ w.t().to(x.dtype)) * scale + bias`` — what
  torchao's ``Int8WeightOnlyConfig`` traces to.
- ``fp8``: bf16, with each linear layer's weight in an e4m3 encoding and an fp32 scale per
  output channel, its input quantized per row on each call (absmax over the encoding's largest
  value, torchao's dynamic float8 recipe), multiplied by ``torch._scaled_mm`` into bf16.  The
  encoding is the device's (``fp8_encoding``: MI300X's units take e4m3fnuz, Hopper's e4m3fn),
  so a team's choice per device is what is audited.

A linear layer is an ``nn.Linear`` or a ``transformers`` ``Conv1D`` (GPT-2's, whose weight is
stored transposed) with an input dim a multiple of 16 (what ``_scaled_mm`` takes); others stay
in bf16."""
from __future__ import annotations

import copy
import dataclasses
from typing import Optional

import torch
from torch import nn
from torch.utils import _pytree as pytree

FLOAT_FORMATS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
QUANTIZED_FORMATS = ("int8wo", "fp8")
FORMATS = tuple(FLOAT_FORMATS) + QUANTIZED_FORMATS
# the names torch gives the float formats, which ``format_name`` also takes
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def fp8_encoding(profile) -> torch.dtype:
    """The e4m3 encoding a device's fp8 matrix units take (its ``Target.fp8_encodings``),
    else OCP's float8_e4m3fn (what a device without fp8 units is handed)."""
    names = [name for name in (profile.target.fp8_encodings if profile is not None else ()) if "e4m3" in name]
    return getattr(torch, names[0]) if names else torch.float8_e4m3fn


def format_name(value) -> str:
    """A format as given (a name, a torch name such as "bfloat16", or a ``torch.dtype``) → its
    name in ``FORMATS``; an unknown one is a ValueError naming the choices."""
    name = str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else str(value)
    name = _ALIASES.get(name, name)
    if name not in FORMATS:
        raise ValueError(f"unknown format {value!r}: choose from {', '.join(FORMATS)}")
    return name


def convert(model, inputs: tuple, fmt: str, fp8: torch.dtype = torch.float8_e4m3fn):
    """(a copy of ``model`` in format ``fmt``, ``inputs`` with their floating tensors in the
    format's activation dtype); ``fp8``: the encoding of the ``fp8`` format.  ``model`` may be a
    module or a function (a function's inputs are converted, nothing else)."""
    fmt = format_name(fmt)
    dtype = FLOAT_FORMATS.get(fmt, torch.bfloat16)
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model).to(dtype)
        if fmt == "int8wo":
            _replace_linears(model, Int8WeightOnlyLinear)
        elif fmt == "fp8":
            _replace_linears(model, lambda weight, bias: Float8DynamicLinear(weight, bias, fp8))
    return model, tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs)


def _replace_linears(module: nn.Module, quantized) -> None:
    for name, child in module.named_children():
        weight = _linear_weight(child)
        if weight is not None and weight.shape[1] % 16 == 0:
            setattr(module, name, quantized(weight.detach(), None if child.bias is None else child.bias.detach()))
        else:
            _replace_linears(child, quantized)


def _linear_weight(module: nn.Module):
    """The [out, in] weight of a linear layer (``nn.Linear``, ``transformers``' ``Conv1D``), or None."""
    if isinstance(module, nn.Linear):
        return module.weight
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):   # transformers.pytorch_utils.Conv1D
        return module.weight.t()
    return None


class Int8WeightOnlyLinear(nn.Module):
    """A linear layer with an int8 weight and a scale per output channel."""

    def __init__(self, weight: torch.Tensor, bias):
        super().__init__()
        scale = weight.float().abs().amax(1).clamp(min=1e-12) / 127
        self.register_buffer("weight", (weight.float() / scale[:, None]).round().clamp(-128, 127).to(torch.int8)
                             .contiguous())   # [out, in] row-major, as torchao keeps it (a Conv1D's is transposed)
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.to(torch.bfloat16))

    def forward(self, x):
        out = (x @ self.weight.t().to(x.dtype)) * self.scale
        return out if self.bias is None else out + self.bias


class Float8DynamicLinear(nn.Module):
    """A linear layer with an fp8 weight (``encoding``) and a scale per output channel, its
    input quantized per row on each call."""

    def __init__(self, weight: torch.Tensor, bias, encoding: torch.dtype = torch.float8_e4m3fn):
        super().__init__()
        self.largest = torch.finfo(encoding).max
        scale = weight.float().abs().amax(1).clamp(min=1e-12) / self.largest
        self.register_buffer("weight", (weight.float() / scale[:, None]).to(encoding).contiguous())
        self.register_buffer("scale", scale[None, :].contiguous())
        self.register_buffer("bias", None if bias is None else bias.to(torch.bfloat16))

    def forward(self, x):
        rows = x.reshape(-1, x.shape[-1])
        scale = rows.float().abs().amax(-1, keepdim=True).clamp(min=1e-12) / self.largest
        quantized = (rows.float() / scale).clamp(-self.largest, self.largest).to(self.weight.dtype)
        out = torch._scaled_mm(quantized, self.weight.t(), scale_a=scale, scale_b=self.scale, bias=self.bias,
                               out_dtype=x.dtype)
        return out.reshape(*x.shape[:-1], out.shape[-1])


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """Outputs against a reference's, over all their floating elements: ``max_rel`` is the
    largest absolute error over the largest reference magnitude, ``mean_rel`` the mean absolute
    error over the mean reference magnitude."""
    max_rel: float
    mean_rel: float


def accuracy(outputs, reference) -> Optional[Accuracy]:
    """``outputs`` (any nesting of tensors, a ``transformers`` output included) against
    ``reference``, in float64; None where they hold no floating element (an empty batch)."""
    got, want = _floating_leaves(outputs), _floating_leaves(reference)
    if len(got) != len(want) or any(a.shape != b.shape for a, b in zip(got, want)):
        raise ValueError("the outputs and the reference differ in structure: "
                         f"{[tuple(t.shape) for t in got]} vs {[tuple(t.shape) for t in want]}")
    if not sum(t.numel() for t in want):
        return None
    errors = torch.cat([(a.double() - b.double()).abs().flatten() for a, b in zip(got, want)])
    magnitudes = torch.cat([b.double().abs().flatten() for b in want])
    return Accuracy(float(errors.max() / magnitudes.max().clamp(min=1e-300)),
                    float(errors.mean() / magnitudes.mean().clamp(min=1e-300)))


def _floating_leaves(tree) -> list:
    if hasattr(tree, "to_tuple"):   # a transformers ModelOutput: its fields that are set
        tree = tree.to_tuple()
    return [t for t in pytree.tree_leaves(tree) if isinstance(t, torch.Tensor) and t.is_floating_point()]
