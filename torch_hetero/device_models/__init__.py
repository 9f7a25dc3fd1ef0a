"""Device profiles: what each target can do, as data (see profile.py for the fields).

``get_profile("h100")`` loads a shipped profile (``profiles/*.toml``), ``get_profile("cpu")``
describes this host, and ``get_profile("path/to/mine.toml")`` loads a user's file."""
from __future__ import annotations

import functools
import os

from ..errors import ProfileError
from .host import host_profile
from .loader import load_file, unreadable
from .profile import DeviceProfile
from .table import DeviceTable

HOST = "cpu"
PROFILES_DIR = os.path.join(os.path.dirname(__file__), "profiles")

__all__ = ["DeviceProfile", "DeviceTable", "HOST", "get_profile", "list_devices", "list_profiles"]


def list_profiles() -> list[str]:
    """Known profile names: the host first, then the shipped files in name order."""
    return [HOST, *_shipped()]


def get_profile(name_or_path: str | os.PathLike) -> DeviceProfile:
    """A profile by name, or by the path of a TOML file; ProfileError if unknown or malformed."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ProfileError(f"a device is a profile name or the path of a profile file, got {name_or_path!r}")
    name_or_path = os.fspath(name_or_path)
    if name_or_path == HOST:
        return host_profile()
    if name_or_path in _shipped():
        return _load_shipped(name_or_path)
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        try:
            mtime = os.stat(name_or_path).st_mtime_ns
        except FileNotFoundError:
            raise ProfileError(f"{name_or_path}: no such profile file; known profiles: "
                               f"{', '.join(list_profiles())}") from None
        except OSError as error:  # a parent that is a file, a directory we may not search, …
            raise unreadable(name_or_path, error) from None
        return _load_user(name_or_path, mtime)
    raise ProfileError(f"unknown device profile {name_or_path!r}; known profiles: {', '.join(list_profiles())}. "
                       "Set options={'device': ...} or TORCH_HETERO_DEVICE to one of them, "
                       "or to the path of a profile .toml file.")


def list_devices(include_host: bool = True) -> DeviceTable:
    """The known profiles, host first (its measured figures), then the shipped ones; they
    print as a table."""
    names = list_profiles() if include_host else list(_shipped())
    return DeviceTable(get_profile(name) for name in names)


@functools.cache
def _shipped() -> tuple[str, ...]:
    return tuple(sorted(f[:-len(".toml")] for f in os.listdir(PROFILES_DIR) if f.endswith(".toml")))


@functools.lru_cache(maxsize=None)
def _load_shipped(name: str) -> DeviceProfile:
    return load_file(os.path.join(PROFILES_DIR, f"{name}.toml"), f"{name}.toml")


@functools.lru_cache(maxsize=32)
def _load_user(path: str, mtime_ns: int) -> DeviceProfile:
    """Keyed by modification time too, so an edited file is read again."""
    return load_file(path, path)
