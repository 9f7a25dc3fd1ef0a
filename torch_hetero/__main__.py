"""Command line: ``python -m torch_hetero demo | audit | plan | devices | calibrate``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torch_hetero")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="compile a real transformer, check it against eager, print the report")
    demo.add_argument("--model", choices=["gpt2", "tiny-gpt"], default="gpt2",
                      help="gpt2: Hugging Face GPT-2 built from a small config (needs `transformers`); "
                           "tiny-gpt: the plain-torch GPT-2-style model in torch_hetero.tools.examples")
    demo.add_argument("--show-code", action="store_true", help="print the generated sources too")
    audit = commands.add_parser("audit", help="compile your model for several device profiles and compare them")
    audit.add_argument("factory", metavar="MODULE:FACTORY",
                       help="a function (in a module on the path, or a .py file) returning (model, example_inputs)")
    audit.add_argument("--devices", help="comma-separated profile names or .toml files (default: all)")
    audit.add_argument("--dtype", help="number formats, comma-separated (fp32, bf16, fp16, fp8, int8wo): the model "
                                       "is converted to each and its accuracy measured against fp32")
    audit.add_argument("--out", default="audit-report",
                       help="directory for audit.md, audit.json, roofline.png (several formats: formats.md, "
                            "formats.json, formats.png and a directory per format)")
    audit.add_argument("--no-aot", action="store_true", help="skip the ahead-of-time Triton builds")
    plan = commands.add_parser("plan", help="rank deployments of your model: device, count, dtype, batch, "
                                            "sequence length, parallelism, split placement")
    plan.add_argument("factory", metavar="MODULE:FACTORY",
                      help="a function returning (model, example_inputs); it may take batch_size and seq_len "
                           "keywords, called on the meta device at each sweep point")
    plan.add_argument("--devices", required=True, help="comma-separated profile names or .toml files")
    plan.add_argument("--mode", choices=["serve", "train"], default="serve")
    plan.add_argument("--batch-sizes", default="1", help="comma-separated (per device, or per replica)")
    plan.add_argument("--seq-lens", help="comma-separated prompt or sequence lengths (serve: required)")
    plan.add_argument("--world-sizes", default="1", help="comma-separated device counts")
    plan.add_argument("--dtypes", default="bf16", help="comma-separated: fp32, bf16, fp16")
    plan.add_argument("--objective", choices=["throughput", "latency", "perf_per_watt", "cost"], default="throughput")
    plan.add_argument("--prices", help="your price per device-hour, e.g. h100=2.5,mi300x=2.1 (needed for cost)")
    plan.add_argument("--output-len", type=int, default=128, help="serve: tokens generated per request")
    plan.add_argument("--out", default="plan-report", help="directory for plan.md, plan.json, pareto.png")
    commands.add_parser("devices", help="list the device profiles (the cpu row is this host, measured)")
    commands.add_parser("calibrate", help="re-measure this host's memory bandwidth and FLOP/s for the cpu profile")
    args = parser.parse_args(argv)
    if args.command == "devices":
        from .device_models import list_devices
        print(list_devices(), end="")
        return 0
    if args.command == "calibrate":
        from .calibration.recalibrate import recalibrate
        print(recalibrate())
        return 0
    if args.command == "audit":
        return _audit(args)
    if args.command == "plan":
        return _plan(args)
    from .tools.demo import run_demo
    return run_demo(args.model, args.show_code)


def _audit(args) -> int:
    """Bad arguments (devices, the output directory, the factory) exit 2 before any compiling."""
    from .tools.audit import audit, audit_formats, load_factory
    from .tools.audit_report import check_directory
    from .tools.formats import format_name
    devices = args.devices.split(",") if args.devices is not None else None
    if devices is not None and not all(devices):
        return _usage_error(f"--devices {args.devices!r} has an empty name; give comma-separated profile names "
                            "or .toml files (python -m torch_hetero devices lists them)")
    try:
        formats = [format_name(f) for f in args.dtype.split(",")] if args.dtype is not None else []
    except ValueError as error:
        return _usage_error(f"--dtype: {error}")
    try:
        check_directory(args.out)
    except OSError as error:
        return _usage_error(f"{error}; choose another --out")
    try:
        model, inputs = load_factory(args.factory)
    except ValueError as error:
        return _usage_error(str(error))
    if len(formats) > 1:
        result = audit_formats(model, *inputs, devices=devices, formats=formats, ahead_of_time=not args.no_aot)
        audits = result.audits
    else:
        result = audit(model, *inputs, devices=devices, dtype=formats[0] if formats else None,
                       ahead_of_time=not args.no_aot)
        audits = [result]
    print(result)
    paths = result.write(args.out)
    print("\nreport: " + ", ".join(paths.values()))
    return 0 if all(d.error is None for a in audits for d in a.devices) else 1


def _plan(args) -> int:
    """Bad options exit 2 with the reason before any tracing; a configuration that fails is a
    row of the table (exit 1)."""
    from .errors import PlanError, ProfileError
    from .tools.audit import find_factory
    from .tools.audit_report import check_directory
    from .tools.planner import plan
    try:
        options = {"devices": _names(args.devices, "--devices"), "mode": args.mode,
                   "batch_sizes": _integers(args.batch_sizes, "--batch-sizes"),
                   "seq_lens": _integers(args.seq_lens, "--seq-lens") if args.seq_lens is not None else None,
                   "world_sizes": _integers(args.world_sizes, "--world-sizes"),
                   "dtypes": _names(args.dtypes, "--dtypes"), "objective": args.objective,
                   "prices": _prices(args.prices), "output_len": args.output_len}
        check_directory(args.out)
        factory = find_factory(args.factory)
        result = plan(factory, **options)
    except (PlanError, ProfileError, ValueError, OSError) as error:
        return _usage_error(str(error), "plan")
    print(result)
    paths = result.write(args.out)
    print("\nreport: " + ", ".join(paths.values()))
    return 0 if all(c.error is None for c in result.configs) else 1


def _names(text: str, flag: str) -> list:
    names = text.split(",")
    if not all(names):
        raise ValueError(f"{flag} {text!r} has an empty entry; give comma-separated names")
    return names


def _integers(text: str, flag: str) -> list:
    try:
        return [int(v) for v in _names(text, flag)]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None


def _prices(text) -> dict | None:
    if text is None:
        return None
    prices = {}
    for entry in _names(text, "--prices"):
        name, sep, value = entry.partition("=")
        try:
            prices[name] = float(value)
        except ValueError:
            raise ValueError(f"--prices entries are DEVICE=PRICE (e.g. h100=2.5), got {entry!r}") from None
        if not sep or not name:
            raise ValueError(f"--prices entries are DEVICE=PRICE (e.g. h100=2.5), got {entry!r}")
    return prices


def _usage_error(message: str, command: str = "audit") -> int:
    print(f"python -m torch_hetero {command}: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
