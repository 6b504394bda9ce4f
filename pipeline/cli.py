"""The `ssdnet` console command. Each subcommand lives in the module named in COMMANDS,
which exposes `add_parser(subparsers)`; the parser it adds sets `func(args) -> int`."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = (
    "edge.evaluate",      # ssdnet eval
    "edge.score_images",  # ssdnet score
    "edge.bench",         # ssdnet bench
    "export.cli",         # ssdnet export, ssdnet backends, ssdnet bench-scorer
    "pipeline.launcher",  # ssdnet run
    "pipeline.subscribe",  # ssdnet subscribe
    "pipeline.soak",      # ssdnet soak
    "pipeline.keys",      # ssdnet keys
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssdnet", description="Zero-shot anomaly maps from single images and live cameras (SSDnet).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edge.config import ConfigError
    from edge.vgg import VGGWeightsError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, VGGWeightsError, FileNotFoundError) as e:
        print(f"ssdnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssdnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
