"""The `ssdnet` console command. Each subcommand lives in the module named in COMMANDS,
which exposes `add_parser(subparsers)`; the parser it adds sets `func(args) -> int`."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import zmq

from edge.config import ConfigError

COMMANDS = (
    "tools.eval.evaluate",  # ssdnet eval
    "tools.score_images",   # ssdnet score
    "tools.calibrate",      # ssdnet calibrate
    "tools.bench",          # ssdnet bench
    "export.cli",           # ssdnet export, ssdnet backends, ssdnet bench-scorer
    "pipeline.launcher",    # ssdnet run
    "pipeline.subscribe",   # ssdnet subscribe
    "pipeline.view",        # ssdnet view
    "tools.soak",           # ssdnet soak
    "pipeline.keys",        # ssdnet keys
)

QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx._internal.exporter._registration")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssdnet", description="Zero-shot anomaly maps from single "
                                                                "images and live cameras (SSDnet).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:  # the commands' imports take seconds (torch): a Ctrl-C meanwhile ends the command as one later would
        args = build_parser().parse_args(argv)
        # imported after the parser (which imports every command): the stage processes of `ssdnet run`
        # re-import this module as their __main__'s and must not load torch, which edge.vgg does
        from edge.vgg import VGGWeightsError
    except KeyboardInterrupt:
        print("ssdnet: interrupted", file=sys.stderr)
        return 130

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:  # `ssdnet export --exporter dynamo`: a line per merged constant, a missing torchvision
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, VGGWeightsError, FileNotFoundError) as e:
        print(f"ssdnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssdnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, zmq.ZMQError) as e:  # bad input met on the way: one line, not a trace
        if isinstance(e, FileExistsError) and e.filename is not None and os.path.isfile(e.filename):  # `--out FILE`
            print(f"ssdnet {args.command}: error: {e.filename} is a file, where a folder goes", file=sys.stderr)
            return 2
        if args.verbose:
            raise
        text = " ".join(str(e).split())
        print(f"ssdnet {args.command}: error: {type(e).__name__}: {text[:500]} (-v shows where)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
