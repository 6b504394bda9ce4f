"""`ssdnet keys DIR --name NAME`: make a CURVE keypair, DIR/NAME.key (public) and DIR/NAME.key_secret.

Give every stage its own pair, named after it (each camera, the node, `subscriber`/`client_name`).
Copy a *client's* NAME.key into the allow-list folder (`security.authorized_dir`) of the machines
whose sockets it connects to, and a *server's* NAME.key (cameras, node) into `public_keys_dir` of
the machines that connect to it. The .key_secret never leaves its machine.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .protocol import SOURCE_PATTERN
from .security import make_keypair


def stage_name(text: str) -> str:
    """--name: a name the line config takes for a camera, the node or a subscriber (protocol.SOURCE_PATTERN)."""
    if not re.fullmatch(SOURCE_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a stage name: 1 to 64 letters, digits, '_', '.', ':' "
                                         "or '-', starting with a letter or digit (the rule of the line config's "
                                         "camera and node names)")
    return text


def _main(args: argparse.Namespace) -> int:
    try:
        public, secret = make_keypair(args.dir, args.name, force=args.force)
    except FileExistsError as e:
        if e.filename is not None:  # DIR is a file: the command line's own message says so
            raise
        print(f"ssdnet keys: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {public} (public: copy it to the peers' allow-list "
          f"or public_keys_dir) and {secret} (secret: keep it here)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="make a CURVE keypair for a pipeline stage", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="folder for NAME.key and NAME.key_secret")
    p.add_argument("--name", required=True, type=stage_name, help="stage name: a camera, the node, or subscriber")
    p.add_argument("--force", action="store_true", help="replace an existing keypair")
    p.set_defaults(func=_main)
