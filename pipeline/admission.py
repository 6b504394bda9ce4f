"""What the node accepts on its camera input: who may speak for a camera, which header values are
plausible, and how much work and memory one frame and one camera may cost. docs/protocol.md has the
rules as a third party sees them; this module enforces them.

Identity. The node opens one input socket per camera connection (a source's `bind`, each
`node.connect` endpoint), so it knows which connection every message came on. With CURVE, that
connection is authenticated by the server key the node pinned for it (`<source name>.key`, or
`security.connect_key` for `node.connect`), so the peer is whoever holds that key. A connection
(`Peer`) may speak for:
- a source of the line config: that source's name only;
- a `node.connect` endpoint: the names `node.connect_cameras` lists for it; with none listed, no name
  at all unless `node.dynamic_cameras`, and then names that are not bound elsewhere, the first
  sender binding a name, at most `node.max_dynamic_cameras` of them for the node's lifetime;
- an input handed to `EdgeNode` without names (the Python API): the first name it sends, only that.
A name is bound by the first message under it that passes every check, its payloads decoded (`commit`): a message
refused for any reason binds nothing and is charged to no camera of that name.
A frame, heartbeat or end of stream under a name bound to another connection is rejected
(`spoofed_name`), an unlisted name is refused (`unknown_camera`, `camera_limit`).

Header values (after the decoder's schema checks, before any payload is decoded):
- `t_capture` and every stamp within `node.max_clock_skew_s` of the node's clock (`clock_skew`);
  a frame must carry `stamps.capture` (`missing_field`) and a `seq` >= 0 (`seq_range`; a camera's frame numbered
  below 0, refused for that or its clock, takes a place of the next frame's gap: counted once, not `lost` too);
- a frame's `seq` is the next one, or skips at most what a token bucket allows (`max_seq_step`,
  refilled at `max_frame_rate` per second): the skipped frames are counted `lost`, so `lost` grows at
  most max_seq_step + max_frame_rate x seconds, whatever a sender writes. A bigger jump, or a step
  back that is not a restart (seq <= RESTART_WINDOW), is rejected (`seq_jump`, `seq_backwards`);
  3 frames in a row that continue the new numbering resynchronise the camera (counted
  `seq_resyncs`, nothing counted lost); a frame off the numbering captured no later than the camera's last
  frame is an old frame sent again: rejected, and neither a restart nor part of a resync (a camera whose clock
  stepped back at a restart is refused until its clock passes its last frame's, or until its first heartbeat,
  whose seq, its last frame sent, is behind the last frame seen: a restarted camera, whose next frame is its first);
  a camera that names its run (the header's `run`) is judged by it instead: a message of another run than its last is
  the camera started again (its numbering, clock and end of stream start afresh, whatever they say), and one of the
  same run never is (a step back is refused, a heartbeat behind changes nothing); a run the camera had before is
  refused (`run_replayed`), and so is a restart (a new run, a heartbeat behind) past RESTART_BURST at once and
  RESTART_RATE a second after (`restart_rate`): each takes any numbering and clock, so old frames would be scored
  again;
- a frame naming a product beyond the camera's first `node.max_products` is refused (`product_limit`):
  each product the camera names may get a model and a checkpoint file;
- a heartbeat from a camera says role `source` (`forged_role`), and a camera's heartbeats keep within
  HEARTBEAT_RATE a second in bursts of HEARTBEAT_BURST (`heartbeat_rate`: the node forwards them to every
  subscriber); an end of stream says
  frames == seq + 1, seq is not behind the last frame seen nor further past where the camera stands (its last frame
  seen, else its last heartbeat's seq, else -1) than the token bucket allows (`eos_inconsistent`), and ends a
  stream: one after the camera's last end of stream with no frame since, nor a heartbeat saying it streams again or
  numbered otherwise (a camera started again), is refused
  (`eos_repeated`: each one would be queued and published to every subscriber);
- a frame whose short side is under `node.min_side` is rejected (`too_small`);
- a frame of more than `node.max_frame_pixels` pixels (default: `ssdnet.max_pixels`) is rejected
  here with `oversize: reject` (`oversize`), before its payload is decoded; with `oversize:
  downscale` the worker scores it downscaled to that many pixels and scales the map back to the
  frame's size (`downscaled`), so the result has the frame's size.

Work and memory (`WorkBudget`): the node estimates its memory above what it used at start as the
frames waiting in its queues (exact bytes) + one model per camera, once more for each surface it keeps
(`memory.recall_surfaces`, once kept) + the graphs an exported scorer
holds (onnxruntime, tensorrt: one per graph size a camera holds, at most MAX_GRAPHS; a fixed part and
a per-pixel part each; none on the torch scorer) + the scoring of one frame (per-pixel estimate).
`node.memory_budget_mb` bounds that sum: waiting frames over it (next to a model for every known camera
and the graphs held) push out the oldest waiting frame of the camera with the most waiting bytes (a
camera's newest frame always stays), a frame whose scoring would not fit (with, at a size its camera's
exported scorer holds no graph for, that graph) is downscaled to fit or, with `oversize: reject` or no
room even for node.min_side^2 pixels (a new camera's model that does not fit), rejected (`memory_budget`).
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from edge.config import SSDNetConfig
from edge.sizes import footprint_mb, knn_dim

from . import protocol as P

RESTART_WINDOW = 1000  # a step back to seq <= this is a camera that restarted, not a lie
RESYNC_FRAMES = 3  # consecutive frames continuing an implausible numbering that resynchronise a camera
HEARTBEAT_RATE = 50.0  # a camera's heartbeats (forwarded to every subscriber) per second at most, on average,
HEARTBEAT_BURST = 50  # in bursts of at most this many (a token bucket)
RESTART_RATE = 0.1  # times a camera may start again (a new run, a heartbeat behind its last frame) a second on average,
RESTART_BURST = 6  # in bursts of at most this many (a token bucket): each restart takes any numbering and clock
RUNS_REMEMBERED = 16  # a camera's run ids before its present one that are refused (`run_replayed`)
ADMISSION_REASONS = ("unexpected_kind", "unknown_camera", "camera_limit", "spoofed_name", "forged_role", "seq_range",
                     "seq_jump", "seq_backwards", "clock_skew", "eos_inconsistent", "oversize", "too_small",
                     "memory_budget", "shape_change", "heartbeat_rate", "product_limit", "eos_repeated",
                     "run_replayed", "restart_rate")
REASONS = P.DECODE_REASONS + ADMISSION_REASONS  # every `rejected_<reason>` counter of the node

# Memory estimates of the default SSDnet config on a CPU, measured with the real detector (torch 2.13, 1 thread;
# docs/protocol.md "Bounded work"): each further camera's detector after two frames +38.6 MB RSS; the peak
# above the process's memory of a cold + 2 warm frames 339 MB at 256x256, 975 MB at 512x512, 3.3 GB at 1024x1024.
MODEL_MB = 40.0  # one camera's detector (U-Net, optimiser state, scheduler) beyond the shared VGG19 and its memory bank
WORK_BYTES_PER_PIXEL = 3500.0  # peak memory of fitting and scoring one frame, per scored pixel (conservative)
WORK_FIXED_MB = 64.0  # and a fixed part
# One exported scorer graph held (an ONNX Runtime session on the CPU, 1 intra-op thread, onnxruntime 1.32, the scorer's
# session options: CPU arena on, memory pattern off): the RSS it adds once it has scored two frames (the exported
# model, the session and its arena), with the default SSDnet config, the most of three runs of
# `python docs/security_runs/measure_graphs.py` (docs/security_runs/measure_graphs.log): 355 MB at 128x128, 633 MB at
# 256x256, 729 MB at 200x300 (padded to 256x320), 1496 MB at 512x512, 1136 MB at 640x640, 2303 MB at 1024x1024 (not
# linear: the arena grows in steps; with the memory pattern on 450, 924, 1083, 2694, 1856, 4185 MB).
# The line over every size measured, at least 7% over each (2.0x at 1024x1024):
GRAPH_FIXED_MB = 576.0  # a graph's fixed part
GRAPH_BYTES_PER_PIXEL = 4096.0  # and its part per frame pixel (4 KiB)


def refill(tokens: float, since: float, now: float, rate: float, capacity: float) -> float:
    """A token bucket's tokens at `now`: `tokens` at `since`, refilled at `rate` a second, at most `capacity`."""
    return min(capacity, tokens + (now - since) * rate)


def _new_run(camera: Camera, run: str | None) -> bool:
    """Whether a message naming `run` comes from a camera started again: it names another run than the camera's last
    (a camera that names none is judged by its numbering instead)."""
    return run is not None and run != camera.run


def _restarts(camera: Camera, header: P.Header) -> bool:
    """Whether `header` starts its camera again: a new run, or a heartbeat naming none whose seq (its last frame sent)
    is behind the last frame seen."""
    return _new_run(camera, header.run) or (header.kind == "heartbeat" and header.run is None
                                            and camera.last_seq is not None and header.seq < camera.last_seq)


class Rejected(Exception):
    """A message the node refuses: `reason` (one of REASONS), a readable line, and the camera it is
    charged to (None when the sender may not speak for the name it used). `ticket`: a camera's frame refused for
    what it holds, not where it stands in the numbering: committed all the same, so the next frame does not count
    it `lost` too."""

    def __init__(self, reason: str, message: str, camera: str | None = None, ticket: Ticket | None = None):
        super().__init__(message)
        self.reason, self.camera, self.ticket = reason, camera, ticket


@dataclass(eq=False)
class Peer:
    """One camera connection of the node: the endpoint it connected to and what it may speak for."""

    endpoint: str
    names: frozenset[str] = frozenset()  # bound to this peer from the start
    learn_one: bool = False  # may bind the first name it sends, and only that one
    dynamic: bool = False  # may bind new names (node.dynamic_cameras), up to the node-wide limit
    secured: bool = False  # CURVE: the connection is authenticated by a pinned server key
    learned: str | None = None

    def __str__(self) -> str:
        return self.endpoint + (" (CURVE)" if self.secured else "")


@dataclass(eq=False)
class Camera:
    """Admission state of one camera name (bounded: a few numbers and at most max_products names per camera)."""

    name: str
    peer: Peer
    dynamic: bool = False
    last_seq: int | None = None
    last_capture: float = -math.inf  # its last frame's t_capture
    tokens: float = 0.0
    refilled: float = 0.0
    resync: tuple[int, int] | None = None  # (last seq of a run of implausible frames, its length)
    seq_restarts: int = 0
    seq_resyncs: int = 0
    beat_tokens: float = HEARTBEAT_BURST  # heartbeats it may send now
    beat_refilled: float = 0.0
    products: set[str] = field(default_factory=set)  # the products it has named
    ended: bool = False  # its last end of stream came after its last frame and streaming heartbeat (`eos_repeated`)
    ended_seq: int = -1  # that end's seq: a heartbeat with another comes from a camera started again
    said: int | None = None  # the seq (its last frame sent) of its last heartbeat since its last end of stream
    run: str | None = None  # the run id its last admitted message named (a camera started again names another)
    unplaced: int = 0  # its frames numbered below 0 refused since its last frame: each fills a place of the next gap
    runs_before: deque[str] = field(default_factory=lambda: deque(maxlen=RUNS_REMEMBERED))  # refused: `run_replayed`
    restart_tokens: float = RESTART_BURST  # times it may start again now (`restart_rate`)
    restart_refilled: float = 0.0

    def report(self) -> dict:
        return {"peer": self.peer.endpoint, "secured": self.peer.secured, "dynamic": self.dynamic,
                "last_seq": self.last_seq, "seq_restarts": self.seq_restarts, "seq_resyncs": self.seq_resyncs}


@dataclass
class Ticket:
    """An admitted message; `Admission.commit` applies its sequence bookkeeping once its payloads decoded."""

    camera: Camera
    kind: str
    seq: int
    lost: int = 0
    tokens: float = 0.0
    restart: bool = False
    resync: bool = False
    new: bool = False  # the message's name is not bound yet: `commit` binds it
    captured: float = 0.0  # a frame's t_capture
    now: float = 0.0
    product: str | None = None
    streaming: bool = False  # a heartbeat whose state is not `ended`: the camera streams (again)
    run: str | None = None  # the run id the message names
    new_run: bool = False  # ... another than the camera's last: the camera started again, `commit` starts it afresh
    restart_tokens: tuple[float, float] | None = None  # it starts its camera again: the restart tokens left, and when


@dataclass
class Admission:
    """Identity and header checks of the node's receiver thread (the only thread that calls `check`
    and `commit`; `report` may be called from any thread)."""

    node_name: str
    peers: list[Peer]
    max_dynamic_cameras: int = 16
    max_clock_skew_s: float = 300.0
    max_seq_step: int = 10_000
    max_frame_rate: float = 1000.0
    max_frame_pixels: int | None = None  # reject frames over it here (oversize: reject); None = the worker decides
    max_products: int = 64  # products a camera may name
    min_side: int = 1  # frames with a shorter side are rejected (too_small)
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    cameras: dict[str, Camera] = field(default_factory=dict)
    dynamic_count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for peer in self.peers:
            for name in peer.names:
                self.cameras[name] = Camera(name, peer, tokens=self.max_seq_step)
        self.declared = frozenset(self.cameras)  # named by the config: their models are reserved in the budget

    @classmethod
    def from_config(cls, cfg, peers: Iterable[Peer]) -> Admission:
        return cls(cfg.name, list(peers), cfg.max_dynamic_cameras, cfg.max_clock_skew_s, cfg.max_seq_step,
                   cfg.max_frame_rate, cfg.frame_pixels if cfg.oversize == "reject" else None, cfg.max_products,
                   cfg.min_side)

    # ---------------------------------------------------------------- identity

    def _identify(self, peer: Peer, header: P.Header) -> Camera:
        """The camera `header` speaks for: bound to `peer`, or a new one `peer` may bind (not bound yet)."""
        name = header.source
        camera = self.cameras.get(name)
        if camera is not None:
            if camera.peer is not peer:
                raise Rejected("spoofed_name", f"{header.kind}/{name} from {peer}: {name} is bound to {camera.peer}")
            return camera
        if name == self.node_name:
            raise Rejected("spoofed_name", f"{header.kind}/{name} from {peer}: {name} is the node's own name")
        if peer.learn_one and peer.learned is None:
            return Camera(name, peer, tokens=self.max_seq_step)
        if peer.dynamic:
            if self.dynamic_count >= self.max_dynamic_cameras:
                raise Rejected("camera_limit", f"{header.kind}/{name} from {peer}: {self.dynamic_count} dynamic "
                               f"cameras already (node.max_dynamic_cameras {self.max_dynamic_cameras})")
            return Camera(name, peer, dynamic=True, tokens=self.max_seq_step)
        hint = ("it speaks for " + ", ".join(sorted(peer.names or {peer.learned or ""})) if peer.names or peer.learned
                else "list its cameras in node.connect_cameras or set node.dynamic_cameras: true")
        raise Rejected("unknown_camera", f"{header.kind}/{name} from {peer}: not a camera of this connection ({hint})")

    def _bind(self, camera: Camera) -> None:
        camera.peer.learned = camera.name if camera.peer.learn_one else camera.peer.learned
        self.dynamic_count += camera.dynamic
        with self._lock:
            self.cameras[camera.name] = camera

    # ---------------------------------------------------------------- header values

    def check(self, peer: Peer, header: P.Header) -> Ticket:
        """The ticket of an admissible message from `peer`; raises Rejected otherwise (a frame's refusal charged to
        its camera when the name is bound to `peer`). Changes no state: `commit` binds a new name and keeps the
        sequence."""
        if header.kind not in ("frame", "heartbeat", "eos"):
            raise Rejected("unexpected_kind", f"{header.kind}/{header.source} from {peer}: a camera sends frame, "
                           "heartbeat and eos messages only")
        camera = self._identify(peer, header)
        new = self.cameras.get(camera.name) is not camera
        charge = camera.name if header.kind == "frame" and not new else None
        restart_tokens = self._restart(camera, header, charge) if _restarts(camera, header) else None
        try:
            ticket = self._admit(camera, peer, header, charge)
        except Rejected as e:
            if e.ticket is not None:  # a frame refused for what it holds keeps its place in its run
                e.ticket.run, e.ticket.new_run = header.run, _new_run(camera, header.run)
                e.ticket.restart_tokens = restart_tokens
            raise
        ticket.new, ticket.run, ticket.new_run = new, header.run, _new_run(camera, header.run)
        ticket.restart_tokens = restart_tokens
        return ticket

    def _restart(self, camera: Camera, header: P.Header, charge: str | None) -> tuple[float, float]:
        """The restart tokens `camera` has left, and when, once `header` started it again; Rejected when it names a
        run the camera had before (`run_replayed`: its messages sent again) or the camera started again too often
        (`restart_rate`: each restart takes any numbering and clock, so old frames would be scored again)."""
        what = f"{header.kind}/{camera.name}#{header.seq}"
        if header.run is not None and header.run in camera.runs_before:
            raise Rejected("run_replayed", f"{what}: run {header.run}, one the camera had before its present run "
                           f"{camera.run}: an old run's messages sent again", charge)
        now = self.monotonic()
        tokens = refill(camera.restart_tokens, camera.restart_refilled, now, RESTART_RATE, RESTART_BURST)
        if tokens < 1:
            how = f"a new run {header.run}" if header.run is not None else "a heartbeat behind its last frame seen"
            raise Rejected("restart_rate", f"{what}: {how}, the camera started again over {RESTART_RATE * 60:g} "
                           f"times a minute (bursts of {RESTART_BURST})", charge)
        return tokens - 1, now

    def _admit(self, camera: Camera, peer: Peer, header: P.Header, charge: str | None) -> Ticket:
        """`check`'s header values, each refusal charged to `charge`."""
        name, now = camera.name, self.clock()
        times = {"t_capture": header.t_capture, **{f"stamps.{k}": v for k, v in header.stamps.items()}}
        for what, t in times.items():
            if abs(t - now) > self.max_clock_skew_s:  # a bound camera's frame keeps its place (`_place`), not its time
                raise Rejected("clock_skew", f"{header.kind}/{name}#{header.seq}: {what} {t:.6g} is {t - now:+.0f} s "
                               f"from the node's clock (node.max_clock_skew_s {self.max_clock_skew_s:g})", charge,
                               self._place(camera, header, charge, camera.last_capture))
        if header.kind == "heartbeat":
            if header.role != "source":
                raise Rejected("forged_role", f"heartbeat/{name} from {peer}: role {header.role!r}, a camera's is "
                               "'source'", charge)
            now = self.monotonic()
            tokens = refill(camera.beat_tokens, camera.beat_refilled, now, HEARTBEAT_RATE, HEARTBEAT_BURST)
            if tokens < 1:
                raise Rejected("heartbeat_rate", f"heartbeat/{name}: over {HEARTBEAT_RATE:g} a second (bursts of "
                               f"{HEARTBEAT_BURST})", charge)
            return Ticket(camera, "heartbeat", header.seq, tokens=tokens - 1, now=now,
                          streaming=header.state != "ended")
        if header.kind == "eos":
            fresh = _new_run(camera, header.run)  # a camera started again: its stream, not the last one's
            if camera.ended and not fresh:
                raise Rejected("eos_repeated", f"eos/{name}: its stream ended already, with no frame (nor a heartbeat "
                               "saying it streams again) since", charge)
            last = None if fresh else camera.last_seq
            if header.frames != header.seq + 1 or (last is not None and header.seq < last):
                raise Rejected("eos_inconsistent", f"eos/{name}: frames {header.frames}, seq {header.seq} (last frame "
                               f"seen {last}); a camera's end of stream has frames == seq + 1 >= last seq + 1", charge)
            stands, where = self._stands(camera, fresh)
            if header.seq - stands - 1 > self._tokens(camera, self.monotonic()):
                raise Rejected("eos_inconsistent", f"eos/{name}: seq {header.seq} is implausibly far past {where} "
                               f"(node.max_seq_step {self.max_seq_step})", charge)
            return Ticket(camera, "eos", header.seq)
        if "capture" not in header.stamps:
            raise Rejected("missing_field", f"frame/{name}#{header.seq}: no stamps.capture", charge,
                           self._place(camera, header, charge, header.t_capture))
        if header.seq < 0:
            raise Rejected("seq_range", f"frame/{name}: seq {header.seq} < 0", charge,
                           self._place(camera, header, charge, header.t_capture))
        ticket = self._sequence(camera, header.seq, header.t_capture, header.run)
        held = ticket if charge is not None else None  # a bound camera's frame: its place is kept (`Rejected`)
        image = next(p for p in header.payloads if p.name == "image")
        if min(image.shape[:2]) < self.min_side:
            raise Rejected("too_small", f"frame/{name}#{header.seq}: {image.shape[1]}x{image.shape[0]}, a side under "
                           f"node.min_side ({self.min_side})", charge, held)
        pixels = image.shape[0] * image.shape[1]
        if self.max_frame_pixels is not None and pixels > self.max_frame_pixels:
            raise Rejected("oversize", f"frame/{name}#{header.seq}: {image.shape[1]}x{image.shape[0]} = {pixels} "
                           f"pixels > {self.max_frame_pixels} (node.max_frame_pixels, else ssdnet.max_pixels; "
                           "node.oversize: reject)", charge, held)
        product = header.product
        if product is not None and product not in camera.products and len(camera.products) >= self.max_products:
            raise Rejected("product_limit", f"frame/{name}#{header.seq}: product {product!r} after "
                           f"{len(camera.products)} others (node.max_products {self.max_products})", charge, held)
        ticket.product = product
        return ticket

    @staticmethod
    def _stands(camera: Camera, fresh: bool) -> tuple[int, str]:
        """Where a camera stands in its numbering, and in words: its last frame seen, else the last frame sent its
        heartbeat said (a camera heard after the node started), else -1 (a stream numbered from 0; `fresh`: a camera
        started again)."""
        if not fresh and camera.last_seq is not None:
            return camera.last_seq, f"the last frame seen ({camera.last_seq})"
        if not fresh and camera.said is not None:
            return camera.said, f"the last frame its heartbeat said it sent ({camera.said})"
        return -1, "a stream numbered from 0, no frame of it seen"

    def _tokens(self, camera: Camera, now: float) -> float:
        return refill(camera.tokens, camera.refilled, now, self.max_frame_rate, self.max_seq_step)

    def _place(self, camera: Camera, header: P.Header, charge: str | None, captured: float) -> Ticket | None:
        """The ticket that keeps the place of a bound camera's frame refused before its number was checked, when that
        number is next or a plausible gap (`_in_order`), or below 0: no number, it takes a place of the next frame's
        gap (`Camera.unplaced`); None otherwise (not a frame, not bound, any other number)."""
        if charge is None or header.kind != "frame":
            return None
        if header.seq < 0:
            return Ticket(camera, "frame", header.seq)
        return self._in_order(camera, header.seq, captured, _new_run(camera, header.run))

    def _in_order(self, camera: Camera, seq: int, captured: float, new_run: bool = False) -> Ticket | None:
        """The ticket of a frame numbered next, or past a gap its camera could plausibly have lost (counted `lost`,
        less the places its refused frames numbered below 0 took), or the first of a `new_run` (any number); None for
        any other number. Changes no state."""
        now, last = self.monotonic(), None if new_run else camera.last_seq
        ticket = Ticket(camera, "frame", seq, now=now, captured=captured)
        if last is None or seq == last + 1:
            ticket.tokens = self._tokens(camera, now)
            return ticket
        if seq > last + 1 and seq - last - 1 <= (tokens := self._tokens(camera, now)):
            ticket.lost, ticket.tokens = max(0, seq - last - 1 - camera.unplaced), tokens - (seq - last - 1)
            return ticket
        return None

    def _sequence(self, camera: Camera, seq: int, captured: float, run_id: str | None) -> Ticket:
        if (ticket := self._in_order(camera, seq, captured, _new_run(camera, run_id))) is not None:
            return ticket
        now, last = self.monotonic(), camera.last_seq
        ticket = Ticket(camera, "frame", seq, now=now, captured=captured)
        reason = "seq_jump" if seq > last else "seq_backwards"
        if captured <= camera.last_capture:  # an old frame sent again: never a restart, nor part of a resync
            camera.resync = None
            raise Rejected(reason, f"frame/{camera.name}: seq {seq} after {last}, captured "
                           f"{camera.last_capture - captured:.3f} s before the camera's last frame: an old frame sent "
                           "again (or a camera clock that stepped back) is not scored", camera.name)
        if seq <= last and seq <= RESTART_WINDOW and run_id is None:  # one naming its run restarts with a new one
            ticket.restart, ticket.tokens = True, self._tokens(camera, now)
            return ticket
        run = camera.resync[1] + 1 if camera.resync is not None and seq == camera.resync[0] + 1 else 1
        if run >= RESYNC_FRAMES:
            ticket.resync, ticket.tokens = True, self._tokens(camera, now)
            return ticket
        camera.resync = (seq, run)
        raise Rejected(reason, f"frame/{camera.name}: seq {seq} after {last} is not plausible (node.max_seq_step "
                       f"{self.max_seq_step}, max_frame_rate {self.max_frame_rate:g}/s); {run} of {RESYNC_FRAMES} "
                       "frames continuing it resynchronise the camera", camera.name)

    def commit(self, ticket: Ticket) -> int:
        """Apply an admitted message (its payloads decoded): bind its camera's name if new, keep its sequence;
        returns the frames it reveals as lost."""
        camera = ticket.camera
        if ticket.new:
            self._bind(camera)
        if ticket.restart_tokens is not None:
            camera.restart_tokens, camera.restart_refilled = ticket.restart_tokens
        if ticket.new_run:  # the camera started again: its numbering, clock and stream are the new run's
            camera.seq_restarts += camera.last_seq is not None  # one that had not ended its stream (a crash, a kill)
            if camera.run is not None:
                camera.runs_before.append(camera.run)
            camera.run, camera.last_seq, camera.resync, camera.last_capture = ticket.run, None, None, -math.inf
            camera.ended, camera.unplaced, camera.said = False, 0, None
        if ticket.kind == "heartbeat":
            camera.beat_tokens, camera.beat_refilled, camera.said = ticket.tokens, ticket.now, ticket.seq
            camera.ended &= not ticket.streaming and ticket.seq == camera.ended_seq
            # a camera that names no run: its last frame sent behind the last one seen is a camera restarted (a crash,
            # no end of stream), whatever its clock says: its next frame is its first
            if ticket.restart_tokens is not None and not ticket.new_run:
                camera.last_seq, camera.resync = None, None
                camera.seq_restarts += 1
        elif ticket.kind == "eos":
            camera.last_seq, camera.resync, camera.ended, camera.ended_seq = None, None, True, ticket.seq
            camera.said = None
        elif ticket.kind == "frame" and ticket.seq < 0:  # refused, numbered below 0: a place of the next gap
            camera.ended, camera.unplaced = False, camera.unplaced + 1
        elif ticket.kind == "frame":
            camera.ended, camera.unplaced = False, 0
            camera.last_seq, camera.tokens, camera.refilled, camera.resync = ticket.seq, ticket.tokens, ticket.now, None
            camera.last_capture = ticket.captured
            camera.seq_restarts += ticket.restart
            camera.seq_resyncs += ticket.resync
            if ticket.product is not None:
                camera.products.add(ticket.product)
        return ticket.lost

    def report(self) -> dict[str, dict]:
        with self._lock:
            cameras = list(self.cameras.values())
        return {c.name: c.report() for c in cameras}


def model_mb(cfg: SSDNetConfig) -> float:
    """One camera's model: the detector (MODEL_MB, read at the call) and its memory of normal appearance."""
    return MODEL_MB + footprint_mb(cfg.memory, knn_dim(cfg.score))


class WorkBudget:
    """The node's memory above its start: waiting frames + camera models + the exported scorer graphs held + one
    frame's scoring, against `budget_mb` (None: no budget). Estimates for the default SSDnet config (module
    constants). `models` counts states of `model_mb` each: a camera's model, and each surface it keeps (its weights
    and memory again). `graphs` is the bytes of the graphs held (`graph_bytes`; 0 on the torch scorer)."""

    def __init__(self, budget_mb: float | None, model_mb: float | None = None, bytes_per_pixel: float | None = None,
                 fixed_mb: float | None = None):
        self.budget = None if budget_mb is None else budget_mb * 2**20
        self.model = (MODEL_MB if model_mb is None else model_mb) * 2**20
        self.per_pixel = WORK_BYTES_PER_PIXEL if bytes_per_pixel is None else bytes_per_pixel
        self.fixed = (WORK_FIXED_MB if fixed_mb is None else fixed_mb) * 2**20
        self.graph_fixed, self.graph_per_pixel = GRAPH_FIXED_MB * 2**20, GRAPH_BYTES_PER_PIXEL

    def graph_bytes(self, sizes: Iterable[tuple[int, int]]) -> float:
        """Estimated bytes of exported scorer graphs held for these input sizes (height, width), one graph each."""
        return sum(self._graph(h * w) for h, w in sizes)

    def _graph(self, pixels: int) -> float:
        return self.graph_fixed + pixels * self.graph_per_pixel

    def estimate(self, models: int, queued_bytes: int, pixels: int = 0, graphs: float = 0.0) -> float:
        """Estimated bytes above the node's start for `models` models, the waiting frames, the graphs held and
        scoring `pixels`."""
        return models * self.model + queued_bytes + graphs + (self.fixed + pixels * self.per_pixel if pixels else 0.0)

    def needed_mb(self, models: int, queued_bytes: int, pixels: int, graphs: float = 0.0,
                  new_graph: bool = False) -> float:
        """The budget (MB) that scoring `pixels` needs next to `models` models, the waiting frames and the graphs
        held, with `new_graph` a graph of its own too: where `pixels_for` reaches `pixels`."""
        return self.estimate(models, queued_bytes, pixels, graphs + (self._graph(pixels) if new_graph else 0.0)) / 2**20

    def queue_room(self, models: int, graphs: float = 0.0) -> float:
        """Bytes of waiting frames the budget leaves room for next to `models` models, the graphs held and one
        frame's scoring at the smallest size (inf without a budget)."""
        return math.inf if self.budget is None else self.budget - models * self.model - graphs - self.fixed

    def pixels_for(self, models: int, queued_bytes: int, graphs: float = 0.0, new_graph: bool = False) -> float:
        """The most pixels one frame's scoring may have next to `models` models, the waiting frames and the graphs
        held; with `new_graph`, the frame's size also needs a graph of its own (inf without a budget)."""
        if self.budget is None:
            return math.inf
        room = self.budget - models * self.model - queued_bytes - graphs - self.fixed
        if new_graph:
            return max(0.0, (room - self.graph_fixed) / (self.per_pixel + self.graph_per_pixel))
        return max(0.0, room / self.per_pixel)
