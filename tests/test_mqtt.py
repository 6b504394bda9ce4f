"""The MQTT bridge (pipeline/mqtt_sink.py) against a real broker (Debian's mosquitto, started here on 127.0.0.1):
events arrive, a broker restarted mid-stream loses none, the last will fires when the node is killed,
and a broker that refuses the login or never answers gives clear errors while the node keeps scoring."""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pipeline import protocol as P
from pipeline.config import LineConfig
from pipeline.eventlog import EventLog
from pipeline.mqtt_sink import MqttBridge, topic_layout
from pipeline.node import run_node
from pipeline.sink_config import MqttConfig
from services import Mosquitto, free_port
from test_pipeline_node import FastDetector, collect, line, subscriber, wait_until

pytestmark = pytest.mark.slow


class Listener:
    """A test subscriber with a persistent session (QoS 1 messages queued for it while it is away)."""

    def __init__(self, port: int, topic: str = "ssdnet/#", client_id: str = "test-listener"):
        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload), msg.retain))

    def on(self, suffix: str) -> list[dict]:
        with self.lock:
            return [body for topic, body, _ in self.messages if topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_topic_layout_and_config_errors():
    t = topic_layout(MqttConfig(host="b", line="press-3"), "node")
    assert t["event"].format(camera="cam0") == "ssdnet/press-3/camera/cam0/event"
    assert t["status"] == "ssdnet/press-3/status" and t["node"] == "ssdnet/press-3/node"
    with pytest.raises(ValueError, match="topic levels"):
        MqttConfig(host="b", line="a/+")
    with pytest.raises(ValueError, match="username"):
        MqttConfig(host="b", password="x")
    assert MqttConfig(host="b", tls={}).broker_port == 8883 and MqttConfig(host="b").broker_port == 1883


def test_events_arrive_and_a_broker_restart_mid_stream_loses_none(tmp_path):
    broker = Mosquitto(tmp_path)
    listener = Listener(broker.port)
    db = tmp_path / "events.db"
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, line="l1", from_start=True, keepalive_s=5, health_s=0.5,
                     max_inflight=4)
    bridge = None
    try:
        wait_until(lambda: listener.client.is_connected())
        with line(tmp_path, cameras=(("cam0", 64), ("cam1", 64)), frames=40, fps=200, flow="credit", threshold=2.5,
                  factory=lambda s: FastDetector(delay=0.04), event_log=db) as ln:
            bridge = MqttBridge(cfg, ln.node.cfg.name, db).start()
            ln.node.taps.append(bridge.tap)
            sub = subscriber(ln, (b"eos/",))
            wait_until(lambda: len(listener.on("/event")) >= 4, timeout=30)
            broker.restart(down_s=1.5)  # mid-stream: the node keeps scoring, events wait in the log
            collect(sub, ("cam0", "cam1"), timeout=60)
            sub.close()
        heads = EventLog(db, readonly=True).read_heads()
        assert sum(heads.values()) >= 10
        for cam, head in heads.items():
            wait_until(lambda cam=cam, head=head: {e["log_seq"] for e in listener.on(f"/{cam}/event")}
                       >= set(range(1, head + 1)), timeout=30)
            got = [e for e in listener.on(f"/camera/{cam}/event")]
            assert {e["log_seq"] for e in got} == set(range(1, head + 1)), f"{cam}: events missing on the broker"
            assert all(e["source"] == cam and e["line"] == "l1" and e["score"] > e["threshold"] for e in got)
        status = listener.on("ssdnet/l1/status")
        assert status[-1]["state"] == "online"
        wait_until(lambda: any("camera" not in t and t.endswith("/node") for t, _, _ in listener.messages))
        for cam in ("cam0", "cam1"):  # a camera's end of stream ends its status, its last heartbeat or not
            wait_until(lambda cam=cam: listener.on(f"/camera/{cam}/status")[-1:]
                       and listener.on(f"/camera/{cam}/status")[-1]["state"] == "ended")
        assert bridge.stats["connects"] >= 2 and bridge.acked == heads
    finally:
        if bridge is not None:
            bridge.close()
        listener.close()
        broker.stop()
    assert json.loads(next(tmp_path.glob("events.db.mqtt-*.json")).read_text())["acked"] == heads


def _node_with_bridge(cfg_dict: dict, port: int, db: str, stop) -> None:
    from pipeline.config import NodeConfig

    node_cfg = NodeConfig(name="n1", event_log=db, heartbeat_s=0.2)
    run_node(node_cfg, [], stop, detector_factory=FastDetector, mqtt=MqttConfig(**cfg_dict, port=port))


def test_last_will_fires_when_the_node_is_killed(tmp_path):
    broker = Mosquitto(tmp_path)
    listener = Listener(broker.port, client_id="will-listener")
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(target=_node_with_bridge, args=({"host": "127.0.0.1", "line": "l2", "keepalive_s": 5},
                                                       broker.port, str(tmp_path / "e.db"), stop), daemon=True)
    try:
        proc.start()
        wait_until(lambda: any(s["state"] == "online" for s in listener.on("ssdnet/l2/status")), timeout=60)
        wait_until(lambda: listener.on("ssdnet/l2/node"), timeout=10)  # the node's heartbeat, retained
        proc.kill()  # no goodbye: only the broker can tell
        wait_until(lambda: listener.on("ssdnet/l2/status")[-1]["state"] == "offline", timeout=20)
        assert "connection lost" in listener.on("ssdnet/l2/status")[-1]["reason"]
        late = Listener(broker.port, "ssdnet/l2/status", client_id="late-listener")  # retained: newcomers see it
        wait_until(lambda: late.on("status"), timeout=10)
        assert late.on("status")[-1]["state"] == "offline" and late.messages[-1][2]
        late.close()
    finally:
        proc.kill()
        proc.join(5)
        listener.close()
        broker.stop()


def _silent_server() -> tuple[socket.socket, int, list]:
    """Accepts TCP connections and never says a word (a broker that never answers)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns: list = []

    def accept():
        while True:
            try:
                conns.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return srv, srv.getsockname()[1], conns


def test_refused_credentials_and_a_silent_broker_give_clear_errors_and_the_node_keeps_scoring(tmp_path, caplog):
    broker = Mosquitto(tmp_path, users={"line": "right-password"})
    silent, silent_port, conns = _silent_server()
    db = tmp_path / "events.db"
    refused = MqttBridge(MqttConfig(host="127.0.0.1", port=broker.port, username="line", password="wrong",
                                    client_id="refused"), "node0", db)
    mute = MqttBridge(MqttConfig(host="127.0.0.1", port=silent_port, connect_timeout_s=1, keepalive_s=5,
                                 client_id="mute"), "node0", db)
    unreachable = MqttBridge(MqttConfig(host="127.0.0.1", port=free_port(), client_id="unreachable"), "node0", db)
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.mqtt_sink"):
            for bridge in (refused, mute, unreachable):
                bridge.start()
            with line(tmp_path, frames=30, fps=200, flow="credit", threshold=2.5, event_log=db) as ln:
                for bridge in (refused, mute, unreachable):
                    ln.node.taps.append(bridge.tap)
                sub = subscriber(ln, (b"anomaly/", b"eos/"))
                msgs = collect(sub, timeout=30)
                sub.close()
                assert ln.node.counters.source("cam0")["scored"] == 30
                assert sum(m.kind == "anomaly" for m in msgs) == 30
                logged = EventLog(db, readonly=True).read_heads().get("cam0", 0)
                assert logged == ln.node.counters.source("cam0")["events"] > 0  # nothing lost from the log
            wait_until(lambda: mute.stats["timeouts"] > 0 and refused.stats["refused"] > 0
                       and unreachable.stats["unreachable"] > 0, timeout=20)
        text = caplog.text
        assert "refused the connection" in text and "username / password" in text
        assert f"no answer from broker 127.0.0.1:{silent_port} within 1 s" in text
        assert "cannot reach broker" in text
        assert refused.acked == {} and not refused._connected.is_set()
    finally:
        for bridge in (refused, mute, unreachable):
            bridge.close(timeout_s=0.2)
        silent.close()
        for c in conns:
            c.close()
        broker.stop()


def test_line_config_takes_an_mqtt_section():
    cfg = LineConfig.model_validate({"sources": [{"kind": "synthetic", "name": "a"}],
                                     "sinks": {"mqtt": {"host": "broker.plant", "username": "line3",
                                                        "password_env": "MQTT_PASSWORD", "tls": {"ca_certs": None}}}})
    assert cfg.sinks.mqtt.broker_port == 8883 and cfg.sinks.mqtt.qos == 1


def test_a_camera_that_ends_without_a_last_heartbeat_is_ended_on_the_broker(tmp_path):
    """A third-party camera need not heartbeat (docs/protocol.md): its end of stream ends its retained status."""

    broker = Mosquitto(tmp_path)
    listener = Listener(broker.port)
    bridge = MqttBridge(MqttConfig(host="127.0.0.1", port=broker.port, line="l1", health_s=60), "node0",
                        tmp_path / "events.db").start()
    try:
        wait_until(lambda: listener.subscribed.is_set() and bridge._connected.is_set())
        bridge.tap(P.Message(P.HeartbeatHeader(kind="heartbeat", role="source", state="streaming", source="cam7",
                                               seq=4, t_capture=1.0, counters={"sent": 5})))
        wait_until(lambda: [s["state"] for s in listener.on("/camera/cam7/status")][-1:] == ["streaming"])
        bridge.tap(P.Message(P.EosHeader(kind="eos", source="cam7", seq=9, t_capture=2.0, frames=10,
                                         counters={"sent": 10})))
        wait_until(lambda: listener.on("/camera/cam7/status")[-1:] == [
            {"state": "ended", "last_frame_age": None, "counters": {"sent": 10}, "t": 2.0, "source": "cam7"}])
    finally:
        bridge.close(timeout_s=0.2)
        listener.close()
        broker.stop()


def test_a_camera_flipping_its_state_against_a_stalled_broker_queues_one_status_not_one_per_flip(tmp_path):
    """Each change of a camera's state is a retained QoS 1 message; a camera's heartbeats may flip it 50 times a
    second. Against a broker that stopped reading (its connection still open), the bridge waits for the ack of a
    camera's last status before sending its next, the latest (before, every flip went into paho's queue: a peer's 16
    cameras grew the node's RSS by 1.3 MB/s, measured), and the broker ends on the camera's last state."""
    import signal


    broker = Mosquitto(tmp_path)
    listener = Listener(broker.port)
    bridge = MqttBridge(MqttConfig(host="127.0.0.1", port=broker.port, line="l1", health_s=60), "node0",
                        tmp_path / "events.db").start()
    sent, passes = [], []
    publish, publish_health = bridge.client.publish, bridge._publish_health
    bridge.client.publish = lambda topic, *a, **k: (sent.append(topic), publish(topic, *a, **k))[1]
    bridge._publish_health = lambda: (publish_health(), passes.append(1))[0]  # the bridge's passes over its health

    def beat(state: str) -> None:
        bridge.tap(P.Message(P.HeartbeatHeader(kind="heartbeat", role="source", state=state, source="cam7", seq=4,
                                               t_capture=1.0, counters={})))

    try:
        wait_until(lambda: listener.subscribed.is_set() and bridge._connected.is_set())
        beat("streaming")
        wait_until(lambda: [s["state"] for s in listener.on("/camera/cam7/status")][-1:] == ["streaming"])
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            sent.clear()
            for i in range(100):
                beat("waiting" if i % 2 == 0 else "streaming")
                time.sleep(0.01)
            beat("paced")
            after = len(passes)
            wait_until(lambda: len(passes) >= after + 2)  # a whole pass begun after the last flip: it could have sent
            assert sent.count("ssdnet/l1/camera/cam7/status") <= 1, len(sent)
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: [s["state"] for s in listener.on("/camera/cam7/status")][-1:] == ["paced"])
    finally:
        bridge.close(timeout_s=0.2)
        listener.close()
        broker.stop()


def test_an_event_log_made_anew_is_sent_from_its_first_event(tmp_path):
    """Events carry the log they count in (`log_id`); a log file deleted and made anew at the same path numbers from 1
    again: a bridge whose cursor acknowledged 3 events of the old log sends the new log's 2, not none."""

    def logged(n: int) -> int:
        db = EventLog(tmp_path / "events.db")
        for seq in range(n):
            db.append(P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=5.0, threshold=3.0,
                                    model_version=1))
        log_id = db.log_id
        db.close()
        return log_id

    def bridged(count: int) -> list[dict]:
        listener = Listener(broker.port, client_id=f"listener-{count}")
        assert listener.subscribed.wait(10)  # before the bridge sends: a listener not yet subscribed gets nothing
        bridge = MqttBridge(MqttConfig(host="127.0.0.1", port=broker.port, line="l1", from_start=True), "node0",
                            tmp_path / "events.db").start()
        try:
            wait_until(lambda: len(listener.on("/camera/cam0/event")) >= count and bridge.acked == {"cam0": count})
            return listener.on("/camera/cam0/event")
        finally:
            bridge.close(timeout_s=1)
            listener.close()

    broker = Mosquitto(tmp_path)
    try:
        old = logged(3)
        assert [(e["log_id"], e["log_seq"]) for e in bridged(3)] == [(old, 1), (old, 2), (old, 3)]
        for path in tmp_path.glob("events.db*"):
            if not path.name.endswith(".json"):  # the cursor file stays
                path.unlink()
        new = logged(2)
        assert new != old
        assert [(e["log_id"], e["log_seq"]) for e in bridged(2)] == [(new, 1), (new, 2)]
    finally:
        broker.stop()


def test_a_bridge_that_ends_while_the_broker_is_away_says_how_many_events_wait(tmp_path, caplog):
    """A run that ends with the broker unreachable must not look delivered: the bridge counts and names the events
    its log holds that the broker never acknowledged."""

    db = EventLog(tmp_path / "events.db")
    for source, n in (("cam0", 3), ("cam1", 2)):
        for seq in range(n):
            db.append(P.EventHeader(kind="event", source=source, seq=seq, t_capture=1.0, score=5.0, threshold=3.0,
                                    model_version=1))
    db.close()
    bridge = MqttBridge(MqttConfig(host="127.0.0.1", port=free_port(), from_start=True, client_id="away"), "node0",
                        tmp_path / "events.db").start()
    with caplog.at_level(logging.WARNING, logger="pipeline.mqtt_sink"):
        bridge.close(timeout_s=0.2)
    assert bridge.stats["unacknowledged"] == 5
    assert "5 event(s) in" in caplog.text and "not acknowledged" in caplog.text
    caplog.clear()
    bridge.close(timeout_s=0.2)  # a second close says nothing again
    assert "not acknowledged" not in caplog.text
    # without an event log the events were held in memory: said to be lost, not waiting
    memory = MqttBridge(MqttConfig(host="127.0.0.1", port=free_port(), client_id="away2"), "node0", None).start()
    for seq in range(3):
        memory.tap(P.Message(P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=5.0,
                                           threshold=3.0, model_version=1)))
    with caplog.at_level(logging.WARNING, logger="pipeline.mqtt_sink"):
        memory.close(timeout_s=0.2)
    assert memory.stats["unacknowledged"] == 3 and "3 event(s) were not acknowledged" in caplog.text
    assert "are lost" in caplog.text


def test_a_bridge_that_opens_the_log_before_its_id_is_written_waits_for_it(tmp_path):
    """The bridge starts before the node's log is made: opened between the file's making and its id's writing, the
    log must not be taken for the cursor's own (2 new events were skipped, then tagged with the old log's id)."""
    import sqlite3


    broker = Mosquitto(tmp_path)
    listener = Listener(broker.port)
    db = tmp_path / "events.db"
    (tmp_path / "events.db.mqtt-ssdnet-l1-node0.json").write_text(json.dumps({"acked": {"cam0": 3}, "log_id": 12345}))
    sqlite3.connect(db).close()  # the writer has made the file, not yet its tables and id (EventLog.__init__)
    assert listener.subscribed.wait(10)
    bridge = MqttBridge(MqttConfig(host="127.0.0.1", port=broker.port, line="l1"), "node0", db).start()
    try:
        wait_until(lambda: bridge._connected.is_set())
        writer = EventLog(db)
        for seq in range(2):
            writer.append(P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=5.0, threshold=3.0,
                                        model_version=1))
        wait_until(lambda: bridge.acked == {"cam0": 2})
        wait_until(lambda: len(listener.on("/camera/cam0/event")) >= 2)  # the broker acks before it delivers
        assert [(e["log_id"], e["log_seq"]) for e in listener.on("/camera/cam0/event")] == [(writer.log_id, 1),
                                                                                           (writer.log_id, 2)]
        writer.close()
    finally:
        bridge.close(timeout_s=0.5)
        listener.close()
        broker.stop()


class WrappingClient:
    """paho's side of the bridge, as after 65535 publishes: the next message gets `mid` whatever is in flight
    (paho numbers them round and round); a QoS 1 message whose mid is still in flight is refused, as paho does."""

    def __init__(self, mid: int):
        self.mid, self.in_flight, self.sent, self.events = mid, set(), [], []

    def publish(self, topic, payload, qos=0, retain=False):
        mid, refused = self.mid, qos > 0 and self.mid in self.in_flight
        self.mid = self.mid % 65535 + 1
        if qos > 0 and not refused:
            self.in_flight.add(mid)
        self.sent.append((topic, qos, mid, refused))
        if topic.endswith("/event"):
            self.events.append((json.loads(payload)["log_seq"], mid, refused))
        return mqtt.MQTTMessageInfo(mid) if not refused else _refused(mid)

    def acknowledge(self, bridge: MqttBridge, mid: int, puback: bool = True, drain: bool = True) -> None:
        """paho's on_publish: the broker's PUBACK, or a QoS 0 message written (`puback` False)."""
        if puback:
            self.in_flight.discard(mid)
        bridge._on_publish(self, None, mid, None, None)
        if drain:
            bridge._drain_acks()


def _refused(mid: int) -> mqtt.MQTTMessageInfo:
    info = mqtt.MQTTMessageInfo(mid)
    info.rc = mqtt.MQTT_ERR_QUEUE_SIZE
    return info


def _wrapped(tmp_path, events: int, mid: int = 7) -> tuple[MqttBridge, WrappingClient, EventLog]:
    """A bridge with `scores: true` on an event log of `events` events of cam0, paho's mids at `mid`."""
    db = EventLog(tmp_path / "events.db")
    for seq in range(events):
        db.append(P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=5.0, threshold=3.0,
                                model_version=1))
    bridge = MqttBridge(MqttConfig(host="127.0.0.1", scores=True), "node", tmp_path / "events.db")
    bridge.client = WrappingClient(mid)
    assert bridge._follow(db)
    return bridge, bridge.client, db


def _score(bridge: MqttBridge, mid: int) -> None:
    """A score published as paho's `mid` (65535 publishes after whatever holds it)."""
    bridge.client.mid = mid
    bridge._scores.append(P.AnomalyHeader.model_construct(source="cam0", seq=5, t_capture=1.0, score=1.0, threshold=3.0,
                                                          label="normal", regions=()))  # what a score message reads
    bridge._publish_scores()


def test_a_score_or_status_given_the_mid_of_an_event_in_flight_does_not_acknowledge_it(tmp_path):
    """paho does not skip mids in flight: with `scores: true`, 65535 scores after an event that waits for the broker,
    a score's on_publish carried the event's mid, and the event counted as acknowledged (its cursor moved, so a broker
    that then lost it never got it again). A mid shared is a mid forgotten: the event and those after it go again from
    the event log with new mids, and count as acknowledged only by those; a health message likewise goes again."""
    bridge, paho, db = _wrapped(tmp_path, events=2)
    bridge._publish_logged(db)
    assert paho.events == [(1, 7, False), (2, 8, False)]
    bridge._health["cam0"] = P.Message(P.HeartbeatHeader(kind="heartbeat", role="source", state="streaming",
                                                         source="cam0", seq=5, t_capture=1.0))
    bridge._health_dirty.add("cam0")
    bridge._publish_health()
    assert bridge._health_mids == {9: "cam0"}
    _score(bridge, 7)  # the first event's mid: both events are forgotten
    _score(bridge, 9)  # the health message's: due again
    assert bridge._unacked() == 0 and bridge.sent["cam0"] == 0
    assert bridge._health_mids == {} and "cam0" in bridge._health_dirty
    for mid, puback in ((7, False), (9, False), (7, True), (8, True), (9, True)):  # the scores written, the PUBACKs
        paho.acknowledge(bridge, mid, puback)
    assert bridge.acked.get("cam0") is None and bridge.stats["acked"] == 0
    bridge._publish_logged(db)  # sent again, new mids
    assert paho.events[2:] == [(1, 10, False), (2, 11, False)] and bridge._unacked() == 2
    paho.mid = 10
    bridge._publish_health()
    assert paho.sent[-1][2:] == (10, True) and "cam0" in bridge._health_dirty  # refused for a mid in flight: still due
    paho.acknowledge(bridge, 11)
    assert bridge.acked.get("cam0") is None  # the first not yet
    paho.acknowledge(bridge, 10)
    assert bridge.acked["cam0"] == 2 and bridge._unacked() == 0
    paho.mid = 12
    bridge._publish_health()
    assert paho.sent[-1][2:] == (12, False) and bridge._health_mids == {12: "cam0"}
    db.close()


def test_an_event_whose_mid_a_score_took_is_not_stuck_when_the_score_is_never_written(tmp_path):
    """The event's PUBACK came first and the connection dropped before the score was written (its on_publish never
    comes): skipping that mid's next ack left the event unacknowledged for ever (paho had dropped it as acknowledged,
    so never sent it again), the camera's cursor stuck and the room for events shrunk. And a score's ack still queued
    when the bridge reconnected was taken as the event's."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    bridge, paho, db = _wrapped(tmp_path, events=2)
    bridge._publish_logged(db)
    _score(bridge, 7)
    paho.acknowledge(bridge, 7)  # the event's PUBACK; then the connection drops, the score is never written
    bridge._on_connect(paho, None, None, ReasonCode(PacketTypes.CONNACK, "Success"), None)
    bridge._publish_logged(db)
    assert paho.events[2:] == [(1, 9, False), (2, 10, False)]
    for mid in (8, 9, 10):
        paho.acknowledge(bridge, mid)
    assert bridge.acked["cam0"] == 2 and bridge._unacked() == 0 and bridge._room() == bridge.cfg.max_inflight
    db.close()

    (tmp_path / "queued").mkdir()
    bridge, paho, db = _wrapped(tmp_path / "queued", events=1)
    bridge._publish_logged(db)
    _score(bridge, 7)
    paho.acknowledge(bridge, 7, puback=False, drain=False)  # the score written, its ack not yet taken in
    bridge._on_connect(paho, None, None, ReasonCode(PacketTypes.CONNACK, "Success"), None)
    bridge._drain_acks()
    assert bridge.acked.get("cam0") is None
    bridge._publish_logged(db)
    assert paho.events[1:] == [(1, 9, False)]
    paho.acknowledge(bridge, 9)
    assert bridge.acked["cam0"] == 1 and bridge._unacked() == 0
    db.close()
