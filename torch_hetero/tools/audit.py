"""The portability audit: one model compiled for several device profiles, without their
hardware, and compared.  Per device: the kernels generated (what each fused, its tiling and
why), the portability debt (ATen ops with no native kernel there, by op and layer), the dtype
debt (formats its matrix units lack), the cost model's latency and energy, whether weights and
activations fit its memory, the accuracy of the compiled model's outputs against the fp32
model's in eager, and, for a profile with a real Triton target, whether every kernel compiles
for it ahead of time.

``audit(model, *inputs, devices=[...], dtype=...)`` returns an ``Audit`` of the model in one
number format (``formats.py``); ``audit_formats(..., formats=[...])`` one per format, compared
in one table (``FormatAudit``).  ``python -m torch_hetero audit MODULE:FACTORY`` prints either
summary and writes the report files (``audit_report.py``)."""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
import time
import warnings
from typing import Optional

import torch

from ..device_models import get_profile, list_profiles
from ..errors import FallbackWarning, GraphFallbackWarning, ProfileError
from ..planning.cost_model import dtype_name
from ..runtime import triton_run
from .formats import Accuracy, accuracy, convert, format_name, fp8_encoding
from .report import Report, graph_prefixes, report_of, run_compiled


@dataclasses.dataclass
class Debt:
    """An ATen op with no native kernel on the device: it runs through ATen, off the target."""
    op: str                        # "aten.sort"
    calls: int
    layers: list                   # the modules its calls came from, in order ("" for the top level)


@dataclasses.dataclass
class AheadOfTime:
    """The device's Triton kernels compiled for its real target (no GPU needed)."""
    target: str                    # "cuda:90", "hip:gfx942"
    resources: dict                # kernel → its triton_run.KernelResources, for each that compiled
    errors: dict                   # kernel → why it did not compile
    limit_bytes: int               # shared memory (local SRAM) per unit on the profile

    def problems(self, kernel: str) -> list:
        """Why a built kernel would not run well: registers over the ISA's limit, spills, shared
        memory over the profile's."""
        return self.resources[kernel].problems(self.limit_bytes)

    @property
    def ok(self) -> bool:
        return not self.errors and not any(self.problems(k) for k in self.resources)


@dataclasses.dataclass
class DeviceAudit:
    device: str                    # the profile's name, or the device as given if it could not be loaded
    description: str = ""
    codegen: str = ""              # "triton" or "cpp"
    triton_target: Optional[str] = None
    assumed: tuple = ()            # profile fields that are estimates, not published figures
    tdp_w: float = 0.0
    capacity_bytes: int = 0        # off-chip memory
    on_chip_bytes: int = 0         # the largest on-chip memory: last-level cache or SRAM (MTIA's 128-256 MiB)
    report: Optional[Report] = None
    debt: list = dataclasses.field(default_factory=list)
    peak_activation_bytes: int = 0  # intermediates and outputs live at once, at the largest graph's peak
    aot: Optional[AheadOfTime] = None
    compile_s: float = 0.0         # compiling (and running once on this host) for the device
    error: Optional[str] = None    # why the device could not be audited
    file: Optional[str] = None     # the user's profile file it was read from (None: shipped, or the host)
    accuracy: Optional[Accuracy] = None  # its outputs (run here) against the fp32 model's in eager

    @property
    def label(self) -> str:
        """How the report names the device: a user profile with its file, since several files
        may share a name."""
        return f"{self.device} ({self.file})" if self.file else self.device

    @property
    def latency_us(self) -> Optional[float]:
        return self.report.estimate_us if self.report is not None else None

    @property
    def energy_uj(self) -> Optional[float]:
        """Estimated energy per call at the profile's TDP (an upper bound on power)."""
        return self.latency_us * self.tdp_w if self.latency_us is not None else None


@dataclasses.dataclass
class Audit:
    model: str                     # the model's class name
    dtype: str                     # its floating dtype ("fp32", "bf16"): which matrix peak applies
    parameters: int
    weight_bytes: int              # parameters and buffers, each storage once
    input_bytes: int
    inputs: list                   # "int64[2, 128]" per tensor input
    batch: int                     # the first input's leading dim: samples per call
    devices: list                  # DeviceAudit, in the order asked for
    format: str = ""               # the number format it was converted to (``formats.FORMATS``; "": as given)
    embedding_bytes: int = 0       # the embedding tables (nn.Embedding, nn.EmbeddingBag): a recommender's weights

    def need_bytes(self, device: DeviceAudit) -> int:
        return self.weight_bytes + self.input_bytes + device.peak_activation_bytes

    def fits(self, device: DeviceAudit) -> bool:
        return self.need_bytes(device) <= device.capacity_bytes

    def tables_fit(self, device: DeviceAudit) -> str:
        """Where the embedding tables can live: "on chip" (within the device's largest on-chip
        memory, what an MTIA's SRAM is sized for), "off chip" or "no"."""
        if self.embedding_bytes <= device.on_chip_bytes:
            return "on chip"
        return "off chip" if self.fits(device) else "no"

    def samples_per_joule(self, device: DeviceAudit) -> Optional[float]:
        """Throughput per watt: (samples / s) / W at the estimated latency and TDP."""
        energy = device.energy_uj
        return self.batch / (energy * 1e-6) if energy else None

    def __str__(self) -> str:
        from .audit_report import summary_text
        return summary_text(self)

    def write(self, directory: str) -> dict:
        """Writes audit.md, audit.json and roofline.png into ``directory``: kind → path."""
        from .audit_report import write_files
        return write_files(self, directory)


def audit(model, *inputs, devices=None, dtype=None, ahead_of_time: bool = True, progress: bool = True) -> Audit:
    """Compile ``model`` (a module or function) for each of ``devices`` (a profile name or
    file, or a list of them; default: the host and every shipped profile), run it once here
    on ``inputs`` in inference mode, and collect what each device would run.  ``dtype`` (a
    ``torch.dtype`` or a format of ``formats.FORMATS``: "bf16", "int8wo", "fp8") converts a copy
    of the model and its inputs first (fp8 in each device's own e4m3 encoding,
    ``formats.fp8_encoding``).  Each device's outputs are compared with the fp32 model's in eager.  A device that fails is reported with its error; the others still run.
    ``progress`` prints a line per stage."""
    devices = _device_list(devices)
    fmt = format_name(dtype) if dtype is not None else ""
    reference = _fp32_eager(model, inputs)
    is_module = isinstance(model, torch.nn.Module)
    count = sum(p.numel() for p in model.parameters()) if is_module else 0   # before quantization makes buffers of them
    encodings = {device: fp8_encoding(_profile_or_none(device)) if fmt == "fp8" else torch.float8_e4m3fn
                 for device in devices}
    converted = {e: convert(model, inputs, fmt, e) for e in dict.fromkeys(encodings.values())} if fmt else {}
    if fmt:
        model, inputs = next(iter(converted.values()))
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    parameters = list(model.parameters()) if is_module else []
    floating = [t.dtype for t in parameters + tensors if t.is_floating_point()]
    result = Audit(model=type(model).__name__ if is_module else getattr(model, "__name__", "fn"),
                   dtype=dtype_name(floating[0] if floating else torch.float32),
                   parameters=count,
                   weight_bytes=sum(s.nbytes() for s in _unique_storages(model)) if is_module else 0,
                   input_bytes=sum(t.untyped_storage().nbytes() for t in tensors),
                   inputs=[f"{str(t.dtype).replace('torch.', '')}{list(t.shape)}" for t in tensors],
                   batch=int(tensors[0].shape[0]) if tensors and tensors[0].dim() else 1, devices=[], format=fmt,
                   embedding_bytes=_embedding_bytes(model) if is_module else 0)
    for position, device in enumerate(devices, 1):
        say = _progress(f"[{position}/{len(devices)}]{' ' + fmt if fmt else ''} {device}", progress)
        mine = converted[encodings[device]] if fmt else (model, inputs)
        result.devices.append(_audit_device(*mine, device, ahead_of_time, say, reference))
    return result


def _profile_or_none(device):
    """The device's profile, or None where it does not load (``_audit_device`` reports why)."""
    try:
        return get_profile(device)
    except ProfileError:
        return None


@dataclasses.dataclass
class FormatAudit:
    """One model audited in several number formats on the same devices (``audit_formats``)."""
    audits: list                   # Audit per format, in the order asked for

    def __str__(self) -> str:
        from .audit_report import formats_text
        return formats_text(self)

    def write(self, directory: str) -> dict:
        """Writes formats.md, formats.json, formats.png and each format's audit files (in a
        directory named after it) into ``directory``: kind → path."""
        from .audit_report import write_format_files
        return write_format_files(self, directory)


def audit_formats(model, *inputs, devices=None, formats=("fp32", "bf16", "fp8", "int8wo"), ahead_of_time: bool = True,
                  progress: bool = True) -> FormatAudit:
    """``audit`` of ``model`` in each of ``formats`` (``formats.FORMATS``) on ``devices``: the
    latency, memory need, portability and dtype debt and accuracy per format and device."""
    names = [format_name(f) for f in ([formats] if isinstance(formats, str) else formats)]
    if not names:
        raise ValueError("formats is empty: give one or more of fp32, bf16, fp16, fp8, int8wo")
    return FormatAudit([audit(model, *inputs, devices=devices, dtype=name, ahead_of_time=ahead_of_time,
                              progress=progress) for name in names])


def _fp32_eager(model, inputs: tuple):
    """What the fp32 model returns in eager on ``inputs``: every audit's reference."""
    model, inputs = convert(model, inputs, "fp32")
    with torch.no_grad():
        return model(*inputs)


def _device_list(devices) -> list:
    """``audit``'s ``devices`` as a list: None is every profile, one name or file is itself.
    An empty list is an error rather than every profile: it asks for no device."""
    if devices is None:
        return list_profiles()
    if isinstance(devices, (str, os.PathLike)):
        return [devices]
    try:
        devices = list(devices)
    except TypeError:
        raise TypeError(f"devices must be a profile name or .toml file, or a list of them, got {devices!r}") from None
    if not devices:
        raise ValueError("devices is empty: give profile names or .toml files (python -m torch_hetero devices "
                         "lists them), or leave devices out to audit every profile")
    return devices


def load_factory(spec: str):
    """``MODULE:FACTORY`` (a dotted module on the path, or a ``.py`` file) → the model and its
    example inputs, from calling FACTORY with no arguments.  It may return ``(model, inputs)``
    (inputs a tuple, or one tensor) or an object with ``.model`` and ``.inputs`` (a ZooModel)."""
    return factory_output(find_factory(spec)(), spec)


def find_factory(spec: str):
    """The function ``MODULE:FACTORY`` names, not called (the planner calls it per sweep point)."""
    module_name, sep, factory_name = spec.rpartition(":")
    if not sep or not module_name or not factory_name:
        raise ValueError(f"expected MODULE:FACTORY (e.g. mypackage.models:make_model or models.py:make_model), "
                         f"got {spec!r}")
    try:
        if module_name.endswith(".py"):
            if not os.path.exists(module_name):
                raise ImportError(f"no such file {module_name}")
            found = importlib.util.spec_from_file_location(os.path.basename(module_name)[:-3], module_name)
            module = importlib.util.module_from_spec(found)
            found.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r} ({error}); give a module on the Python path "
                         "(run from the directory that holds it) or the path of a .py file") from error
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"{module_name} has no function {factory_name!r}")
    return factory


def factory_output(made, spec: str) -> tuple:
    """(model, inputs tuple) from what a factory returned, or a ValueError naming ``spec``."""
    if hasattr(made, "model") and hasattr(made, "inputs"):
        made = (made.model, made.inputs)
    if not (isinstance(made, (tuple, list)) and len(made) == 2 and callable(made[0])):
        raise ValueError(f"{spec} returned {type(made).__name__}; a factory returns (model, example_inputs)")
    model, inputs = made
    return model, tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _audit_device(model, inputs, device, ahead_of_time: bool, say, reference) -> DeviceAudit:
    try:
        profile = get_profile(device)
    except ProfileError as error:  # it names the file or name, and the fix
        say(f"error: {error}")
        return DeviceAudit(str(device), error=str(error))
    entry = DeviceAudit(profile.name, profile.description, profile.codegen, profile.triton_target,
                        tuple(profile.assumed), profile.tdp_w, profile.dram_bytes, profile.llc_bytes,
                        file=None if os.fspath(device) in list_profiles() else os.fspath(device))
    say("compiling, running once on this host")
    start = time.perf_counter()
    try:
        torch._dynamo.reset()  # each device compiles afresh (and Dynamo's recompile limit stays clear)
        # not strict: per-op fallbacks are the device's debt, a graph that ran eagerly its error;
        # both are in the audit, so their warnings are not repeated
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FallbackWarning)
            warnings.simplefilter("ignore", GraphFallbackWarning)
            graphs, output = run_compiled(model, inputs, {}, {"device": device, "strict": False})
    except Exception as error:  # one device's failure is its result; the others go on
        entry.error = _first_lines(error)
        say(f"error: {entry.error.splitlines()[0]}")
        return entry
    finally:
        torch._dynamo.reset()
    entry.compile_s = time.perf_counter() - start
    report = report_of(graphs, profile.name)
    if report.eager:  # what the device would run is not known: an error row, with the ops it held
        entry.error = "\n".join(f"the {g.name} graph ran eagerly: {g.cause}\n  its ATen ops: "
                                + ", ".join(f"{op} x{n}" for op, n in sorted(g.aten_ops.items()))
                                for g in report.eager)
        say(f"error: {entry.error.splitlines()[0]}")
        return entry
    entry.report = report
    entry.accuracy = accuracy(output, reference)
    entry.debt = _debt(entry.report)
    entry.peak_activation_bytes = max((graph.plan.peak_bytes or 0 for _, graph, _ in graphs), default=0)
    say(f"{len(entry.report.kernels)} kernel(s), {len(entry.debt)} op(s) of debt, {entry.compile_s:.1f} s")
    if ahead_of_time and profile.triton_target and any(graph.plan.kernels for _, graph, _ in graphs):
        count = sum(len(graph.plan.kernels) for _, graph, _ in graphs)
        say(f"compiling {count} Triton kernel(s) ahead of time for {profile.triton_target}")
        entry.aot = _compile_ahead(graphs, profile)
    return entry


def _debt(report: Report) -> list:
    """The report's fallback calls grouped by op, most calls first."""
    by_op: dict = {}
    for call in report.fallback_calls:
        debt = by_op.setdefault(call.op, Debt(call.op, 0, []))
        debt.calls += 1
        if call.layer not in debt.layers:
            debt.layers.append(call.layer)
    return sorted(by_op.values(), key=lambda d: (-d.calls, d.op))


def _compile_ahead(graphs: list, profile) -> AheadOfTime:
    """Every Triton kernel of ``graphs`` compiled for the profile's target, one at a time, so
    that one kernel's failure is reported without hiding the others'."""
    result = AheadOfTime(profile.triton_target, {}, {}, profile.local_sram_bytes)
    for prefix, (kind, graph, _) in zip(graph_prefixes(graphs), graphs):
        kernels = graph.rendered[profile.target.language]   # the target's code, whatever ran here
        if not kernels:
            continue
        try:
            module = triton_run.load_module(graph.code[f"{kind}.triton.py"], interpret=False)
        except Exception as error:  # no triton, or a module that does not import
            result.errors.update((f"{prefix}.{k.name}", _first_lines(error)) for k in kernels)
            continue
        for triton in kernels:
            name = f"{prefix}.{triton.name}"
            try:
                compiled = triton_run.aot_compile(getattr(module, triton.name), triton.signature,
                                                  triton.constexprs, profile.triton_target, triton.launch_options)
                result.resources[name] = triton_run.kernel_resources(compiled, profile.triton_target)
            except Exception as error:
                result.errors[name] = _first_lines(error)
    return result


def _embedding_bytes(model: torch.nn.Module) -> int:
    tables = {m.weight.untyped_storage().data_ptr(): m.weight.untyped_storage().nbytes() for m in model.modules()
              if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))}
    return sum(tables.values())


def _unique_storages(model: torch.nn.Module) -> list:
    seen, storages = set(), []
    for tensor in list(model.parameters()) + list(model.buffers()):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            storages.append(storage)
    return storages


def _first_lines(error: Exception, lines: int = 4) -> str:
    """The error that stopped a device, without Dynamo's wrapper around backend errors."""
    error = getattr(error, "inner_exception", None) or error  # BackendCompilerFailed
    text = f"{type(error).__name__}: {error}"
    return "\n".join(text.strip().splitlines()[:lines])


def _progress(label: str, on: bool):
    def say(message: str) -> None:
        if on:
            print(f"audit {label}: {message}", file=sys.stderr, flush=True)
    return say
