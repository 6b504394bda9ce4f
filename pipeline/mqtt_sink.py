"""MQTT bridge: a line's events and health on a plant's MQTT broker (paho-mqtt 2.x), none lost.

It runs in the node's process (`sinks.mqtt` in the line config; `run_node(..., mqtt=...)`), so its
last will is the node's: when the node dies, the broker tells everyone. Topics (`docs/mqtt.md`),
with BASE = `<prefix>/<line>` (default `ssdnet/<node name>`):

    BASE/status                 retained, QoS 1   {"state": "online"|"offline", "reason", "node", "t", ...}
                                                  the last will sets "offline" when the connection drops
    BASE/node                   retained, QoS 1   the node's heartbeat: state (idle|busy), counters, t
    BASE/camera/<name>/status   retained, QoS 1   a camera's heartbeat: state, last_frame_age, counters, t
    BASE/camera/<name>/event    QoS `qos` (1)     one anomaly event: source, seq, log_seq, score, threshold,
                                                  regions, t_capture, stamps, model_version, node, line
    BASE/camera/<name>/score    QoS 0             every scored frame (only with `scores: true`)

Events come from the node's durable event log, not from the live stream: the bridge follows the
log by `log_seq` per source, like the replay collector, keeps at most `max_inflight` events sent
and not yet acknowledged by the broker (PUBACK), and moves its cursor only over acknowledged ones.
While the broker is away nothing more is sent (paho re-sends the unacknowledged ones after it
reconnects) and the rest waits in the log, so a broker outage loses nothing: at least once, in log
order per camera, a repeat recognisable by its (`log_id`, `log_seq`). The acknowledged cursor is kept in
`<event_log>.mqtt-<client id>.json` with the log's id (fsync'd, the one before it kept as `.json.prev` and read when
the cursor is damaged), so a restarted node resumes where the broker stopped acknowledging, and a log made anew is
sent from its first event. Without an event log (a node without
`node.event_log`) events are held in memory, at most 10000, oldest dropped first (counted and logged).

Connection trouble never reaches the node's scoring: a refused login (bad credentials, not
authorised), an unreachable broker, a TLS failure or a broker that accepts the connection and
never answers (`connect_timeout_s`) is logged once per state change with what to check, counted,
and retried with doubling delays up to `reconnect_max_s`.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import ssl
import threading
import time
from collections import deque
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from . import protocol as P
from .eventlog import Cursors, EventLog
from .sink_config import MqttConfig
from .transport import ThrottledLog

log = logging.getLogger(__name__)
MAX_HELD_LIVE = 10_000
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def topic_layout(cfg: MqttConfig, node: str) -> dict[str, str]:
    """The topics of a line, `{camera}` standing for a camera's name."""
    base = f"{cfg.prefix}/{cfg.line or node}"
    return {"status": f"{base}/status", "node": f"{base}/node", "camera_status": f"{base}/camera/{{camera}}/status",
            "event": f"{base}/camera/{{camera}}/event", "score": f"{base}/camera/{{camera}}/score"}


class MqttBridge:
    """Publishes what the node's publisher thread taps (`tap`) and what its event log holds."""

    def __init__(self, cfg: MqttConfig, node: str, event_log: str | Path | None, scorer: dict | None = None):
        self.cfg, self.node = cfg, node
        self.line = cfg.line or node
        self.topics = topic_layout(cfg, node)
        self.client_id = cfg.client_id or f"ssdnet-{self.line}-{node}"
        self.event_log = Path(event_log) if event_log is not None else None
        self.cursor_path = (self.event_log.with_name(f"{self.event_log.name}.mqtt-{_SAFE.sub('_', self.client_id)}"
                                                     ".json") if self.event_log is not None else None)
        self.scorer = scorer
        self.stats = {"connects": 0, "refused": 0, "unreachable": 0, "timeouts": 0, "published": 0, "acked": 0,
                      "dropped": 0, "log_failed": 0, "unacknowledged": 0}  # (the last: counted when it closes)
        # source -> highest log_seq the broker acknowledged (all before it too), and the event log they count in
        self.acked = Cursors()
        self._unreadable_log = ThrottledLog(log, interval_s=5.0)  # a damaged event log: said every 5 s at most
        self.sent: dict[str, int] = {}  # source -> highest log_seq handed to paho
        # only the bridge's thread touches these three: paho calls on_publish holding its own lock, so the
        # acknowledgements are handed over through `_acks` instead of a lock shared with publish()
        self._pending: dict[str, deque[tuple[int, int]]] = {}  # source -> (log_seq, mid) sent, not yet acked
        self._acked_mids: set[int] = set()
        self._mids: dict[int, str] = {}
        self._acks: deque[int] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._connected = threading.Event()
        self._attempt_started: float | None = None  # when the socket to the broker opened, until it answers
        self._problem: str | None = None  # the connection problem last logged (logged again only when it changes)
        self._health: dict[str, P.Message] = {}  # latest heartbeat per node/camera, published every health_s
        self._health_dirty: set[str] = set()
        # health messages sent, not yet acknowledged: mid -> its node/camera key. A key waits for its ack before it is
        # published again (its latest state then), so a camera flipping its state 50 times a second (each a retained
        # QoS 1 message) against a stalled broker queues one message, not one per flip in paho's memory
        self._health_mids: dict[int, str] = {}
        self._live: deque[P.EventHeader] = deque(maxlen=MAX_HELD_LIVE)  # events without an event log
        self._scores: deque[P.AnomalyHeader] = deque(maxlen=256)
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self.client = self._make_client()

    # ------------------------------------------------------------ client

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True,
                             protocol=mqtt.MQTTv311)
        client.will_set(self.topics["status"], self._status("offline", "connection lost: the node died or its "
                                                                       "network went away"), qos=1, retain=True)
        if cfg.username is not None:
            password = cfg.password if cfg.password_env is None else os.environ.get(cfg.password_env)
            if cfg.password_env is not None and password is None:
                log.error("mqtt: environment variable %s (sinks.mqtt.password_env) is not set; connecting without a "
                          "password", cfg.password_env)
            client.username_pw_set(cfg.username, password)
        if cfg.tls is not None:
            client.tls_set(ca_certs=str(cfg.tls.ca_certs) if cfg.tls.ca_certs else None,
                           certfile=str(cfg.tls.certfile) if cfg.tls.certfile else None,
                           keyfile=str(cfg.tls.keyfile) if cfg.tls.keyfile else None,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            client.tls_insecure_set(cfg.tls.insecure)
        client.reconnect_delay_set(1, max(1, int(cfg.reconnect_max_s)))
        client.connect_timeout = cfg.connect_timeout_s
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_socket_open = self._on_socket_open
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _status(self, state: str, reason: str) -> str:
        return json.dumps({"state": state, "reason": reason, "node": self.node, "line": self.line, "t": time.time(),
                           "scorer": self.scorer})

    def _report(self, problem: str | None, level: int = logging.ERROR) -> None:
        if problem != self._problem:
            self._problem = problem
            if problem is not None:
                log.log(level, "mqtt: %s", problem)

    def _on_socket_open(self, client, userdata, sock) -> None:
        """The connection (TCP, and TLS where configured) is up: the broker has `connect_timeout_s` to answer."""
        self._attempt_started = time.monotonic()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        where = f"{self.cfg.host}:{self.cfg.broker_port}"
        self._attempt_started = None  # it answered
        if reason_code.is_failure:
            self.stats["refused"] += 1
            hint = (" (check sinks.mqtt.username / password / password_env and the broker's ACL)"
                    if reason_code.value in (4, 5, 134, 135) else "")
            self._report(f"broker {where} refused the connection: {reason_code}{hint}; retrying")
            return
        self.stats["connects"] += 1
        self._report(None)
        log.info("mqtt: connected to %s as %s; events on %s", where, self.client_id, self.topics["event"])
        client.publish(self.topics["status"], self._status("online", "connected"), qos=1, retain=True)
        with self._lock:
            self._health_dirty |= set(self._health)
            self._health_mids.clear()  # those of a lost connection may never be acknowledged
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._attempt_started = None  # never connected: nothing to wait an answer for
        self.stats["unreachable"] += 1
        self._report(f"cannot reach broker {self.cfg.host}:{self.cfg.broker_port} (refused, no route or TLS "
                     "failure); retrying")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if self._closing.is_set():
            return
        if was:
            self._report(f"lost the broker {self.cfg.host}:{self.cfg.broker_port} ({reason_code}); reconnecting, "
                         "events wait in the event log", logging.WARNING)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append(mid)  # taken in by the bridge's thread (`_drain_acks`)
        self._wake.set()

    def _drain_acks(self) -> None:
        while self._acks:
            mid = self._acks.popleft()
            with self._lock:
                if self._health_mids.pop(mid, None) is not None:
                    continue
            source = self._mids.pop(mid, None)
            if source is None:  # a status message, a score, or a message forgotten (`_forget`)
                continue
            self.stats["acked"] += 1
            self._acked_mids.add(mid)
            pending = self._pending[source]
            while pending and pending[0][1] in self._acked_mids:
                n, done = pending.popleft()
                self._acked_mids.discard(done)
                with self._lock:
                    self.acked[source] = n

    # ------------------------------------------------------------ the node's side

    def tap(self, msg: P.Message) -> None:
        """Called by the node's publisher thread for every message it sends; never blocks."""
        h = msg.header
        if h.kind == "eos":  # a camera's status ends with its stream, whether or not a last heartbeat said so
            msg = P.Message(P.HeartbeatHeader(kind="heartbeat", role="source", state="ended", source=h.source,
                                              seq=h.seq, t_capture=h.t_capture, counters=h.counters))
            h = msg.header
        if h.kind == "heartbeat":
            key = "node" if h.role == "node" else h.source
            with self._lock:
                previous = self._health.get(key)
                self._health[key] = msg
                if previous is None or previous.header.state != h.state:
                    self._health_dirty.add(key)
                    self._wake.set()
        elif h.kind == "event":
            if self.event_log is None:
                if len(self._live) == self._live.maxlen:
                    self.stats["dropped"] += 1
                self._live.append(h)
            self._wake.set()
        elif h.kind == "anomaly" and self.cfg.scores:
            self._scores.append(h)
            self._wake.set()

    def start(self) -> MqttBridge:
        self._load_cursors()
        self.client.connect_async(self.cfg.host, self.cfg.broker_port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        self._thread.start()
        log.info("mqtt: bridge to %s:%d (%s), topics under %s/", self.cfg.host, self.cfg.broker_port,
                 "TLS" if self.cfg.tls else "plain", self.topics["status"].rsplit("/", 1)[0])
        return self

    def close(self, timeout_s: float = 2.0) -> None:
        """Publish 'offline (stopped)' if connected, wait briefly for outstanding acknowledgements, disconnect, say
        what the broker never acknowledged. Once: a second call does nothing."""
        if self._closing.is_set():
            return
        deadline = time.monotonic() + timeout_s
        while self._connected.is_set() and self._unacked() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=2)
        if self._connected.is_set():
            info = self.client.publish(self.topics["status"], self._status("offline", "stopped"), qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._drain_acks()  # those that came after the bridge's thread stopped
        self._save_cursors()
        self._report_unacknowledged()

    def _report_unacknowledged(self) -> None:
        """At the end: how many events the broker never acknowledged (`stats["unacknowledged"]`, and a warning saying
        where they wait, or that they are lost without an event log): a run ending while the broker was away must not
        look delivered."""
        if self.event_log is None:
            held = len(self._live) + self._unacked()
            self.stats["unacknowledged"] = held
            if held:
                log.warning("mqtt: %d event(s) were not acknowledged by the broker %s:%d and are lost: without "
                            "`node.event_log` they were held in memory only", held, self.cfg.host, self.cfg.broker_port)
            return
        if not self.event_log.is_file():
            return
        db = EventLog(self.event_log, readonly=True)
        try:
            heads, log_id = db.read_heads(), db.log_id
        finally:
            db.close()
        with self._lock:
            acked = self.acked.copy()
        acked.follow(log_id)  # a log made anew since: none of its events was acknowledged
        waiting = sum(max(0, head - acked.get(source, 0)) for source, head in heads.items())
        self.stats["unacknowledged"] = waiting
        if waiting:
            log.warning("mqtt: %d event(s) in %s were not acknowledged by the broker %s:%d; they wait there and go "
                        "out when a node runs again on that event log with client id %s (`ssdnet run` into a used "
                        "--out sets its log aside: give `node.event_log` a path of its own; docs/mqtt.md)", waiting,
                        self.event_log, self.cfg.host, self.cfg.broker_port, self.client_id)

    def _unacked(self) -> int:
        return sum(len(p) for p in list(self._pending.values()))

    # ------------------------------------------------------------ cursors

    def _load_cursors(self) -> None:
        """The saved cursor; when it cannot be read (a damaged file), the one saved before it (`.prev`: events
        acknowledged between the two go out again, at least once); with neither, only events logged from now on
        (or the whole log with `from_start`)."""
        if self.cursor_path is None:
            return
        for path in (self.cursor_path, self._previous_path):
            try:
                saved = json.loads(path.read_text())
                acked, log_id = saved["acked"], saved.get("log_id", 0)
                if not all(type(v) is int and v >= 0 for v in (*acked.values(), log_id)):  # 1e999, Infinity, -1, "3"
                    raise ValueError(f"not a count of events: {[*acked.values(), log_id]!r:.80}")
                self.acked = Cursors({str(k): v for k, v in acked.items()}, log_id)
                log.info("mqtt: resuming after %s%s", self.acked, " (the previous cursor)" * (path != self.cursor_path))
                return
            except FileNotFoundError:
                pass
            except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
                log.warning("mqtt: ignored the unreadable cursor file %s (%s)", path, e)
        if not self.cfg.from_start and self.event_log is not None and self.event_log.is_file():
            db = EventLog(self.event_log, readonly=True)
            try:
                self.acked = Cursors(db.read_heads())  # only events logged from now on
            finally:
                db.close()

    @property
    def _previous_path(self) -> Path:
        return self.cursor_path.with_name(self.cursor_path.name + ".prev")

    def _save_cursors(self) -> None:
        if self.cursor_path is None:
            return
        with self._lock:
            data = json.dumps({"acked": self.acked, "log_id": self.acked.log_id, "client_id": self.client_id,
                               "t": time.time()})
        try:  # durable (fsync'd before it replaces the last), the last kept as `.prev`
            tmp = self.cursor_path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if self.cursor_path.exists():
                os.replace(self.cursor_path, self._previous_path)
            os.replace(tmp, self.cursor_path)
        except OSError as e:
            log.warning("mqtt: could not save the cursor %s: %s", self.cursor_path, e)

    # ------------------------------------------------------------ the bridge's thread

    def _run(self) -> None:
        db: EventLog | None = None
        followed = False  # the log's id read (`_follow`): before, none of its events is sent
        last_health, last_save, saved = 0.0, 0.0, dict(self.acked)
        try:
            while not self._closing.is_set():
                self._wake.wait(0.2)
                self._wake.clear()
                now = time.monotonic()
                self._drain_acks()
                self._check_attempt(now)
                if not self._connected.is_set():
                    continue
                if now - last_health >= self.cfg.health_s:
                    last_health = now
                    with self._lock:
                        self._health_dirty |= set(self._health)
                self._publish_health()
                self._publish_scores()
                try:
                    if db is None and self.event_log is not None and self.event_log.is_file():
                        db = EventLog(self.event_log, readonly=True)
                    if db is not None and not followed:
                        followed = self._follow(db)
                    if db is not None and followed:
                        self._publish_logged(db)
                    else:
                        self._publish_live()
                except sqlite3.Error as e:  # a damaged page, an I/O error: tried again next turn, the log opened afresh
                    self._unreadable(e)
                    if db is not None:
                        db.close()
                    db = None
                if now - last_save >= 1.0 and self.acked != saved:
                    self._save_cursors()
                    last_save, saved = now, dict(self.acked)
        except Exception:
            log.exception("mqtt: the bridge thread failed; events stay in the event log")
        finally:
            if db is not None:
                db.close()

    def _follow(self, db: EventLog) -> bool:
        """Take the log's id, once its writer has made it (False until then: a log opened between its file's making
        and its id's writing would be taken for the cursor's). A log made anew since the cursor was saved (its file
        deleted or lost, a new volume) numbers its events from 1 again, so all of them are new to the broker."""
        log_id = db.log_id
        if not log_id and not db.legacy:
            return False
        with self._lock:
            old, afresh = self.acked.log_id, self.acked.follow(log_id)
        if afresh:
            log.warning("mqtt: the event log %s is a new one (log id %d, the cursor's %d): its events are sent from "
                        "its first", self.event_log, log_id, old)
            self.sent = {}
        return True

    def _check_attempt(self, now: float) -> None:
        started = self._attempt_started
        if started is not None and not self._connected.is_set() and now - started > self.cfg.connect_timeout_s:
            self.stats["timeouts"] += 1
            self._attempt_started = now
            self._report(f"no answer from broker {self.cfg.host}:{self.cfg.broker_port} within "
                         f"{self.cfg.connect_timeout_s:g} s (not an MQTT broker, TLS expected on that port, or "
                         "overloaded); still trying")

    def _room(self) -> int:
        return self.cfg.max_inflight - self._unacked()

    def _send_event(self, source: str, n: int | None, header: P.EventHeader) -> bool:
        record = {**P.event_record(header), "log_seq": n, "log_id": self.acked.log_id if n is not None else None,
                  "node": self.node, "line": self.line}
        info = self.client.publish(self.topics["event"].format(camera=source), json.dumps(record), qos=self.cfg.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            log.warning("mqtt: publish of %s#%s failed: %s", source, n, mqtt.error_string(info.rc))
            return False
        self.stats["published"] += 1
        if n is not None:
            self._mids[info.mid] = source
            self._pending.setdefault(source, deque()).append((n, info.mid))
            self.sent[source] = n
        return True

    def _publish_logged(self, db: EventLog) -> None:
        for source, head in db.read_heads().items():
            start = max(self.sent.get(source, 0), self.acked.get(source, 0))
            if head <= start:
                continue
            room = self._room()
            if room <= 0:
                return
            try:
                rows = db.after(source, start, min(room, 1000))
            except sqlite3.Error as e:  # past a damaged page this camera's events wait; the other cameras' go on
                self._unreadable(e, source)
                continue
            if rows and rows[0][0] > start + 1:
                log.warning("mqtt: %s: events %d..%d were pruned from the event log before the broker got them",
                            source, start + 1, rows[0][0] - 1)
            for n, blob in rows:
                try:
                    header = P.decode_header(blob)
                except P.ProtocolError as e:
                    log.warning("mqtt: skipped an unreadable logged event %s#%d: %s", source, n, e)
                    continue
                if not self._send_event(source, n, header):
                    return

    def _unreadable(self, error: sqlite3.Error, source: str | None = None) -> None:
        self.stats["log_failed"] += 1
        whose = f"{source}'s events in " if source else ""
        self._unreadable_log.error(f"mqtt: could not read {whose}the event log {self.event_log} ({error}); "
                                   "trying again")

    def _publish_live(self) -> None:
        while self._live and self._connected.is_set():
            header = self._live.popleft()
            self._send_event(header.source, None, header)

    def _publish_health(self) -> None:
        with self._lock:
            waiting = set(self._health_mids.values())  # their last message not acknowledged yet: stay dirty
            due = [(key, self._health[key]) for key in self._health_dirty - waiting if key in self._health]
            self._health_dirty &= waiting
        for key, msg in due:
            h = msg.header
            body = {"state": h.state, "last_frame_age": h.last_frame_age, "counters": dict(h.counters),
                    "t": h.t_capture, "source": h.source}
            topic = self.topics["node"] if key == "node" else self.topics["camera_status"].format(camera=key)
            info = self.client.publish(topic, json.dumps(body), qos=1, retain=True)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # refused: the mid of a message in
                with self._lock:  # flight (paho), or no room; it stays due
                    self._health_dirty.add(key)
                continue
            with self._lock:
                self._health_mids[info.mid] = key

    def _publish_scores(self) -> None:
        while self._scores:
            h = self._scores.popleft()
            body = {"seq": h.seq, "score": h.score, "threshold": h.threshold, "label": h.label,
                    "t_capture": h.t_capture, "regions": len(h.regions)}
            info = self.client.publish(self.topics["score"].format(camera=h.source), json.dumps(body), qos=0)
            self._forget(info.mid)

    def _forget(self, mid: int) -> None:
        """A mid shared is a mid forgotten. paho numbers messages 1..65535 round and round without skipping those in
        flight, and a score (QoS 0) gets an on_publish of its mid when it is written: given the mid of an event or a
        health message still waiting for its PUBACK, that mid's acks can no longer tell whose they are. So the message
        is forgotten and sent again with a new mid: a health message's key is due again; an event goes again from the
        event log with every later pending event of its camera (the cursor moves over them in order), at least once as
        ever. The acks of a forgotten mid are then ignored like any unknown mid's. (Live events, without an event log,
        are not tracked by mid.)"""
        with self._lock:
            key = self._health_mids.pop(mid, None)
            if key is not None:
                self._health_dirty.add(key)
        source = self._mids.get(mid)
        if source is None:
            return
        pending, forgotten = self._pending[source], None
        while forgotten != mid:  # the later ones first, then the event itself
            n, forgotten = pending.pop()
            self._mids.pop(forgotten, None)
            self._acked_mids.discard(forgotten)
        self.sent[source] = n - 1
        log.debug("mqtt: a score took the mid of %s#%d in flight: sending it again from the event log", source, n)
