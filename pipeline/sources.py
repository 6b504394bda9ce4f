"""Camera stage: read frames (OpenCV, an image folder, synthetic textures) and publish them.

A reader thread opens the source, paces it to `fps`, and on loss reconnects with exponential
backoff; the main thread owns the socket and sends frames, a `heartbeat/<source>` every
`heartbeat_s` (state, last-frame age, counters: a silent camera keeps heartbeating, so it is told
apart from a dead link or a blocked node) and finally `eos/<source>`. Every message names the camera's run
(`run`, drawn when the camera starts): a restarted camera's counters and frame numbers start at 0 again under a
new one, so what it sent is counted per run however the node's messages of two runs interleave.
"""
from __future__ import annotations

import logging
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from stat import S_ISREG
from typing import Protocol

import cv2
import numpy as np
import zmq

from edge.config import MIN_SIDE
from edge.frames import bit_depth, to_uint8
from edge.images import IMAGE_SUFFIXES, image_files, opencv_name, read_image, read_mask
from edge.synthetic import sample

from . import protocol as P
from .config import (
    FolderSourceConfig,
    NodeConfig,
    SecurityConfig,
    SourceConfig,
    SyntheticSourceConfig,
    VideoSourceConfig,
    is_image_sequence,
    is_video_file,
)
from .flow import CREDIT_COUNTER, CreditGate
from .gate import Gate, PeerLimit, close_gate, open_gate
from .security import secure_stage
from .transport import LINGER_MS, Publisher, StopFlag, ThrottledLog, bind, make_socket, security_of, wait_for_peer

SEND_MAX_SIDE = NodeConfig.model_fields["max_side"].default  # a longer side is refused by a node at its default
EOS_WAIT_S = 60.0  # a camera that ended before any node subscribed waits this long for one to take its end of stream

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The source cannot be opened or was lost; the camera stage reconnects."""


class SourceFatal(SourceError):
    """The source can never work as configured (a missing or undecodable video file): no retries."""


@dataclass
class Capture:
    image: np.ndarray  # uint8 HxWx3 RGB
    mask: np.ndarray | None  # uint8 HxW, nonzero = defective, when the source knows ground truth
    t_capture: float
    product: str | None = None  # the product under the camera when it was captured (Camera sets it)
    # when it was read, on the monotonic clock: the heartbeats' `last_frame_age`, which a step of the system clock
    # (NTP, a board that boots in 1970 then syncs) must not zero for the hour it stepped back, nor make a day old
    t_read: float = field(default_factory=time.monotonic)


@dataclass
class _End:
    reason: str


class Reader(Protocol):
    def open(self) -> None: ...
    def read(self) -> Capture | None: ...  # None: end of stream
    def close(self) -> None: ...
    def frame_count(self) -> int | None: ...  # one pass of the source; None: endless or not known


class Shaper:
    """A video or folder source's `crop` (the region of interest) then `resize`, for its frames and their masks; a
    frame still over `SEND_MAX_SIDE` on a side is scaled down to it (aspect kept), which the node would refuse."""

    def __init__(self, cfg: VideoSourceConfig | FolderSourceConfig):
        self.cfg = cfg
        self._log = ThrottledLog(log, 10.0)

    def frame(self, bgr: np.ndarray) -> np.ndarray:
        """A decoded BGR (or grey) uint8 frame as the RGB frame the node gets."""
        bgr = self._crop(cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR) if bgr.ndim == 2 else bgr)
        if bgr.size == 0:  # the crop misses the frame: an empty frame, which the camera skips as too small
            return np.zeros((0, 0, 3), np.uint8)
        size = self._size(bgr.shape[1], bgr.shape[0])
        if size is not None:
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        mask = self._crop(mask, warn=False)  # its frame said it
        size = self._size(mask.shape[1], mask.shape[0], warn=False) if mask.size else None
        return mask if size is None else cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)

    def _size(self, width: int, height: int, warn: bool = True) -> tuple[int, int] | None:
        """The (width, height) a width x height frame is resized to: `resize`, or within SEND_MAX_SIDE; None: as
        it is."""
        width, height = self.cfg.resize or (width, height)
        scale = SEND_MAX_SIDE / max(width, height)
        if scale < 1:
            fitted = max(1, round(width * scale)), max(1, round(height * scale))
            if warn:
                self._log.warning(f"{self.cfg.name}: a {width}x{height} frame is over {SEND_MAX_SIDE} px a side (the "
                                  f"node's node.max_side refuses it): sent at {fitted[0]}x{fitted[1]}; set `resize` "
                                  "to choose the size")
            return fitted
        return (width, height) if self.cfg.resize is not None else None

    def _crop(self, image: np.ndarray, warn: bool = True) -> np.ndarray:
        if self.cfg.crop is None:
            return image
        x, y, w, h = self.cfg.crop
        if warn and (x >= image.shape[1] or y >= image.shape[0]):  # nothing of the frame inside it
            self._log.warning(f"{self.cfg.name}: crop {list(self.cfg.crop)} (x, y, width, height) lies outside a "
                              f"{image.shape[1]}x{image.shape[0]} frame: nothing of it can be scored")
        elif warn and (x + w > image.shape[1] or y + h > image.shape[0]):  # the part inside is used, and said
            self._log.warning(f"{self.cfg.name}: crop {list(self.cfg.crop)} (x, y, width, height) reaches past a "
                              f"{image.shape[1]}x{image.shape[0]} frame: only the part inside it is scored")
        return image[y:y + h, x:x + w]


def crop_outside(cfg: VideoSourceConfig | FolderSourceConfig, first_image: Path | None = None
                 ) -> tuple[int, int] | None:
    """The (width, height) of a folder's first image (`first_image`, from the caller's listing of the folder) or a
    video file's first frame where the source's `crop` lies wholly outside it (nothing of any frame of that size could
    be scored); None where it does not, where there is no crop, or where that frame cannot be read here (the camera
    says why once it runs)."""
    if cfg.crop is None:
        return None
    if isinstance(cfg, FolderSourceConfig):
        try:
            shape = read_image(first_image).shape if first_image is not None else None
        except (OSError, ValueError):
            return None
    else:
        reader = VideoReader(cfg)
        if not reader.is_file or opencv_name(cfg.uri) is None:  # a live camera; a name OpenCV cannot take
            return None
        cap = cv2.VideoCapture(cfg.uri, reader.api)
        try:
            ok, frame = cap.read()
        finally:
            cap.release()
        shape = frame.shape if ok else None
    if shape is None:
        return None
    x, y = cfg.crop[:2]
    return (shape[1], shape[0]) if x >= shape[1] or y >= shape[0] else None


class VideoReader:
    """cv2.VideoCapture; a failed grab ends a video file (or loops it) and means a lost live camera."""

    _APIS = {"any": cv2.CAP_ANY, "ffmpeg": cv2.CAP_FFMPEG, "gstreamer": cv2.CAP_GSTREAMER, "v4l2": cv2.CAP_V4L2}

    def __init__(self, cfg: VideoSourceConfig):
        self.cfg = cfg
        self.is_file = is_video_file(cfg.uri)
        self.cap: cv2.VideoCapture | None = None
        self.failed_opens = 0  # in a row
        self.shaper = Shaper(cfg)

    def check(self) -> None:
        """Fail at start-up, with the reason, on a video file that is missing or that OpenCV cannot decode
        (a live camera that is not there yet is retried instead), and on a backend this OpenCV lacks."""
        if self.api != cv2.CAP_ANY and not cv2.videoio_registry.hasBackend(self.api):
            name = cv2.videoio_registry.getBackendName(self.api)
            raise SourceFatal(f"this OpenCV ({cv2.__version__}, {cv2.__file__}) is built without {name}, which "
                              f"{self.cfg.name}'s uri needs (a pipeline with '!' or api: {self.cfg.api}): PyPI's "
                              "opencv-python wheels have no GStreamer; use the system's OpenCV (on a Jetson, "
                              "JetPack's; docker/Dockerfile.jetson) or another `api`")
        if not self.is_file:
            return
        path = Path(self.cfg.uri)
        sequence = is_image_sequence(self.cfg.uri)  # numbered files (`frames/%06d.png`) OpenCV finds: none of that name
        if not sequence and path.is_dir():
            raise SourceFatal(f"{str(path)!r} is a folder, not a video file: for a folder of images write "
                              f"`kind: folder` and `path: {self.cfg.uri}`")
        if not sequence and not path.is_file():
            where = "" if path.is_absolute() else f"uri is relative to {Path.cwd()}; "
            raise SourceFatal(f"video file {str(path)!r} does not exist ({where}for a camera give a device index, "
                              "/dev/videoN, an rtsp:// URL or a GStreamer pipeline)")
        try:
            self.open()
            ok, _ = self.cap.read()
        except SourceFatal:
            if not sequence:
                raise
            ok = False
        finally:
            self.close()
        if not ok:
            what = "image sequence" if sequence else "video file"
            raise SourceFatal(f"{what} {str(path)!r} has no frame OpenCV can decode")

    @property
    def api(self) -> int:
        """The OpenCV backend to open the uri with: the configured one, GStreamer for a pipeline ('!')."""
        api = self._APIS[self.cfg.api]
        if api == cv2.CAP_ANY and isinstance(self.cfg.uri, str) and "!" in self.cfg.uri:
            api = cv2.CAP_GSTREAMER
        return api

    @property
    def _utf8(self) -> bool:
        """Whether OpenCV may be given the uri (a file name that is not UTF-8 crashes the process)."""
        return not isinstance(self.cfg.uri, str) or opencv_name(self.cfg.uri) is not None

    def open(self) -> None:
        """Open the uri; after a failed open OpenCV's own warnings are kept down for the retries (a missing USB
        camera printed its two [ WARN ] lines again at every retry, beside the camera's own retry line)."""
        if not self._utf8:
            raise SourceFatal(f"{self.cfg.name}'s uri {self.cfg.uri!r} is not UTF-8 (a file name in another system's "
                              "encoding), which OpenCV cannot take: rename the file")
        level = cv2.utils.logging.getLogLevel()
        if self.failed_opens:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            cap = cv2.VideoCapture(self.cfg.uri, self.api)
        finally:
            cv2.utils.logging.setLogLevel(level)
        self.failed_opens = 0 if cap.isOpened() else self.failed_opens + 1
        if not cap.isOpened():
            cap.release()
            if self.is_file:
                raise SourceFatal(f"cannot read video file {self.cfg.uri!r}: OpenCV cannot open it (not a video, "
                                  "or a codec this OpenCV build lacks)")
            raise SourceError(f"cannot open {self.cfg.uri!r}")
        if not self.is_file:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # live: the newest frame, not a backlog
        self.cap = cap

    def read(self) -> Capture | None:
        ok, bgr = self.cap.read()
        if not ok and self.is_file and self.cfg.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self.cap.read()
        if not ok:
            if self.is_file:
                return None
            raise SourceError(f"lost {self.cfg.uri!r}: grab failed")
        return Capture(self.shaper.frame(bgr), None, time.time())

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def frame_count(self) -> int | None:
        """The frames of one pass of a video file, as its container says (None: a live camera, or not said)."""
        if not self.is_file or not self._utf8 or not Path(self.cfg.uri).is_file():
            return None
        cap = cv2.VideoCapture(self.cfg.uri, self.api)
        try:
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        finally:
            cap.release()
        return count if count > 0 else None


class FolderReader:
    """The images of a folder in name order, with masks from `masks/<stem><mask_suffix>.png`; a file it cannot read
    is skipped with a warning and counted in `unreadable` (at each pass of a looping folder)."""

    def __init__(self, cfg: FolderSourceConfig):
        self.cfg = cfg
        self.files: list[Path] = []
        self.index = 0
        self.unreadable = 0
        self.bits = 8  # the bits the folder's 16-bit images fill, the largest so far (edge.frames.bit_depth)
        self.shaper = Shaper(cfg)
        self._unread_mask_log, self._mask_size_log = ThrottledLog(log, 5.0), ThrottledLog(log, 5.0)

    def check(self) -> None:
        self.open()

    def open(self) -> None:
        try:
            self.files = image_files(self.cfg.path)
        except OSError as e:
            raise SourceFatal(f"cannot list {self.cfg.path}: {e}") from None
        if not self.files:
            raise SourceFatal(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.cfg.path}")

    def read(self) -> Capture | None:
        skipped = 0  # in a row: a looping folder none of whose files can be read fails, not spins
        while True:
            if self.index >= len(self.files):
                if not self.cfg.loop:
                    return None
                self.index = 0
            path = self.files[self.index]
            self.index += 1
            try:
                raw = read_image(path)
            except (OSError, ValueError) as e:
                self.unreadable += 1
                log.warning("%s: skipping unreadable image: %s", self.cfg.name, e)
                if (skipped := skipped + 1) >= len(self.files) and self.cfg.loop:
                    raise SourceFatal(f"none of the {len(self.files)} images in {self.cfg.path} can be read") from None
                continue
            if self.cfg.bit_depth is None and (bits := bit_depth(raw)) > self.bits:  # one scale for the stream:
                self.bits = bits  # the most a frame has filled
                log.info("%s: 16-bit images, read as %d-bit values (%s; `bit_depth` pins it)", self.cfg.name, bits,
                         path.name)
            bgr = to_uint8(raw, self.cfg.bit_depth or self.bits)
            return Capture(self.shaper.frame(bgr), self._mask(path, bgr.shape[:2]), time.time())

    def frame_count(self) -> int | None:
        """The images of one pass of the folder (None: it cannot be listed)."""
        try:
            return len(image_files(self.cfg.path))
        except OSError:
            return None

    def _mask(self, image_path: Path, shape: tuple[int, int]) -> np.ndarray | None:
        """The image's mask (none: a normal image, all zeros); one it cannot read is left out (its frame is sent
        without one), one of another size than its image is scaled to it, each said."""
        if self.cfg.masks is None:
            return None
        path = self.cfg.masks / f"{image_path.stem}{self.cfg.mask_suffix}.png"
        if not path.is_file():
            return self.shaper.mask(np.zeros(shape, np.uint8))
        try:
            mask = read_mask(path)
        except (OSError, ValueError) as e:
            self._unread_mask_log.warning(f"{self.cfg.name}: {image_path.name} is sent without its mask: {e}")
            return None
        if mask.shape != shape:
            self._mask_size_log.warning(f"{self.cfg.name}: mask {path.name} is {mask.shape[1]}x{mask.shape[0]}, its "
                                        f"image {shape[1]}x{shape[0]}: scaled to the image")
            mask = cv2.resize(mask, shape[::-1], interpolation=cv2.INTER_NEAREST)
        return self.shaper.mask(mask)

    def close(self) -> None:
        pass


class SyntheticReader:
    """Textures in turn, each with a defect drawn with probability `defect_prob`, and its exact mask."""

    def __init__(self, cfg: SyntheticSourceConfig):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.index = 0

    def open(self) -> None:
        pass

    def frame_count(self) -> None:
        """Endless."""
        return None

    def read(self) -> Capture:
        t_capture = time.time()  # the shutter opens now; drawing the texture is its exposure
        name = self.cfg.textures[self.index % len(self.cfg.textures)]
        self.index += 1
        image, mask = sample(name, self.cfg.size, self.rng, self.cfg.defect_prob)
        return Capture(image, mask.astype(np.uint8), t_capture)

    def close(self) -> None:
        pass


class ProductName:
    """The product under a camera: `product`, or the name a line's controller writes into `product_file`, read
    again whenever the file changes (its inode, time or size); a file that is missing, unreadable or holds no valid
    name keeps the last name, with a warning once per change."""

    def __init__(self, cfg: SourceConfig):
        self.path, self.name = cfg.product_file, cfg.product
        self.seen: tuple[int, int, int] | str | None = None  # the file's identity when last read, or its error

    def __call__(self) -> str | None:
        if self.path is None:
            return self.name
        text = None
        try:
            st = self.path.stat()
            seen: tuple[int, int, int] | str = st.st_ino, st.st_mtime_ns, st.st_size
            if seen != self.seen:
                if not S_ISREG(st.st_mode):  # a FIFO blocked the camera's reader until something wrote to it
                    raise OSError("not a regular file")
                with self.path.open(errors="replace") as f:
                    text = f.read(256).strip()  # a name is 64 characters at most
        except OSError as e:
            seen = str(e.strerror or e)
        if seen == self.seen:
            return self.name
        self.seen = seen
        if text is None:
            log.warning("product_file %s: %s; the product stays %r", self.path, seen, self.name)
        elif re.fullmatch(P.SOURCE_PATTERN, text):
            self.name = text
        else:
            log.warning("product_file %s holds %r, not a product name (1-64 of [A-Za-z0-9_.:-]); the product "
                        "stays %r", self.path, text[:80], self.name)
        return self.name


def make_reader(cfg: SourceConfig) -> Reader:
    return {"synthetic": SyntheticReader, "video": VideoReader, "folder": FolderReader}[cfg.kind](cfg)


def expected_frames(cfg: SourceConfig) -> int | None:
    """The frames `cfg`'s camera will read: its `frames`, at most one pass of a folder or video file that does not
    loop; None where neither bounds it (a live or synthetic camera without `frames`, a looping file or folder)."""
    count = None if getattr(cfg, "loop", False) else make_reader(cfg).frame_count()
    bounds = [n for n in (cfg.frames, count) if n is not None]
    return min(bounds) if bounds else None


class Camera:
    """Publishes one source's frames on `cfg.bind` (XPUB or PUSH)."""

    def __init__(self, cfg: SourceConfig, reader: Reader | None = None, ctx: zmq.Context | None = None):
        self.cfg = cfg
        self.reader = reader if reader is not None else make_reader(cfg)
        self.ctx = ctx or zmq.Context.instance()
        self.run_id = secrets.token_hex(8) if cfg.run_id else None  # this run of the camera, in every message (`run`)
        self.state = "starting"
        # `unheard`: of the frames `sent`, those no node had subscribed to (ZeroMQ dropped them); `unreadable`: files
        # a folder camera skipped; `refused_peers`: connections refused past `max_peers`
        self.counters = {"sent": 0, "send_dropped": 0, "unheard": 0, "reconnects": 0, "too_small": 0,
                         "unreadable": 0, "refused_peers": 0}
        # connections the frame socket holds at once, counted and bounded by the context's ZAP gate (pipeline.gate):
        # each holds up to `sndhwm` frames, a PUSH socket deals frames to each, and each may grant credit
        self.peers = PeerLimit(cfg.max_peers, "peers", f"sources[{cfg.name}].max_peers")
        self.heard = True  # whether the last frame had a node subscribed to it
        self._unheard_log, self._heard_log = ThrottledLog(log, 5.0), ThrottledLog(log, 5.0)
        self.last_capture: float | None = None
        self.last_read: float | None = None  # the last frame's `Capture.t_read` (monotonic)
        self._queue: queue.Queue[Capture | _End] = queue.Queue(maxsize=2)
        self._halt = threading.Event()
        self._small_log = ThrottledLog(log)
        self.gate = CreditGate(cfg.name) if cfg.credit_flow else None  # flow: credit (pipeline/flow.py)
        self.failure: str | None = None
        self.product = ProductName(cfg)

    def check(self) -> None:
        """Raise SourceFatal, saying why, for a source that can never work (e.g. a missing video file)."""
        if (check := getattr(self.reader, "check", None)) is not None:
            check()

    def run(self, stop: StopFlag, on_ready: Callable[[str], None] | None = None) -> dict[str, int | str]:
        """Stream until the source ends, `cfg.frames` were sent or `stop` is set; returns the counters and the run id
        (`run`).
        Raises SourceFatal before binding for a source that cannot work, and after the end of stream
        for one that failed for good mid-stream; BindError for an endpoint it cannot bind, or bind again after a
        subscription reset (`pipeline.transport.Publisher.reset`)."""
        self.check()
        gate = open_gate(self.ctx)
        try:
            return self._stream(gate, stop, on_ready)
        finally:
            close_gate(gate)  # after the socket is closed

    def _bind(self, gate: Gate) -> tuple[Publisher | zmq.Socket, str]:
        """The frame socket, bound, its peers bounded by `gate`, and its endpoint."""
        guard = partial(gate.watch, server=True, limit=self.peers)
        if self.cfg.pattern == "pub":
            pub = Publisher(self.ctx, self.cfg.bind, sndhwm=self.cfg.sndhwm, max_topics=self.cfg.max_subscriptions,
                            name=self.cfg.name, guard=guard)
            return pub, pub.endpoint
        push = make_socket(self.ctx, zmq.PUSH, sndhwm=self.cfg.sndhwm)
        try:
            guard(push)
            return push, bind(push, self.cfg.bind)
        except zmq.ZMQError:
            push.close()
            raise

    def _stream(self, gate: Gate, stop: StopFlag, on_ready: Callable[[str], None] | None) -> dict[str, int | str]:
        out, endpoint = self._bind(gate)
        try:
            log.info("%s: publishing on %s", self.cfg.name, endpoint)
            if on_ready is not None:
                on_ready(endpoint)
            self.state = "waiting"
            if isinstance(out, Publisher):
                ready = out.wait_for_subscriber(self.cfg.wait_for_consumer_s, stop)
            else:
                ready = wait_for_peer(out, self.cfg.wait_for_consumer_s, stop)
            if not ready and not stop.is_set():  # timed out, not cut short by the line stopping
                log.warning("%s: no consumer after %.0f s, streaming anyway", self.cfg.name,
                            self.cfg.wait_for_consumer_s)
            reader = threading.Thread(target=self._read_loop, name=f"read-{self.cfg.name}", daemon=True)
            reader.start()
            self._publish_loop(out, stop)
            self._halt.set()
            reader.join(timeout=1.0)  # a reader stuck in a driver call is a daemon thread: left behind
        finally:
            self._halt.set()
            out.close()
        if self.failure is not None:
            raise SourceFatal(self.failure)
        return {**self.counters, "run": self.run_id}

    def _publish_loop(self, out: Publisher | zmq.Socket, stop: StopFlag) -> None:
        push = not isinstance(out, Publisher)
        seq = 0
        next_beat = time.monotonic()
        give_up = None  # after a stop, when to end without waiting any longer for a stuck reader
        while True:
            if stop.is_set() and give_up is None:
                self._halt.set()
                give_up = time.monotonic() + 2.0
            self.counters["refused_peers"] = self.peers.refused
            if isinstance(out, Publisher):  # what nodes sent: subscriptions are counted, grants go to the gate
                for blob in out.upstream():
                    if self.gate is not None:
                        self.gate.on_upstream(blob)
                self.counters["subscription_resets"] = out.resets
            sock = out.sock if isinstance(out, Publisher) else out  # a Publisher's socket is new after a reset
            try:
                item = self._queue.get(timeout=0.01 if self.gate is not None else 0.1)
            except queue.Empty:
                stuck = give_up is not None and time.monotonic() > give_up
                item = _End("stopped; the reader is stuck") if stuck else None
            if isinstance(item, Capture):
                frame = self._frame(seq, item)
                sent = self._send(sock, frame, zmq.NOBLOCK if push else 0, self._hears(out, frame.header.topic))
                log.debug("%s#%d: %dx%d px %s (%d sent, %d dropped)", self.cfg.name, seq, item.image.shape[1],
                          item.image.shape[0], "sent" if sent else "dropped", self.counters["sent"],
                          self.counters["send_dropped"])
                self.last_capture, self.last_read, seq = item.t_capture, item.t_read, seq + 1
            if time.monotonic() >= next_beat or isinstance(item, _End):
                next_beat = time.monotonic() + self.cfg.heartbeat_s
                self._send(sock, self._heartbeat(seq - 1), zmq.NOBLOCK)
            if isinstance(item, _End):
                log.info("%s: end of stream (%s); frames sent: %d", self.cfg.name, item.reason, seq)
                eos = P.EosHeader(kind="eos", source=self.cfg.name, seq=seq - 1, t_capture=time.time(), frames=seq,
                                  counters=self.counters, run=self.run_id)
                heard = push or out.hears(eos.topic) or self.counters["unheard"] < seq
                if not heard and not stop.is_set():
                    # no node has heard this camera yet (it started streaming before one subscribed): without its
                    # end of stream, a line waits for it for ever
                    log.warning("%s: no node has subscribed yet: waiting up to %.0f s for one to take the end of "
                                "stream", self.cfg.name, EOS_WAIT_S)
                    out.wait_for_subscriber(EOS_WAIT_S, stop)
                    sock = out.sock
                sock.setsockopt(zmq.SNDTIMEO, 1000)  # a PUSH socket may need a moment of room for the end
                self._send(sock, P.Message(eos), 0)
                return

    def _send(self, sock: zmq.Socket, msg: P.Message, flags: int, heard: bool = True) -> bool:
        """Send `msg`; False when ZeroMQ had no room for it (counted `send_dropped` for a frame). A frame sent that
        no node `heard` is counted `unheard` as well as `sent`."""
        try:
            P.send(sock, msg, flags)
        except zmq.Again:
            self.counters["send_dropped"] += msg.kind == "frame"
            return False
        self.counters["sent"] += msg.kind == "frame"
        self.counters["unheard"] += msg.kind == "frame" and not heard
        return True

    def _hears(self, out: Publisher | zmq.Socket, topic: bytes) -> bool:
        """Whether a node subscribed to `topic` now (a PUSH socket: yes, what it cannot deliver is `send_dropped`);
        says so when that changes (throttled)."""
        heard = out.hears(topic) if isinstance(out, Publisher) else True
        if heard != self.heard:
            if heard:
                self._heard_log.info(f"{self.cfg.name}: a node subscribed: frames reach it again "
                                     f"({self.counters['unheard']} unheard so far)")
            else:
                self._unheard_log.warning(f"{self.cfg.name}: no node connected: frames are lost until one connects "
                                          "(counted `unheard`)")
        self.heard = heard
        return heard

    def _frame(self, seq: int, cap: Capture) -> P.Message:
        payloads = [P.describe("image", cap.image, self.cfg.encoding)]
        arrays = {"image": cap.image}
        if cap.mask is not None:
            payloads.append(P.describe("mask", cap.mask))
            arrays["mask"] = cap.mask
        header = P.FrameHeader(kind="frame", source=self.cfg.name, seq=seq, t_capture=cap.t_capture,
                               stamps={"capture": cap.t_capture}, payloads=tuple(payloads), product=cap.product,
                               run=self.run_id)
        return P.Message(header, arrays)

    def _heartbeat(self, seq: int) -> P.Message:
        now = time.time()
        age = None if self.last_read is None else max(0.0, time.monotonic() - self.last_read)
        counters = dict(self.counters)
        if self.gate is not None:  # tells the node this camera waits for credit, and how much it has
            counters[CREDIT_COUNTER] = self.gate.upto
            counters["credit_wait_ms"] = int(self.gate.waited_s * 1000)
        if (security := security_of(self.ctx)) is not None:  # refused connections on its CURVE socket, by reason
            counters.update({f"refused_{r}": n for r, n in security.refusals().items() if n})
        return P.Message(P.HeartbeatHeader(kind="heartbeat", source=self.cfg.name, seq=seq, t_capture=now,
                                           role="source", state=self.state, last_frame_age=age, counters=counters,
                                           run=self.run_id))

    def _read_loop(self) -> None:
        """Reader thread: open/reconnect with backoff, pace, hand captures to the publisher."""
        cfg, opened, failures, n, read = self.cfg, False, 0, 0, 0  # n: frames sent (credit counts them); read
        period = 1.0 / cfg.fps if cfg.fps else 0.0
        next_tick = time.monotonic()
        reason = "stopped"
        while not self._halt.is_set():
            if cfg.frames is not None and read >= cfg.frames:
                reason = f"`frames: {cfg.frames}` reached"
                break
            if self.gate is not None and self.gate.upto < n:  # backpressure: wait for the node's credit
                self.state = "paced"  # heartbeats say so: not a stalled camera
                if not self.gate.wait(n, self._halt):
                    break
                self.state = "streaming" if opened else self.state
            if period:
                self._halt.wait(max(0.0, next_tick - time.monotonic()))
                next_tick = max(next_tick, time.monotonic()) + period  # late frames do not catch up in a burst
            try:
                if not opened:
                    self.reader.open()
                    opened, self.state = True, "streaming"
                cap = self.reader.read()
                self.counters["unreadable"] = getattr(self.reader, "unreadable", 0)  # a folder's skipped files
            except SourceFatal as e:
                log.error("%s: %s", cfg.name, e)
                reason, self.failure = f"failed: {e}", str(e)
                break
            except SourceError as e:
                self.reader.close()
                opened, failures = False, failures + 1
                if cfg.max_retries is not None and failures > cfg.max_retries:
                    reason = f"gave up after {failures} failures: {e}"
                    break
                delay = min(cfg.backoff_initial_s * 2 ** (failures - 1), cfg.backoff_max_s)
                log.warning("%s: %s; retrying in %.1f s", cfg.name, e, delay)
                self.state = "reconnecting"
                self.counters["reconnects"] += 1
                self._halt.wait(delay)
                continue
            except Exception as e:  # a fault of the reader's own: the stream ends, said, not a camera hung silently
                log.exception("%s: the camera's reader failed", cfg.name)
                reason, self.failure = f"failed: {type(e).__name__}: {e}", f"{type(e).__name__}: {e}"
                break
            if cap is None:
                reason = "source ended"
                break
            failures = 0
            if min(cap.image.shape[:2]) < MIN_SIDE:  # the node could not score it: say so here, once a second
                self.counters["too_small"] += 1
                read += 1  # `frames` counts what the source gave
                self._small_log.warning(f"{cfg.name}: skipped a {cap.image.shape[1]}x{cap.image.shape[0]} frame: below "
                                        f"the minimum of {MIN_SIDE}x{MIN_SIDE} px (set `resize`, or a larger `crop`)")
                continue
            cap.product = self.product()
            if self._put(cap):
                n, read = n + 1, read + 1
        self.reader.close()
        self.state = "ended"
        self._put(_End(reason), force=True)

    def _put(self, item: Capture | _End, force: bool = False) -> bool:
        """Queue for the publisher; gives up when halted (after 2 s more when forced)."""
        deadline = time.monotonic() + 2.0
        while not self._halt.is_set() or (force and time.monotonic() < deadline):
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False


def run_camera(cfg: SourceConfig, stop: StopFlag, on_ready: Callable[[str], None] | None = None,
               security: SecurityConfig | None = None) -> dict[str, int | str]:
    """Process entry point of a camera stage: returns its counters and run id (`Camera.run`); with `security` its tcp
    socket is a CURVE server (key `<camera name>.key_secret`).

    Its frames go out zero-copy: ZeroMQ's I/O thread reads them from the camera's own arrays, kept alive by pyzmq
    only until the interpreter exits (pyzmq's atexit drops them) while the socket lingers on. So the stage's context
    is terminated before it returns: its last frames go out, or are dropped after the linger, while their memory is
    still theirs (a process exiting right after its end of stream sent freed, zeroed memory as its last frame)."""
    ctx, sec = zmq.Context(), None
    try:
        if security is not None:
            sec = secure_stage(security, cfg.name, ctx)
        return Camera(cfg, ctx=ctx).run(stop, on_ready)
    finally:
        if sec is not None:
            sec.close()  # its ZAP handler's and handshake monitors' sockets, which the context would wait for
        ctx.destroy(linger=LINGER_MS)  # Camera.run closed its socket: at most its linger
