"""Exceptions raised to users."""


class HeteroCompileError(RuntimeError):
    """A graph could not be compiled (raised in strict mode, else reported as a warning)."""
