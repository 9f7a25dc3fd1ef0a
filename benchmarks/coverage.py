"""Model coverage at scale: every model of ``torch_hetero.tools.model_catalog`` (transformers
architectures, timm image models, recommendation models) compiled for the host and checked
against eager, inference and one training step (``tests/coverage_checks.py``), each in a
process of its own under a time limit; a rotating subset timed against eager and Inductor
(1 thread); and for each Triton profile the ops that would not be generated there.

    python benchmarks/coverage.py [--models a,b | --suites transformers,timm,recsys]
        [--budget-s 3600] [--limit-s 300] [--timed 12] [--rotation N] [--out benchmarks/results]
    python benchmarks/coverage.py --models a,b --update   # re-run those, replacing their records

Writes ``coverage.json`` and ``coverage.md`` (pass rates, failures grouped by cause, speed-ups,
debt per profile).  A model past ``--limit-s`` is a failure naming the stage it was in and the
innermost compiler frame (Python's faulthandler dump), so a compile that never finishes is
found rather than waited for."""
from __future__ import annotations

import argparse
import collections
import datetime
import faulthandler
import json
import math
import pathlib
import re
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))   # coverage_checks, shared with tests/test_coverage.py


def child(name: str, limit: float, timed: bool, rounds: int) -> None:
    """Check one model and print its record as JSON (the parent's subprocess)."""
    faulthandler.dump_traceback_later(limit, exit=True)
    import coverage_checks
    from torch_hetero.errors import one_line
    try:
        record = coverage_checks.check(name)
    except Exception as error:
        record = {"name": name, "status": "error", "cause": one_line(error)}
    if timed:
        coverage_checks.stage("timing")
        try:
            record["ms"], record["inductor_error"] = timing(name, rounds)
        except Exception as error:   # Inductor's failure, or ours: the record says which
            record["timing_failed"] = one_line(error)
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps(record))


def timing(name: str, rounds: int) -> tuple:
    """(median ms per inference call, 1 thread, eager vs hetero vs Inductor, interleaved;
    Inductor's output against eager's, as ``check`` measures ours)."""
    import coverage_checks
    import torch
    from timing import interleaved_ms

    from torch_hetero.tools import model_catalog
    torch.set_num_threads(1)
    zoo = model_catalog.build(name)
    torch._dynamo.reset()
    variants = {"eager": zoo.model, "hetero": torch.compile(zoo.model, backend="hetero"), "inductor": torch.compile(zoo.model)}
    with torch.no_grad():
        error = coverage_checks.relative_error(zoo.main_output(variants["inductor"](*zoo.inputs)).float(),
                                               zoo.main_output(zoo.model(*zoo.inputs)).float())
    ms = interleaved_ms(variants, zoo.inputs, rounds, no_grad=True)
    return {k: round(v, 4) for k, v in ms.items()}, error


def run_one(name: str, limit: float, timed: bool, rounds: int) -> dict:
    command = [sys.executable, __file__, "--one", name, "--limit-s", str(limit), "--rounds", str(rounds)]
    command += ["--time"] if timed else []
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit + 120)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:   # past even faulthandler's exit
        stdout, stderr, code = "", (expired.stderr or b"").decode(errors="replace"), -9
    stages = re.findall(r"^STAGE (.+)$", stderr, flags=re.M)
    last = stages[-1] if stages else "start"
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if code == 0 and lines:
        record = json.loads(lines[-1])
    elif "Timeout (" in stderr:
        frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', stderr)
        ours = next((f for f in frames if "/torch_hetero/" in f[0]), None) or (frames[0] if frames else None)
        where = f", at {ours[0].split('/torch_hetero/')[-1]}:{ours[1]} ({ours[2]})" if ours else ""
        record = {"name": name, "status": "timeout", "cause": f"past the {limit:.0f} s limit in {last}{where}"}
    else:
        errors = [line for line in stderr.splitlines() if re.match(r"^\w+(Error|Exception)\b", line)]
        record = {"name": name, "status": "error", "cause": f"process exited {code} in {last}: "
                                                            f"{errors[-1] if errors else stderr.strip()[-200:]}"}
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def timed_subset(names: list, count: int, rotation: int) -> set:
    """``count`` models spread over the list (every k-th, so each suite and family has its
    share), starting at a different one each rotation (default: the ISO week)."""
    if not names or count <= 0:
        return set()
    step = max(len(names) // count, 1)
    return set(names[rotation % step::step][:count])


def geomean(values) -> float:
    values = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def markdown(data: dict) -> str:
    records = data["models"]
    lines = [f"# Model coverage: {data['host']}", "",
             f"{len(records)} models ({', '.join(f'{n} {s}' for s, n in collections.Counter(r['suite'] for r in records).items())}); "
             f"run {data['date']}, {data['seconds']:.0f} s; limit {data['limit_s']:.0f} s per model; tolerance "
             f"{data['tolerance']:.0e} relative to the largest eager value; past it, a pass if ours is within "
             f"{data['float64_multiplier']:g}x eager float32's distance from eager float64 (the largest over its "
             f"multi-thread and 1-thread kernels and inputs moved by one ulp), else *rounding* if compiled in float64 it matches eager float64 "
             f"within {data['float64_compiled_tolerance']:.0e} (kernels right, float32 rounding amplified by the "
             f"model; or within 2x eager float32's distance scaled by 2^-29, float64's unit roundoff over "
             f"float32's), else a *mismatch*." + (f"  Re-run since ({', '.join(data['updated'])}): "
                                                  f"{', '.join(data['updated'][d] for d in data['updated'])}."
                                                  if data.get("updated") else ""), "",
             "## Pass rates (inference and one training step on the host, against eager)", "",
             "| suite | models | pass | eager fallback | mismatch | rounding | error | timeout | pass rate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for suite in ["all", *sorted({r["suite"] for r in records})]:
        rows = [r for r in records if suite == "all" or r["suite"] == suite]
        counts = collections.Counter(r["status"] for r in rows)
        lines.append(f"| {suite} | {len(rows)} | {counts['pass']} | {counts['eager fallback']} | {counts['mismatch']} | "
                     f"{counts['rounding']} | {counts['error']} | {counts['timeout']} | {counts['pass'] / len(rows):.0%} |")
    failures = collections.defaultdict(list)
    for r in records:
        if r["status"] != "pass":
            failures[(r["status"], re.sub(r"0x[0-9a-f]+|\d+", "N", r["cause"])[:160])].append(r["name"])
    lines += ["", "## Failures by cause", ""]
    lines += ["| status | cause | models |", "|---|---|---|"] + [
        f"| {status} | {cause.replace('|', '/')} | {', '.join(names)} |" for (status, cause), names in
        sorted(failures.items(), key=lambda item: -len(item[1]))] if failures else ["None."]
    timed = [r for r in records if r.get("ms")]
    if timed:
        lines += ["", "## Speed-up over eager, inference, 1 thread (timed subset)", "",
                  "| model | eager ms | hetero ms | Inductor ms | hetero × | Inductor × |", "|---|---|---|---|---|---|"]
        for r in timed:
            ms = r["ms"]
            lines.append(f"| {r['name']} | {ms['eager']:.3f} | {ms['hetero']:.3f} | {ms['inductor']:.3f} | "
                         f"{ms['eager'] / ms['hetero']:.2f} | {ms['eager'] / ms['inductor']:.2f} |")
        ours, theirs = (geomean([r["ms"]["eager"] / r["ms"][k] for r in timed]) for k in ("hetero", "inductor"))
        lines += [f"| **geomean** ({len(timed)}) | | | | **{ours:.2f}** | **{theirs:.2f}** |", "",
                  f"Inference against eager on these: hetero "
                  f"{sum(r['error']['inference'] <= data['tolerance'] for r in timed)}/{len(timed)}, Inductor "
                  f"{sum(r['inductor_error'] <= data['tolerance'] for r in timed)}/{len(timed)}."]
    failed = [r for r in records if r.get("timing_failed")]
    if failed:
        lines += ["", "Not timed: " + "; ".join(f"{r['name']} ({r['timing_failed']})" for r in failed)]
    lines += ["", "## Per model", "", "| model | suite | family | status | inference err | training err | graph breaks | "
              "ATen fallbacks (host) | compile s (inf / train) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        error, compile_s = r.get("error", {}), r.get("compile_s", {})
        lines.append(f"| {r['name']} | {r.get('suite', '')} | {r.get('family', '')} | {r['status']} | "
                     f"{error.get('inference', float('nan')):.1e} | {error.get('training', float('nan')):.1e} | "
                     f"{r.get('graph_breaks', '')} | {', '.join(r.get('fallbacks', {})) or '-'} | "
                     f"{compile_s.get('inference', '-')} / {compile_s.get('training', '-')} |")
    profiles = sorted({p for r in records for p in r.get("debt", {}) if p != "capture failed"})
    if profiles:
        lines += ["", "## Portability debt per Triton profile (inference graphs: ops left to ATen)", "",
                  "| profile | models with debt | ops (models) |", "|---|---|---|"]
        for profile in profiles:
            ops = collections.Counter(op for r in records for op in r.get("debt", {}).get(profile, {}))
            having = sum(bool(r.get("debt", {}).get(profile)) for r in records)
            lines.append(f"| {profile} | {having} | {', '.join(f'{op} ({n})' for op, n in ops.most_common())} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated names (default: the whole catalog)")
    parser.add_argument("--suites", default="transformers,timm,recsys")
    parser.add_argument("--budget-s", type=float, default=math.inf, help="start no model after this many seconds")
    parser.add_argument("--limit-s", type=float, default=300.0, help="per model: past it, a failure with its stage")
    parser.add_argument("--timed", type=int, default=12, help="models timed against eager and Inductor")
    parser.add_argument("--rotation", type=int, default=datetime.date.today().isocalendar()[1])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--update", action="store_true",
                        help="re-run --models and replace their records in --out's coverage.json (after a fix)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--time", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return child(args.one, args.limit_s, args.time, args.rounds)
    import platform

    import coverage_checks
    import torch
    from torch_hetero.tools import model_catalog
    suites = args.suites.split(",")
    names = args.models.split(",") if args.models else [n for n, e in model_catalog.ENTRIES.items() if e.suite in suites]
    unknown = [n for n in names if n not in model_catalog.ENTRIES]
    if unknown:
        sys.exit(f"unknown models {unknown}; the catalog is torch_hetero/tools/model_catalog.py")
    previous = json.loads((pathlib.Path(args.out) / "coverage.json").read_text()) if args.update else None
    if previous:   # the models timed in that run are timed again
        args.rotation = previous["rotation"]
        timed = {r["name"] for r in previous["models"] if r.get("ms")}
    else:
        timed = timed_subset(names, args.timed, args.rotation)
    start, records = time.perf_counter(), []
    for name in names:
        if time.perf_counter() - start > args.budget_s:
            print(f"budget spent: {len(names) - len(records)} models not run", file=sys.stderr)
            break
        entry = model_catalog.ENTRIES[name]
        record = {"suite": entry.suite, "family": entry.family, **run_one(name, args.limit_s, name in timed, args.rounds)}
        records.append(record)
        print(f"{name}: {record['status']} {record.get('cause', '')} ({record['seconds']} s)", file=sys.stderr, flush=True)
    data = {"host": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "date": datetime.date.today().isoformat(), "seconds": time.perf_counter() - start, "limit_s": args.limit_s,
            "tolerance": coverage_checks.TOLERANCE,
            "float64_multiplier": coverage_checks.FLOAT64_MULTIPLIER,
            "float64_compiled_tolerance": coverage_checks.FLOAT64_COMPILED_TOLERANCE, "rotation": args.rotation, "models": records}
    if previous:
        rerun = {r["name"]: r for r in records}
        updated = dict(previous.get("updated", {}))
        updated[datetime.datetime.now().isoformat(timespec="minutes")] = ", ".join(rerun)
        data = {**previous, **{k: data[k] for k in ("tolerance", "float64_multiplier", "float64_compiled_tolerance")},
                "updated": updated, "models": [rerun.get(r["name"], r) for r in previous["models"]]}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "coverage.json").write_text(json.dumps(data, indent=1))
    text = markdown(data)
    (out / "coverage.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
