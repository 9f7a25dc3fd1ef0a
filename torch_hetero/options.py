"""Compile options: ``torch.compile(..., options={...})`` over environment variables."""
from __future__ import annotations

import dataclasses
import os

from .errors import HeteroCompileError

KNOWN_DEVICES = ("cpu",)
KNOWN_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclasses.dataclass(frozen=True)
class Options:
    device: str = "cpu"
    strict: bool = False


def resolve(options: dict | None = None, mode: str | None = None) -> Options:
    options = dict(options or {})
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Options)})
    if unknown:
        raise HeteroCompileError(f"unknown torch_hetero option(s) {unknown}; valid options: "
                                 f"{[f.name for f in dataclasses.fields(Options)]}")
    if mode not in KNOWN_MODES:
        raise HeteroCompileError(f"unknown mode {mode!r}; torch_hetero accepts {KNOWN_MODES[1:]} "
                                 "(all compile the same way today)")
    device = options.get("device") or os.environ.get("TORCH_HETERO_DEVICE") or "cpu"
    if device not in KNOWN_DEVICES:
        raise HeteroCompileError(f"unknown device profile {device!r}; known profiles: {', '.join(KNOWN_DEVICES)}. "
                                 "Set options={'device': ...} or TORCH_HETERO_DEVICE to one of them.")
    strict = options.get("strict")
    if strict is None:
        strict = os.environ.get("TORCH_HETERO_STRICT", "0") not in ("", "0", "false", "False")
    return Options(device=device, strict=bool(strict))
