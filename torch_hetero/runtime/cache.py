"""On-disk cache of built libraries, keyed by a hash of source, compiler and flags.

Each entry is a library ``<key>-<random>.so`` plus ``<key>.json`` naming it with its sha256
and size.  Both are written atomically (temp file + rename), the manifest last, and an entry
is loaded only if the library matches its manifest — a truncated or corrupt file is rebuilt,
never loaded.  Every build gets a fresh file name, because the dynamic loader hands back an
already-loaded library for a path it has seen, even if the file was replaced since.
An unwritable cache directory degrades to a per-process temporary one, with a warning."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import warnings


def cache_dir() -> str:
    configured = os.environ.get("TORCH_HETERO_CACHE_DIR")
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "torch_hetero")


def _folder(key: str) -> str:
    return os.path.join(cache_dir(), key[:2])


def lookup(key: str):
    """Path of a verified library for ``key``, or None."""
    for folder in [_folder(key), *_FALLBACK_DIRS]:
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


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def store(key: str, data: bytes) -> str:
    folder = _folder(key)
    try:
        return _write_entry(folder, key, data)
    except OSError as error:
        fallback = _fallback_dir()
        warnings.warn(f"torch_hetero: cache directory {cache_dir()!r} is not writable ({error}); "
                      f"building in {fallback!r} instead. Set TORCH_HETERO_CACHE_DIR to a writable path.")
        return _write_entry(fallback, key, data)


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


_FALLBACK_DIRS: list = []  # at most one, made on first need


def _fallback_dir() -> str:
    if not _FALLBACK_DIRS:
        _FALLBACK_DIRS.append(tempfile.mkdtemp(prefix="torch_hetero_cache_"))
    return _FALLBACK_DIRS[0]
