"""A DeploymentPlan rendered: the ranked table (text and markdown), the JSON record and the
Pareto chart of latency against performance per watt."""
from __future__ import annotations

import dataclasses

from .audit_report import _table, write_report

NOTES = ("Estimates of the device model (no hardware was used): every graph planned as a compile "
         "would plan it, communication by the collective model (rated link bandwidths), power at the "
         "profiles' TDP (an upper bound). Throughput counts all devices of a configuration; a split "
         "placement runs prefill on the first profile and decode on the second as a pipeline, the KV "
         "cache crossing the slower of their network links.")


def rows(result) -> list:
    out = []
    for rank, c in enumerate(result.configs, 1):
        if c.error is not None:
            out.append((str(rank), c.devices, c.dtype, str(c.batch), _seq(c), "-", "-", "-", "-", "-", "-",
                        "error: " + c.error))
            continue
        serve = (f"{_ms(c.ttft_s)} / {_ms(c.tpot_s)}",) if result.mode == "serve" else ()
        out.append((str(rank), c.devices, c.dtype, str(c.batch), _seq(c), f"{c.count} {c.parallelism}",
                    *(() if result.mode == "serve" else (c.checkpointing or "-",)), f"{c.throughput:,.1f}",
                    _ms(c.latency_s), *serve, f"{c.perf_per_watt:,.3g}",
                    f"{c.per_dollar:,.4g}" if c.per_dollar is not None else "-",
                    ("fits" if c.fits else "DOES NOT FIT") + "; " + "; ".join(c.reasons)))
    return out


def headers(result) -> tuple:
    middle = ("TTFT / TPOT",) if result.mode == "serve" else ()
    first = ("#", "devices", "dtype", "batch", "seq", "count", *(() if result.mode == "serve" else ("checkpointing",)))
    latency = "request latency" if result.mode == "serve" else "step"
    return (*first, result.unit, latency, *middle, f"{result.unit}/W", "per unit price", "why")


def summary_text(result) -> str:
    table = [headers(result)] + rows(result)
    widths = [max(len(str(r[i])) for r in table) for i in range(len(table[0]) - 1)]
    lines = [_title(result)]
    for row in table:
        lines.append("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) + "  " + str(row[-1]))
    best = result.best
    lines.append(f"best by {result.objective}: " + (f"{best.count} x {best.devices} {best.dtype} batch {best.batch}"
                                                    if best else "none fits"))
    return "\n".join(lines)


def markdown(result, chart: str | None) -> str:
    lines = [f"# Deployment plan: {_title(result)}", "", *_table(headers(result), rows(result)), "",
             "## Pareto front: request latency against performance per watt" if result.mode == "serve" else
             "## Pareto front: step time against performance per watt", ""]
    lines += [f"- {c.count} x {c.devices} {c.dtype} batch {c.batch}{' seq ' + str(c.seq) if c.seq else ''}: "
              f"{_ms(c.latency_s)}, {c.perf_per_watt:,.3g} {result.unit}/W" for c in result.pareto()] or ["- none fits"]
    if chart:
        lines += ["", f"![pareto]({chart})"]
    lines += ["", NOTES, ""]
    return "\n".join(lines)


def to_json(result) -> dict:
    return {"model": result.model, "mode": result.mode, "objective": result.objective, "unit": result.unit,
            "output_len": result.output_len,
            "configs": [{**dataclasses.asdict(c), "fits": c.fits, "perf_per_watt": c.perf_per_watt,
                         "per_dollar": c.per_dollar} for c in result.configs],
            "pareto": [result.configs.index(c) for c in result.pareto()]}


def pareto_png(result, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fitting = [c for c in result.configs if c.fits]
    front = result.pareto()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for device in sorted({c.devices for c in fitting}):
        points = [c for c in fitting if c.devices == device]
        ax.scatter([c.latency_s * 1e3 for c in points], [c.perf_per_watt for c in points], label=device, s=18)
    ax.plot([c.latency_s * 1e3 for c in front], [c.perf_per_watt for c in front], color="black", lw=1,
            label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(("request latency" if result.mode == "serve" else "step time") + " (ms)")
    ax.set_ylabel(f"{result.unit} per W")
    ax.set_title(_title(result), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_files(result, directory: str) -> dict:
    """plan.md, plan.json and, where matplotlib is installed, pareto.png: kind → path."""
    return write_report(result, directory, "plan", markdown, to_json, pareto_png, "pareto")


def _title(result) -> str:
    extra = f", {result.output_len} output tokens" if result.output_len else ""
    return f"{result.model}, {result.mode}{extra}, ranked by {result.objective}"


def _seq(c) -> str:
    return str(c.seq) if c.seq else "-"


def _ms(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:,.3g} ms" if seconds < 1 else f"{seconds:,.3g} s"
