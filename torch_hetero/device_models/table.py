"""``list_devices()``: the profiles as data, which print side by side, one row each, as plain
aligned text."""
from __future__ import annotations

from .profile import DeviceProfile

COLUMNS = ("name", "codegen", "target", "units", "GHz", "matrix bf16/fp16 TFLOP/s", "vector fp32 TFLOP/s",
           "local SRAM per unit", "LLC", "DRAM", "launch us", "TDP W", "links (scale-up x devices; NIC)")
FOOTNOTE = "* some figures are assumed (estimates or unknown-filled): see get_profile(name).assumed"


class DeviceTable(tuple):
    """The profiles (DeviceProfile each, in order) as data to iterate and index; printed, or
    shown at a prompt, it is the side-by-side table."""

    def __str__(self) -> str:
        return format_table(list(self))

    __repr__ = __str__


def format_table(profiles: list[DeviceProfile]) -> str:
    rows = [COLUMNS, *(_row(p) for p in profiles)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([*lines, FOOTNOTE]) + "\n"


def _row(p: DeviceProfile) -> tuple[str, ...]:
    return (p.name + ("*" if p.assumed else ""), p.codegen, p.triton_target or "-", str(p.compute_units),
            _num(p.clock_ghz), _matrix_16bit(p), _num(p.peak_tflops_vector["fp32"]),
            _memory(p.local_sram_bytes, p.local_sram_gbps), _memory(p.llc_bytes, p.llc_gbps),
            _memory(p.dram_bytes, p.dram_gbps), _num(p.launch_overhead_us), _num(p.tdp_w), _links(p))


def _links(p: DeviceProfile) -> str:
    """A device's scale-up bandwidth (one direction, all its links) over its topology, the
    devices one domain joins, and its NIC: "switch 450 GB/s x8; NIC 50 GB/s"."""
    link = p.interconnect
    if link is None:
        return "-"
    up = f"{link.topology} {_bandwidth(link.link_gbps * link.links)} x{link.domain}"
    return up + (f"; NIC {_bandwidth(link.nic_gbps)}" if link.scale_out else "")


def _num(value: float) -> str:
    return f"{value:.4g}" if value < 1000 else f"{value:.1f}".removesuffix(".0")


def _matrix_16bit(p: DeviceProfile) -> str:
    peaks = [p.peak_tflops_matrix[d] for d in ("bf16", "fp16") if d in p.peak_tflops_matrix]
    return "/".join(_num(v) for v in dict.fromkeys(peaks)) or "-"


def _memory(size: int, gbps: float) -> str:
    return f"{format_bytes(size)} @ {_bandwidth(gbps)}"


def format_bytes(size: int) -> str:
    """A byte count in binary units, as the devices table and the audit show it."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{_num(size / scale)} {unit}"
    return f"{size} B"


def _bandwidth(gbps: float) -> str:
    return f"{_num(gbps / 1000)} TB/s" if gbps >= 1000 else f"{_num(gbps)} GB/s"
