"""Edge node: scores the newest frame of every source with that source's own SSDnet detector.

Three threads, each owning its socket:
- the receiver drains the camera socket (SUB or PULL, small RCVHWM) as fast as frames come and keeps
  only the newest `queue_depth` frames per source (`pipeline.pending`; the default 1 means the newest
  frame only); an older waiting frame pushed out is counted as `conflated`, gaps in a source's
  sequence numbers as `lost` (dropped before reaching the node);
- the worker (the thread calling `run`) takes frames source by source, calls the detector, and
  queues an `anomaly/<source>` result plus, if anomalous, an `event/<source>`;
- the publisher sends them on an XPUB socket with SNDHWM: a slow or dead subscriber only loses its
  own messages, it never blocks the node. It also forwards the cameras' heartbeats and sends the
  node's own (`heartbeat/<node>` with state busy/idle and the drop counters) every `heartbeat_s`.
Malformed messages, frames below `min_side` or above `max_side`, and detector failures are counted
and logged (throttled); they never stop the node.

What a camera connection may send, and how much work a frame may cost, is `pipeline.admission`: the
receiver opens one socket per camera connection, binds camera names to connections, validates every
header value and refuses the rest with a reason, counted as `rejected_<reason>` in the node's
heartbeats and final counters (docs/protocol.md).

Sharing cameras between nodes:
- pub/sub (default): cameras bind XPUB and every node that connects gets every frame (redundancy,
  or nodes with different settings).
- push/pull: cameras bind PUSH (`pattern: push`), nodes connect PULL (`input: pull`); ZeroMQ deals
  each frame to one connected node in turn, so N nodes share a camera's load. Each node then fits
  its own model per source on the frames it gets, and a camera's heartbeats and end of stream also
  reach one node only, so subscribers should connect to every node. To pin cameras to nodes
  instead, list only a node's cameras in its `connect`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import psutil
import torch
import zmq

from edge.config import SSDNetConfig
from edge.detector import Detector as SSDNetDetector
from edge.device import resolve_device
from edge.frames import BLANK_SPAN, FrameError, to_frame_size, value_span
from edge.scorers import choose_backend, ensure_available, graph_size
from edge.scorers.base import GraphCache
from edge.vgg import build_vgg

from . import admission
from . import protocol as P
from .admission import REASONS, Admission, Peer, Rejected, Ticket, WorkBudget
from .checkpoints import Checkpoints
from .config import NodeConfig
from .counters import Counters
from .eventlog import EventLog, EventWriter, ReplayBudget, replay_socket, serve_replay
from .flow import Credits
from .gate import PeerLimit, UnreadLimit, close_gate, open_gate
from .pending import ENDS_WAITING, PendingFrames, RunEnded
from .regions import find_regions
from .security import CLIENT_REFUSALS, SERVER_REFUSALS, secure_stage
from .silence import Silences
from .transport import (
    LINGER_MS,
    MAX_UNREAD_BYTES,
    Publisher,
    StopFlag,
    ThrottledLog,
    bind,
    connect,
    drop_dead_peers,
    make_socket,
    security_of,
    took,
)

log = logging.getLogger(__name__)
INPUT_TOPICS = (b"frame/", b"heartbeat/", b"eos/")
RECV_BATCH = 16  # messages taken from one camera connection before the next gets its turn
# A camera connection silent this long is connected afresh: ZeroMQ gives an endpoint up for good after a handshake
# with something that is not a camera there (a protocol error: another program held the port a moment), and a camera
# waits for its subscriber before it sends anything. One that has given no message since it was connected: nothing
# flows to lose. One that has: longer than any camera's heartbeat period (`heartbeat_s` <= 60), so a quiet camera's
# working connection is never broken.
SILENT_RECONNECT_S = 10.0
QUIET_RECONNECT_S = 61.0
REFUSALS = SERVER_REFUSALS + CLIENT_REFUSALS
PEER_REFUSALS = ("subscribers", "replay_clients")  # connections over node.max_subscribers (pipeline.gate)


def _close_input(sock: zmq.Socket) -> None:
    """Close a camera connection's socket, its gate monitor stopped first: a connecting socket closed while monitored
    kept the context's ZAP socket from being freed, so no later gate of that context could bind (a node run again in
    one process: tests/test_sinks_stage_resume.py)."""
    sock.disable_monitor()
    sock.close()


def input_unread_bytes(max_side: int) -> int:
    """What a camera connection may send before the node takes a message from it (pipeline.gate): its largest frame
    must come whole first. An image and a mask hold 4 bytes a pixel raw, a png or jpeg file up to 1.4 times as much
    (noise at jpeg quality 100): twice that, a header and MAX_UNREAD_BYTES more."""
    return 8 * max_side ** 2 + P.MAX_HEADER_BYTES + MAX_UNREAD_BYTES


@runtime_checkable
class Detection(Protocol):
    """What a detector returns for one frame (edge.detector.Detection is one)."""

    anomaly_map: np.ndarray  # float32 (H, W) of the frame
    score: float  # raw image score (published as raw_score)
    calibrated: float  # the score against this source's normal (edge.calibration); an event when > node.threshold
    calibrating: bool  # too few frames of the source yet: `calibrated` leans on a prior (marked in events)
    calibration: tuple[float, float]  # (median, scale): calibrated = (score - median) / scale; the published
    # map is put in the same units, so map, score, threshold, regions and overlays all read "robust std above normal"
    fit_steps: int
    fit_ms: float
    score_ms: float
    model_version: int  # advances with every fit; checkpointed every `checkpoint_every` (at most every N s)
    budget_met: bool  # False: the fit could not meet its time budget (counted as budget_unmet)
    diverged: bool  # the fit went non-finite and the last good weights were restored (counted, logged)
    normal_moved: bool  # the source's normal moved with this frame (a new product): it has started afresh (counted)
    normal_recalled: bool  # the frame showed a surface the source knew before its normal moved: that resumed (counted)
    scorer_fallback: bool  # the camera's exported scorer failed on this frame: torch scores it from now on (counted)
    still: bool  # it showed the scene the source last learnt from (a stopped line): it taught nothing (counted)

    def calibrated_map(self) -> np.ndarray: ...  # the map in the calibrated score's units


@runtime_checkable
class Detector(Protocol):
    """The detector contract: everything the node asks of a source's detector (edge.detector.Detector
    is one; tests use fakes). One may also have `kept_surfaces`, the states it keeps beside its own (the
    memory budget counts each as one more model)."""

    def process(self, image: np.ndarray) -> Detection:
        """Fit on and score one uint8 HxWx3 RGB frame (time budgets come from the detector's own config)."""
        ...

    def reset(self) -> None:
        """Forget the source: the next frame starts from scratch (a cold fit)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The weights a checkpoint holds (tensors; written with torch.save)."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's weights: the next frame is a warm start from them."""
        ...


DetectorFactory = Callable[[str], Detector]


class SSDNetDetectors:
    """The default detector factory: an `edge.detector.Detector` built from the `ssdnet:` config.

    The scorer backend is chosen once, here (`score.backend: auto` resolved for this machine), and a
    backend whose runtime is missing fails the node's start-up, not every frame."""

    def __init__(self, cfg: SSDNetConfig):
        self.choice = choose_backend(cfg.score, resolve_device(cfg.device))
        ensure_available(self.choice)
        self.cfg = cfg.model_copy(update={"score": cfg.score.model_copy(update={"backend": self.choice.backend})})
        self.vgg = build_vgg(cfg)  # one frozen VGG19 shared by every source's detector

    def __call__(self, source: str) -> Detector:
        return SSDNetDetector(self.cfg, vgg=self.vgg)


class EdgeNode:
    """Reads frames from `inputs` (plus `cfg.connect`) and publishes results on `cfg.bind`.

    `input_names[i]` (a name or a list of names) are the cameras input i speaks for; without
    `input_names`, each input speaks for the first camera name it sends. `cfg.connect` endpoints speak
    for `cfg.connect_cameras` (or, with `cfg.dynamic_cameras`, new names). pipeline.admission."""

    def __init__(self, cfg: NodeConfig, inputs: Sequence[str] = (), detector_factory: DetectorFactory | None = None,
                 ctx: zmq.Context | None = None, server_keys: Mapping[str, bytes] | None = None,
                 input_names: Sequence[str | Sequence[str]] | None = None):
        self.cfg = cfg
        self.inputs = (*inputs, *cfg.connect)
        if detector_factory is None:
            default = SSDNetDetectors(cfg.ssdnet)
            self.factory: DetectorFactory = default
            self.scorer: dict | None = default.choice.as_dict()  # which scorer backend, on what, and why
        else:
            self.factory, self.scorer = detector_factory, None  # a detector of the caller's: its scoring is its own
        self.ctx = ctx or zmq.Context.instance()
        self.counters = Counters()
        self.credits = Credits(cfg.name, budget=cfg.queue_depth)  # cameras with flow: credit (pipeline/flow.py)
        self.pending = PendingFrames(cfg.queue_depth, awaited=self.credits.awaited)
        # a message, or (a logged event or end of stream, or None when logged late; its kind; its number in the log)
        self.outbox: queue.Queue[P.Message | tuple[P.Message | None, str, int]] = queue.Queue()
        self.detectors: dict[str, Detector] = {}  # camera -> its model, one for every frame size
        self.products: dict[str, str | None] = {}  # camera -> the product its model is for (frame header `product`)
        # camera -> the sizes of the graphs its scorer holds (`_graph_size`), each with its last frame size, the most
        # recent last; an exported scorer builds a graph per size (edge.scorers.base.GraphCache), torch's needs none
        self.frame_sizes: dict[str, GraphCache] = {}
        self._graph_per_size = self.scorer is not None and self.scorer.get("backend") in ("onnxruntime", "tensorrt")
        self._last_received: float | None = None  # monotonic: a step of the system clock moves no `last_frame_age`
        self._busy = False
        self._log = ThrottledLog(log)
        self._reject_logs = {reason: ThrottledLog(log) for reason in REASONS}
        self._blank_log = ThrottledLog(log)
        self._streams_ended: set[str] = set()  # cameras whose end of stream went out, none of their messages since
        self.input_reconnects = 0  # silent camera connections connected afresh (SILENT_RECONNECT_S)
        self.silent_inputs = 0  # camera connections that spoke and are silent now (pipeline/silence.py)
        self.server_keys = dict(server_keys or {})  # camera endpoint -> its CURVE public key (security on)
        self.peers = self._peers(inputs, input_names)
        self.admission = Admission.from_config(cfg, self.peers)
        # a camera's model: the detector (admission.MODEL_MB) and its memory of normal appearance; once more for each
        # surface it keeps after its normal moved (`memory.recall_surfaces`), once it keeps one (`_models`)
        self.budget = WorkBudget(cfg.memory_budget_mb, admission.model_mb(cfg.ssdnet))
        configured = len(self.admission.declared)
        if self.budget.pixels_for(configured, 0, new_graph=self._graph_per_size) < cfg.min_side ** 2:
            need = self.budget.needed_mb(configured, 0, cfg.min_side ** 2, new_graph=self._graph_per_size)
            log.warning("%s: node.memory_budget_mb %s cannot hold the models of its %d configured cameras and one "
                        "frame's scoring: frames will be refused (memory_budget); they need at least %.0f MB",
                        cfg.name, cfg.memory_budget_mb, configured, need)
        self._downscaled_by: dict[str, Counter[str]] = defaultdict(Counter)  # camera -> frames downscaled by reason
        self._new_size_at: dict[str, float] = {}  # camera -> when it last brought a frame size new to its scorer
        self._ps = psutil.Process()
        self.start_rss = self._ps.memory_info().rss
        self._last_rss_mb = round(self.start_rss / 2**20)  # heartbeat `rss_mb` (`_rss_mb`)
        self.event_log: EventLog | None = None
        self.events: EventWriter | None = None  # the events into the log, kept while it cannot be written
        self.replay_endpoint: str | None = None
        self.replay_budget = ReplayBudget(cfg.replay_cpu_share)  # each replay client's share of the replay thread
        self.publisher: Publisher | None = None  # the result socket, once bound
        # connections the result and the replay socket hold at once, counted and bounded by the context's ZAP gate
        self.subscribers = PeerLimit(cfg.max_subscribers, "subscribers", "node.max_subscribers")
        self.replay_clients = PeerLimit(cfg.max_subscribers, "replay clients", "node.max_subscribers")
        # camera connections, bounded alike against a message that never ends
        self.inputs_unread = UnreadLimit(input_unread_bytes(cfg.max_side), on_drop=self._endless_input)
        self._announced_events: int | None = None  # logged events whose live copy was sent (heartbeat `logged_events`)
        self._start_events = 0
        self._announced_ends: int | None = None  # the last logged end of stream sent (heartbeat `logged_ends`)
        self._start_ends = 0
        self._event_log_id = 0  # the event log's identity (heartbeat `event_log_id`)
        self.checkpoints = Checkpoints(cfg.checkpoint_dir, cfg.checkpoint_every, cfg.scratch_checkpoint_mb,
                                       cfg.checkpoint_interval_s)
        self.taps: list[Callable[[P.Message], None]] = []  # see every published message (the MQTT bridge); non-blocking

    def _peers(self, inputs: Sequence[str], input_names: Sequence[str | Sequence[str]] | None) -> list[Peer]:
        """One Peer per distinct input endpoint, with the camera names it may speak for."""
        if input_names is not None and len(input_names) != len(inputs):
            raise ValueError(f"{len(input_names)} input_names for {len(inputs)} inputs")
        peers: dict[str, Peer] = {}
        for i, endpoint in enumerate(inputs):
            secured = endpoint in self.server_keys
            if input_names is None:
                peers.setdefault(endpoint, Peer(endpoint, learn_one=True, secured=secured))
                continue
            names = input_names[i]
            names = frozenset([names] if isinstance(names, str) else names)
            old = peers.get(endpoint)
            peers[endpoint] = Peer(endpoint, names | (old.names if old else frozenset()), secured=secured)
        for endpoint in self.cfg.connect:
            listed = frozenset(self.cfg.connect_cameras.get(endpoint, ()))
            old = peers.get(endpoint)
            if old is not None:
                old.names |= listed
                old.dynamic |= self.cfg.dynamic_cameras and not listed
                continue
            peers[endpoint] = Peer(endpoint, listed, dynamic=self.cfg.dynamic_cameras and not listed,
                                   secured=endpoint in self.server_keys)
        return list(peers.values())

    def run(self, stop: StopFlag, on_ready: Callable[[str], None] | None = None,
            wait_for_subscriber_s: float = 0.0) -> dict:
        """Serve until `stop` is set; returns the final counters. With `wait_for_subscriber_s`, the node
        subscribes to the cameras only once a subscriber is connected (or that time has passed)."""
        self._halt, threads = threading.Event(), []
        if self.cfg.event_log is not None:  # a log it cannot use fails the start before anything is bound
            self.event_log = EventLog(self.cfg.event_log, self.cfg.event_log_max_events)
        gate = self._gate = open_gate(self.ctx)  # given back by _shutdown
        if self.event_log is not None:  # committed by the worker (this thread), read by the replay thread
            self.events = EventWriter(self.event_log, lambda kind, n: self.outbox.put((None, kind, n)))
            rep = replay_socket(self.ctx)
            gate.watch(rep, server=True, limit=self.replay_clients)
            try:
                self.replay_endpoint = bind(rep, self.cfg.replay_bind)
            except zmq.ZMQError:
                rep.close()
                self._shutdown(threads)
                raise
            log.info("%s: event log %s (%d events), replay on %s", self.cfg.name, self.cfg.event_log,
                     self.event_log.total, self.replay_endpoint)
            self._start_events, self._start_ends = self.event_log.total, self.event_log.ends_head
            self._event_log_id = self.event_log.log_id  # read here: the log's connection is this thread's
            threads.append(threading.Thread(target=serve_replay, args=(rep, self.event_log.path, self._halt,
                                                                        self._published_ends, self.replay_budget),
                                            name="replay", daemon=True))
            threads[-1].start()  # answers already while the node waits for its first subscriber
        try:
            out = self.publisher = Publisher(self.ctx, self.cfg.bind, sndhwm=self.cfg.sndhwm,
                                             max_topics=self.cfg.max_subscriptions, name=self.cfg.name,
                                             guard=lambda sock: gate.watch(sock, server=True, limit=self.subscribers),
                                             rebind_s=None)  # its publish thread retries; the node's stop waits 5 s
        except zmq.ZMQError:
            self._shutdown(threads)
            raise
        endpoint = out.endpoint
        scorer = (f"{self.scorer['backend']} on {self.scorer['provider']} ({self.scorer['reason']})" if self.scorer
                  else "the caller's detector")
        log.info("%s: publishing on %s; scorer: %s", self.cfg.name, endpoint, scorer)
        inputs: list[tuple[zmq.Socket, Peer]] = []  # one socket per camera connection: the socket names its sender
        try:  # a failure here (a bad endpoint) stops the replay thread before run_node's context closes its socket
            if on_ready is not None:
                on_ready(endpoint)
            if wait_for_subscriber_s:
                out.wait_for_subscriber(wait_for_subscriber_s, stop)
            for peer in self.peers:
                # XSUB rather than SUB: it also carries credit grants upstream to the camera (pipeline/flow.py)
                inp = make_socket(self.ctx, zmq.XSUB if self.cfg.input == "sub" else zmq.PULL, rcvhwm=self.cfg.rcvhwm)
                inputs.append((inp, peer))
                # a camera whose machine vanished (powered off, cut off) is dropped and reconnected by ZeroMQ within
                # seconds, not at QUIET_RECONNECT_S: its half-open connection would otherwise carry nothing for 61 s
                drop_dead_peers(inp)
                gate.watch(inp, server=False, limit=self.inputs_unread)
                connect(inp, peer.endpoint, self.server_keys.get(peer.endpoint))
                if self.cfg.input == "sub":
                    for topic in INPUT_TOPICS:
                        inp.send(b"\x01" + topic)
        except BaseException:
            for inp, _ in inputs:
                _close_input(inp)
            out.close()
            self._shutdown(threads)
            raise
        halt = self._halt
        threads += [threading.Thread(target=self._receive, args=(inputs, halt), name="receive", daemon=True),
                   threading.Thread(target=self._publish, args=(out, halt), name="publish", daemon=True)]
        for t in threads:
            if t.ident is None:  # not the replay thread, started already (and perhaps ended: not started again)
                t.start()
        try:
            while not stop.is_set():
                msg = self.pending.take(timeout=0.1)
                if self.events is not None:
                    self.events.retry()
                if msg is not None and msg.kind == "eos":
                    self._end(msg)
                elif isinstance(msg, RunEnded):
                    self.counters.stream(msg.source)  # that run's counters: the next stream's start after them
                elif msg is not None:
                    # a camera's model is made (or restored) on its first frame: a one-off second and more, charged
                    # to its share of the node, held its other frames back while cheaper cameras caught up with it
                    # (a 64 px credit camera waited 13 s of another's 40 frames)
                    fresh, began = msg.source not in self.detectors, time.monotonic()
                    self._process(msg)
                    spent = 0.0 if fresh else time.monotonic() - began
                    self.pending.served(msg.source, spent)
                    self.credits.done(msg.source, msg.header.seq, spent)
        finally:
            if self.events is not None and self.events.kept:  # a last try; what is left went out live only, and is said
                self.events.retry(now=True)
                if self.events.kept:
                    ends = f" and {self.events.kept_ends} end(s) of stream" if self.events.kept_ends else ""
                    log.error("%s: %d event(s)%s went out live but could not be written to the event log %s: the "
                              "live stream's subscribers had them, those that read the log (a line's sinks and "
                              "events.jsonl, `ssdnet subscribe --replay`, the MQTT bridge) did not",
                              self.cfg.name, self.events.pending, ends, self.cfg.event_log)
            for source in list(self.detectors):
                self._keep(source, scratch=False)
            self.checkpoints.close()
            self._shutdown(threads)
        return self.report()

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        """Stop the node's threads (they close their sockets), close the event log and give the gate back."""
        self._halt.set()
        for t in threads:
            t.join(timeout=5)
        if self.event_log is not None:
            self.event_log.close()
        close_gate(self._gate)

    # ------------------------------------------------------------ receiver thread

    def _receive(self, inputs: list[tuple[zmq.Socket, Peer]], halt: threading.Event) -> None:
        poller, peers = zmq.Poller(), {}
        for sock, peer in inputs:
            poller.register(sock, zmq.POLLIN)
            peers[sock] = peer
        upstream = [sock for sock in peers if sock.type == zmq.XSUB]
        heard = dict.fromkeys(peers, time.monotonic())  # when each connection last gave a message, or was connected
        spoke: set[zmq.Socket] = set()  # the connections that have given a message since they were connected
        silences = Silences(peers, QUIET_RECONNECT_S / 3)
        try:
            while not halt.is_set():
                now = time.monotonic()
                self.silent_inputs = silences.check(now)
                for sock, t in heard.items():
                    if now - t > (QUIET_RECONNECT_S if sock in spoke else SILENT_RECONNECT_S):
                        self._reconnect(sock, peers[sock])
                        heard[sock] = now
                        spoke.discard(sock)
                for source, grant in self.credits.outgoing() if upstream else ():
                    camera = self.admission.cameras.get(source)
                    for sock in upstream:  # on its camera's connection only: the others never learn its name
                        if camera is None or peers[sock] is not camera.peer:
                            continue
                        try:
                            sock.send(grant, zmq.NOBLOCK)
                        except zmq.Again:
                            pass  # grants are absolute: the next one (or the camera's heartbeat) makes up for it
                ready = [sock for sock, _ in poller.poll(10 if upstream else 100)]
                while ready and not halt.is_set():  # in turns of RECV_BATCH: a flooding peer cannot starve the others
                    for sock in list(ready):
                        for _ in range(RECV_BATCH):
                            try:
                                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                            except zmq.Again:
                                ready.remove(sock)
                                break
                            took(parts[-1])
                            heard[sock] = time.monotonic()
                            spoke.add(sock)
                            silences.heard(sock, self._on_input(parts, peers[sock]))
        finally:
            for sock in peers:
                _close_input(sock)

    def _reconnect(self, sock: zmq.Socket, peer: Peer) -> None:
        """Connect a silent camera connection afresh (its subscriptions and keys stay with the socket)."""
        try:
            sock.disconnect(peer.endpoint)
        except zmq.ZMQError:
            pass  # ZeroMQ had dropped the endpoint already
        sock.connect(peer.endpoint)
        self.input_reconnects += 1
        log.debug("%s: silent, connected afresh", peer)

    def _on_input(self, parts: list[zmq.Frame], peer: Peer) -> str | None:
        """Admit one message from a camera connection and queue it; its kind, None if refused."""
        now = time.time()
        ticket: list[Ticket] = []
        try:
            msg = P.decode(parts, max_side=self.cfg.max_side, defer=True,
                           admit=lambda h: ticket.append(self.admission.check(peer, h)))
        except P.ProtocolError as e:
            self.counters.add(None, "bad_messages")
            # a frame of a camera bound to this connection, its header admitted and its payload bad (too large, lying
            # sizes): charged to that camera, as a file that fails to decode later is; else to none
            own = ticket[0] if ticket and ticket[0].kind == "frame" and not ticket[0].new else None
            self._refuse(e.reason, f"dropped a malformed message from {peer}: {e}", own and own.camera.name)
            if own is not None:
                self._keep_place(own)
            return None
        except Rejected as e:
            if e.reason == "unexpected_kind":
                self.counters.add(None, "bad_messages")
            self._refuse(e.reason, str(e), e.camera)
            if e.ticket is not None:
                self._keep_place(e.ticket)
            return None
        if msg.kind == "eos" and not self.pending.room_for_end(msg.source):  # ends faster than the node takes them
            self._refuse("eos_repeated", f"eos/{msg.source}: {ENDS_WAITING} of its ends of stream wait to go out "
                         "already")
            return None
        restarts = ticket[0].camera.seq_restarts
        lost = self.admission.commit(ticket[0])
        if ticket[0].restart or ticket[0].resync:
            log.info("%s: its numbering %s at frame %d (a camera restarted)", peer,
                     "started again" if ticket[0].restart else "resynchronised", ticket[0].seq)
        elif ticket[0].camera.seq_restarts > restarts:  # a new run, or a heartbeat behind its last frame
            why = f"a new run ({msg.header.run})" if ticket[0].new_run else \
                "its heartbeat is behind its last frame seen"
            log.info("%s: %s: a camera restarted (no end of stream: a crash or a kill)", peer, why)
        h, source = msg.header, msg.source
        if ticket[0].camera.seq_restarts > restarts and self.pending.room_for_end(source):
            self.counters.end_stream(source)  # its run before ended unannounced: that run's stream ends here
            self.pending.end(RunEnded(source))
        received = h.model_copy(update={"stamps": {**h.stamps, "received": now}})
        if h.kind == "frame":
            self._last_received = time.monotonic()
            self.counters.add(source, "received")
            if lost:
                self.counters.add(source, "lost", lost)
            self.credits.received(source, h.seq)
            msg = dataclasses.replace(msg, header=received)
            if self.pending.put(msg):
                self.counters.add(source, "conflated")
            self._fit_queue_budget()
        elif h.kind == "heartbeat":
            if h.role == "source":
                self.credits.heartbeat(source, h.seq, h.counters, restarted=ticket[0].new_run)
            self.outbox.put(P.Message(received))
        else:  # eos
            self.credits.ended(source)
            self.counters.end_stream(source)  # before the worker can take it
            self.pending.end(P.Message(received))
        return h.kind

    def _endless_input(self) -> None:
        """A camera connection the gate shut down for a message that never ends: counted as a malformed message (had
        it ended, its parts would have been over the protocol's)."""
        self.counters.add(None, "bad_messages")
        self.counters.reject("malformed")

    def _keep_place(self, ticket: Ticket) -> None:
        """A camera's refused frame keeps its place in the numbering: counted once (refused), not `lost` again when
        the next frame comes; the frames before it that never came are `lost`."""
        if lost := self.admission.commit(ticket):
            self.counters.add(ticket.camera.name, "lost", lost)

    def _refuse(self, reason: str, message: str, camera: str | None = None) -> None:
        n = self.counters.reject(reason, camera)
        self._reject_logs[reason].warning(f"refused ({reason}, {n} so far): {message}")

    def _models(self, source: str | None = None) -> int:
        """Models the memory budget holds: every configured camera's (reserved, built or not), every other
        camera's that is built, and `source`'s; and one more for each surface a built model keeps (its
        `kept_surfaces`, a state as large as its own: a detector without it keeps none)."""
        built = tuple(self.detectors.items())  # a snapshot: the worker thread adds and drops models meanwhile
        kept = sum(getattr(detector, "kept_surfaces", 0) for _, detector in built)
        return len(self.admission.declared | {name for name, _ in built} | ({source} if source else set())) + kept

    def _graphs(self) -> float:
        """Estimated bytes of the graphs the cameras' exported scorers hold, one per frame size a camera holds
        (`frame_sizes`, at most MAX_GRAPHS each); 0 on the torch scorer, which builds none."""
        if not self._graph_per_size:
            return 0.0
        held = tuple(self.frame_sizes.values())  # snapshots: the worker thread adds and drops sizes meanwhile
        return self.budget.graph_bytes(size for sizes in held for size in tuple(sizes))

    def _fit_queue_budget(self) -> None:
        """Waiting frames over the memory budget (next to the models, `_models`, and the scorer graphs held) push
        out the oldest frame of the camera with the most bytes waiting (never a camera's newest: node.max_side bounds
        those)."""
        room = self.budget.queue_room(self._models(), self._graphs())
        while self.pending.total_bytes > room and (source := self.pending.evict_backlog()) is not None:
            self._refuse("memory_budget", f"{source}: {self.pending.total_bytes / 2**20:.1f} MB of frames waiting, "
                         "over node.memory_budget_mb: dropped its oldest waiting frame", source)

    # ------------------------------------------------------------ worker

    def _graph_size(self, height: int, width: int) -> tuple[int, int]:
        """The size of the graph the scorer scores a height x width frame with (edge.scorers.graph_size): its padded
        size on ONNX Runtime, the frame's own elsewhere (and for a detector of the caller's)."""
        return graph_size(self.scorer["backend"], self.cfg.ssdnet, height, width) if self.scorer else (height, width)

    def _last_frame_size(self, source: str) -> tuple[int, int] | None:
        """The size of the camera's last frame (at the most recent of its graph sizes), None before its first."""
        sizes = self.frame_sizes.get(source)
        return sizes[next(reversed(sizes))] if sizes else None

    def _detector(self, source: str, shape: tuple[int, ...]) -> Detector:
        """The camera's one model, whatever its frame size: a detector scores any size. An exported scorer builds a
        graph per input size (`_graph_size`) and holds the last MAX_GRAPHS; a size it holds none for is taken at most
        every node.min_model_rebuild_s, frames of other new sizes in between are refused (shape_change)."""
        size = tuple(shape[:2])
        graph = self._graph_size(*size)
        detector, sizes = self.detectors.get(source), self.frame_sizes.get(source)
        if detector is None or sizes is None:
            detector = self.detectors[source] = self.factory(source)
            sizes = self.frame_sizes[source] = GraphCache()
            self.checkpoints.load(source, self.products.get(source), detector)
        if graph not in sizes:
            now = time.monotonic()
            if sizes and self._graph_per_size:
                if now - self._new_size_at.get(source, -math.inf) < self.cfg.min_model_rebuild_s:
                    last = next(reversed(sizes))
                    raise Rejected("shape_change", f"{source}: a {size[1]}x{size[0]} frame (a {graph[1]}x{graph[0]} "
                                   f"graph), its scorer holds graphs for {len(sizes)} other size(s) and built the last "
                                   f"({last[1]}x{last[0]}) less than node.min_model_rebuild_s "
                                   f"({self.cfg.min_model_rebuild_s:g} s) ago", source)
                log.info("%s: frame size %dx%d, a new %dx%d scorer graph (the model is kept)", source, size[1], size[0],
                         graph[1], graph[0])
            self._new_size_at[source] = now
        sizes[graph] = size  # the most recent graph, and the last frame size it scored
        return detector

    def _drop(self, source: str) -> None:
        """Free a camera's model (its next frame starts a new one)."""
        self.detectors.pop(source, None)
        self.frame_sizes.pop(source, None)
        self.checkpoints.forget(source)

    def _work_image(self, msg: P.Message) -> tuple[np.ndarray, tuple[str, str] | None]:
        """The frame as the detector gets it: as is, or downscaled (aspect kept) to node.max_frame_pixels (default
        ssdnet.max_pixels) and to the pixels the memory budget leaves for its scoring next to the camera models,
        the scorer graphs held and the waiting frames, a size the camera's exported scorer holds no graph for
        also paying for its graph (there: at the camera's last size when that fits and keeps the aspect; the torch
        scorer builds no graph, so a frame is scored at the most pixels left); with the reason
        and the line to log when downscaled. Rejected with `oversize: reject` (admission refused frames over
        max_frame_pixels already) or when the downscaled frame's short side would be under min_side."""
        source, image = msg.source, msg.arrays["image"]
        height, width = image.shape[:2]
        sizes = self.frame_sizes.get(source)
        last = self._last_frame_size(source)
        models, queued, graphs = self._models(source), self.pending.total_bytes, self._graphs()
        # the most pixels at a size whose graph the camera holds, and at another (an exported scorer builds its graph)
        held = min(self.cfg.frame_pixels, self.budget.pixels_for(models, queued, graphs))
        limit = min(self.cfg.frame_pixels, self.budget.pixels_for(models, queued, graphs,
                                                                  new_graph=self._graph_per_size))
        new_size = not sizes or self._graph_size(height, width) not in sizes
        if height * width <= (limit if new_size else held):
            return image, None
        if limit == self.cfg.frame_pixels:
            knob = "node.max_frame_pixels" if self.cfg.max_frame_pixels is not None else "ssdnet.max_pixels"
            why, reason = f"{knob} {limit}", "oversize"
        else:
            pixels = min(height * width, self.cfg.frame_pixels)
            need = self.budget.needed_mb(models, queued, pixels, graphs, self._graph_per_size and new_size)
            why, reason = (f"the {int(limit)} pixels node.memory_budget_mb ({self.cfg.memory_budget_mb:g}) leaves "
                           f"next to {models} model(s), {graphs / 2**20:.0f} MB of scorer graphs and "
                           f"{queued / 2**20:.0f} MB of waiting frames; {pixels} pixels need {need:.0f} MB",
                           "memory_budget")
        scale = math.sqrt(limit / (height * width))
        if self.cfg.oversize == "reject" or min(height, width) * scale < self.cfg.min_side:
            narrow = "" if self.cfg.oversize == "reject" else f" (downscaled, its short side under {self.cfg.min_side})"
            raise Rejected(reason, f"{source}: a {width}x{height} frame is over {why}{narrow}", source)
        if self._graph_per_size and last is not None and last[0] * last[1] <= held and last[0] < height \
                and abs(last[1] / last[0] - width / height) < 0.02 * width / height:
            size = last[1], last[0]  # the size its exported scorer holds a graph for (no new one to build)
        else:
            size = int(width * scale), int(height * scale)
        note = f"{source}: scored a {width}x{height} frame downscaled to {size[0]}x{size[1]} ({why}; " \
               "node.oversize: downscale), its map scaled back"
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), (reason, note)

    def _keep(self, source: str, scratch: bool = True) -> None:
        """Save the camera's model for its product if it learnt enough since saved (pipeline.checkpoints.keep)."""
        if (detector := self.detectors.get(source)) is not None:
            self.checkpoints.keep(source, self.products.get(source), detector, scratch)

    def _changeover(self, msg: P.Message) -> None:
        """A frame naming another product than its camera's model is for: the model is saved (`_keep`) and freed;
        the frame's product's model resumes from its checkpoint (node.checkpoint_dir, or the scratch folder within
        the run) or starts afresh."""
        source, product = msg.source, msg.header.product
        old = self.products.get(source)
        if source in self.detectors and product != old:
            self._keep(source)  # the old product's
            self._drop(source)
            self.counters.add(source, "product_changes")
            path = self.checkpoints.path(source, product, scratch=True)
            how = f"resumes from {path}" if path is not None and path.is_file() else "starts afresh"
            if self.cfg.checkpoint_dir is None:
                how += " (node.checkpoint_dir unset: each product's model is kept for this run only)"
            log.info("%s#%d: product %s -> %s: its model %s", source, msg.header.seq, old, product, how)
        self.products[source] = product

    def _process(self, msg: P.Message) -> None:
        h, source = msg.header, msg.source
        try:  # decoded at its camera's turn (its cost is that camera's), never for a frame conflated while waiting
            msg = P.decode_files(msg)
        except P.ProtocolError as e:
            self.counters.add(None, "bad_messages")
            self._refuse(e.reason, f"{source}#{h.seq}: {e}", source)
            return
        self._changeover(msg)
        try:
            work, downscaled = self._work_image(msg)
            detector = self._detector(source, work.shape)
        except Rejected as e:
            self._refuse(e.reason, f"{source}#{h.seq}: {e}", source)
            return
        if downscaled is not None:  # counted once it is scored, not also when its model refuses it
            self.counters.add(source, "downscaled")
            self._downscaled_by[source][downscaled[0]] += 1
            self._reject_logs[downscaled[0]].warning(downscaled[1])
        if (span := value_span(work)) <= BLANK_SPAN:  # scored all the same (edge.detector: it teaches nothing)
            self.counters.add(source, "blank")
            self._blank_log.warning(f"{source}#{h.seq}: a blank frame (its values span {span} grey levels): a lens "
                                    "cap, the light off or a dead sensor?")
        self._busy = True
        try:
            result, event = self._score(msg, detector, work)
        except Exception as e:  # a bad frame or a detector failure costs that frame, never the node
            self.counters.add(source, "failed")
            self._log.warning(f"{source}#{h.seq}: detector failed: {type(e).__name__}: {e}")
            if not isinstance(e, FrameError):  # a frame it cannot take leaves the camera's model as it is
                self._drop(source)
            return
        finally:
            self._busy = False
        self.outbox.put(result)
        if event is not None:
            logged = None if self.events is None else self.events.write(event)  # committed before it is published
            self.outbox.put(event if logged is None else (event, "event", logged))
            self.counters.add(source, "events")
        # after the event: a checkpoint write (~8-25 MB) neither holds it back nor, failing, loses it
        self.checkpoints.scored_one(source, self.products.get(source), detector, int(result.header.model_version))
        self.counters.add(source, "scored")  # last: a frame counted as scored has its event counted too

    def _score(self, msg: P.Message, detector: Detector,
               work: np.ndarray | None = None) -> tuple[P.Message, P.Message | None]:
        """Run the detector on a frame (on `work`, its downscaled copy, if given; the map is scaled back to the
        frame's size); its anomaly result and, if anomalous, its event."""
        h, image = msg.header, msg.arrays["image"]
        work = image if work is None else work
        t0 = time.time()
        d = detector.process(work)
        done = time.time()
        if not d.budget_met:
            self.counters.add(h.source, "budget_unmet")
        if d.diverged:
            self.counters.add(h.source, "diverged")
            self._log.warning(f"{h.source}#{h.seq}: the fit diverged; restored the last good weights")
        if d.normal_moved:
            self.counters.add(h.source, "normal_moved")
            self._log.warning(f"{h.source}#{h.seq}: its recent frames lie far from its normal (a surface its memory "
                              "has not seen, or most of their scores): a new product or new lighting, taken as its "
                              "normal from now on (its model starts afresh)")
        if d.scorer_fallback:
            self.counters.add(h.source, "scorer_fallbacks")
            log.warning("%s#%d: its exported scorer failed (the error above): this camera scores with torch from now "
                        "on", h.source, h.seq)  # once per camera: not throttled
        if d.still:  # a stopped line: scored, and it teaches the camera nothing (edge.detector)
            self.counters.add(h.source, "still")
        if d.normal_recalled:
            self.counters.add(h.source, "normal_recalled")
            log.info("%s#%d: its frame shows a surface it knew before its normal moved (a product back): that "
                     "surface's model resumes", h.source, h.seq)
        raw, score = float(d.score), float(d.calibrated)
        median, scale = (float(v) for v in d.calibration)
        if not math.isfinite(raw + score + median + scale) or not scale > 0:
            raise ValueError(f"detector returned score {raw} (calibrated {score}, against {median} / {scale})")
        amap = d.calibrated_map()  # in the calibrated score's units
        if work is not image and amap.shape == work.shape[:2]:
            amap = to_frame_size(amap, *image.shape[:2])
        if amap.shape != image.shape[:2] or not np.isfinite(amap).all():
            raise ValueError(f"detector returned a {amap.shape} map with non-finite values")
        anomalous = score > self.cfg.threshold
        stamps = {**h.stamps, "fitted": min(t0 + d.fit_ms / 1000, done), "scored": done}
        scored = dict(source=h.source, seq=h.seq, t_capture=h.t_capture, stamps=stamps, score=score, raw_score=raw,
                      calibrating=bool(d.calibrating), threshold=self.cfg.threshold, model_version=int(d.model_version),
                      product=h.product, run=h.run,
                      regions=find_regions(amap, self.cfg.region_threshold, self.cfg.min_region_area,
                                           self.cfg.max_regions, min_peak=self.cfg.threshold, event=anomalous,
                                           inset=round(d.score_inset * amap.shape[0] / d.anomaly_map.shape[0])))
        q, map_desc = P.quantize_map(amap, self.cfg.map_encoding)
        payloads, arrays = [map_desc], {"map": q}
        if self.cfg.attach_image == "always" or (anomalous and self.cfg.attach_image == "anomalous"):
            payloads.append(P.describe("image", image, self.cfg.image_encoding))
            arrays["image"] = image
        if "mask" in msg.arrays:
            payloads.append(P.describe("mask", msg.arrays["mask"]))
            arrays["mask"] = msg.arrays["mask"]
        result = P.AnomalyHeader(kind="anomaly", payloads=tuple(payloads), label="anomalous" if anomalous else "normal",
                                 fit_steps=int(d.fit_steps), fit_ms=float(d.fit_ms), score_ms=float(d.score_ms),
                                 **scored)
        log.debug("%s#%d: %s, score %.2f (raw %.3f%s), %dx%d px, fit %d steps %.0f ms, scored in %.0f ms, %d regions",
                  h.source, h.seq, result.label, score, raw, ", calibrating" if d.calibrating else "", work.shape[1],
                  work.shape[0], d.fit_steps, d.fit_ms, d.score_ms, len(scored["regions"]))
        return P.Message(result, arrays), P.Message(P.EventHeader(kind="event", **scored)) if anomalous else None

    def _end(self, msg: P.Message) -> None:
        """Forward a source's end of stream, after its last result, with the node's counters of the stream it ends
        (since its previous end of stream), and a node heartbeat; free its model.
        The camera's own counters keep the room the node's leave (P.MAX_COUNTERS in all): what a camera sent within
        the protocol's limit, the node forwards within it."""
        h = msg.header
        self._keep(h.source)
        self._drop(h.source)
        ours = self.counters.stream(h.source)
        theirs, room = [name for name in h.counters if name not in ours], P.MAX_COUNTERS - len(ours)
        if len(theirs) > room:
            self._log.warning(f"{h.source}: its end of stream forwarded without {len(theirs) - room} of its "
                              f"{len(h.counters)} counters (room for the node's {len(ours)})")
        kept = {name: h.counters[name] for name in theirs[:room]}
        end = P.Message(h.model_copy(update={"counters": {**kept, **ours}}))
        logged = None if self.events is None else self.events.write(end)  # in the log too: a subscriber that loses
        self.outbox.put(end if logged is None else (end, "eos", logged))  # it live fetches it (eventlog.CatchUp)
        # the node's counters with that camera's last frame (a line may end here); it goes out after the end of stream,
        # so it announces it (`logged_ends`): a subscriber that lost it live asks for it at once
        self.outbox.put(self._heartbeat(logged_ends=logged))

    # ------------------------------------------------------------ publisher thread

    def _publish(self, out: Publisher, halt: threading.Event) -> None:
        next_beat = time.monotonic()
        try:
            while not (halt.is_set() and self.outbox.empty()):
                try:
                    item = self.outbox.get(timeout=0.1)
                except queue.Empty:
                    item = None
                if isinstance(item, tuple):  # a logged event or end: announced in heartbeats only once it went out
                    msg, kind, logged = item
                    if msg is not None:  # None: logged late, its live copy long gone out
                        self._send(out.sock, msg)
                    if kind == "eos":
                        self._announced_ends = logged
                    else:
                        self._announced_events = logged
                elif item is not None:
                    self._send(out.sock, item)
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.cfg.heartbeat_s
                    self._send(out.sock, self._heartbeat())
                # each send lets ZeroMQ file what subscribers sent meanwhile: count it as often; a subscriber
                # sends nothing else, so what is not a subscription is dropped
                out.upstream()
            self._send(out.sock, self._heartbeat())  # the final counters and state: a view must not keep a busy one
        finally:
            out.close()

    def _send(self, sock: zmq.Socket, msg: P.Message) -> None:
        h = msg.header
        if h.kind in ("anomaly", "event"):
            msg = P.Message(h.model_copy(update={"stamps": {**h.stamps, "published": time.time()}}), msg.arrays)
        try:
            P.send(sock, msg)
        except P.ProtocolError as e:
            self._log.warning(f"could not send a {h.kind} message of {h.source}: {e}")
        for tap in self.taps:
            tap(msg)
        if h.kind == "eos":  # after the camera's last result and event: a late subscriber may end on the count
            self._streams_ended.add(h.source)
        elif h.kind in ("anomaly", "event") or (h.kind == "heartbeat" and h.role == "source" and h.state != "ended"):
            self._streams_ended.discard(h.source)  # streaming again (a camera restarted after its end of stream)

    def _published_ends(self) -> int:
        """The last logged end of stream whose live copy went out (read by the replay thread: one int)."""
        return self._announced_ends if self._announced_ends is not None else self._start_ends

    def _heartbeat(self, logged_ends: int | None = None) -> P.Message:
        """The node's heartbeat; `logged_ends`: the last end of stream logged, when it goes out after it."""
        now = time.time()
        age = None if self._last_received is None else max(0.0, time.monotonic() - self._last_received)
        return P.Message(P.HeartbeatHeader(kind="heartbeat", source=self.cfg.name, seq=-1, t_capture=now, role="node",
                                           state="busy" if self._busy else "idle", last_frame_age=age,
                                           counters=self._node_counters(logged_ends)))

    def _node_counters(self, logged_ends: int | None = None) -> dict[str, int]:
        counters = self.counters.totals()
        if self.events is not None:  # a subscriber whose cursors add up to less missed events
            # events logged *and published*: a heartbeat never announces an event before its live copy
            announced = self._announced_events if self._announced_events is not None else self._start_events
            ends = max(self._published_ends(), logged_ends or 0)
            counters.update(logged_events=announced, logged_ends=ends, event_log_id=self._event_log_id,
                            event_log_failed=self.events.failures, event_log_pending=self.events.pending,
                            event_log_lost=self.events.lost, replay_throttled=self.replay_budget.throttled,
                            replay_failed=self.replay_budget.failed)
        counters.update({f"refused_{reason}": n for reason, n in self.refusals().items()})
        counters.update(credit_inflated_claims=self.credits.inflated_claims,
                        credit_expired_grants=self.credits.expired_grants,
                        subscription_resets=self.publisher.resets if self.publisher is not None else 0,
                        checkpoint_failed=self.checkpoints.failures)
        counters.update(self.state(), cameras_ended=len(self._streams_ended))
        return counters

    def refusals(self) -> dict[str, int]:
        """Refused connections by reason: of this node's secured sockets (pipeline.security; zeros without CURVE),
        and those over node.max_subscribers (`subscribers`, `replay_clients`)."""
        security = security_of(self.ctx)
        refused = security.refusals() if security is not None else dict.fromkeys(REFUSALS, 0)
        peers = (self.subscribers.refused, self.replay_clients.refused)
        return {**refused, **dict(zip(PEER_REFUSALS, peers, strict=True))}

    def state(self) -> dict[str, int]:
        """What the node holds now: cameras, models, waiting frames, memory (MB: estimate above start, RSS)."""
        queued = self.pending.total_bytes
        return {"cameras": len(self.admission.cameras), "dynamic_cameras": self.admission.dynamic_count,
                "models": len(self.detectors), "queued_frames": sum(self.pending.waiting().values()),
                "queued_mb": round(queued / 2**20),
                "memory_estimate_mb": round(self.budget.estimate(self._models(), queued,
                                                                 graphs=self._graphs()) / 2**20),
                "rss_mb": self._rss_mb(), "input_reconnects": self.input_reconnects,
                "silent_inputs": self.silent_inputs, "subscribers": self.subscribers.peers}

    def _rss_mb(self) -> int:
        """The process's RSS in MB; the last one read when it cannot be read (/proc is a file to open: a process at its
        file descriptor limit, say of connections a peer opened, raised OSError out of the publisher thread)."""
        try:
            self._last_rss_mb = round(self._ps.memory_info().rss / 2**20)
        except OSError as e:
            self._log.warning(f"could not read the node's memory use: {e}")
        return self._last_rss_mb

    def report(self) -> dict:
        """The final counters (`Counters.snapshot`), the scorer, refused connections, each camera's state."""
        waiting = self.pending.waiting()
        cameras = self.admission.report()
        for name, entry in cameras.items():
            last = self._last_frame_size(name)
            entry.update(model_frame=[*last, 3] if last else None, queued_frames=waiting.get(name, 0),
                         queued_bytes=self.pending.bytes.get(name, 0),
                         downscaled_by=dict(self._downscaled_by.get(name, {})))  # frames scored downscaled by reason
        return {**self.counters.snapshot(), "scorer": self.scorer, "refused_connections": self.refusals(),
                "cameras": cameras, "node": self.state()}


def run_node(cfg: NodeConfig, inputs: Sequence[str], stop: StopFlag, on_ready: Callable[[str], None] | None = None,
             detector_factory: DetectorFactory | None = None, wait_for_subscriber_s: float = 0.0,
             security=None, input_names: Sequence[str] = (), mqtt=None) -> dict:
    """Process entry point of the node stage. With `security` (a SecurityConfig), its tcp sockets use CURVE
    as `cfg.name` and it connects to input i as a client of the camera named `input_names[i]`. `on_ready`
    gets the result endpoint, or (result endpoint, replay endpoint) when the node keeps an event log. With
    `mqtt` (an MqttConfig) the MQTT bridge runs in this process, so its last will is the node's.

    Its results go out zero-copy, so the stage terminates its own context before it returns, as a camera does
    (pipeline.sources.run_camera): its last results go out, or are dropped after the linger, while their arrays live."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    ctx, server_keys, sec, bridge = zmq.Context(), {}, None, None
    try:
        if security is not None:
            sec = secure_stage(security, cfg.name, ctx)
            server_keys = {ep: sec.server_key(name) for ep, name in zip(inputs, input_names, strict=False)}
            if cfg.connect:
                server_keys.update(dict.fromkeys(cfg.connect, sec.server_key(security.connect_key)))
        node = EdgeNode(cfg, inputs, detector_factory, ctx, server_keys=server_keys,
                        input_names=list(input_names) if input_names else None)

        def ready(endpoint: str) -> None:
            on_ready(endpoint if node.replay_endpoint is None else (endpoint, node.replay_endpoint))

        if mqtt is not None:
            from .mqtt_sink import MqttBridge  # paho only where a bridge runs

            bridge = MqttBridge(mqtt, cfg.name, cfg.event_log, scorer=node.scorer).start()  # closed once started
            node.taps.append(bridge.tap)
        return node.run(stop, None if on_ready is None else ready, wait_for_subscriber_s)
    finally:
        if bridge is not None:
            bridge.close()
        if sec is not None:
            sec.close()  # its ZAP handler's and handshake monitors' sockets, which the context would wait for
        ctx.destroy(linger=LINGER_MS)  # the node's threads closed their sockets: at most their linger
