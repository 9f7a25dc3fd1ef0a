"""Profile files: the TOML layout, its units, and the checks that turn a file into a DeviceProfile.

Files use human units in their key names (``memory.dram_gib``, ``memory.dram_gbps``,
``compute.peak_tflops_matrix``); this module converts them to the DeviceProfile's fields.
Every error names the file, the key and the expected type and unit, because profile files are
written by hand: a file that cannot be read or parsed is a ProfileError too, never a bare
OSError or UnicodeDecodeError.  The host profile is built as the same nested table and checked
here too."""
from __future__ import annotations

import dataclasses
import math
import re

from ..errors import ProfileError
from .matmul_tiles import STAGES, VECTOR_MATMUL_TILE, WIDEST_ELEMENT_BYTES, smallest_staged_bytes, smallest_tile
from .host_ops import INFINITE_PRICED, SCALAR_PRICED, VECTOR_PRICED
from .interconnect import TOPOLOGIES, Interconnect
from .profile import DeviceProfile
from .target import DECLARABLE, LANGUAGES, LIBRARIES, make_target

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}  # the profile's dtype names
DTYPES = tuple(DTYPE_BYTES)
# the fp8 encodings a profile's matrix units may take: OCP's (NVIDIA Hopper/Blackwell, AMD
# CDNA4) and AMD CDNA3's "fnuz" variants (torch dtype names)
FP8_ENCODINGS = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
FIELDS = tuple(f.name for f in dataclasses.fields(DeviceProfile))
LINK_FIELDS = tuple(f.name for f in dataclasses.fields(Interconnect))
_TARGET = re.compile(r"cuda:\d+|hip:gfx[0-9a-f]+")


class _Bad(Exception):
    """A value failed its check; the schema entry says what was expected."""


def _require(ok: bool) -> None:
    if not ok:
        raise _Bad


def _text(value):
    _require(isinstance(value, str) and bool(value.strip()))
    return value


def _choice(*allowed):
    def check(value):
        _require(value in allowed)
        return value
    return check


def _target(value):
    _require(isinstance(value, str) and bool(_TARGET.fullmatch(value)))
    return value


def _texts(value):
    _require(isinstance(value, list) and all(isinstance(v, str) and v for v in value))
    return tuple(value)


def _encodings(value):
    _require(set(_texts(value)) <= set(FP8_ENCODINGS) and len(set(value)) == len(value))
    return tuple(sorted(value))


def _field_names(value):
    _require(set(_texts(value)) <= set(FIELDS) | {f"interconnect.{name}" for name in LINK_FIELDS})
    return tuple(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value):
    _require(_is_int(value) and value > 0)
    return value


def _number(value):
    _require((_is_int(value) or isinstance(value, float)) and math.isfinite(value) and value > 0)
    return float(value)


def _fraction(value):
    _require(_number(value) <= 1)
    return float(value)


def _bytes(scale: int):
    def check(value):
        scaled = _number(value) * scale
        _require(math.isfinite(scaled))  # 1e308 GiB overflows
        return round(scaled)
    return check


def _shape(value):
    _require(isinstance(value, list) and len(value) == 3 and all(_is_int(v) and v > 0 for v in value))
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class _PerDtype:
    """A table dtype = value, each entry checked by ``check``."""
    check: object


@dataclasses.dataclass(frozen=True)
class _Capabilities:
    """The [capabilities] table: flags (true/false) and vendor library lists (``target.DECLARABLE``)."""


def _flag(value):
    _require(isinstance(value, bool))
    return value


@dataclasses.dataclass(frozen=True)
class _PerOp:
    """A table op = value (``host_ops`` names), each entry checked by ``check``."""
    check: object


def _time(value):
    _require((_is_int(value) or isinstance(value, float)) and math.isfinite(value) and value >= 0)
    return float(value)


_REQUIRED = object()
# TOML key → (DeviceProfile field, check, what the check expects, default when absent)
SCHEMA = {
    "name": ("name", _text, "a non-empty string", _REQUIRED),
    "description": ("description", _text, "a non-empty string", _REQUIRED),
    "codegen": ("codegen", _choice(*LANGUAGES), " or ".join(f'"{name}"' for name in LANGUAGES), _REQUIRED),
    "triton_target": ("triton_target", _target,
                      'a Triton target such as "cuda:90" or "hip:gfx942" (leave the key out if none)', None),
    "sources": ("sources", _texts, "a list of strings", _REQUIRED),
    "assumed": ("assumed", _field_names, f"a list of DeviceProfile field names ({', '.join(FIELDS)}) or "
                f"interconnect.<key> ({', '.join(LINK_FIELDS)})", ()),
    "compute.units": ("compute_units", _count, "a positive integer (SMs, CUs, PEs or cores)", _REQUIRED),
    "compute.clock_ghz": ("clock_ghz", _number, "a positive number (GHz)", _REQUIRED),
    "compute.simd_width": ("simd_width", _count, "a positive integer (32-bit lanes, or warp size)", _REQUIRED),
    "compute.matrix_shapes": ("matrix_shapes", _PerDtype(_shape), "3 positive integers [m, n, k]", {}),
    "compute.peak_tflops_matrix": ("peak_tflops_matrix", _PerDtype(_number), "a positive number (TFLOP/s)", {}),
    "compute.fp8_encodings": ("fp8_encodings", _encodings,  # a Target field (make_target)
                              f"a list of distinct fp8 encodings among {', '.join(FP8_ENCODINGS)}", ()),
    "compute.peak_tflops_vector": ("peak_tflops_vector", _PerDtype(_number), "a positive number (TFLOP/s)",
                                   _REQUIRED),
    "memory.local_sram_kib": ("local_sram_bytes", _bytes(2**10), "a positive number (KiB)", _REQUIRED),
    "memory.local_sram_gbps": ("local_sram_gbps", _number, "a positive number (GB/s)", _REQUIRED),
    "memory.llc_mib": ("llc_bytes", _bytes(2**20), "a positive number (MiB)", _REQUIRED),
    "memory.llc_gbps": ("llc_gbps", _number, "a positive number (GB/s)", _REQUIRED),
    "memory.dram_gib": ("dram_bytes", _bytes(2**30), "a positive number (GiB)", _REQUIRED),
    "memory.dram_gbps": ("dram_gbps", _number, "a positive number (GB/s)", _REQUIRED),
    "runtime.launch_overhead_us": ("launch_overhead_us", _number, "a positive number (µs)", _REQUIRED),
    "runtime.host_call_us": ("host_call_us", _number, "a positive number (µs)", None),
    "runtime.extern_call_us": ("extern_call_us", _number, "a positive number (µs)", None),
    "libraries.gemm_efficiency": ("gemm_efficiency", _fraction, "a number in (0, 1] (of the matrix peak)", None),
    "libraries.attention_efficiency": ("attention_efficiency", _fraction, "a number in (0, 1] (of the matrix peak)",
                                       None),
    "libraries.channels_last_speedup": ("channels_last_speedup", _number,
                                        "a positive number (NCHW time over channels-last time)", None),
    "libraries.convolution_efficiency": ("convolution_efficiency", _fraction,
                                         "a number in (0, 1] (of the roofline time)", None),
    "power.tdp_w": ("tdp_w", _number, "a positive number (W)", _REQUIRED),
    "compute.vector_op_ns": ("vector_op_ns", _PerOp(_time), "a number >= 0 (ns per element, one core)", {}),
    "compute.scalar_op_ns": ("scalar_op_ns", _PerOp(_time), "a number >= 0 (ns per element, one core)", {}),
    "compute.vector_inf_op_ns": ("vector_inf_op_ns", _PerOp(_time), "a number >= 0 (ns per element, one core)", {}),
    "capabilities": ("capabilities", _Capabilities(), "a table of capability = value", {}),
    # scale-up links within a node and the scale-out network (device_models/interconnect.py)
    "interconnect.topology": ("link_topology", _choice(*TOPOLOGIES), " or ".join(f'"{t}"' for t in TOPOLOGIES),
                              None),
    "interconnect.link_gbps": ("link_link_gbps", _number, "a positive number (GB/s per link, one direction)", None),
    "interconnect.links": ("link_links", _count, "a positive integer (links per device)", None),
    "interconnect.domain": ("link_domain", _count, "a positive integer (devices per scale-up domain)", None),
    "interconnect.latency_us": ("link_latency_us", _number, "a positive number (µs per message)", None),
    "interconnect.call_us": ("link_call_us", _number,
                             "a positive number (µs per collective call; default: runtime.launch_overhead_us)", None),
    "interconnect.nic_gbps": ("link_nic_gbps", _number, "a positive number (GB/s per device, one direction)", None),
    "interconnect.nic_latency_us": ("link_nic_latency_us", _number, "a positive number (µs per message)", None),
}
LINK_REQUIRED = ("topology", "link_gbps", "links", "domain", "latency_us")


def load_file(path: str, label: str) -> DeviceProfile:
    """Parse and check the TOML file at ``path``; errors start with ``label`` (the file)."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as error:
        raise unreadable(label, error) from None
    except UnicodeDecodeError as error:  # tomllib decodes the whole file first
        raise ProfileError(f"{label}: not a text file: byte {error.object[error.start]:#04x} at offset "
                           f"{error.start} is not UTF-8; a profile is a TOML file (UTF-8 text)") from None
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{label}: not valid TOML: {error}") from None
    return from_table(table, label)


def unreadable(label: str, error: OSError) -> ProfileError:
    """The error for a profile file the system would not open or look up (``error``'s cause)."""
    return ProfileError(f"{label}: cannot read the profile file ({error.strerror or error})")


def from_table(table: dict, label: str) -> DeviceProfile:
    """Check a profile given as the nested TOML table (human units) and convert it."""
    try:
        return DeviceProfile(**_fields(table))
    except ProfileError as error:
        raise ProfileError(f"{label}: {error}") from None


def _fields(table: dict) -> dict:
    values = dict(_flatten(table))
    unknown = sorted(set(values) - set(SCHEMA))
    if unknown:
        raise ProfileError(f"unknown key {', '.join(unknown)}; profile keys are {', '.join(SCHEMA)}")
    fields = {}
    for key, (field, check, expected, default) in SCHEMA.items():
        if key in values:
            fields[field] = _check(key, values[key], check, expected)
        elif default is _REQUIRED:
            kind = f"a table of dtype = {expected}" if isinstance(check, _PerDtype) else expected
            raise ProfileError(f"missing {key}: expected {kind}")
        else:
            fields[field] = default
    fields["target"] = make_target(fields.pop("codegen"), fields.pop("capabilities"), fields["matrix_shapes"],
                                   fields.pop("fp8_encodings"))
    fields["interconnect"] = _interconnect({name: fields.pop(f"link_{name}") for name in LINK_FIELDS},
                                           fields["launch_overhead_us"])
    _check_together(fields)
    return fields


def _interconnect(values: dict, launch_us: float) -> Interconnect | None:
    """The [interconnect] table as an Interconnect: absent altogether, or with every scale-up
    key (the network's two keys together or not at all); a collective call costs a kernel
    launch unless the table says otherwise."""
    if all(value is None for value in values.values()):
        return None
    if values["call_us"] is None:
        values["call_us"] = launch_us
    missing = [f"interconnect.{name}" for name in LINK_REQUIRED if values[name] is None]
    if missing:
        raise ProfileError(f"missing {', '.join(missing)}: an [interconnect] table states every scale-up key "
                           f"({', '.join(LINK_REQUIRED)})")
    if (values["nic_gbps"] is None) != (values["nic_latency_us"] is None):
        raise ProfileError("interconnect.nic_gbps and interconnect.nic_latency_us go together: the scale-out "
                           "network's bandwidth and its per-message latency")
    return Interconnect(**values)


def _flatten(table: dict, prefix: str = ""):
    """(dotted key, value) for every leaf; the per-dtype tables count as leaves."""
    for key, value in table.items():
        path = prefix + key
        if isinstance(value, dict) and path not in SCHEMA:
            yield from _flatten(value, path + ".")
        else:
            yield path, value


def _check(key: str, value, check, expected: str):
    if isinstance(check, _PerDtype):
        return _table(key, value, f"a table of dtype = {expected}", DTYPES, ("dtype", "dtypes"),
                      lambda path, _, entry: _check(path, entry, check.check, expected))
    if isinstance(check, _Capabilities):
        return _table(key, value, expected, DECLARABLE, ("capability", "capabilities"),
                      lambda path, name, entry: _check(path, entry, *((_texts, "a list of library names")
                                                                      if name in LIBRARIES else (_flag, "true or false"))))
    if isinstance(check, _PerOp):
        return _table(key, value, f"a table of op = {expected}", SCALAR_PRICED, ("op", "ops"),
                      lambda path, _, entry: _check(path, entry, check.check, expected))
    try:
        return check(value)
    except _Bad:
        raise ProfileError(f"{key} must be {expected}, got {value!r}") from None


def _table(key: str, value, must_be: str, known, kind: tuple, check_entry) -> dict:
    """A table whose keys are among ``known`` (``kind``: their name, singular and plural), each
    entry checked by ``check_entry(dotted key, its name, entry)``."""
    if not isinstance(value, dict):
        raise ProfileError(f"{key} must be {must_be}, got {value!r}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ProfileError(f"{key}.{unknown[0]}: unknown {kind[0]}; {kind[1]} are {', '.join(known)}")
    return {name: check_entry(f"{key}.{name}", name, entry) for name, entry in value.items()}


def _check_together(fields: dict) -> None:
    """Checks that span several keys."""
    if "fp32" not in fields["peak_tflops_vector"]:
        raise ProfileError("compute.peak_tflops_vector must have an fp32 entry (TFLOP/s)")
    shapes, peaks = set(fields["matrix_shapes"]), set(fields["peak_tflops_matrix"])
    if shapes != peaks:
        raise ProfileError("compute.matrix_shapes and compute.peak_tflops_matrix must list the same dtypes; "
                           f"only in one of them: {', '.join(sorted(shapes ^ peaks))}")
    if ("fp8" in shapes) != bool(fields["target"].fp8_encodings):
        raise ProfileError("compute.fp8_encodings must name the fp8 encodings the matrix units take "
                           f"({', '.join(FP8_ENCODINGS)}) exactly when compute.matrix_shapes has an fp8 entry")
    target = fields["target"]
    if fields["triton_target"] is not None and target.language != "triton":
        raise ProfileError('triton_target is only meaningful with codegen = "triton"')
    if target.host_threads:
        for key, what in (("host_call_us", "the call of a serial kernel"), ("extern_call_us", "an ATen call's")):
            if fields[key] is None:
                raise ProfileError(f'missing runtime.{key}: a positive number (µs), {what} (codegen = "cpp"; '
                                   "the cpu profile measures it)")
        for key, field, ops in (("compute.vector_op_ns", "vector_op_ns", VECTOR_PRICED),
                                ("compute.scalar_op_ns", "scalar_op_ns", SCALAR_PRICED),
                                ("compute.vector_inf_op_ns", "vector_inf_op_ns", INFINITE_PRICED)):
            missing = [op for op in ops if op not in fields[field]]
            if missing:
                raise ProfileError(f'{key} must give every op the host cost model prices (codegen = "cpp"); '
                                   f"missing: {', '.join(missing)} (the cpu profile measures them)")
    if target.matmul_epilogue:
        _check_smallest_matmul_tile(fields)
    if target.matmul_epilogue and target.blas and fields["gemm_efficiency"] is None:
        raise ProfileError("missing libraries.gemm_efficiency: a number in (0, 1], the fraction of the matrix "
                           "peak the declared BLAS library reaches (the planner prices it against the "
                           "generated GEMM)")
    if target.matmul_epilogue and target.attention and fields["attention_efficiency"] is None:
        raise ProfileError("missing libraries.attention_efficiency: a number in (0, 1], the fraction of the "
                           "matrix peak the declared attention library reaches (the planner estimates its calls "
                           "with it)")


def _check_smallest_matmul_tile(fields: dict) -> None:
    """A target that generates its GEMM (``Target.matmul_epilogue``: a Triton one) stages
    operand tiles in local SRAM (``tiling.plan_matmul``): the smallest tile for each of its
    matrix instructions, and the FMA tile of the widest elements, must fit, or the planner has
    no tile to choose."""
    needs = [(smallest_staged_bytes(shape, DTYPE_BYTES[dtype]), shape, f"{dtype} matrix-instruction")
             for dtype, shape in fields["matrix_shapes"].items()]
    needs.append((smallest_staged_bytes(VECTOR_MATMUL_TILE, WIDEST_ELEMENT_BYTES), VECTOR_MATMUL_TILE,
                  f"{WIDEST_ELEMENT_BYTES}-byte (float64) FMA"))
    need, shape, kind = max(needs, key=lambda item: item[0])
    have = fields["local_sram_bytes"]
    if have < need:
        bm, bn, bk = smallest_tile(shape)
        raise ProfileError(f"memory.local_sram_kib must hold the smallest matmul tile a Triton target stages: "
                           f"the {kind} tile BM={bm} BN={bn} BK={bk} in {min(STAGES)} stages needs "
                           f"{need / 2**10:g} KiB, got {have / 2**10:g} KiB ({have} bytes)")
