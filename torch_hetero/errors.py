"""Exceptions raised to users."""


class HeteroCompileError(RuntimeError):
    """A graph could not be compiled (raised in strict mode, else reported as a warning)."""


class ProfileError(ValueError):
    """A device profile could not be found or is malformed; the message names the file and field."""
