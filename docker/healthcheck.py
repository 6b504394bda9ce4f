"""Container health check: healthy iff a heartbeat of NODE_NAME (the node, or a camera by its name) arrives
within 5 s (CURVE with the CLIENT_NAME key), or, for an http:// URL (the live view's /healthz), it answers 200.

    python docker/healthcheck.py ENDPOINT KEYS_DIR [CLIENT_NAME [NODE_NAME]]
    python docker/healthcheck.py http://127.0.0.1:8765/healthz
"""
import sys
import urllib.request

import zmq

from pipeline.security import Security
from pipeline.sinks import Subscriber
from pipeline.transport import secure


def main(endpoint: str, keys: str = "", client: str = "subscriber", node: str = "node") -> int:
    if endpoint.startswith("http://"):
        try:
            with urllib.request.urlopen(endpoint, timeout=5) as r:
                return 0 if r.status == 200 else 1
        except OSError as e:
            print(f"{endpoint}: {e}", file=sys.stderr)
            return 1
    ctx = zmq.Context()
    sec = Security(f"{keys}/{client}.key_secret")
    secure(ctx, sec)
    sub = Subscriber(endpoint, (f"heartbeat/{node}".encode(),), ctx=ctx, server_key=sec.server_key(node))
    try:
        for _ in range(50):
            if sub.recv(100) is not None:
                return 0
        print(f"no heartbeat from {node} at {endpoint} in 5 s", file=sys.stderr)
        return 1
    finally:
        sub.close()
        ctx.destroy(linger=0)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
