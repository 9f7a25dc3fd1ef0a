"""Exceptions and warnings raised to users."""
from __future__ import annotations

import re


class HeteroCompileError(RuntimeError):
    """A graph could not be compiled, or (strict mode) an op has no native lowering."""


class ProfileError(ValueError):
    """A device profile could not be found or is malformed; the message names the file and field."""


class PlanError(ValueError):
    """A deployment plan was asked with options it cannot meet (an empty sweep, world size 0,
    a cost objective without prices, more devices than the profile's links join); the message
    says what to give instead."""


class FallbackWarning(UserWarning):
    """An op has no native lowering on the profile and runs through ATen (once per op and profile)."""


class GraphFallbackWarning(UserWarning):
    """A whole graph could not be compiled and runs eagerly."""


def one_line(error: BaseException) -> str:
    """The cause of ``error`` in one line: its type and first line, and when that line only
    introduces a tool's output ("g++ failed to build generated code:"), the tool's first
    ``error:`` line, without the temporary directory it names."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    if lines and lines[0].endswith(":"):
        detail = next((line for line in lines[1:] if "error:" in line), lines[1] if len(lines) > 1 else "")
        text += " " + re.sub(r"^\S*/", "", detail)
    return text
