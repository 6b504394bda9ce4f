"""What a replay `heads` request costs the node: the old `GROUP BY source` query and `pipeline.eventlog.HEADS_QUERY`
timed on the same in-memory event log in one run (best of 5 each), and checked to give the same answer.

    PYTHONPATH=<checkout> python docs/security_runs/measure_heads.py [EVENTS [CAMERAS]]
"""
from __future__ import annotations

import sqlite3
import sys
import time

from pipeline.eventlog import HEADS_QUERY, SCHEMA

GROUP_BY = "SELECT source, MAX(log_seq) FROM events GROUP BY source"  # the query before HEADS_QUERY


def best_ms(db: sqlite3.Connection, query: str, repeats: int = 5) -> tuple[float, dict]:
    times, rows = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = db.execute(query).fetchall()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000, dict(rows)


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    cameras = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    header = b"x" * 600  # about an event's msgpack header
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                   ((f"cam{i % cameras}", i // cameras + 1, 0.0, header) for i in range(events)))
    old, old_heads = best_ms(db, GROUP_BY)
    new, new_heads = best_ms(db, HEADS_QUERY)
    assert old_heads == new_heads, (old_heads, new_heads)
    print(f"{events} events of {cameras} cameras: GROUP BY {old:.2f} ms, HEADS_QUERY {new:.3f} ms "
          f"({old / new:.0f}x less)")


if __name__ == "__main__":
    main()
