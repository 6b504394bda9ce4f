"""What a line config refuses when loaded (ports out of range, two binds on one port, NaN and infinity), and how a
stage says that its port is taken: one line naming the config key, no traceback."""
from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Iterator

import pytest
import yaml
import zmq

import pipeline.sources
from edge.config import ConfigError, load_config, load_yaml, parse_config
from pipeline.config import LineConfig, NodeConfig, SyntheticSourceConfig, load_line_config
from pipeline.node import EdgeNode
from pipeline.sources import Camera, run_camera
from pipeline.stages import bind_key, run_stage
from pipeline.transport import BindError, bind
from test_pipeline_node import FastDetector
from tools.cli import main as cli_main


def line(*sources: dict, **rest) -> dict:
    return {"sources": [{"kind": "synthetic", "frames": 1, **s} for s in sources], **rest}


def refusal(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(LineConfig, data, "line.yaml")
    return str(e.value)


@pytest.fixture
def held() -> Iterator[str]:
    """A tcp endpoint another socket holds (bound on a free port)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind("tcp://127.0.0.1:*")
    yield sock.getsockopt_string(zmq.LAST_ENDPOINT)
    sock.close(linger=0)
    ctx.term()


@pytest.mark.parametrize("port", ["99999", "65536", "0"])
def test_a_tcp_port_outside_1_to_65535_is_refused_naming_the_key(port):
    """ZeroMQ bound port 99999 as 99999 - 65536 = 34463, silently."""
    text = refusal(line({"name": "a", "bind": f"tcp://127.0.0.1:{port}"}))
    assert "sources.0.synthetic.bind" in text and f"port {port} is out of range: use 1-65535, or *" in text
    assert "node.bind" in refusal(line({"name": "a"}, node={"bind": f"tcp://127.0.0.1:{port}"}))
    parse_config(LineConfig, line({"name": "a", "bind": "tcp://127.0.0.1:65535"}, node={"bind": "tcp://127.0.0.1:1"}))


def test_two_binds_on_one_port_of_this_machine_are_refused_naming_both():
    text = refusal(line({"name": "a", "bind": "tcp://127.0.0.1:47124"}, {"name": "b", "bind": "tcp://127.0.0.1:47124"}))
    assert "sources[a].bind (tcp://127.0.0.1:47124) and sources[b].bind (tcp://127.0.0.1:47124)" in text
    assert "give each its own, or `*` for any free port" in text
    text = refusal(line({"name": "a", "bind": "tcp://0.0.0.0:5555"}, node={"bind": "tcp://127.0.0.1:5555"},
                        allow_insecure_network=True))
    assert "sources[a].bind (tcp://0.0.0.0:5555) and node.bind (tcp://127.0.0.1:5555)" in text
    assert "node.bind" in refusal(line({"name": "a"}, node={"bind": "ipc:///tmp/n", "replay_bind": "ipc:///tmp/n"}))
    for fine in (line({"name": "a"}, {"name": "b"}),  # any free port, each
                 line({"name": "a", "bind": "tcp://127.0.0.1:5555"}, {"name": "b", "bind": "tcp://127.0.0.2:5555"}),
                 # cameras on hosts of their own (`ssdnet run --stage camera:NAME`) may share a port number
                 line({"name": "a", "bind": "tcp://0.0.0.0:5555", "address": "tcp://cam-a:5555"},
                      {"name": "b", "bind": "tcp://0.0.0.0:5555", "address": "tcp://cam-b:5555"},
                      allow_insecure_network=True)):
        parse_config(LineConfig, fine)


@pytest.mark.parametrize(("where", "key"), [
    ({"node": {"threshold": float("nan")}}, "node.threshold"),
    ({"node": {"threshold": float("-inf")}}, "node.threshold"),
    ({"node": {"region_threshold": float("inf")}}, "node.region_threshold"),
    ({"node": {"memory_budget_mb": float("inf")}}, "node.memory_budget_mb"),
    ({"sinks": {"overlay_range": [0.0, float("inf")]}}, "sinks.overlay_range.1"),
    ({"sinks": {"view": {"overlay_range": [float("nan"), 1.0]}}}, "sinks.view.overlay_range.0"),
    ({"timeout_s": float("inf")}, "timeout_s"),
    ({"node": {"ssdnet": {"score": {"smooth_sigma": float("nan")}}}}, "node.ssdnet.score.smooth_sigma"),
    ({"node": {"ssdnet": {"memory": {"weight": float("inf")}}}}, "node.ssdnet.memory.weight"),
    ({"node": {"ssdnet": {"fit": {"budget_ms": float("inf")}}}}, "node.ssdnet.fit.budget_ms"),
])
def test_nan_and_infinity_are_refused_when_the_config_loads(where, key):
    """`threshold: .nan` loaded, then every frame failed in the node."""
    assert f"{key}: Input should be a finite number" in refusal(line({"name": "a"}, **where))


@pytest.mark.parametrize(("where", "key"), [
    ({"node": {"ssdnet": {"score": {"smooth_sigma": 22}}}}, "score.smooth_sigma 22 blurs 66 px"),
    ({"node": {"ssdnet": {"score": {"smooth_sigma": 11}, "fit": {"scales": [2]}}}}, "a multiple of 16 for fit.scales"),
    ({"sources": [{"kind": "synthetic", "name": "a", "seed": -1}]}, "sources.0.synthetic.seed"),
])
def test_a_value_every_frame_or_the_camera_would_fail_on_is_refused_when_the_config_loads(where, key):
    """An outside audit: `smooth_sigma: 64` loaded, and every frame under ~192 px then failed in torch's padding
    (a blur's radius must stay inside the smallest padded map, 64 px at the default scales); `seed: -1` loaded, and the
    camera failed to start with numpy's error, naming no key."""
    assert key in refusal({**line({"name": "a"}), **where})


@pytest.mark.parametrize(("where", "says"), [
    ({"node": {"min_side": 32, "max_side": 16}}, "node: min_side (32) must be at most max_side (16)"),
    ({"node": {"min_side": 64, "max_frame_pixels": 1000}},
     "node: min_side^2 (4096) must be at most max_frame_pixels (1000)"),
    ({"sources": [{"kind": "synthetic", "name": "a", "backoff_initial_s": 20}]},
     "sources.0.synthetic: backoff_initial_s (20) must be at most backoff_max_s (10)"),
    ({"sinks": {"overlay_range": [2.0, 1.0]}},
     "sinks: overlay_range[0] (2) must be below overlay_range[1] (1)"),
    ({"sinks": {"view": {"overlay_range": [1.0, 1.0]}}},
     "sinks: view.overlay_range[0] (1) must be below view.overlay_range[1] (1)"),
])
def test_a_lower_bound_above_its_upper_bound_is_refused_naming_both_keys(where, says):
    """`max_side: 16` under the default `min_side: 32` started, and then refused every frame. The refusal is the
    validator's own words, without pydantic's "Value error, " before them."""
    assert says in refusal({**line({"name": "a"}), **where})
    parse_config(LineConfig, line({"name": "a"}, node={"min_side": 16, "max_side": 16}))  # equal bounds are fine


def test_a_checkpoint_dir_the_node_cannot_write_fails_its_start_naming_it(tmp_path):
    """`checkpoint_dir: /proc/nope` started, and logged a failed save at every changeover and end of stream."""
    blocked = tmp_path / "a-file" / "ckpt"
    blocked.parent.write_text("")
    with pytest.raises(ConfigError, match=re.escape(f"node.checkpoint_dir {blocked}: cannot create it or write there")):
        EdgeNode(NodeConfig(checkpoint_dir=blocked), [], FastDetector, zmq.Context.instance())
    fresh = tmp_path / "new" / "ckpt"
    EdgeNode(NodeConfig(checkpoint_dir=fresh), [], FastDetector, zmq.Context.instance())
    assert fresh.is_dir() and not any(fresh.iterdir())  # created, and its write test cleaned up


def test_an_ssdnet_config_file_refuses_nan_too(tmp_path):
    """`ssdnet score/eval --config F` read `smooth_sigma: .nan` and gave NaN maps; `budget_ms: .inf` meant no budget."""
    path = tmp_path / "ssdnet.yaml"
    path.write_text("score:\n  smooth_sigma: .nan\nfit:\n  budget_ms: .inf\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "score.smooth_sigma: Input should be a finite number" in str(e.value)
    assert "fit.budget_ms: Input should be a finite number" in str(e.value)


def test_a_config_that_is_no_yaml_text_or_a_folder_is_refused_naming_the_file_and_the_line(tmp_path, capsys):
    """A YAML syntax error pointed at '"<unicode string>", line 1' rather than the file; a binary file (an image given
    as the config) ended in 'UnicodeDecodeError ... (-v shows where)', exit 1; a folder was 'config file not found'."""
    path = tmp_path / "line.yaml"
    path.write_text("sources:\n  - {name: a, kind: synthetic}\n node: {}\n")
    with pytest.raises(ConfigError, match=rf"(?s)config {re.escape(str(path))} is not valid YAML: .*in "
                                          rf"\"{re.escape(str(path))}\", line 3"):
        load_yaml(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert cli_main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"ssdnet run: error: config {path} is not a text file (YAML)\n"
    with pytest.raises(ConfigError, match=f"config {re.escape(str(tmp_path))} is a folder, not a config file"):
        load_yaml(tmp_path)


def test_a_key_given_twice_is_refused_naming_it_and_its_lines(tmp_path):
    """YAML kept the last of two `node:` sections (or keys) and dropped the first without a word: a line whose
    `node: {checkpoint_dir: ...}` was followed by `node: {threshold: 4}` further down ran without its checkpoints."""
    path = tmp_path / "line.yaml"
    path.write_text("sources:\n  - {name: a, kind: synthetic}\nnode:\n  checkpoint_dir: ckpt\n"
                    "sinks: {scores: true}\nnode: {threshold: 4.0}\n")
    with pytest.raises(ConfigError) as e:
        load_line_config(path)
    assert f"config {path}: the key 'node' is given twice (lines 3 and 6): write it once" in str(e.value)
    path.write_text("sources:\n  - {name: a, kind: synthetic, fps: 2, fps: 5}\n")
    with pytest.raises(ConfigError, match=re.escape("the key 'fps' is given twice (lines 2 and 2)")):
        load_line_config(path)
    path.write_text("score:\n  knn_weight: 1\n  knn_weight: 0\n")  # an SSDnet config (--config) alike
    with pytest.raises(ConfigError, match=re.escape("the key 'knn_weight' is given twice (lines 2 and 3)")):
        load_config(path)
    # merged keys may be given again, also in a mapping merged before an alias reaches it (a reviewer: refused)
    path.write_text("base: &base {x: 1}\nc:\n  <<: &a\n    <<: *base\n    x: 2\nd: *a\n")
    assert load_yaml(path) == yaml.safe_load(path.read_text()) == {"base": {"x": 1}, "c": {"x": 1}, "d": {"x": 2}}


def test_binding_a_port_in_use_says_what_to_do(held):
    sock = zmq.Context.instance().socket(zmq.PULL)
    try:
        with pytest.raises(BindError, match="already in use: choose another port, or `\\*` for any free port, or "
                                            "stop the other program") as e:
            bind(sock, held)
    finally:
        sock.close(linger=0)
    assert isinstance(e.value, zmq.ZMQError) and e.value.endpoint == held  # callers that close on ZMQError still do


def test_a_camera_stage_whose_port_is_taken_fails_in_one_line_naming_the_key(held, caplog, restore_signals):
    cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", bind=held)
    reports: queue.Queue = queue.Queue()
    stop = threading.Event()  # run_stage takes Ctrl-C and SIGTERM, as a stage does: restore_signals gives them back
    try:
        with pytest.raises(SystemExit):
            run_stage("cam0", run_camera, (cfg, stop), {}, reports, logging.INFO, stop)
    finally:
        stop.set()  # ends run_stage's watch on its parent
    assert reports.get_nowait() == ("failed", "cam0", f"sources[cam0].bind: {held} is already in use: choose "
                                    "another port, or `*` for any free port, or stop the other program")
    assert not any(r.exc_info for r in caplog.records)  # no traceback


def test_the_key_of_a_nodes_endpoint_is_named():
    cfg = NodeConfig(bind="tcp://127.0.0.1:5600", replay_bind="tcp://127.0.0.1:5601")
    assert bind_key("node", cfg, "tcp://127.0.0.1:5600") == "node.bind"
    assert bind_key("node", cfg, "tcp://127.0.0.1:5601") == "node.replay_bind"


def test_ssdnet_run_with_a_camera_port_taken_prints_no_traceback(held, tmp_path, capfd):
    config = tmp_path / "line.yaml"
    config.write_text(yaml.safe_dump(line({"name": "cam0", "bind": held})))
    assert cli_main(["run", str(config), "--out", str(tmp_path / "out")]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err and f"sources[cam0].bind: {held} is already in use" in err


def test_no_consumer_is_reported_only_when_the_wait_timed_out(caplog, monkeypatch):
    """The line stopping cut the wait short: that was logged as 'no consumer after 30 s'. (The camera that streams
    anyway then waits EOS_WAIT_S for a node to take its end of stream: cut here, it was 60 s of the suite's time.)"""
    monkeypatch.setattr(pipeline.sources, "EOS_WAIT_S", 0.2)
    stop = threading.Event()
    stop.set()
    cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=32, frames=1, wait_for_consumer_s=30.0)
    with caplog.at_level(logging.WARNING, logger="pipeline.sources"):
        Camera(cfg, ctx=zmq.Context.instance()).run(stop)
        assert "no consumer after" not in caplog.text
        Camera(cfg.model_copy(update={"wait_for_consumer_s": 0.0}), ctx=zmq.Context.instance()).run(threading.Event())
    assert "cam0: no consumer after 0 s, streaming anyway" in caplog.text


def test_a_line_of_third_party_cameras_only_loads_for_its_node_stage(tmp_path):
    """`sources: []` was refused, so a node for cameras of one's own needed a dummy source (which then never ended)."""
    assert "at least one source is needed (or cameras of your own under node.connect)" in refusal(line())
    cfg = parse_config(LineConfig, line(node={"connect": ["tcp://127.0.0.1:5599"],
                                              "connect_cameras": {"tcp://127.0.0.1:5599": ["press7"]}}))
    assert cfg.sources == () and cfg.node.connect == ("tcp://127.0.0.1:5599",)
    from pipeline.launcher import run_line
    with pytest.raises(ConfigError, match="run its node with `--stage node`"):  # refused, exit 2
        run_line(cfg, tmp_path)


def test_a_folder_that_is_not_there_is_named_with_where_it_was_looked_for(tmp_path, monkeypatch):
    """It said only "Path does not point to a directory" (found in an audit), where a missing video file says which
    and relative to what."""
    monkeypatch.chdir(tmp_path)
    says = refusal({"sources": [{"name": "shelf", "kind": "folder", "path": "frames/"}]})
    assert f"sources.0.folder.path: Path does not point to a directory: 'frames' (relative to {tmp_path})" in says
    absolute = refusal({"sources": [{"name": "shelf", "kind": "folder", "path": str(tmp_path / "x")}]})
    assert f"'{tmp_path / 'x'}'" in absolute and "relative to" not in absolute


@pytest.mark.parametrize("where, value, says", [
    ("node", {"ssdnet": "configs/ssdnet-fit.yaml"},
     "node.ssdnet: a section of its own keys (a mapping, `key: value` lines), not 'configs/ssdnet-fit.yaml': a file "
     "is not read here, write its keys under this one"),
    ("sinks", {"view": True}, "sinks.view: a section of its own keys (a mapping, `key: value` lines), not True"),
    ("security", True, "security: a section of its own keys (a mapping, `key: value` lines), not True"),
    ("sources", ["cam0"], "sources.0: a section of its own keys (a mapping, `key: value` lines), not 'cam0'"),
    ("sources", {"name": "cam0", "kind": "synthetic"},  # it said "Input should be a valid tuple"
     "sources: a list (`- item` lines, or `[a, b]`), not {'name': 'cam0', 'kind': 'synthetic'}"),
])
def test_a_value_where_a_section_goes_says_what_to_write(where, value, says):
    """It said "Input should be a valid dictionary or instance of SSDNetConfig" (found in an audit: `ssdnet:
    configs/ssdnet-fit.yaml`, `view: true`), naming a class the docs never name; a camera given as its name alone
    "a valid dictionary or object to extract fields from"."""
    assert says in refusal(line({"name": "cam"}, **{where: value}))


def test_a_still_image_given_as_a_video_camera_is_refused_pointing_at_a_folder_camera():
    """A line engineer's audit: OpenCV reads one PNG as a video of one frame, so the line scored it once and ended."""
    video = {"kind": "video", "name": "cam", "frames": None}
    text = refusal({"sources": [{**video, "uri": "shots/part.PNG"}]})
    assert "sources.0.video.uri" in text and "a still image" in text and "kind: folder" in text
    for uri in ("shots/%06d.png", "clip.mp4", 0, "rtsp://cam/stream.jpg"):  # an image sequence, a file, a device, a URL
        parse_config(LineConfig, {"sources": [{**video, "uri": uri}]})
