"""Config of one streaming line (`ssdnet run CONFIG`): sources, the edge node, sinks.

Endpoints bind to 127.0.0.1 on a free port (`tcp://127.0.0.1:*`) unless the config names another
ZeroMQ endpoint (`tcp://0.0.0.0:5555` to serve the network, `ipc:///run/ssdnet/cam0`).
Relative paths are relative to the working directory.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, DirectoryPath, Field, field_validator, model_validator

from edge.config import MIN_SIDE, SSDNetConfig, StrictModel, load_yaml, parse_config
from edge.images import IMAGE_SUFFIXES
from edge.synthetic import TEXTURES

from . import admission
from .protocol import MAX_REGIONS, MAX_SIDE, SOURCE_PATTERN, Encoding
from .sink_config import MqttConfig, ViewConfig
from .transport import ENDPOINT_PATTERN

LOCAL = "tcp://127.0.0.1:*"
MIN_FPS = 1 / 86_400  # a frame a day: a camera waits 1 / fps between frames, and a wait past ~292 years overflows
MAX_TIMEOUT_S = 366 * 86_400  # a year: a stage's timer waits this long in one call (same limit)
MOVED_TO_FIT = ("budget_ms", "frame_budget_ms")  # node keys that moved to node.ssdnet.fit
log = logging.getLogger(__name__)
_LOOPBACK = re.compile(r"^tcp://(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1):")
_ANY_HOST = ("*", "0.0.0.0", "[::]")  # a tcp bind on every address of the machine


def is_loopback(endpoint: str) -> bool:
    """True for ipc:// and tcp:// on a loopback address: no machine boundary is crossed."""
    return endpoint.startswith("ipc://") or bool(_LOOPBACK.match(endpoint))


def is_video_file(uri: int | str) -> bool:
    """A `video` source's uri names a file (not a device index, /dev node, URL or GStreamer pipeline)."""
    return isinstance(uri, str) and "://" not in uri and "!" not in uri and not uri.startswith("/dev/")


def is_image_sequence(uri: int | str) -> bool:
    """A `video` source's uri names numbered image files (`frames/%06d.png`, OpenCV's image sequence), not one file."""
    return is_video_file(uri) and "%" in uri


def _endpoint(v: str) -> str:
    if not ENDPOINT_PATTERN.match(v):
        raise ValueError(f"{v!r} is not a ZeroMQ endpoint like tcp://127.0.0.1:5555, tcp://127.0.0.1:* or ipc:///tmp/cam0")
    port = v.rsplit(":", 1)[1]
    if v.startswith("tcp://") and port != "*" and not 1 <= int(port) <= 65535:
        raise ValueError(f"{v!r}: port {port} is out of range: use 1-65535, or * for any free port")
    return v


def _collide(a: str, b: str) -> bool:
    """Whether endpoints `a` and `b` cannot both be bound on one machine: one ipc path, or one fixed tcp port on
    one address (or on every address and a loopback one)."""
    if a.startswith("ipc://") or b.startswith("ipc://"):
        return a == b != "ipc://*"
    (host_a, port_a), (host_b, port_b) = (e[len("tcp://"):].rsplit(":", 1) for e in (a, b))
    if port_a != port_b or port_a == "*":
        return False
    here = all(host in _ANY_HOST or is_loopback(e) for host, e in ((host_a, a), (host_b, b)))
    return host_a == host_b or (here and (host_a in _ANY_HOST or host_b in _ANY_HOST))


def _ordered(low_key: str, low: float | None, high_key: str, high: float | None, strict: bool = False) -> None:
    """Refuse a lower bound above its upper bound (at it too, `strict`), naming both keys; None is no bound."""
    if low is not None and high is not None and (low >= high if strict else low > high):
        raise ValueError(f"{low_key} ({low:g}) must be {'below' if strict else 'at most'} {high_key} ({high:g})")


Endpoint = Annotated[str, AfterValidator(_endpoint)]
Side = Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE)]
FrameSize = tuple[Side, Side]  # (width, height); the scorer takes no side below MIN_SIDE
Offset = Annotated[int, Field(ge=0, le=MAX_SIDE)]
Crop = tuple[Offset, Offset, Side, Side]  # (x, y, width, height) of a region of interest, pixels of the frame
CROP_HELP = ("(x, y, width, height): the region of interest, in the frame's pixels, cut out before `resize` (a "
             "fixture, a rail or the belt beside the product stays out of the map and the camera's memory)")


def _max_subscriptions() -> Any:
    """The field bounding what subscribers of an XPUB socket make ZeroMQ hold (pipeline.transport.Publisher)."""
    return Field(1000, ge=1, le=1_000_000, description="distinct topics subscribers may subscribe to since the socket "
                 "was bound; one more drops them all (they reconnect and subscribe again) and counts "
                 "`subscription_resets`: ZeroMQ holds ~50 bytes of memory per byte of topic")


class _Source(StrictModel):
    name: str = Field(pattern=SOURCE_PATTERN, description="source id, used in topics")
    fps: float | None = Field(None, gt=0, le=1000, description="pace frames to this rate (at least one frame a "
                              "day); None = as fast as the source delivers")
    frames: int | None = Field(None, ge=1, description="end the stream after this many "
                                                       "frames; None = when the source ends")
    bind: Endpoint = Field(LOCAL, description="endpoint the camera binds; the node connects to it")
    pattern: Literal["pub", "push"] = Field("pub", description="pub: every node gets every frame; "
                                                               "push: frames are shared out among nodes")
    encoding: Encoding = Field("raw", description="frame encoding on the wire")
    sndhwm: int = Field(8, ge=1, le=100_000, description="frames queued per consumer before dropping")
    max_subscriptions: int = _max_subscriptions()
    max_peers: int = Field(2, ge=1, le=1000, description="connections the frame socket admits at once: the node, "
                           "and one more for a standby node, or for the node's new connection while its old one "
                           "has not closed yet (not both at once); set one more than the nodes that read this camera; "
                           "the next is refused at its handshake (pipeline.gate) and counted `refused_peers`: each "
                           "connection holds up to `sndhwm` frames of the camera's memory")
    heartbeat_s: float = Field(1.0, gt=0, le=60)
    run_id: bool = Field(True, description="name this run of the camera (`run`, docs/protocol.md section 3) in every "
                         "message, so a restart is counted right however the node's messages interleave; off for a "
                         "node or subscribers from before 2026-12-06, which refuse the field (upgrade those first)")
    wait_for_consumer_s: float = Field(30.0, ge=0, description="wait this long for a consumer before streaming")
    backoff_initial_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay; doubles per failure")
    backoff_max_s: float = Field(10.0, gt=0, le=600)
    max_retries: int | None = Field(None, ge=0, description="give up (end of stream) after this "
                                                            "many failed reconnects; None = never")
    flow: Literal["auto", "credit", "none"] = Field(
        "auto", description="credit: read the next frame only when a node has room for it (every frame scored, "
        "backpressure instead of a queue; pipeline/flow.py); none: send at the source's pace, the node keeps the "
        "newest (a live camera); auto: credit for image folders and video files, none for live cameras and "
        "synthetic ones")
    address: Endpoint | None = Field(None, description="endpoint the node connects to when the camera runs as its "
                                     "own stage on another host (`ssdnet run --stage camera:NAME`); None = bind")
    product: str | None = Field(None, pattern=SOURCE_PATTERN, description="the product under the camera, sent with "
                                "every frame: when it changes, the camera's model is saved and the model it had "
                                "for the new product resumes (from node.checkpoint_dir, else from a temporary "
                                "folder of the run), or starts afresh the first time")
    product_file: Path | None = Field(None, description="a text file holding the product's name, read again when it "
                                      "changes (a line's controller writes it at a changeover); overrides `product` "
                                      "while it holds a valid name")

    @field_validator("fps")
    @classmethod
    def _a_frame_a_day(cls, v: float | None) -> float | None:
        """`fps: 1e-12` loaded, and the camera's wait for its second frame overflowed in its reader thread (a
        traceback, and a camera that never sent again)."""
        if v is not None and v < MIN_FPS:
            raise ValueError(f"{v:g} is one frame every {1 / v:.3g} s: at least {MIN_FPS:.3g} (a frame a day), "
                             "at most 1000; null = as fast as the source delivers")
        return v

    @model_validator(mode="after")
    def _backoff(self) -> _Source:
        _ordered("backoff_initial_s", self.backoff_initial_s, "backoff_max_s", self.backoff_max_s)
        return self

    @property
    def credit_flow(self) -> bool:
        """Whether this source waits for the node's credit before reading a frame (`flow`)."""
        if self.pattern == "push" or self.flow != "auto":
            return self.pattern == "pub" and self.flow == "credit"
        return self.kind == "folder" or (self.kind == "video" and is_video_file(self.uri))  # type: ignore[attr-defined]


class SyntheticSourceConfig(_Source):
    """Textures with random defects whose masks travel with the frames (edge.synthetic)."""

    kind: Literal["synthetic"]
    textures: tuple[str, ...] = ("brick", "grass", "gravel")
    size: int = Field(256, ge=16, le=MAX_SIDE, description="side of the square frames, pixels (under 32 the camera "
                      "skips each as too small, counted `too_small`: how tests drive that counter)")
    defect_prob: float = Field(0.5, ge=0, le=1)
    seed: int = Field(0, ge=0)

    @field_validator("textures")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(t not in TEXTURES for t in v):
            raise ValueError(f"textures must be a non-empty list from {list(TEXTURES)}, got {list(v)}")
        return v


class VideoSourceConfig(_Source):
    """cv2.VideoCapture: a device index, a video file, an RTSP/HTTP URL or a GStreamer pipeline."""

    kind: Literal["video"]
    uri: int | str = Field(description="0, 'clip.mp4', 'rtsp://cam/stream', 'v4l2src ! videoconvert ! appsink'")
    api: Literal["any", "ffmpeg", "gstreamer", "v4l2"] = Field(
        "any", description="OpenCV backend; any picks GStreamer for strings with '!'")
    crop: Crop | None = Field(None, description=CROP_HELP)
    resize: FrameSize | None = Field(None, description="(width, height) to resize frames to")
    loop: bool = Field(False, description="restart a video file at its end")

    @field_validator("uri")
    @classmethod
    def _not_a_still_image(cls, v: int | str) -> int | str:
        """OpenCV reads one image as a video of one frame: a line that scored it once and ended (an image sequence,
        `frames/%06d.png`, is a video)."""
        if is_video_file(v) and not is_image_sequence(v) and Path(v).suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(f"{v!r} is a still image, a video of one frame: for a camera's images use `kind: folder` "
                             "with `path:` their folder (or an image sequence, `frames/%06d.png`)")
        return v


class FolderSourceConfig(_Source):
    """Images of a folder in name order; optional ground-truth masks named <stem><mask_suffix>.png."""

    kind: Literal["folder"]
    path: DirectoryPath
    masks: DirectoryPath | None = Field(None, description="mask folder; an image without a mask file is all normal")
    mask_suffix: str = "_mask"
    crop: Crop | None = Field(None, description=CROP_HELP + "; masks alike")
    resize: FrameSize | None = Field(None, description="(width, height) to resize frames (and masks) to")
    bit_depth: Literal[8, 10, 12, 14, 16] | None = Field(
        None, description="16-bit images (a Mono10-16 camera's): the bits their values fill, scaled onto 8 bits; "
                          "null: the most any image so far fills (10, 12, 14 or 16), so a Mono12 frame is not "
                          "read 16x too dark")
    loop: bool = False


SourceConfig = Annotated[SyntheticSourceConfig | VideoSourceConfig | FolderSourceConfig, Field(discriminator="kind")]


class NodeConfig(StrictModel):
    """The edge node: one SSDnet detector per source, results and events on one PUB endpoint."""

    name: str = Field("node", pattern=SOURCE_PATTERN, description="node id, used in its heartbeat topic")
    bind: Endpoint = Field(LOCAL, description="endpoint the node publishes results, events and heartbeats on")
    input: Literal["sub", "pull"] = Field("sub", description="must match the sources' pattern "
                                                             "(pub -> sub, push -> pull)")
    connect: tuple[Endpoint, ...] = Field((), description="extra camera endpoints to read, "
                                                          "beyond this config's sources")
    threshold: float = Field(3.0, description="a frame is anomalous iff its calibrated score > threshold: the "
                             "image score in robust standard deviations above the same camera's recent scores "
                             "(edge.calibration), so one value serves every camera; the first `calibration."
                             "min_frames` frames lean on a prior and are marked `calibrating` in events")
    region_threshold: float = Field(3.0, description="level of the anomaly map, in units of the frame's own std above "
                                    "its mean, that outlines regions; 3.0 maximised pixel F1 on the dev set")
    min_region_area: int = Field(16, ge=1, description="smaller connected components are ignored, pixels")
    max_regions: int = Field(32, ge=0, le=MAX_REGIONS, description="largest regions reported per frame")
    map_encoding: Literal["float16", "uint8"] = Field(
        "float16", description="anomaly map on the wire: float16, or uint8 with scale/offset")
    attach_image: Literal["always", "anomalous", "never"] = Field(
        "anomalous", description="send the scored frame with the result")
    image_encoding: Encoding = "raw"
    queue_depth: int = Field(1, ge=1, le=10_000, description="frames waiting per source: 1 = score the newest frame "
                             "only (latest-frame semantics); more = score frames in order, dropping the oldest when "
                             "full")
    rcvhwm: int = Field(4, ge=1, le=10_000, description="messages queued in the camera socket (its "
                                                        "receiver thread drains it continuously)")
    sndhwm: int = Field(64, ge=1, le=100_000, description="messages queued per subscriber before dropping for it")
    max_subscriptions: int = _max_subscriptions()
    max_subscribers: int = Field(16, ge=1, le=10_000, description="connections the result socket holds at once (a "
                                 "subscriber's, or one in its handshake: at most 5 s), and as many the replay socket; "
                                 "one more is refused at its handshake, sent nothing, logged and counted "
                                 "(`refused_subscribers`, `refused_replay_clients`): each subscriber that stops "
                                 "reading holds up to `sndhwm` results in the node's memory")
    heartbeat_s: float = Field(1.0, gt=0, le=60)
    min_side: int = Field(32, ge=1, le=MAX_SIDE, description="smaller frames are rejected")
    max_side: int = Field(4096, ge=16, le=MAX_SIDE, description="larger frames are rejected before decoding")
    # ---- who may send what, and how much work it may cause (pipeline/admission.py, docs/protocol.md)
    connect_cameras: dict[Endpoint, tuple[Annotated[str, Field(pattern=SOURCE_PATTERN)], ...]] = Field(
        {}, description="camera names each node.connect endpoint may send (its frames, heartbeats and end of "
        "stream); an endpoint listed here speaks for these names only, a name is bound to one endpoint")
    dynamic_cameras: bool = Field(False, description="accept camera names that no config lists, from node.connect "
                                  "endpoints without a connect_cameras entry (first sender binds the name)")
    max_dynamic_cameras: int = Field(16, ge=0, le=10_000, description="with dynamic_cameras: at most this many such "
                                     "names for the node's lifetime; further names are refused (camera_limit)")
    max_frame_pixels: int | None = Field(None, ge=16 * 16, le=MAX_SIDE * MAX_SIDE, description="frames with more "
                                         "pixels are scored downscaled (aspect kept; the map is scaled back to the "
                                         "frame's size) or rejected, see `oversize`; None = ssdnet.max_pixels "
                                         "(2^20: a frame at it costs ~16x a 256x256 one, ~3.3 GB on a CPU)")
    oversize: Literal["downscale", "reject"] = Field("downscale", description="a frame over max_frame_pixels: scored "
                                                     "downscaled and published at its own size (counted "
                                                     "`downscaled`), or rejected before decoding "
                                                     "(`rejected_oversize`); also how a frame over the memory budget "
                                                     "is treated")
    memory_budget_mb: float | None = Field(6144, gt=0, description="node-wide estimate of memory for waiting frames, "
                                           "camera models and one frame's scoring (above the node's memory at "
                                           "start); frames over it are downscaled or rejected, new cameras refused; "
                                           "None = no budget")
    max_clock_skew_s: float = Field(300.0, gt=0, description="t_capture (and stamps) of a camera's message must lie "
                                    "within this many seconds of the node's clock")
    max_seq_step: int = Field(10_000, ge=1, description="sequence numbers skipped at once (counted lost) at most, "
                              "refilled at max_frame_rate per second; a bigger jump is rejected (seq_jump) and the "
                              "camera resynchronised after 3 consecutive frames without counting it lost")
    max_frame_rate: float = Field(1000.0, gt=0, le=1e6, description="frames per second a camera can plausibly lose: "
                                  "`lost` grows at most this fast (plus max_seq_step)")
    max_products: int = Field(64, ge=1, le=10_000, description="products (the frame header's `product`) a camera "
                              "may name; a frame naming another is refused (product_limit). Each has a model to "
                              "resume: a checkpoint file in checkpoint_dir, or in a temporary folder of the run")
    min_model_rebuild_s: float = Field(10.0, ge=0, description="a camera keeps its model whatever its frame size; "
                                       "on an exported scorer (onnxruntime: a graph per input size, the frame "
                                       "padded to multiples of 64; tensorrt: per frame size; the last 4 kept) a size "
                                       "new to its graphs is taken at most this often, other new sizes in between are "
                                       "rejected (shape_change)")
    threads: int | None = Field(None, ge=1, le=256, description="torch threads of the node process; None = all "
                                "cores. Never more than the cores free for it: oversubscribed threads spin and slow "
                                "fitting 10-60x")
    ssdnet: SSDNetConfig = SSDNetConfig()
    checkpoint_dir: Path | None = Field(None, description="save each source's weights here every checkpoint_every "
                                        "frames (<source>.pt; <source>@<product>.pt per product its frames name), "
                                        "and at a product changeover, the camera's end of stream and the node's "
                                        "stop; a restarted node, and a camera back on a "
                                        "product, resume from them (warm) instead of a cold fit. None: a "
                                        "changeover and an end of stream save to a temporary folder deleted at the "
                                        "node's stop (resumed within the run only)")
    checkpoint_every: int = Field(50, ge=1, le=1_000_000, description="frames between checkpoints of a source")
    checkpoint_interval_s: float = Field(300.0, ge=0, le=86_400, description="at least this many seconds between a "
                                         "source's periodic checkpoints (one is ~8-25 MB: every 50 frames at 10 fps "
                                         "would write ~19 GB an hour per camera to the device's flash)")
    scratch_checkpoint_mb: float = Field(2048.0, gt=0, description="without checkpoint_dir: the temporary folder's "
                                         "checkpoints at most this many MB (~8-25 MB each, one per camera and "
                                         "product); past it the least recently saved of the camera holding the most "
                                         "there go, and their camera's product starts afresh when back (64 products "
                                         "x 16 dynamic cameras held ~10 GB)")
    event_log: Path | None = Field(None, description="SQLite file (WAL) every event is committed to before it is "
                                   "published, numbered per source (log_seq); None = no durable log and no replay "
                                   "endpoint. `ssdnet run` uses OUT/node-events.db when unset")
    event_log_max_events: int | None = Field(1_000_000, ge=1,
                                             description="events kept per source (oldest pruned); None = all")
    replay_bind: Endpoint = Field(LOCAL, description="ROUTER endpoint answering 'events of "
                                                     "source S after log_seq N' (with event_log)")
    replay_cpu_share: float = Field(0.05, gt=0, le=1, description="share of the replay thread's CPU time each replay "
                                    "client (connection) may spend, after a burst of 1 s: a request over it is "
                                    "answered `busy` with the milliseconds to wait (counted `replay_throttled`). A "
                                    "page of 1000 events costs ~2.2 ms: 0.05 is ~23 pages a second, 5x what "
                                    "`ssdnet subscribe --replay` reads; one client asking without bound cut the "
                                    "node's scoring rate to 0.51 (0.96-1.09 with the budget)")
    address: Endpoint | None = Field(None, description="endpoint subscribers connect to when the node runs as its "
                                     "own stage on another host (`ssdnet run --stage`); None = bind")
    replay_address: Endpoint | None = Field(None, description="the same for replay_bind")

    @model_validator(mode="before")
    @classmethod
    def _budgets_moved(cls, data: Any) -> Any:
        """`node.budget_ms` / `node.frame_budget_ms` (older configs) are `ssdnet.fit.budget_ms` /
        `ssdnet.fit.frame_budget_ms` now, next to `fit.warm_steps`: mapped there, with a log line."""
        if not isinstance(data, dict) or not any(key in data for key in MOVED_TO_FIT):
            return data
        data = dict(data)
        moved = {key: data.pop(key) for key in MOVED_TO_FIT if key in data}
        moved = {key: value for key, value in moved.items() if value is not None}
        if not moved:
            return data
        ssdnet = data.get("ssdnet", {})
        ssdnet = ssdnet.model_dump() if isinstance(ssdnet, BaseModel) else dict(ssdnet)
        fit = ssdnet.get("fit", {})
        fit = fit.model_dump() if isinstance(fit, BaseModel) else dict(fit)
        for key, value in moved.items():
            if fit.get(key) is not None and fit[key] != value:
                raise ValueError(f"node.{key} ({value}) and node.ssdnet.fit.{key} ({fit[key]}) disagree: "
                                 f"set ssdnet.fit.{key} only")
            fit[key] = value
            log.warning("node.%s is deprecated: it is node.ssdnet.fit.%s now (mapped there: %s ms)", key, key, value)
        ssdnet["fit"] = fit
        data["ssdnet"] = ssdnet
        return data

    @model_validator(mode="after")
    def _cameras(self) -> NodeConfig:
        if stray := sorted(set(self.connect_cameras) - set(self.connect)):
            raise ValueError(f"connect_cameras lists {stray}, which node.connect does not")
        names = [n for names in self.connect_cameras.values() for n in names]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"connect_cameras binds {dupes} to more than one endpoint (a name has one sender)")
        if self.name in names:
            raise ValueError(f"connect_cameras lists the node's own name {self.name!r}")
        _ordered("min_side", self.min_side, "max_side", self.max_side)  # else every frame is refused
        _ordered("min_side^2", self.min_side ** 2, "max_frame_pixels", self.max_frame_pixels)
        # with min_side under 32 every frame was scaled down below the scorer's smallest frame and failed there
        _ordered(f"the scorer's smallest frame, {MIN_SIDE}^2", MIN_SIDE ** 2, "max_frame_pixels", self.max_frame_pixels)
        if self.memory_budget_mb is not None:  # 1e-6 loaded, and the node refused every frame (memory_budget)
            need = admission.WorkBudget(None, admission.model_mb(self.ssdnet)).needed_mb(1, 0, MIN_SIDE ** 2)
            if self.memory_budget_mb < need:
                raise ValueError(f"memory_budget_mb ({self.memory_budget_mb:g}) cannot hold one camera's model and the "
                                 f"scoring of the smallest frame ({MIN_SIDE}x{MIN_SIDE}), so every frame would be "
                                 f"refused: at least {need:.1f} MB here, or null for no budget")
        return self

    @property
    def frame_pixels(self) -> int:
        """The most pixels a frame is scored at: max_frame_pixels, or the detector's own ssdnet.max_pixels."""
        return self.max_frame_pixels if self.max_frame_pixels is not None else self.ssdnet.max_pixels


class SecurityConfig(StrictModel):
    """CURVE encryption + ZAP allow-list on every tcp socket (pipeline/security.py). Key files come from
    `ssdnet keys DIR --name NAME`: each stage uses DIR/<its name>.key_secret (cameras and the node by their
    names, subscribers by `client_name`) and finds the servers it connects to as <public_keys_dir>/<name>.key."""

    keys_dir: DirectoryPath = Field(description="this machine's <name>.key_secret files")
    authorized_dir: DirectoryPath = Field(description="allow-list: public keys (*.key) of clients the bound sockets "
                                          "admit; re-read when it changes")
    public_keys_dir: DirectoryPath | None = Field(None, description="servers' public keys <camera or "
                                                                    "node name>.key; None = keys_dir")
    client_name: str = Field("subscriber", pattern=SOURCE_PATTERN,
                             description="key name of the launcher's collector / subscribers")
    connect_key: str | None = Field(None, pattern=SOURCE_PATTERN,
                                    description="key name of the cameras listed in node.connect")
    reload_s: float = Field(5.0, gt=0, le=3600,
                            description="check the allow-list for changes at most this often (a key it lacks: at once)")


class PrometheusConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535, description="0 = any free port")


class SinksConfig(StrictModel):
    """What the launcher's collector does with the node's output (besides summary.json)."""

    overlays: Literal["off", "events", "all"] = Field(
        "events", description="heat-map overlay PNGs in OUT/overlays/: of every event (needs node.attach_image "
        "'anomalous' or 'always'), of every frame ('all', needs 'always'), or none; true = events, false = off")
    overlays_max_mb: float | None = Field(1024, gt=0, description="OUT/overlays/ holds at most this many MB of PNGs: "
                                          "the oldest go first (an earlier run's too); None = no bound")
    overlay_alpha: float = Field(0.5, ge=0, le=1)
    overlay_range: tuple[float, float] | None = Field(
        None, description="anomaly-map values the overlays' colour scale spans, the same for every frame; None = "
                          "0.5x to 1.5x node.threshold (the map is in the image score's units)")
    scores: bool = Field(False, description="OUT/scores.jsonl: one line per scored frame (source, seq, score, "
                                            "threshold, label, latency): the distribution to calibrate a threshold")
    jsonl_max_mb: float | None = Field(256, gt=0, description="OUT/events.jsonl and OUT/scores.jsonl each turn over "
                                       "past this many MB (to .1, .2, ...; jsonl_backups kept); None = no bound")
    jsonl_backups: int = Field(3, ge=1, le=1000, description="turned-over JSONL files kept per file (the oldest go)")
    view: ViewConfig | None = Field(None, description="serve the live web page (pipeline/view.py); `ssdnet run "
                                                      "--view` turns it on with the defaults")
    mqtt: MqttConfig | None = Field(None, description="publish events and health to an MQTT broker "
                                                      "(pipeline/mqtt_sink.py; runs in the node's process)")
    console: bool = Field(False, description="print events live")
    prometheus: PrometheusConfig | None = Field(None, description="serve latency/fps/drop metrics "
                                                                  "in Prometheus text format")
    auroc_pixels_per_frame: int = Field(65536, ge=1, description="pixels sampled per frame for the pooled stream AUROC")

    @field_validator("overlays", mode="before")
    @classmethod
    def _overlays_bool(cls, v: Any) -> Any:
        return {True: "events", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _ranges(self) -> SinksConfig:
        for key, vrange in (("overlay_range", self.overlay_range),
                            ("view.overlay_range", self.view.overlay_range if self.view else None)):
            if vrange is not None:
                _ordered(f"{key}[0]", vrange[0], f"{key}[1]", vrange[1], strict=True)
        view, metrics = self.view, self.prometheus
        if view and metrics and view.port == metrics.port != 0:
            hosts = {view.host, metrics.host}
            if len(hosts) == 1 or hosts & {"0.0.0.0", "::"}:
                raise ValueError(f"view.port and prometheus.port are both {view.port} on one host: each needs a port "
                                 "of its own (0 = any free port)")
        return self


class LineConfig(StrictModel):
    sources: tuple[SourceConfig, ...]
    node: NodeConfig = NodeConfig()
    sinks: SinksConfig = SinksConfig()
    frames: int | None = Field(None, ge=1, description="default frame limit of every source")
    timeout_s: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S, description="stop the run after this long (at "
                                    "most a year); None = when the sources end")
    security: SecurityConfig | None = Field(None, description="CURVE + allow-list on tcp sockets; required to bind a "
                                            "non-loopback address unless allow_insecure_network")
    allow_insecure_network: bool = Field(False, description="allow binding non-loopback "
                                                            "addresses without security (warns)")

    @model_validator(mode="after")
    def _check(self) -> LineConfig:
        if not self.sources and not self.node.connect:
            raise ValueError("at least one source is needed (or cameras of your own under node.connect)")
        names = [s.name for s in self.sources]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        if self.node.name in names:
            raise ValueError(f"node name {self.node.name!r} is also a source name")
        if bad := [s.name for s in self.sources if s.pattern == "push" and s.flow == "credit"]:
            raise ValueError(f"sources {bad}: flow 'credit' needs pattern 'pub' (a PUSH socket has no way back)")
        if bad := [s.name for s in self.sources if (s.pattern == "push") != (self.node.input == "pull")]:
            raise ValueError(f"sources {bad} do not match node.input={self.node.input!r} "
                             "(pub pairs with sub, push with pull)")
        if self.sinks.overlays != "off" and self.node.attach_image == "never":
            raise ValueError("sinks.overlays needs node.attach_image 'anomalous' or 'always'")
        if self.sinks.overlays == "all" and self.node.attach_image != "always":
            raise ValueError("sinks.overlays 'all' needs node.attach_image 'always' (the frames of normal results)")
        binds = [(s.name, s.bind) for s in self.sources] + [("node.bind", self.node.bind)]
        if self.node.event_log is not None:
            binds.append(("node.replay_bind", self.node.replay_bind))
        if (exposed := [f"{n} {e}" for n, e in binds if not is_loopback(e)]) and self.security is None:
            if not self.allow_insecure_network:
                raise ValueError(f"{', '.join(exposed)} bind(s) a non-loopback address without encryption: add a "
                                 "`security:` section (ssdnet keys DIR --name NAME) or set "
                                 "allow_insecure_network: true")
            log.warning("INSECURE: %s reachable from the network without encryption or authentication "
                        "(allow_insecure_network: true)", ", ".join(exposed))
        # what binds on the node's machine: the node, and the sources without an `address` (another host's)
        local = [(f"sources[{s.name}].bind", s.bind) for s in self.sources if s.address is None]
        local += [("node.bind", self.node.bind), ("node.replay_bind", self.node.replay_bind)]
        if clashes := [f"{ka} ({a}) and {kb} ({b})" for i, (ka, a) in enumerate(local) for kb, b in local[i + 1:]
                       if _collide(a, b)]:
            raise ValueError(f"{'; '.join(clashes)} would bind the same port (or ipc path): give each its own, or "
                             "`*` for any free port")
        connected = {n: e for e, names in self.node.connect_cameras.items() for n in names}
        if clash := sorted(set(connected) & set(names)):
            raise ValueError(f"node.connect_cameras names {clash} are also sources of this config (a name has one "
                             "sender)")
        if self.node.connect and not self.node.dynamic_cameras and (
                silent := [e for e in self.node.connect if e not in self.node.connect_cameras]):
            log.warning("node.connect %s: no camera names listed in node.connect_cameras and node.dynamic_cameras is "
                        "false, so the node refuses every frame from there (unknown_camera)", ", ".join(silent))
        if self.security is not None and self.node.connect and self.security.connect_key is None:
            raise ValueError("with security, node.connect endpoints need "
                             "security.connect_key (the key name of those cameras)")
        return self


def load_line_config(path: str | Path) -> LineConfig:
    """Read and validate a line config; raises edge.config.ConfigError with readable messages."""
    return parse_config(LineConfig, load_yaml(path), str(path))
