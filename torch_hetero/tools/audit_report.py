"""An Audit rendered: the side-by-side summary (text and markdown), the markdown report, the
JSON record, and the roofline chart with every kernel placed on each device's roofline."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings

from ..device_models import get_profile
from ..device_models.table import format_bytes

SUMMARY_HEADERS = ("device", "code", "kernels", "externs", "debt ops (calls)", "latency", "energy/call",
                   "samples/s/W", "memory need / capacity", "error vs fp32 (max, mean)", "ahead-of-time", "status")
NOTES = ("Latency and energy are the device model's estimates (no hardware was used): energy is "
         "latency × the profile's TDP, an upper bound on power. A fallback (debt) op is costed as if it "
         "ran on the device at memory speed, a lower bound: without a native kernel it would run on a "
         "host. Memory need is weights + inputs + the activations live at the plan's peak (inference). "
         "The error is the outputs of the device's plan, run on this host, against the fp32 model's in "
         "eager: the largest absolute error over the largest magnitude, and the mean over the mean. "
         "Profiles marked * include assumed figures (see `python -m torch_hetero devices`). A model "
         "with embedding tables shows where they fit: on chip (the device's largest on-chip memory, its "
         "last-level cache or SRAM), off chip, or no.")


def summary_rows(audit) -> list:
    return [_summary_row(audit, d) for d in audit.devices]


def _summary_row(audit, d) -> tuple:
    name = d.label + ("*" if d.assumed else "")
    code = f"{d.codegen} {d.triton_target or ''}".strip() if d.codegen else "-"
    if d.error is not None:
        return (name, code, "-", "-", "-", "-", "-", "-", "-", "-", "-", "error: " + d.error.splitlines()[0][:80])
    calls = sum(debt.calls for debt in d.debt)
    per_watt = audit.samples_per_joule(d)
    memory = (f"{format_bytes(audit.need_bytes(d))} / {format_bytes(d.capacity_bytes)} "
              f"{'fits' if audit.fits(d) else 'DOES NOT FIT'}")
    if audit.embedding_bytes:
        memory += f"; tables {format_bytes(audit.embedding_bytes)}: {audit.tables_fit(d)}"
    return (name, code, str(len(d.report.kernels)), str(len(d.report.externs)), f"{len(d.debt)} ({calls})",
            _time(d.latency_us), _energy(d.energy_uj), f"{per_watt:,.0f}" if per_watt else "-", memory,
            _accuracy(d.accuracy), _aot_cell(d), "ok")


def _accuracy(value) -> str:
    return f"{value.max_rel:.2g}, {value.mean_rel:.2g}" if value is not None else "-"


def _aot_cell(d) -> str:
    if d.aot is None:
        return "no public Triton target" if d.codegen == "triton" and not d.triton_target else "-"
    compiled = len(d.aot.resources)
    total = compiled + len(d.aot.errors)
    most = max((r.shared_bytes for r in d.aot.resources.values()), default=0)
    registers = max((r.registers for r in d.aot.resources.values()), default=0)
    spilling = sum(1 for r in d.aot.resources.values() if r.spill_bytes)
    return (f"{compiled}/{total} built, smem ≤ {format_bytes(most)}, regs ≤ {registers}"
            + (f", {spilling} spill" if spilling else "") + ("" if d.aot.ok else " FAILED"))


def summary_text(audit) -> str:
    rows = [SUMMARY_HEADERS] + summary_rows(audit)
    widths = [max(len(row[i]) for row in rows) for i in range(len(SUMMARY_HEADERS))]
    lines = [f"portability audit: {_model_line(audit)}"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for d in audit.devices:
        for debt in d.debt:
            lines.append(f"  debt on {d.label}: {debt.op} × {debt.calls} in {_layers(debt.layers)}")
        for debt in d.report.dtype_debt if d.error is None else ():
            lines.append(f"  dtype debt on {d.label}: {debt.op} {debt.wanted} as {debt.runs_as} in "
                         f"{_layers([debt.layer])}")
        if d.error is not None:
            lines.append(f"  error on {d.label}: {d.error}")
        elif d.aot is not None and d.aot.errors:
            lines += [f"  {d.aot.target} build of {kernel} failed: {error.splitlines()[0]}"
                      for kernel, error in d.aot.errors.items()]
    return "\n".join(lines)


def markdown(audit, roofline: str | None = "roofline.png") -> str:
    out = [f"# Portability audit: {audit.model}", "", _model_line(audit), "", NOTES, "", "## Summary", ""]
    out += _table(SUMMARY_HEADERS, summary_rows(audit))
    if roofline:
        out += ["", f"![roofline: each kernel on each device's roofline]({roofline})"]
    for d in audit.devices:
        out += ["", f"## {d.label}" + (f" — {d.description}" if d.description else ""), ""]
        if d.error is not None:
            out += ["**Not audited:**", "", "```", d.error, "```"]
            continue
        out.append(f"Compiled for {d.codegen}{' (' + d.triton_target + ')' if d.triton_target else ''} "
                   f"and run once on this host in {d.compile_s:.1f} s. Estimated {_time(d.latency_us)} per call, "
                   f"{_energy(d.energy_uj)} at {d.tdp_w:g} W.")
        out += ["", "### Portability debt (ATen fallbacks)", ""]
        out += _table(("op", "calls", "layers"), [(x.op, str(x.calls), _layers(x.layers)) for x in d.debt]) \
            if d.debt else ["None: every op has a native kernel on this device."]
        if d.report.dtype_debt:
            out += ["", "### Dtype debt (formats the matrix units lack, run in a wider one)", ""]
            out += _table(("where", "op", "format", "runs as", "compute lost (est.)", "layer"),
                          [(x.name, x.op, x.wanted, x.runs_as, _time(x.lost_us), x.layer or "-")
                           for x in d.report.dtype_debt])
        out += ["", "### Kernels", ""]
        out += _table(("kernel", "fuses", "tiling", "estimate", "bound", "fusion decisions"),
                      [(k.name, ", ".join(k.aten_ops) or "(copy)", k.tiling, _time(k.estimate_us), k.bound or "-",
                        "; ".join(k.fusion)) for k in d.report.kernels])
        calls = d.report.externs + d.report.fallback_calls
        if calls:
            out += ["", "### ATen calls (externs and fallbacks)", ""]
            out += _table(("call", "kind", "layer", "estimate", "bound", "tile"),
                          [(c.name, c.kind, c.layer or "-", _time(c.estimate_us), c.bound or "-", c.tiling or "-")
                           for c in calls])
        if d.aot is not None:
            out += ["", f"### Ahead-of-time Triton compile for {d.aot.target}", "",
                    f"{len(d.aot.resources)} of {len(d.aot.resources) + len(d.aot.errors)} kernels built; "
                    f"shared memory limit {format_bytes(d.aot.limit_bytes)} per unit; registers and spills "
                    "(per thread) read from the built binary.", ""]
            out += _table(("kernel", "registers", "spills", "shared memory", "result"),
                          [(k, f"{r.registers} / {r.register_limit}", format_bytes(r.spill_bytes),
                            format_bytes(r.shared_bytes), "; ".join(d.aot.problems(k)) or "ok")
                           for k, r in d.aot.resources.items()]
                          + [(k, "-", "-", "-", "error: " + e.splitlines()[0]) for k, e in d.aot.errors.items()])
    return "\n".join(out) + "\n"


def to_json(audit) -> dict:
    devices = []
    for d in audit.devices:
        entry = {"device": d.device, "file": d.file, "description": d.description, "codegen": d.codegen,
                 "triton_target": d.triton_target, "assumed": list(d.assumed), "error": d.error}
        if d.error is None:
            report = d.report
            entry.update({
                "compile_s": d.compile_s, "latency_us": d.latency_us, "tdp_w": d.tdp_w, "energy_uj": d.energy_uj,
                "samples_per_joule": audit.samples_per_joule(d),
                "memory": {"weights": audit.weight_bytes, "inputs": audit.input_bytes,
                           "peak_activations": d.peak_activation_bytes, "need": audit.need_bytes(d),
                           "capacity": d.capacity_bytes, "fits": audit.fits(d),
                           "embedding_tables": audit.embedding_bytes, "on_chip": d.on_chip_bytes,
                           "tables_fit": audit.tables_fit(d)},
                "debt": [{"op": x.op, "calls": x.calls, "layers": x.layers} for x in d.debt],
                "dtype_debt": [dataclasses.asdict(x) for x in report.dtype_debt],
                "accuracy": dataclasses.asdict(d.accuracy) if d.accuracy is not None else None,
                "kernels": [{"name": k.name, "target": k.target, "fuses": k.aten_ops, "tiling": k.tiling,
                             "estimate_us": k.estimate_us, "bound": k.bound, "flops": k.flops, "bytes": k.bytes,
                             "fusion": list(k.fusion)} for k in report.kernels],
                "aten_calls": [{"name": c.name, "kind": c.kind, "op": c.op, "layer": c.layer,
                                "estimate_us": c.estimate_us, "bound": c.bound, "flops": c.flops, "bytes": c.bytes,
                                "tiling": c.tiling} for c in report.externs + report.fallback_calls],
                "ahead_of_time": None if d.aot is None else {
                    "target": d.aot.target, "errors": d.aot.errors,
                    "kernels": {k: {**dataclasses.asdict(r), "problems": d.aot.problems(k)}
                                for k, r in d.aot.resources.items()},
                    "limit_bytes": d.aot.limit_bytes, "ok": d.aot.ok}})
        devices.append(entry)
    return {"model": audit.model, "format": audit.format, "dtype": audit.dtype, "parameters": audit.parameters, "weight_bytes": audit.weight_bytes,
            "input_bytes": audit.input_bytes, "inputs": audit.inputs, "batch": audit.batch, "devices": devices}


def roofline_png(audit, path: str) -> None:
    """One panel per audited device: its DRAM and last-level-SRAM roofs under its compute
    peaks, and each kernel and ATen call at (FLOP per byte, estimated FLOP/s).  The cost model
    serves re-read buffers from on-chip memory, so a kernel may sit above the DRAM roof.  Steps
    without FLOPs (copies) cannot sit on a log axis; each panel says how many it leaves out."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    shown = [d for d in audit.devices if d.error is None]
    columns = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    for ax, d in zip(axes.flat, shown):
        _roofline_panel(ax, d, audit.dtype)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    figure.suptitle(f"{audit.model}: kernels on each device's roofline (estimates)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


_MARKERS = {"kernel": ("o", "tab:blue"), "extern": ("^", "tab:green"), "fallback": ("x", "tab:red")}


def _roofline_panel(ax, d, dtype: str) -> None:
    profile = get_profile(d.file or d.device)
    report = d.report
    steps = [("kernel", k) for k in report.kernels] + [(c.kind, c) for c in report.externs + report.fallback_calls]
    matrix = profile.peak_flops(dtype, matrix=True)
    vector = profile.peak_flops("fp32", matrix=False)
    dram, llc = profile.dram_gbps * 1e9, profile.llc_gbps * 1e9
    placed = [(kind, s.flops / s.bytes, s.flops / (s.estimate_us * 1e-6)) for kind, s in steps
              if s.flops and s.bytes and s.estimate_us]
    intensities = [p[1] for p in placed] or [1.0]
    low, high = min(min(intensities) / 4, 0.05), max(max(intensities) * 4, 4 * matrix / dram)
    xs = [low * (high / low) ** (i / 200) for i in range(201)]
    ax.loglog(xs, [min(matrix, dram * x) for x in xs], color="black", lw=1.2, label=f"DRAM, {dtype} peak")
    ax.loglog(xs, [min(matrix, llc * x) for x in xs], color="black", lw=0.8, ls=":", label="on-chip LLC")
    if vector < matrix:
        ax.axhline(vector, color="gray", lw=0.8, ls="--", label="vector fp32 peak")
    for kind, (marker, color) in _MARKERS.items():
        points = [(x, y) for k, x, y in placed if k == kind]
        if points:
            ax.scatter(*zip(*points), marker=marker, color=color, s=18, label=kind, zorder=3)
    left_out = len(steps) - len(placed)
    ax.set_title(d.label + (f" ({left_out} without FLOPs not shown)" if left_out else ""), fontsize=9)
    ax.set_xlabel("FLOP / byte")
    ax.set_ylabel("FLOP/s")
    ax.legend(fontsize=6, loc="lower right")


def check_directory(directory: str) -> None:
    """Raise an OSError naming ``directory`` if the report could not be written there (a file,
    under a file, or not writable), so that a command finds out before its work, not after."""
    path = os.path.abspath(directory)
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"cannot write the report to {directory}: it is a file, not a directory")
    existing = path
    while not os.path.exists(existing):  # the directory is made later: its nearest existing parent decides
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"cannot write the report to {directory}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write the report to {directory}: {existing} is not writable")


def write_files(audit, directory: str) -> dict:
    """audit.md, audit.json and, where matplotlib is installed, roofline.png: kind → path."""
    return write_report(audit, directory, "audit", markdown, to_json, roofline_png, "roofline")


def write_report(what, directory: str, stem: str, markdown_of, record_of, draw, chart: str) -> dict:
    """``stem``.md (``markdown_of(what, the chart's file or None)``), ``stem``.json
    (``record_of(what)``) and, where matplotlib is installed, ``chart``.png drawn by
    ``draw(what, path)``, in ``directory``: kind → path."""
    check_directory(directory)
    os.makedirs(directory, exist_ok=True)
    paths = {"markdown": os.path.join(directory, f"{stem}.md"), "json": os.path.join(directory, f"{stem}.json")}
    paths.update(_chart(draw, what, directory, chart))
    with open(paths["markdown"], "w") as f:
        f.write(markdown_of(what, f"{chart}.png" if chart in paths else None))
    with open(paths["json"], "w") as f:
        json.dump(record_of(what), f, indent=1)
    return paths


def _chart(draw, what, directory: str, name: str) -> dict:
    """{name: path} of ``name``.png drawn by ``draw(what, path)``; {} with a warning where
    matplotlib (which only the charts need) is not installed."""
    path = os.path.join(directory, f"{name}.png")
    try:
        draw(what, path)
    except ImportError:
        warnings.warn(f"torch_hetero: {name}.png not written: matplotlib is not installed "
                      "(pip install matplotlib, or torch_hetero[demo])", stacklevel=5)
        return {}
    return {name: path}


def _model_line(audit) -> str:
    return (f"{audit.model}{' in ' + audit.format if audit.format else ''}, {audit.parameters / 1e6:.2f} M "
            f"parameters ({format_bytes(audit.weight_bytes)} of weights, {audit.dtype} compute), "
            f"inputs {', '.join(audit.inputs) or '-'}, batch {audit.batch}")


def _table(headers, rows) -> list:
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")
    return (["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


def _layers(layers: list) -> str:
    return ", ".join(layer or "(top level)" for layer in layers)


def _time(us) -> str:
    if us is None:
        return "-"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} us"


def _energy(uj) -> str:
    if uj is None:
        return "-"
    return f"{uj / 1000:.2f} mJ" if uj >= 1000 else f"{uj:.1f} uJ"


# ---------------------------------------------------------------- several formats (FormatAudit)
FORMAT_HEADERS = ("format", "device", "latency", "memory need / capacity", "debt ops (calls)",
                  "dtype debt (matmuls)", "error vs fp32 (max, mean)", "status")
ERROR_FLOOR = 1e-8   # where the chart puts an exact output (a log axis has no zero)


def format_rows(result) -> list:
    rows = []
    for audit in result.audits:
        for d in audit.devices:
            if d.error is not None:
                rows.append((audit.format, d.label, "-", "-", "-", "-", "-", "error: " + d.error.splitlines()[0][:80]))
                continue
            memory = (f"{format_bytes(audit.need_bytes(d))} / {format_bytes(d.capacity_bytes)}"
                      + ("" if audit.fits(d) else " DOES NOT FIT"))
            rows.append((audit.format, d.label, _time(d.latency_us), memory,
                         f"{len(d.debt)} ({sum(x.calls for x in d.debt)})", _dtype_debt(d.report.dtype_debt),
                         _accuracy(d.accuracy), "ok"))
    return rows


def _dtype_debt(debts) -> str:
    kinds = sorted({f"{x.wanted} as {x.runs_as}" for x in debts})
    return f"{len(debts)} ({'; '.join(kinds)})" if debts else "0"


def formats_text(result) -> str:
    rows = [FORMAT_HEADERS] + format_rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(FORMAT_HEADERS))]
    first = result.audits[0]
    lines = [f"format audit: {first.model}, {first.parameters / 1e6:.2f} M parameters, inputs "
             f"{', '.join(first.inputs) or '-'}; the error is against the fp32 model in eager"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def formats_png(result, path: str) -> None:
    """Each (format, device) at (estimated latency, mean error against fp32): the trade-off a
    format buys on each device; a marker per format, a colour per device."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    figure, ax = plt.subplots(figsize=(7, 4.5))
    devices = list(dict.fromkeys(d.label for a in result.audits for d in a.devices
                                 if d.error is None and d.accuracy is not None))
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(devices)}
    markers = "osD^v<>px*"
    for position, audit in enumerate(result.audits):
        shown = [d for d in audit.devices if d.error is None and d.accuracy is not None]
        marker = markers[position % len(markers)]
        ax.scatter([d.latency_us for d in shown], [max(d.accuracy.mean_rel, ERROR_FLOOR) for d in shown],
                   marker=marker, c=[colors[d.label] for d in shown], s=40, edgecolors="black", linewidths=0.4,
                   zorder=3)
        ax.scatter([], [], marker=marker, color="lightgray", edgecolors="black", linewidths=0.4, s=40,
                   label=audit.format)   # the legend's format entry, in no device's colour
    for label, color in colors.items():
        ax.scatter([], [], color=color, label=label, s=40)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("estimated latency per call (us)")
    ax.set_ylabel(f"mean error vs fp32 eager (exact shown at {ERROR_FLOOR:g})")
    ax.set_title(f"{result.audits[0].model}: latency and accuracy per format and device")
    ax.legend(fontsize=7, ncol=2, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_format_files(result, directory: str) -> dict:
    """formats.md, formats.json, formats.png (with matplotlib) and each format's audit files
    in ``directory/<format>``: kind → path."""
    check_directory(directory)
    os.makedirs(directory, exist_ok=True)
    paths = {"markdown": os.path.join(directory, "formats.md"), "json": os.path.join(directory, "formats.json")}
    paths.update({"chart": path for path in _chart(formats_png, result, directory, "formats").values()})
    for audit in result.audits:
        write_files(audit, os.path.join(directory, audit.format))
    first = result.audits[0]
    text = [f"# Format audit: {first.model}", "", f"{first.parameters / 1e6:.2f} M parameters, inputs "
            f"{', '.join(first.inputs) or '-'}, batch {first.batch}.", "", NOTES, "", "## Summary", ""]
    text += _table(FORMAT_HEADERS, format_rows(result))
    if "chart" in paths:
        text += ["", "![latency and accuracy per format and device](formats.png)"]
    text += ["", "Each format's full audit: " + ", ".join(f"[{a.format}]({a.format}/audit.md)" for a in result.audits)]
    with open(paths["markdown"], "w") as f:
        f.write("\n".join(text) + "\n")
    with open(paths["json"], "w") as f:
        json.dump({"model": first.model, "formats": [to_json(a) for a in result.audits]}, f, indent=1)
    return paths
