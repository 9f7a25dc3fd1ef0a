"""On-disk cache of built libraries, keyed by a hash of source, compiler and flags.

Each entry is a library ``<key>-<random>.so`` plus ``<key>.json`` naming it with its sha256
and size.  Both are written atomically (temp file + rename), the manifest last, and an entry
is loaded only if the library matches its manifest — a truncated or corrupt file is rebuilt,
never loaded.  Every build gets a fresh file name, because the dynamic loader hands back an
already-loaded library for a path it has seen, even if the file was replaced since.
A build holds a per-key lock (``<key>.lock``), so that a second process building the same key
waits and loads the first one's entry instead of compiling it again.  An unwritable cache
directory degrades, with a warning, to one fallback directory per user under the system's
temporary directory, which every process reuses."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import stat
import tempfile
import warnings

from ..errors import HeteroCompileError


def cache_dir() -> str:
    configured = os.environ.get("TORCH_HETERO_CACHE_DIR")
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "torch_hetero")


def _folder(key: str, root: str | None = None) -> str:
    return os.path.join(root or cache_dir(), key[:2])


def load_or_build(key: str, build) -> str:
    """Path of a verified library for ``key``; if there is none, ``build()``'s bytes stored
    under the key's lock (a process that waited on it loads what the holder stored)."""
    path = lookup(key)
    if path is not None:
        return path
    with file_lock(_lock_path(key)):
        return lookup(key) or store(key, build())


def lookup(key: str):
    """Path of a verified library for ``key``, or None."""
    folders, fallback = [_folder(key)], _fallback_path()
    if os.path.isdir(fallback) and not _not_private(fallback):
        folders.append(_folder(key, fallback))
    for folder in folders:
        try:
            with open(os.path.join(folder, f"{key}.json")) as f:
                expected = json.load(f)
            lib = os.path.join(folder, os.path.basename(str(expected["file"])))
            with open(lib, "rb") as f:
                data = f.read()
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if len(data) == expected.get("size") and hashlib.sha256(data).hexdigest() == expected.get("sha256"):
            return lib
        _remove_quietly(lib)  # corrupt: it will be rebuilt under a new name
    return None


@contextlib.contextmanager
def file_lock(path: str):
    """Holds an exclusive ``flock`` on ``path`` (created if missing) while the block runs:
    another process taking it waits.  The system releases it if the holder dies."""
    with open(path, "a") as f:  # "a": created if missing, never truncated
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _lock_path(key: str) -> str:
    """``<key>.lock`` beside the entry, or in the fallback directory if the cache directory
    cannot hold it.  Lock files stay (empty): removing one while another process waits on it
    would let a third take a different lock."""
    try:
        return _touch(os.path.join(_folder(key), f"{key}.lock"))
    except OSError:
        return _touch(os.path.join(_folder(key, fallback_dir()), f"{key}.lock"))


def _touch(path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "a").close()
    return path


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def store(key: str, data: bytes) -> str:
    try:
        return _write_entry(_folder(key), key, data)
    except OSError as error:
        fallback = fallback_dir()
        warnings.warn(f"torch_hetero: cache directory {cache_dir()!r} is not writable ({error}); "
                      f"using the per-user fallback {fallback!r} instead. Set TORCH_HETERO_CACHE_DIR "
                      "to a writable directory.")
        return _write_entry(_folder(key, fallback), key, data)


def _write_entry(folder: str, key: str, data: bytes) -> str:
    os.makedirs(folder, exist_ok=True)
    name = f"{key}-{secrets.token_hex(4)}.so"
    lib = os.path.join(folder, name)
    atomic_write(lib, data)
    manifest = json.dumps({"file": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}).encode()
    atomic_write(os.path.join(folder, f"{key}.json"), manifest)
    return lib


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers see the old
    file or the new one, never a partial one."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp_")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fallback_path() -> str:
    return os.path.join(tempfile.gettempdir(), f"torch_hetero-{os.getuid()}")


def fallback_dir() -> str:
    """The cache used when the configured one is not writable: one per user, so that processes
    share its entries and do not leave a directory each behind.  Made private (0700); one that
    another user owns, or that others may write to, is refused: we would load libraries from it."""
    path = _fallback_path()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        raise HeteroCompileError(f"torch_hetero: cannot create the fallback cache directory {path!r} ({error}). "
                                 "Set TORCH_HETERO_CACHE_DIR to a writable directory.") from error
    problem = _not_private(path)
    if problem:
        raise HeteroCompileError(f"torch_hetero: refusing the fallback cache directory {path!r}: {problem}. "
                                 "Remove it, or set TORCH_HETERO_CACHE_DIR to a writable directory.")
    return path


def _not_private(path: str) -> str:
    """Why ``path`` is not a directory that only this user can write to ('' if it is)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != os.getuid():
        return f"it is owned by uid {info.st_uid}, not by this user (uid {os.getuid()})"
    if info.st_mode & 0o022:
        return f"others may write to it (mode {stat.filemode(info.st_mode)})"
    return ""
