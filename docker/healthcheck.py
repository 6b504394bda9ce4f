"""Container health check: healthy iff a node heartbeat arrives within 5 s (CURVE with the subscriber key).

    python docker/healthcheck.py ENDPOINT KEYS_DIR [CLIENT_NAME [NODE_NAME]]
"""
import sys

import zmq

from pipeline.security import Security
from pipeline.sinks import Subscriber
from pipeline.transport import secure


def main(endpoint: str, keys: str, client: str = "subscriber", node: str = "node") -> int:
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
