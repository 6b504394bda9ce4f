"""Wire schema of the streaming pipeline, version 1: ZeroMQ multipart messages, never pickle.
The third-party reference, with limits, node-side checks, replay and examples: docs/protocol.md.

Every message is

    part 0   topic     b"<kind>/<source>", so SUB sockets filter by prefix (b"event/", b"anomaly/cam0")
    part 1   header    a msgpack map of at most MAX_HEADER_BYTES, fields below
    part 2+  payloads  one part per entry of header["payloads"], in that order, sent zero-copy

Header fields of every kind:
    v          int    SCHEMA_VERSION; a receiver rejects any other version
    kind       str    frame | anomaly | event | heartbeat | eos (must match the topic)
    source     str    camera id: 1-64 of [A-Za-z0-9_.:-] (must match the topic)
    seq        int    per-source frame number from 0; heartbeat/eos: the last frame sent, -1 if none
    t_capture  float  Unix time the frame was captured; heartbeat/eos: the time it was sent
    stamps     map    Unix time per stage, keys from STAMPS: capture (camera), received (node socket),
                      fitted (fit start + fit_ms), scored (detector returned), published (node send)
    payloads   list   descriptors {name, shape, dtype, encoding, scale, offset}, one per payload part
    run        str    optional: the camera process's run id, 1-64 of [A-Za-z0-9_.:-], drawn at its start (a restarted
                      camera's counters and seq start at 0 again under a new one); the node copies it into what it
                      publishes for that camera. Absent (None): the camera does not say (older, third-party cameras).
                      Sent only when set: a receiver from before it refuses the key
    product    str    frame, anomaly, event only; optional: the product under the camera, 1-64 of
                      [A-Za-z0-9_.:-] (a recipe, a part number). The node keeps a model per camera and
                      product: a new value is a changeover (the camera's model for it resumes or starts);
                      None (absent): the camera does not say, its normal's moves are found from its scores

Payloads (name: shape, dtype, encodings); 1 <= H, W <= MAX_SIDE:
    image  (H, W, 3) uint8 RGB                                     raw | jpeg | png
    mask   (H, W)    uint8 ground truth, nonzero = defective pixel  raw | png
    map    (H, W)    float16 anomaly map, or uint8 quantised with value = offset + q * scale   raw
A raw payload holds exactly H*W*C*itemsize bytes in C order; a jpeg/png payload is a file whose
declared size is checked before decoding and whose decoded size must equal the descriptor.
A message's payloads all have the same H and W. `scale`/`offset` are set for uint8 maps only.

Kinds and their extra fields:
    frame      camera -> node. payloads: image, optional mask (synthetic/labelled sources).
    anomaly    node -> subscribers, one per scored frame. payloads: map, optional image (the scored
               frame), optional mask (ground truth forwarded from the camera). fields: score (image
               score), threshold, label ("anomalous" iff score > threshold, else "normal"), regions
               [{bbox: [x, y, w, h], area, peak}], model_version, fit_steps, fit_ms, score_ms.
    event      node -> subscribers, only for anomalous frames; no payloads. fields: score, threshold,
               regions, model_version; `event_record` turns it into its JSON-able dict.
    heartbeat  camera (forwarded by the node) or node, every `heartbeat_s` even without frames.
               fields: role (source|node), state (camera: waiting, streaming, reconnecting, ended;
               node: idle, busy), last_frame_age (seconds since the last frame, None before the
               first), counters {name: int}.
    eos        end of one source's stream: camera -> node -> subscribers, after the source's last
               result. fields: frames (number the camera sent), counters (the camera's, plus the
               node's for that source when forwarded).

Decoding validates all of the above and raises ProtocolError, with one readable line, for anything
else; receivers log it, count it and keep running.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import cv2
import msgpack
import numpy as np
import zmq
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

SCHEMA_VERSION = 1
KINDS = ("frame", "anomaly", "event", "heartbeat", "eos")
STAMPS = ("capture", "received", "fitted", "scored", "published")
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
MAX_SIDE = 8192
MAX_HEADER_BYTES = 64 * 1024
MAX_PARTS = 2 + 3
MAX_PAYLOAD_BYTES = MAX_SIDE * MAX_SIDE * 3
MAX_REGIONS = 256
MAX_COMPRESSION = 2048  # decoded bytes per file byte of a jpeg/png payload at most (PNG's deflate tops out near 1030)
JPEG_QUALITY = 90
MAX_JPEG_SCANS = 64  # a progressive jpeg's scans at most: each rescans the whole frame (a camera's have ~10)
# segments before a jpeg's frame header at most (a camera's have ~10: APPn, DQT, DHT; an ICC profile up to ~250 APP2):
# the header is read in Python one segment at a time, in the receiver thread every camera shares
MAX_JPEG_SEGMENTS = 1024

Stamp = Literal["capture", "received", "fitted", "scored", "published"]
Encoding = Literal["raw", "jpeg", "png"]
Part = bytes | memoryview | zmq.Frame | np.ndarray


class ProtocolError(ValueError):
    """A message that does not follow the wire schema; the text says what is wrong, `reason` names the
    rule it broke, one of DECODE_REASONS (the node counts them as `rejected_<reason>`)."""

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


# why a message was refused by the decoder: not a message at all (parts, size, msgpack, not a map),
# another schema version, a required header field missing, a field of the wrong type or out of range,
# a topic that is not "<kind>/<source>" of its header, payload bytes that do not match their
# descriptor (lying shapes, sizes, encodings), a payload side over the receiver's limit
DECODE_REASONS = ("malformed", "bad_version", "missing_field", "bad_field", "topic_mismatch", "bad_payload",
                  "too_large")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Payload(_Wire):
    """Descriptor of one payload part."""

    name: Literal["image", "mask", "map"]
    shape: tuple[int, ...]
    dtype: Literal["uint8", "float16"]
    encoding: Encoding = "raw"
    scale: float | None = None
    offset: float | None = None

    _rules: ClassVar[dict[str, tuple[int, tuple[str, ...], tuple[str, ...]]]] = {
        # name: (ndim, dtypes, encodings)
        "image": (3, ("uint8",), ("raw", "jpeg", "png")),
        "mask": (2, ("uint8",), ("raw", "png")),
        "map": (2, ("float16", "uint8"), ("raw",)),
    }

    @model_validator(mode="after")
    def _check(self) -> Payload:
        ndim, dtypes, encodings = self._rules[self.name]
        if len(self.shape) != ndim or (ndim == 3 and self.shape[2] != 3):
            raise ValueError(f"{self.name} must have shape {'(H, W, 3)' if ndim == 3 else '(H, W)'}, got {self.shape}")
        if not all(1 <= s <= MAX_SIDE for s in self.shape[:2]):
            raise ValueError(f"{self.name} size {self.shape[:2]} outside 1..{MAX_SIDE}")
        if self.dtype not in dtypes or self.encoding not in encodings:
            raise ValueError(f"{self.name} must be {'/'.join(dtypes)} encoded "
                             f"{'/'.join(encodings)}, got {self.dtype} {self.encoding}")
        quantised = self.name == "map" and self.dtype == "uint8"
        if (self.scale is not None, self.offset is not None) != (quantised, quantised):
            raise ValueError("scale and offset are set for uint8 maps and only for them")
        return self

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


class Region(_Wire):
    """A connected component of the thresholded anomaly map, in frame pixels."""

    bbox: tuple[int, int, int, int]  # x, y, w, h
    area: int = Field(ge=1)
    peak: float


class _Header(_Wire):
    payload_rules: ClassVar[tuple[tuple[str, ...], tuple[str, ...]]] = ((), ())  # required, optional

    v: Literal[SCHEMA_VERSION] = SCHEMA_VERSION
    source: str = Field(pattern=SOURCE_PATTERN)
    seq: int = Field(ge=-1, le=2**63 - 1)
    t_capture: float = Field(ge=0)
    stamps: dict[Stamp, float] = {}
    payloads: tuple[Payload, ...] = Field((), max_length=3)
    run: Annotated[str, Field(pattern=SOURCE_PATTERN)] | None = None  # the camera process's run id, if it names one

    @model_validator(mode="after")
    def _check_payloads(self) -> _Header:
        names = [p.name for p in self.payloads]
        required, optional = self.payload_rules
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate payload names {names}")
        if missing := [n for n in required if n not in names]:
            raise ValueError(f"missing payload(s) {missing}")
        if extra := [n for n in names if n not in required + optional]:
            raise ValueError(f"payload(s) {extra} not allowed in a {self.kind} message")  # type: ignore[attr-defined]
        if len({p.shape[:2] for p in self.payloads}) > 1:
            raise ValueError(f"payload sizes differ: {[p.shape for p in self.payloads]}")
        return self

    @property
    def topic(self) -> bytes:
        return f"{self.kind}/{self.source}".encode()  # type: ignore[attr-defined]


Product = Annotated[str, Field(pattern=SOURCE_PATTERN)]


class FrameHeader(_Header):
    payload_rules = (("image",), ("mask",))
    kind: Literal["frame"]
    product: Product | None = None  # the product under the camera, if it says (a changeover when it changes)


class _Scored(_Header):
    score: float  # calibrated: robust std above the source's recent scores (edge.calibration)
    raw_score: float | None = None  # the detector's own image score
    calibrating: bool = False  # the source's first frames: `score` leans on the config's prior
    threshold: float
    regions: tuple[Region, ...] = Field((), max_length=MAX_REGIONS)
    model_version: int = Field(ge=0)
    product: Product | None = None  # the frame's product, as its camera said


class AnomalyHeader(_Scored):
    payload_rules = (("map",), ("image", "mask"))
    kind: Literal["anomaly"]
    label: Literal["normal", "anomalous"]
    fit_steps: int = Field(ge=0)
    fit_ms: float = Field(ge=0)
    score_ms: float = Field(ge=0)


class EventHeader(_Scored):
    kind: Literal["event"]


MAX_COUNTERS = 128  # entries of a heartbeat's or an end of stream's `counters` (a node's heartbeat has 65)
Counters = Annotated[dict[Annotated[str, Field(max_length=64)], int], Field(max_length=MAX_COUNTERS)]


class HeartbeatHeader(_Header):
    kind: Literal["heartbeat"]
    role: Literal["source", "node"]
    state: str = Field(max_length=32)
    last_frame_age: float | None = Field(None, ge=0)
    counters: Counters = {}


class EosHeader(_Header):
    kind: Literal["eos"]
    frames: int = Field(ge=0)
    counters: Counters = {}


Header = FrameHeader | AnomalyHeader | EventHeader | HeartbeatHeader | EosHeader
_HEADER = TypeAdapter(Annotated[Header, Field(discriminator="kind")])


@dataclass(frozen=True)
class Message:
    """A decoded (or to-be-sent) message: the validated header and its payload arrays by name."""

    header: Header
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    encoded: frozenset[str] = frozenset()  # payloads still as their png/jpeg file's bytes (`decode(defer=True)`)

    @property
    def kind(self) -> str:
        return self.header.kind

    @property
    def source(self) -> str:
        return self.header.source


def describe(name: str, array: np.ndarray, encoding: Encoding = "raw", scale: float | None = None,
             offset: float | None = None) -> Payload:
    """The payload descriptor of `array` as sent under `name`."""
    return Payload(name=name, shape=tuple(int(s) for s in array.shape), dtype=str(array.dtype), encoding=encoding,
                   scale=scale, offset=offset)


def quantize_map(amap: np.ndarray, dtype: Literal["float16", "uint8"]) -> tuple[np.ndarray, Payload]:
    """A float anomaly map as a wire payload: float16 (clipped to its range) or uint8 with scale/offset."""
    amap = np.nan_to_num(np.asarray(amap, dtype=np.float32), nan=0.0, posinf=6e4, neginf=-6e4)
    if dtype == "float16":
        q = np.clip(amap, -6e4, 6e4).astype(np.float16)
        return q, describe("map", q)
    lo, hi = float(amap.min()), float(amap.max())
    scale = (hi - lo) / 255.0 or 1.0
    q = np.clip(np.rint((amap - lo) / scale), 0, 255).astype(np.uint8)
    return q, describe("map", q, scale=scale, offset=lo)


def anomaly_map(msg: Message) -> np.ndarray:
    """The float32 anomaly map of an anomaly message (dequantised if it was sent as uint8)."""
    desc = next(p for p in msg.header.payloads if p.name == "map")
    amap = msg.arrays["map"].astype(np.float32)
    return amap if desc.scale is None else desc.offset + amap * desc.scale


def event_record(header: EventHeader) -> dict[str, Any]:
    """The JSON-able dict of an event: source, seq, score, threshold, regions, t_capture, stamps, model_version,
    product."""
    return header.model_dump(mode="json", exclude={"v", "kind", "payloads", "run"})


# ---------------------------------------------------------------- encoding


def _encode_payload(desc: Payload, array: np.ndarray) -> np.ndarray | bytes:
    if tuple(array.shape) != desc.shape or str(array.dtype) != desc.dtype:
        raise ProtocolError(f"{desc.name} array {array.dtype} {array.shape} does "
                            f"not match its descriptor {desc.dtype} {desc.shape}")
    if desc.encoding == "raw":
        return np.ascontiguousarray(array)
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if desc.encoding == "jpeg" else []
    ok, buf = cv2.imencode("." + desc.encoding, bgr, params)
    if not ok:
        raise ProtocolError(f"could not encode {desc.name} as {desc.encoding}")
    return buf.tobytes()


def wire_fields(header: Header) -> dict[str, Any]:
    """The header's fields as sent: every one, defaults included, but `run` only when set (a receiver from before the
    field refuses the key: a message without a run id is the same on the wire as before it)."""
    fields = header.model_dump(mode="python")
    if fields["run"] is None:
        del fields["run"]
    return fields


def encode(msg: Message) -> list[bytes | np.ndarray]:
    """Multipart frames of `msg`: topic, msgpack header, payloads (numpy buffers, for copy=False sends)."""
    header = msgpack.packb(wire_fields(msg.header), use_bin_type=True)
    if len(header) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    if set(msg.arrays) != {p.name for p in msg.header.payloads}:
        raise ProtocolError(f"arrays {sorted(msg.arrays)} do not match "
                            f"payloads {[p.name for p in msg.header.payloads]}")
    return [msg.header.topic, header, *(_encode_payload(p, msg.arrays[p.name]) for p in msg.header.payloads)]


def send(sock: zmq.Socket, msg: Message, flags: int = 0) -> None:
    """Send `msg` on `sock`, payloads zero-copy."""
    sock.send_multipart(encode(msg), flags=flags, copy=False)


# ---------------------------------------------------------------- decoding


def _buffer(part: Part) -> memoryview:
    if isinstance(part, zmq.Frame):
        return part.buffer
    return memoryview(part).cast("B")


def _one_line(err: ValidationError) -> str:
    msgs = [f"{'.'.join(str(p) for p in e['loc']) or 'header'}: {e['msg']}" for e in err.errors()[:3]]
    more = f" (+{err.error_count() - 3} more)" if err.error_count() > 3 else ""
    return "; ".join(msgs) + more


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_MARKER = re.compile(rb"\xff+")  # a marker's 0xFF and the fill bytes (0xFF, any number) before it


def _encoded_size(encoding: str, buf: memoryview) -> tuple[int, int] | None:
    """(height, width) declared by a PNG/JPEG file's header, None if it has none (a jpeg: within its first
    MAX_JPEG_SEGMENTS segments)."""
    if encoding == "png":
        if len(buf) < 24 or buf[:8] != b"\x89PNG\r\n\x1a\n" or buf[12:16] != b"IHDR":
            return None
        return int.from_bytes(buf[20:24], "big"), int.from_bytes(buf[16:20], "big")
    if len(buf) < 4 or buf[:2] != b"\xff\xd8":
        return None
    i = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        fill = _MARKER.match(buf, i)  # in C: fill bytes one by one in Python took 8 s for 32 MiB of them
        if fill is None or fill.end() + 8 > len(buf):
            return None
        i = fill.end() - 1  # the marker's 0xFF
        marker = buf[i + 1]
        if marker in _SOF:
            return int.from_bytes(buf[i + 5 : i + 7], "big"), int.from_bytes(buf[i + 7 : i + 9], "big")
        i += 2 if marker == 0x01 or 0xD0 <= marker <= 0xD7 else 2 + int.from_bytes(buf[i + 2 : i + 4], "big")
    return None


def _check_payload(desc: Payload, part: Part, max_side: int) -> np.ndarray:
    """A payload after every check that decodes nothing: a raw one as its array (a zero-copy view), a png/jpeg one
    as its file's bytes (1-D uint8, for `_decode_file`)."""
    if max(desc.shape[:2]) > max_side:
        raise ProtocolError(f"{desc.name} of {desc.shape[0]}x{desc.shape[1]} exceeds the {max_side} px limit",
                            "too_large")
    buf = _buffer(part)
    if desc.encoding == "raw":
        if len(buf) != desc.nbytes:
            raise ProtocolError(f"{desc.name} payload has {len(buf)} bytes, shape {desc.shape} {desc.dtype} needs "
                                f"{desc.nbytes}", "bad_payload")
        array = np.frombuffer(buf, dtype=desc.dtype).reshape(desc.shape)
        if array.dtype == np.float16 and not np.isfinite(array).all():
            raise ProtocolError(f"{desc.name} contains NaN or infinite values", "bad_payload")
        return array
    if len(buf) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"{desc.name} {desc.encoding} payload of {len(buf)} bytes is too large", "too_large")
    if _encoded_size(desc.encoding, buf) != desc.shape[:2]:
        within = f" (a frame header within its first {MAX_JPEG_SEGMENTS} segments)" if desc.encoding == "jpeg" else ""
        raise ProtocolError(f"{desc.name} is not a {desc.encoding} file of size {desc.shape[0]}x{desc.shape[1]}"
                            f"{within}", "bad_payload")
    if desc.nbytes > MAX_COMPRESSION * len(buf) + 4096:  # a small file declaring a big frame: truncated or a bomb
        raise ProtocolError(f"{desc.name} {desc.encoding} file of {len(buf)} bytes cannot hold {desc.shape[0]}x"
                            f"{desc.shape[1]} pixels (over {MAX_COMPRESSION}:1)", "bad_payload")
    if desc.encoding == "jpeg" and (scans := bytes(buf).count(b"\xff\xda")) > MAX_JPEG_SCANS:  # SOS markers
        raise ProtocolError(f"{desc.name} jpeg file has {scans} scans, over {MAX_JPEG_SCANS} (each one decodes the "
                            "whole frame again)", "bad_payload")
    return np.frombuffer(buf, dtype=np.uint8)


def _decode_file(desc: Payload, data: np.ndarray) -> np.ndarray:
    """A checked png/jpeg payload's bytes (`_check_payload`) decoded to its descriptor's array."""
    try:
        array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        array = None
    if array is None or array.shape != desc.shape or array.dtype != np.uint8:
        got = "nothing" if array is None else f"{array.dtype} {array.shape}"
        raise ProtocolError(f"{desc.name} {desc.encoding} payload decodes to {got}, expected uint8 {desc.shape}",
                            "bad_payload")
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB) if array.ndim == 3 else array


def decode_header(part: Part) -> Header:
    """Validate the msgpack header part."""
    buf = _buffer(part)
    if len(buf) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(buf)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        obj = msgpack.unpackb(buf, raw=False, use_list=False, strict_map_key=True)
    except Exception as e:  # msgpack raises many types on malformed input; all mean "not a header"
        raise ProtocolError(f"header is not valid msgpack ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"header must be a map, got {type(obj).__name__}")
    if "v" not in obj:
        raise ProtocolError(f"header has no schema version 'v' (this build speaks {SCHEMA_VERSION})", "missing_field")
    if type(obj["v"]) is not int or obj["v"] != SCHEMA_VERSION:
        raise ProtocolError(f"unsupported schema version {obj['v']!r:.20} (this build speaks {SCHEMA_VERSION})",
                            "bad_version")
    if obj.get("kind") not in KINDS:
        raise ProtocolError(f"unknown kind {obj.get('kind')!r:.40}; expected one of {KINDS}",
                            "missing_field" if "kind" not in obj else "bad_field")
    try:
        return _HEADER.validate_python(obj)
    except ValidationError as e:
        missing = any(err["type"] == "missing" or "missing payload" in err["msg"] for err in e.errors())
        reason = "missing_field" if missing else "bad_field"
        raise ProtocolError(f"bad {obj['kind']} header: {_one_line(e)}", reason) from None


def decode(parts: list[Part], max_side: int = MAX_SIDE, admit: Callable[[Header], Any] | None = None,
           defer: bool = False) -> Message:
    """Validate and decode one multipart message; raw payloads are zero-copy views of the received parts.
    `admit`, when given, sees the validated header before any payload is decoded and may raise to refuse
    the message there (the node's identity, header and size checks: pipeline.admission). With `defer`, png/jpeg
    payloads are checked but not decoded (`Message.encoded`; `decode_files` decodes them): the node decodes a
    frame when it scores it, so a frame a newer one replaces while waiting is never decoded."""
    if not 2 <= len(parts) <= MAX_PARTS:
        raise ProtocolError(f"expected 2 to {MAX_PARTS} parts, got {len(parts)}")
    header = decode_header(parts[1])
    topic = bytes(_buffer(parts[0])[:200])
    if topic != header.topic:
        raise ProtocolError(f"topic {topic!r:.80} does not match header {header.topic!r}", "topic_mismatch")
    if len(parts) != 2 + len(header.payloads):
        raise ProtocolError(f"header announces {len(header.payloads)} payload(s), message has {len(parts) - 2}",
                            "bad_payload")
    if admit is not None:
        admit(header)
    arrays = {p.name: _check_payload(p, part, max_side) for p, part in zip(header.payloads, parts[2:], strict=True)}
    msg = Message(header, arrays, frozenset(p.name for p in header.payloads if p.encoding != "raw"))
    return msg if defer else decode_files(msg)


def decode_files(msg: Message) -> Message:
    """`msg` with its png/jpeg payloads decoded (ProtocolError `bad_payload` for one that does not decode)."""
    if not msg.encoded:
        return msg
    files = {p.name: _decode_file(p, msg.arrays[p.name]) for p in msg.header.payloads if p.name in msg.encoded}
    return Message(msg.header, {**msg.arrays, **files})
