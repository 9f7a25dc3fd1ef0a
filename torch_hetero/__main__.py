"""Command line: ``python -m torch_hetero demo | audit | devices | calibrate``."""
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
    audit.add_argument("--dtype", choices=sorted(DTYPES), help="convert the model and inputs first")
    audit.add_argument("--out", default="audit-report", help="directory for audit.md, audit.json, roofline.png")
    audit.add_argument("--no-aot", action="store_true", help="skip the ahead-of-time Triton builds")
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
    from .tools.demo import run_demo
    return run_demo(args.model, args.show_code)


DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def _audit(args) -> int:
    """Bad arguments (devices, the output directory, the factory) exit 2 before any compiling."""
    import torch
    from .tools.audit import audit, load_factory
    from .tools.audit_report import check_directory
    devices = args.devices.split(",") if args.devices is not None else None
    if devices is not None and not all(devices):
        return _usage_error(f"--devices {args.devices!r} has an empty name; give comma-separated profile names "
                            "or .toml files (python -m torch_hetero devices lists them)")
    try:
        check_directory(args.out)
    except OSError as error:
        return _usage_error(f"{error}; choose another --out")
    try:
        model, inputs = load_factory(args.factory)
    except ValueError as error:
        return _usage_error(str(error))
    result = audit(model, *inputs, devices=devices, dtype=getattr(torch, args.dtype) if args.dtype else None,
                   ahead_of_time=not args.no_aot)
    print(result)
    paths = result.write(args.out)
    print("\nreport: " + ", ".join(paths.values()))
    return 0 if all(d.error is None for d in result.devices) else 1


def _usage_error(message: str) -> int:
    print(f"python -m torch_hetero audit: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
