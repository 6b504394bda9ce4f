"""What a new user reads when a command is misused or its environment is not ready: a busy view port names itself
and the setting that moves it, `ssdnet view` says when nothing comes, an endpoint without `tcp://` is corrected, a
refused MQTT connection is not diagnosed as a silent broker, `ssdnet keys` refuses names the config would,
`ssdnet export` refuses frames the node would and says why it wrote no U-Net weights."""
from __future__ import annotations

import argparse
import logging
import re
import socket
from pathlib import Path
from types import ModuleType

import pytest
import zmq

from edge.config import MIN_SIDE, ConfigError
from export import cli as export_cli
from pipeline import keys, subscribe, view
from pipeline.mqtt_sink import MqttBridge
from pipeline.security import make_keypair
from pipeline.sink_config import MqttConfig, ViewConfig
from services import free_port
from test_pipeline_node import wait_until

ROOT = Path(__file__).resolve().parents[1]


def parse(module: ModuleType, argv: list[str]) -> argparse.Namespace:
    """`ssdnet ARGV` with only `module`'s subcommand (the others' imports play no part)."""
    parser = argparse.ArgumentParser(prog="ssdnet")
    module.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_a_busy_view_port_names_the_address_and_the_setting_that_moves_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port} .*sinks\.view\.port .*--port"):  # exit 2
            view.ViewSink(ViewConfig(port=port))


def test_view_warns_then_fails_when_nothing_comes_like_subscribe(caplog):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError, match="heard nothing from"):
        view.follow(endpoint, None, ViewConfig(port=0), timeout_s=0.8, unheard_s=0.2)
    assert f"nothing heard from {endpoint} for 0.2 s: {subscribe.UNHEARD}" in caplog.text


@pytest.mark.parametrize(("module", "argv"), [(subscribe, ["subscribe"]), (view, ["view"]),
                                              (subscribe, ["subscribe", "tcp://127.0.0.1:5601", "--replay"])])
def test_an_endpoint_without_tcp_is_corrected(module, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(module, [*argv, "127.0.0.1:5600"])
    assert exit_.value.code == 2
    assert "not a ZeroMQ endpoint (did you mean tcp://127.0.0.1:5600?)" in capsys.readouterr().err
    assert parse(module, [*argv, "tcp://127.0.0.1:5600"]).command == argv[0]


@pytest.mark.parametrize(("module", "argv"), [(subscribe, ["subscribe"]), (view, ["view"]),
                                              (subscribe, ["subscribe", "tcp://127.0.0.1:5601", "--replay"]),
                                              (view, ["view", "tcp://127.0.0.1:5601", "--replay"])])
@pytest.mark.parametrize(("endpoint", "says"), [("tcp://127.0.0.1:*", "names no port"),
                                                ("tcp://127.0.0.1:0", "port 0 is out of range"),
                                                ("tcp://127.0.0.1:99999", "port 99999 is out of range")])
def test_an_endpoint_a_client_cannot_connect_to_is_refused_saying_why(module, argv, endpoint, says, capsys):
    """`*` (the node.bind default, any free port) and ports out of 1-65535 are what a node binds or no port at all:
    before, `*` failed as 'ZMQError: Invalid argument' and port 0 or 99999 waited, then said 'heard nothing'."""
    with pytest.raises(SystemExit) as exit_:
        parse(module, [*argv, endpoint])
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("given", ["key", "server_key"])
@pytest.mark.parametrize("client", ["subscribe", "view"])
def test_a_client_key_without_the_node_key_or_the_other_way_round_says_both_are_needed(tmp_path, given, client):
    """--key alone failed as 'no server public key for tcp://... (security is on)'; --server-key alone was ignored,
    the client went plaintext and, refused by a node with security on, said 'heard nothing ... is the node up'."""
    public, secret = make_keypair(tmp_path, "subscriber")
    files = {"key": str(secret), "server_key": str(public)}
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ValueError, match="--key and --server-key go together"):
        if client == "subscribe":
            subscribe.subscribe([endpoint], timeout_s=0.5, **{given: files[given]}, ctx=zmq.Context())
        else:
            view.follow(endpoint, None, ViewConfig(port=0), timeout_s=0.5, **{given: files[given]})


def test_a_refused_mqtt_connection_is_not_called_a_silent_broker(caplog):
    bridge = MqttBridge(MqttConfig(host="127.0.0.1", port=free_port(), connect_timeout_s=0.3, reconnect_max_s=1,
                                   client_id="nobody-home"), "node0", None)
    with caplog.at_level(logging.INFO, logger="pipeline.mqtt_sink"):
        bridge.start()
        try:
            # refused twice: the client's reconnect delay (at least 1 s) is several connection timeouts long
            wait_until(lambda: bridge.stats["unreachable"] >= 2)
        finally:
            bridge.close(timeout_s=0.2)
    assert bridge.stats["unreachable"] > 0 and bridge.stats["timeouts"] == 0
    assert "cannot reach broker" in caplog.text and "no answer from broker" not in caplog.text


def test_mqtt_doc_lists_the_paced_camera_state():
    assert '"paced"' in (ROOT / "pipeline" / "sources.py").read_text()  # what a credit-paced camera heartbeats
    doc = (ROOT / "docs" / "mqtt.md").read_text()
    states = re.search(r'camera heartbeat: \{"state": ([^"]*),', doc.replace("\n", " ").replace("│", " "))
    assert states is not None and "paced" in re.split(r"[\s|]+", states.group(1))
    assert "paced: a camera with flow: credit" in doc


def test_keys_refuses_a_name_the_line_config_would(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(keys, ["keys", str(tmp_path), "--name", "bad name"])
    assert exit_.value.code == 2
    assert "'bad name' is not a stage name" in capsys.readouterr().err
    args = parse(keys, ["keys", str(tmp_path), "--name", "cam-0.left"])
    assert args.func(args) == 0 and (tmp_path / "cam-0.left.key").is_file()


def test_keys_says_a_key_that_exists_or_a_dir_that_is_a_file_on_stderr(tmp_path, capsys):
    """Its error went to stdout (a script reading the key's path from stdout read the error), and a DIR that is a file
    said "[Errno 17] File exists"."""
    import tools.cli

    assert tools.cli.main(["keys", str(tmp_path), "--name", "cam0"]) == 0
    capsys.readouterr()
    assert tools.cli.main(["keys", str(tmp_path), "--name", "cam0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("ssdnet keys: error: ") and "exists already (use --force to replace)" in err
    assert tools.cli.main(["keys", str(tmp_path / "cam0.key"), "--name", "cam1"]) == 2
    assert capsys.readouterr().err == f"ssdnet keys: error: {tmp_path / 'cam0.key'} is a file, where a folder goes\n"


def test_export_refuses_frames_below_the_node_minimum(tmp_path, capsys):
    args = parse(export_cli, ["export", "--height", str(MIN_SIDE - 1), "--width", "64", "--out", str(tmp_path)])
    assert args.func(args) == 2
    assert f"must be at least {MIN_SIDE}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_export_says_why_it_wrote_no_unet_weights(tmp_path, capsys):
    args = parse(export_cli, ["export", "--height", str(MIN_SIDE), "--width", str(MIN_SIDE), "--out", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "no U-Net weights: score.pixel_weight and perceptual_weight are 0" in out and "0 U-Net" not in out


def test_ctrl_c_while_the_commands_load_ends_like_one_later(monkeypatch, capsys):
    """Ctrl-C in a command's first seconds (its imports: torch) ends it with 130 and one line, no traceback."""
    import tools.cli

    def interrupted(command=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(tools.cli, "build_parser", interrupted)
    assert tools.cli.main(["score", "x.png"]) == 130
    assert capsys.readouterr().err == "ssdnet: interrupted\n"


def test_a_line_config_given_where_an_ssdnet_config_goes_is_read_for_its_node_ssdnet(tmp_path):
    """`ssdnet score --config configs/demo.yaml` (a line config) scores with the line's node.ssdnet, not an error
    listing the line's own keys as unknown; a mistake inside it names where it is."""
    from edge.config import ConfigError, load_config

    line = tmp_path / "line.yaml"
    line.write_text("sources:\n  - name: cam0\n    synthetic: {}\nnode:\n  ssdnet:\n    score: {knn_k: 7}\n")
    assert load_config(line).score.knn_k == 7
    line.write_text("sources: []\nnode:\n  ssdnet:\n    score: {knn_kk: 7}\n")
    with pytest.raises(ConfigError, match=r"(?s)line.yaml \(node.ssdnet\).*knn_kk"):
        load_config(line)
    assert load_config("configs/demo.yaml") == load_config(None)  # the demo line's node.ssdnet: the defaults
    line.write_text("sources: []\n")  # a line config without a node section: the defaults, not "sources: extra"
    assert load_config(line) == load_config(None)
