"""docs/protocol.md is enough to implement a camera, a subscriber and a replay client: its Python
examples (pyzmq + msgpack + numpy only) are extracted from the document and run, as separate
processes, against a real node; and its config reference and counter tables name every key."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq

from pipeline import protocol as P
from pipeline.admission import REASONS, Camera, Peer
from pipeline.config import (
    FolderSourceConfig,
    LineConfig,
    NodeConfig,
    PrometheusConfig,
    SecurityConfig,
    SinksConfig,
    SyntheticSourceConfig,
    VideoSourceConfig,
)
from pipeline.launcher import run_line
from pipeline.node import PEER_REFUSALS, EdgeNode
from pipeline.security import CLIENT_REFUSALS, SERVER_REFUSALS
from test_pipeline_launcher import line_config
from test_pipeline_node import FastDetector, wait_until

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def examples(doc: Path = DOC) -> dict[str, str]:
    """The doc's ```python blocks whose first line is `# example: NAME`."""
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    return {m.group(1): block for block in blocks if (m := re.match(r"# example: (\w+)\n", block))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(code: str, env: dict, tmp_path: Path, name: str) -> subprocess.Popen:
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    # a clean interpreter: no project code on its path, only the documented dependencies
    return subprocess.Popen([sys.executable, "-I", str(script)], env={**os.environ, **env}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_doc_examples_talk_to_a_real_node(tmp_path):
    code = examples()
    assert set(code) == {"camera", "subscriber", "replay"}
    for block in code.values():  # written from the document alone: the wire libraries, no project code
        assert set(re.findall(r"^(?:import|from) (\w+)", block, re.M)) <= {"os", "time", "msgpack", "numpy", "zmq"}
    camera_bind = f"tcp://127.0.0.1:{_free_port()}"
    cfg = NodeConfig(connect=(camera_bind,), connect_cameras={camera_bind: ("cam7",)}, threshold=4.0,
                     queue_depth=64, heartbeat_s=0.1, event_log=tmp_path / "events.db")
    ctx = zmq.Context()
    node = EdgeNode(cfg, (), FastDetector, ctx)
    stop, ready = threading.Event(), []
    t = threading.Thread(target=node.run, args=(stop, ready.append, 20.0), daemon=True)
    t.start()
    procs = []
    try:
        wait_until(lambda: ready)
        env = {"SSDNET_NODE": ready[0], "SSDNET_CAMERA_BIND": camera_bind, "SSDNET_CAMERA_NAME": "cam7",
               "SSDNET_FRAMES": "12", "SSDNET_REPLAY": node.replay_endpoint}
        procs.append(_run(code["subscriber"], env, tmp_path, "subscriber"))  # the node starts once it is there
        procs.append(_run(code["camera"], env, tmp_path, "camera"))
        out = {name: p.communicate(timeout=60)[0] for name, p in zip(("subscriber", "camera"), procs, strict=True)}
        assert [p.returncode for p in procs] == [0, 0], out
        assert "cam7: sent 12 frames" in out["camera"]
        anomalies = re.findall(r"anomaly cam7 \(tile-7\) #(\d+) (\w+) score ([\d.]+) map \((\d+), (\d+)\)",
                               out["subscriber"])  # the product the camera named, echoed
        assert [int(a[0]) for a in anomalies] == list(range(12)), out["subscriber"]
        assert all(a[3:] == ("96", "128") for a in anomalies)
        events = re.findall(r"event cam7 #(\d+)", out["subscriber"])
        assert events == [a[0] for a in anomalies if a[1] == "anomalous"] and len(events) == 6  # the defective frames
        assert "end of stream cam7 after 12 frames: scored 12" in out["subscriber"]
        counters = node.counters.source("cam7")
        assert (counters["scored"], counters["lost"], counters["rejected"]) == (12, 0, 0)
        assert sum(node.counters.rejected.values()) == 0 and node.counters.bad_messages == 0
        replay = _run(code["replay"], env, tmp_path, "replay")
        procs.append(replay)
        text = replay.communicate(timeout=60)[0]
        assert replay.returncode == 0, text
        assert f"heads {{'cam7': {len(events)}}}" in text
        assert re.findall(r"log_seq (\d+): cam7 #(\d+)", text) == [(str(i + 1), s) for i, s in enumerate(events)]
        assert f"{len(events)} events in {-(-len(events) // 2)} pages" in text  # limit 2: paged
        assert "end_seq 1: cam7 ended after 12 frames, 12 scored" in text  # its end of stream, logged as forwarded
        assert "refused: bad events request: after: Input should be greater than or equal to 0" in text
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        stop.set()
        t.join(5)
        ctx.destroy(linger=0)


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(title)
    nxt = text.find("\n## ", start + 1)
    return text[start:nxt if nxt > 0 else None]


@pytest.mark.parametrize("model", [LineConfig, SyntheticSourceConfig, VideoSourceConfig, FolderSourceConfig, NodeConfig,
                                   SinksConfig, PrometheusConfig, SecurityConfig])
def test_config_reference_names_every_key(model):
    reference = _section("## 10. Line config reference")
    missing = [name for name in model.model_fields if f"`{name}`" not in reference]
    assert not missing, f"docs/protocol.md section 10 lacks {model.__name__} keys {missing}"


def test_header_tables_name_every_field():
    """Each header field of each kind (pipeline/protocol.py) is named in section 3, `run` included."""
    headers = _section("## 3. Header fields")
    fields = {name for model in (P.FrameHeader, P.AnomalyHeader, P.EventHeader, P.HeartbeatHeader, P.EosHeader)
              for name in model.model_fields}
    missing = sorted(name for name in fields if f"`{name}`" not in headers)
    assert "run" in fields and not missing, f"docs/protocol.md section 3 lacks header fields {missing}"


def test_counter_table_names_every_reason():
    counters = _section("## 7. Counters")
    missing = [r for r in REASONS + SERVER_REFUSALS + CLIENT_REFUSALS + PEER_REFUSALS if f"`{r}`" not in counters]
    assert not missing, f"docs/protocol.md section 7 lacks {missing}"


def test_summary_camera_keys_are_documented():
    """Each key of summary.json's `cameras.<name>` (the node's report) is named in section 7 and pipeline/README.md."""
    ctx = zmq.Context()
    try:
        node = EdgeNode(NodeConfig(), (), FastDetector, ctx)
        node.admission._bind(Camera("cam7", Peer("tcp://127.0.0.1:1")))
        keys = node.report()["cameras"]["cam7"]
    finally:
        ctx.destroy(linger=0)
    readme = (DOC.parents[1] / "pipeline" / "README.md").read_text()
    for name, text in (("docs/protocol.md section 7", _section("## 7. Counters")), ("pipeline/README.md", readme)):
        missing = [k for k in keys if f"`{k}`" not in text]
        assert not missing, f"{name} lacks summary.json cameras keys {missing}"


def _readme_bullet(name: str) -> str:
    """The README's bullet on what a line of OUT/NAME holds."""
    readme = (DOC.parents[1] / "README.md").read_text()
    match = re.search(rf"^- `{re.escape(name)}`: (.*?)(?=^- |^$)", readme, re.M | re.S)
    assert match, f"README.md has no bullet on {name}'s keys"
    return match.group(1)


def test_readme_names_every_key_of_the_out_folder_s_files(tmp_path):
    """A reader of OUT/events.jsonl, scores.jsonl and summary.json finds each key the line writes in the README, and
    scores.jsonl's `regions` is the count the README says (events.jsonl's is the list of regions)."""
    summary = run_line(line_config(frames=4, scores=True), tmp_path, detector_factory=FastDetector)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert events and scores and summary["events"] == len(events)
    assert isinstance(events[0]["regions"], list) and isinstance(scores[0]["regions"], int)
    for name, keys in (("events.jsonl", events[0]), ("scores.jsonl", scores[0]), ("summary.json", summary)):
        missing = [k for k in keys if f"`{k}`" not in _readme_bullet(name)]
        assert not missing, f"README.md does not say what {name}'s {missing} are"
