"""Compile options: ``torch.compile(..., options={...})`` over environment variables.

The device profile is chosen by ``options["device"]`` > ``TORCH_HETERO_DEVICE`` > the visible
GPU if a profile matches its name > the host CPU."""
from __future__ import annotations

import dataclasses
import os

import torch

from .device_models import HOST, DeviceProfile, get_profile
from .errors import HeteroCompileError, ProfileError

# auto: Triton on a visible GPU when the inputs are there, else generated C++ on the host;
# native: Triton on the GPU (an error without one); interpret: Triton's CPU interpreter; host: C++
EXECUTORS = ("auto", "native", "interpret", "host")
KNOWN_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AUTOTUNE_MODES = ("max-autotune", "max-autotune-no-cudagraphs")  # what turns ``autotune`` on
GPU_PROFILES = (("H100", "h100"), ("H200", "h200"), ("A100", "a100"), ("MI300", "mi300x"))  # name part → profile


@dataclasses.dataclass(frozen=True)
class Options:
    device: str = HOST  # a profile name or the path of a profile file
    strict: bool = False
    fusion: bool = True  # False: one kernel per realized node (to debug, or to measure what fusion buys)
    executor: str = "auto"  # what runs the kernels of a Triton-target profile: see EXECUTORS
    aot_cache: bool = True  # warm compiles load our graphs from AOTAutograd's cache (see aot_cache.py)
    autotune: bool = False  # time each GEMM's candidates on a visible GPU (runtime/autotune.py); mode="max-autotune"
    freeze: bool = False    # inference graphs: parameters and buffers as constants (lowering/freezing.py)

    @property
    def profile(self) -> DeviceProfile:
        """The device's profile, loaded on first use (the host's is calibrated once, then cached)."""
        return get_profile(self.device)


def resolve(options: dict | None = None, mode: str | None = None) -> Options:
    options = dict(options or {})
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Options)})
    if unknown:
        raise HeteroCompileError(f"unknown torch_hetero option(s) {unknown}; valid options: "
                                 f"{[f.name for f in dataclasses.fields(Options)]}")
    if mode not in KNOWN_MODES:
        raise HeteroCompileError(f"unknown mode {mode!r}; torch_hetero accepts {KNOWN_MODES[1:]} "
                                 "(the max-autotune modes time GEMM candidates on a visible GPU; the others "
                                 "compile alike)")
    device = options.get("device") or os.environ.get("TORCH_HETERO_DEVICE") or auto_device()
    if device != HOST:  # the host profile is checked when first used: it runs a calibration
        try:
            get_profile(device)
        except ProfileError as error:
            raise HeteroCompileError(str(error)) from error
        device = os.fspath(device)
    executor = options.get("executor") or os.environ.get("TORCH_HETERO_EXEC") or "auto"
    if executor not in EXECUTORS:
        raise HeteroCompileError(f"unknown executor {executor!r} (option 'executor' / TORCH_HETERO_EXEC); "
                                 f"choose one of {list(EXECUTORS)}")
    return Options(device=device, strict=_flag(options, "strict", "TORCH_HETERO_STRICT", False),
                   fusion=_flag(options, "fusion", "TORCH_HETERO_FUSION", True), executor=executor,
                   aot_cache=_flag(options, "aot_cache", "TORCH_HETERO_AOT_CACHE", True),
                   autotune=_flag(options, "autotune", "TORCH_HETERO_AUTOTUNE", mode in AUTOTUNE_MODES),
                   freeze=_flag(options, "freeze", "TORCH_HETERO_FREEZE", False))


TRUE_WORDS, FALSE_WORDS = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


def _flag(options: dict, key: str, variable: str, default: bool) -> bool:
    """Option ``key`` if given, else environment variable ``variable``, else ``default``."""
    value = options.get(key)
    if value is not None:
        return value if isinstance(value, bool) else parse_bool(value, f"option {key!r}")
    text = os.environ.get(variable)
    return default if text is None else parse_bool(text, variable)


def parse_bool(value, name: str) -> bool:
    """A boolean as PyTorch's own environment flags spell it (any case): 1/true/on/yes or
    0/false/off/no.  Anything else raises, naming ``name``: a typo must not flip a switch."""
    word = value.strip().lower() if isinstance(value, str) else None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise HeteroCompileError(f"{name}={value!r} is not a boolean; use one of {'/'.join(TRUE_WORDS)} "
                             f"or {'/'.join(FALSE_WORDS)} (any case)")


def auto_device() -> str:
    """The profile of the visible CUDA/ROCm GPU when one matches by name, else the host."""
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
        for part, name in GPU_PROFILES:
            if part in gpu:
                return name
    return HOST
