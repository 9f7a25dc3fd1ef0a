"""Command line: ``python -m torch_hetero demo | devices | calibrate``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torch_hetero")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="compile a real transformer, check it against eager, print the report")
    demo.add_argument("--model", choices=["gpt2", "tiny-gpt"], default="gpt2",
                      help="gpt2: Hugging Face GPT-2 built from a small config (needs `transformers`); "
                           "tiny-gpt: the plain-torch GPT-2-style model in torch_hetero.examples")
    demo.add_argument("--show-code", action="store_true", help="print the generated sources too")
    commands.add_parser("devices", help="list the device profiles (the cpu row is this host, measured)")
    commands.add_parser("calibrate", help="re-measure this host's memory bandwidth and FLOP/s for the cpu profile")
    args = parser.parse_args(argv)
    if args.command == "devices":
        from .device_models import list_devices
        print(list_devices(), end="")
        return 0
    if args.command == "calibrate":
        from .device_models.host import recalibrate
        print(recalibrate())
        return 0
    from .demo import run_demo
    return run_demo(args.model, args.show_code)


if __name__ == "__main__":
    sys.exit(main())
