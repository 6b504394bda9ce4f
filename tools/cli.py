"""The `ssdnet` console command. Each subcommand lives in the module COMMANDS names for it, which exposes
`add_parser(subparsers)`; the parser it adds sets `func(args) -> int`."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import zmq

from edge.config import ConfigError, VGGWeightsError

COMMANDS = {  # subcommand -> the module whose `add_parser(subparsers)` adds it
    "eval": "tools.eval.evaluate",
    "score": "tools.score_images",
    "calibrate": "tools.calibrate",
    "bench": "tools.bench",
    "export": "export.cli", "backends": "export.cli", "bench-scorer": "export.cli",
    "run": "pipeline.launcher",
    "subscribe": "pipeline.subscribe",
    "view": "pipeline.view",
    "soak": "tools.soak",
    "keys": "pipeline.keys",
}

QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx._internal.exporter._registration")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand's parser, or `command`'s alone: only its module is imported (the commands' imports take
    seconds, and `ssdnet run --stage camera:NAME` loads no torch; every module imported, it loaded `ssdnet eval`'s)."""
    parser = argparse.ArgumentParser(prog="ssdnet", description="Zero-shot anomaly maps from single "
                                                                "images and live cameras (SSDnet).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values()):
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:  # the commands' imports take seconds (torch): a Ctrl-C meanwhile ends the command as one later would
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(next((a for a in argv if not a.startswith("-")), None)).parse_args(argv)
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
