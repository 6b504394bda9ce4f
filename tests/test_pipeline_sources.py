"""Camera stages over real sockets: folder, video file, reconnect with backoff, heartbeats, pacing, PUSH."""
from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from edge.frames import bit_depth
from edge.images import read_rgb, write_rgb
from pipeline import protocol as P
from pipeline.config import FolderSourceConfig, LineConfig, SyntheticSourceConfig, VideoSourceConfig
from pipeline.flow import encode_grant
from pipeline.sources import Camera, Capture, FolderReader, SourceError, SourceFatal, expected_frames, make_reader
from pipeline.transport import make_socket
from test_pipeline_node import wait_until


class Receiver:
    """An XSUB (or, for push cameras, PULL) socket connected to a camera; it grants a camera with flow: credit
    (folders, video files) all the credit it wants, as a node with room would."""

    def __init__(self, ctx, endpoint, push=False, source=None):
        self.sock = make_socket(ctx, zmq.PULL if push else zmq.XSUB)
        self.sock.connect(endpoint)
        self.grant = None if push or source is None else encode_grant(source, 10**6, "test")
        if not push:
            self.sock.send(b"\x01")

    def recv(self, timeout_ms):
        if self.grant is not None:
            self.sock.send(self.grant)
        return P.decode(self.sock.recv_multipart(copy=False)) if self.sock.poll(timeout_ms) else None


@contextmanager
def camera(cfg, reader=None):
    """Run a camera in a thread; yield a receiver connected to it, the camera and its stop event."""
    ctx, stop, ready = zmq.Context(), threading.Event(), []
    cam = Camera(cfg, reader, ctx)
    thread = threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True)
    thread.start()
    try:
        wait_until(lambda: bool(ready), timeout=5)
        yield Receiver(ctx, ready[0], cfg.pattern == "push", cfg.name), cam, stop
    finally:
        stop.set()
        thread.join(timeout=5)
        ctx.destroy(linger=0)
        assert not thread.is_alive()


def drain(sub, timeout=10.0) -> list[P.Message]:
    got, deadline = [], time.monotonic() + timeout
    while not got or got[-1].kind != "eos":
        assert time.monotonic() < deadline, "no end of stream"
        if (m := sub.recv(50)) is not None:
            got.append(m)
    return got


def frames_of(msgs):
    return [m for m in msgs if m.kind == "frame"]


def test_folder_source_with_masks_and_resize(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i:03d}.png"), np.full((80, 100, 3), 60 * i, np.uint8))
    (images / "notes.txt").write_text("not an image")
    mask = np.zeros((80, 100), np.uint8)
    mask[20:40, 20:40] = 255
    cv2.imwrite(str(masks / "001_mask.png"), mask)
    cfg = FolderSourceConfig(kind="folder", name="shelf", path=images, masks=masks, resize=(50, 40), fps=100)
    with camera(cfg) as (sub, cam, _):
        msgs = drain(sub)
    frames = frames_of(msgs)
    assert [f.header.seq for f in frames] == [0, 1, 2] and msgs[-1].header.frames == 3
    assert all(f.arrays["image"].shape == (40, 50, 3) and f.arrays["mask"].shape == (40, 50) for f in frames)
    assert [int(f.arrays["mask"].sum()) for f in frames] == [0, 100, 0]
    assert frames[2].arrays["image"][0, 0].tolist() == [120, 120, 120]


def test_a_folder_camera_counts_the_files_it_skips_as_unreadable(tmp_path, caplog):
    """A text file named .png, a PNG cut short: skipped with a warning, and counted (`unreadable`) in the camera's
    heartbeats and end of stream, so the run's summary can say frames were missed."""
    png = cv2.imencode(".png", np.full((40, 50, 3), 90, np.uint8))[1].tobytes()
    for name, data in (("000.png", png), ("001.png", b"not an image"), ("002.png", png[:60]), ("003.png", png)):
        (tmp_path / name).write_bytes(data)
    cfg = FolderSourceConfig(kind="folder", name="shelf", path=tmp_path, heartbeat_s=0.05)
    with camera(cfg) as (sub, cam, _):
        msgs = drain(sub)
    assert len(frames_of(msgs)) == msgs[-1].header.frames == 2
    assert msgs[-1].header.counters["unreadable"] == 2 and cam.counters["unreadable"] == 2
    assert "skipping unreadable image: cannot decode " in caplog.text and "001.png" in caplog.text


def test_a_frame_over_the_nodes_side_limit_is_sent_scaled_down_with_its_mask(tmp_path, caplog):
    """A 5000x3000 photo in a folder: the node refuses a side over its node.max_side (4096) before decoding, so the
    camera sends it at 4096x2458, its mask alike, and says so."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    cv2.imwrite(str(images / "000.png"), np.full((3000, 5000, 3), 90, np.uint8))
    mask = np.zeros((3000, 5000), np.uint8)
    mask[1000:2000, 1000:3000] = 255
    cv2.imwrite(str(masks / "000_mask.png"), mask)
    cfg = FolderSourceConfig(kind="folder", name="big", path=images, masks=masks, fps=100)
    with caplog.at_level(logging.WARNING), camera(cfg) as (sub, cam, _):
        msgs = drain(sub)
    (frame,) = frames_of(msgs)
    assert frame.arrays["image"].shape == (2458, 4096, 3) and frame.arrays["mask"].shape == (2458, 4096)
    assert abs(frame.arrays["mask"].mean() - (mask > 0).mean()) < 0.01  # the same share of the frame
    assert "a 5000x3000 frame is over 4096 px a side" in caplog.text and "sent at 4096x2458" in caplog.text


def test_video_file_source_ends_the_stream(tmp_path):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    with camera(VideoSourceConfig(kind="video", name="clip", uri=path, encoding="jpeg")) as (sub, cam, _):
        msgs = drain(sub)
    frames = frames_of(msgs)
    assert len(frames) == 5 and frames[0].header.payloads[0].encoding == "jpeg"
    assert frames[0].arrays["image"].shape == (48, 64, 3)


def test_a_missing_usb_camera_shows_opencvs_reasons_once_not_at_every_retry(capfd):
    """OpenCV printed its [ WARN ] lines for a camera index that is not there at each of the camera's retries."""
    reader = make_reader(VideoSourceConfig(kind="video", name="usb", uri=99))
    opens = []
    for _ in range(3):
        with pytest.raises(SourceError, match="cannot open 99"):
            reader.open()
        opens.append(capfd.readouterr().err.count("WARN"))
    reader.failed_opens = 0  # as after an open that worked: OpenCV's reasons show again
    with pytest.raises(SourceError):
        reader.open()
    assert opens[0] >= 1 and opens[1:] == [0, 0] and capfd.readouterr().err.count("WARN") >= 1


class FlakyReader:
    """Fails to open `failures` times, then yields `frames` frames and then hangs (a silent camera) or ends."""

    def __init__(self, failures=0, frames=3, hang=False):
        self.failures, self.frames, self.hang = failures, frames, hang
        self.opens = self.reads = 0
        self.release = threading.Event()

    def open(self):
        self.opens += 1
        if self.opens <= self.failures:
            raise SourceError("camera unplugged")

    def read(self):
        if self.reads >= self.frames:
            if self.hang:
                self.release.wait(5)
            return None
        self.reads += 1
        return Capture(np.zeros((32, 32, 3), np.uint8), None, time.time())

    def close(self):
        pass


def synthetic(**kw):
    return SyntheticSourceConfig(kind="synthetic", name="cam0", size=32, heartbeat_s=0.05, **kw)


def test_reconnects_with_exponential_backoff(tmp_path):
    reader = FlakyReader(failures=3)
    cfg = synthetic(backoff_initial_s=0.02, backoff_max_s=0.05)
    t0 = time.monotonic()
    with camera(cfg, reader) as (sub, cam, _):
        msgs = drain(sub)
    assert time.monotonic() - t0 >= 0.02 + 0.04 + 0.05  # 0.02, 0.04, then capped at 0.05
    assert len(frames_of(msgs)) == 3 and reader.opens == 4
    assert msgs[-1].header.counters["reconnects"] == 3
    assert "reconnecting" in {m.header.state for m in msgs if m.kind == "heartbeat"}


def test_gives_up_after_max_retries_with_an_end_of_stream(tmp_path):
    cfg = synthetic(backoff_initial_s=0.01, max_retries=2)
    with camera(cfg, FlakyReader(failures=100)) as (sub, cam, _):
        msgs = drain(sub)
    assert msgs[-1].header.frames == 0 and msgs[-1].header.counters["reconnects"] == 2


def test_silent_camera_keeps_heartbeating_with_a_growing_frame_age(tmp_path):
    reader = FlakyReader(frames=1, hang=True)
    with camera(synthetic(), reader) as (sub, cam, stop):
        ages, deadline = [], time.monotonic() + 5
        while len(ages) < 4:
            assert time.monotonic() < deadline
            m = sub.recv(50)
            if m is not None and m.kind == "heartbeat" and m.header.last_frame_age is not None:
                ages.append(m.header.last_frame_age)
                assert m.header.state == "streaming" and m.header.counters["sent"] == 1
        assert ages == sorted(ages) and ages[-1] > ages[0]
        reader.release.set()


def test_frame_rate_is_paced(tmp_path):
    with camera(synthetic(fps=40, frames=9)) as (sub, cam, _):
        msgs = drain(sub)
    captures = [f.header.t_capture for f in frames_of(msgs)]
    assert len(captures) == 9 and captures[-1] - captures[0] >= 8 / 40 * 0.9


def test_push_camera_and_stop_sends_end_of_stream(tmp_path):
    cfg = synthetic(pattern="push", bind=f"ipc://{tmp_path}/cam.sock", fps=200)
    with camera(cfg) as (sub, cam, stop):
        deadline = time.monotonic() + 5
        while (m := sub.recv(50)) is None or m.kind != "frame" or m.header.seq < 4:
            assert time.monotonic() < deadline
        stop.set()
        msgs = drain(sub)
    assert msgs[-1].kind == "eos" and msgs[-1].header.frames >= 5


class SizesReader(FlakyReader):
    """Yields frames of the given (height, width) sizes, then ends."""

    def __init__(self, sizes):
        super().__init__(frames=len(sizes))
        self.sizes = sizes

    def read(self):
        if self.reads >= len(self.sizes):
            return None
        h, w = self.sizes[self.reads]
        self.reads += 1
        return Capture(np.zeros((h, w, 3), np.uint8), None, time.time())


def test_frames_below_the_minimum_are_refused_at_the_source_with_a_clear_error(caplog):
    with camera(synthetic(), SizesReader([(31, 64), (64, 64), (16, 16), (0, 0), (33, 40)])) as (sub, cam, _):
        msgs = drain(sub)
    assert [m.arrays["image"].shape[:2] for m in frames_of(msgs)] == [(64, 64), (33, 40)]
    assert msgs[-1].header.counters["too_small"] == 3  # (0, 0): a frame a `crop` misses
    assert "below the minimum of 32x32 px" in caplog.text


def test_a_resize_below_the_minimum_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="greater than or equal to 32"):
        FolderSourceConfig(kind="folder", name="cam0", path=tmp_path, resize=(16, 64))


def test_a_folder_of_a_mono12_cameras_16_bit_files_is_read_at_the_bits_they_fill(tmp_path, caplog):
    """A Mono12 camera stores 0-4095 in 16-bit files: read as 16 bits it would be 1/16 as bright (16 grey levels).
    The folder's scale is the most any image so far fills, so a dark frame after a bright one keeps it;
    `bit_depth` pins it; a file of another depth is skipped with the reason."""
    bright = np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) % 4096
    dark = bright // 8  # max 511: alone it would be read as 10-bit values, 4x as bright
    for name, image in (("000", bright), ("001", dark)):
        cv2.imwrite(str(tmp_path / f"{name}.png"), image)
    cv2.imwrite(str(tmp_path / "002.tif"), np.ones((64, 80), np.float32))
    cv2.imwrite(str(tmp_path / "003.png"), dark)
    as_8bit = [np.rint(image / 4095 * 255).astype(np.uint8) for image in (bright, dark, dark)]

    caplog.set_level(logging.INFO, "pipeline.sources")
    reader = make_reader(FolderSourceConfig(kind="folder", name="mono12", path=tmp_path))
    reader.open()
    got = [reader.read().image for _ in range(3)]
    assert reader.read() is None
    for image, want in zip(got, as_8bit, strict=True):
        assert image.dtype == np.uint8 and image.shape == (64, 80, 3)
        assert np.abs(image[:, :, 0].astype(int) - want).max() <= 1 and (image == image[:, :, :1]).all()
    assert "skipping unreadable image: " in caplog.text and "002.tif is a float32 image" in caplog.text
    assert "mono12: 16-bit images, read as 12-bit values (000.png" in caplog.text
    cv2.imwrite(str(tmp_path / "float.hdr"), np.ones((64, 80, 3), np.float32))  # decodes, but to float32
    with pytest.raises(ValueError, match="float.hdr is a float32 image: convert it to 8 or 16 bits"):
        read_rgb(tmp_path / "float.hdr")

    pinned = make_reader(FolderSourceConfig(kind="folder", name="mono12", path=tmp_path, bit_depth=16))
    pinned.open()
    assert pinned.read().image.max() == 16  # 4095 / 257, rounded: what 16 bits make of a Mono12 frame


def test_a_hot_pixel_does_not_make_a_mono12_frame_read_16x_too_dark(tmp_path):
    """One pixel at 65535 in a Mono12 camera's file (a hot pixel, a glint) had it read as 16-bit values, 1/16 as
    bright: `ssdnet score` then called an outside user's defect normal (3.70 -> 0.88). A share of `OUTLIERS` of a
    frame's values may lie above the bits it fills, and saturate; a frame with more above is read at more bits."""
    mono12 = np.arange(128 * 160, dtype=np.uint16).reshape(128, 160) % 4096
    hot = mono12.copy()
    hot[5, 7] = 65535
    cv2.imwrite(str(tmp_path / "mono12.png"), mono12)
    cv2.imwrite(str(tmp_path / "hot.png"), hot)
    clean, got = read_rgb(tmp_path / "mono12.png"), read_rgb(tmp_path / "hot.png")
    assert bit_depth(hot) == bit_depth(mono12) == 12
    assert got[5, 7].tolist() == [255, 255, 255] and (np.delete(got.reshape(-1, 3), 5 * 160 + 7, axis=0)
                                                      == np.delete(clean.reshape(-1, 3), 5 * 160 + 7, axis=0)).all()
    glints = mono12.copy()
    glints[:1, :3] = 65535  # 3 values of 20,480 (1.5e-4): more than outliers
    assert bit_depth(glints) == 16


def test_a_jpeg_cut_short_is_refused_not_scored_with_grey_rows(tmp_path, caplog):
    """OpenCV decodes a JPEG cut short (a file still being written) and fills its missing rows with grey: it was
    scored as a frame. It is refused, a folder camera skips it naming the file; a whole JPEG with a trailer after its
    end-of-image marker (some cameras write one) still reads."""
    image = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    (tmp_path / "000.jpg").write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "001.jpg").write_bytes(data + bytes(range(256)) * 64)  # a 16 KB trailer (a motion photo's video)
    assert cv2.imread(str(tmp_path / "000.jpg")) is not None  # what OpenCV alone makes of it
    for cut in (len(data) * 2 // 3, 300, 10):  # in its image data, in its headers
        (tmp_path / "000.jpg").write_bytes(data[:cut])
        with pytest.raises(ValueError, match="000.jpg is a JPEG without its end-of-image marker: cut short"):
            read_rgb(tmp_path / "000.jpg")
    (tmp_path / "000.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert read_rgb(tmp_path / "001.jpg").shape == (128, 128, 3)
    reader = make_reader(FolderSourceConfig(kind="folder", name="jpegs", path=tmp_path))
    reader.open()
    assert reader.read().image.shape == (128, 128, 3) and reader.read() is None
    assert "skipping unreadable image: " in caplog.text and "000.jpg is a JPEG without" in caplog.text


def test_a_crop_keeps_a_fixture_beside_the_product_out_of_the_frames_and_masks(tmp_path, caplog):
    """`crop: [x, y, width, height]` cuts the region of interest out of every frame (and mask) before `resize`; a
    frame it reaches past gives the part inside it and a warning that says so; video frames alike."""
    (tmp_path / "images").mkdir(), (tmp_path / "masks").mkdir()
    frame = np.zeros((100, 160, 3), np.uint8)
    frame[:, :40] = 200  # the fixture
    frame[10:90, 40:] = np.arange(120, dtype=np.uint8)[None, :, None]  # the product
    mask = np.zeros((100, 160), np.uint8)
    mask[50:60, 100:110] = 255
    cv2.imwrite(str(tmp_path / "images" / "000.png"), frame[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "images" / "001.png"), frame[:64, :96, ::-1])  # a smaller frame
    cv2.imwrite(str(tmp_path / "masks" / "000_mask.png"), mask)
    cfg = FolderSourceConfig(kind="folder", name="line", path=tmp_path / "images", masks=tmp_path / "masks",
                             crop=(40, 10, 120, 80))
    reader = make_reader(cfg)
    reader.open()
    cap = reader.read()
    assert cap.image.shape == (80, 120, 3) and (cap.image[0, :, 0] == np.arange(120)).all()
    assert cap.mask.shape == (80, 120) and cap.mask.sum() == 100 and cap.mask[40:50, 60:70].all()
    assert "crop" not in caplog.text
    assert reader.read().image.shape == (54, 56, 3)  # 001 is 96x64: the crop's part inside it
    assert "line: crop [40, 10, 120, 80] (x, y, width, height) reaches past a 96x64 frame" in caplog.text

    resized = make_reader(cfg.model_copy(update={"resize": (60, 40)}))
    resized.open()
    cap = resized.read()
    assert cap.image.shape == (40, 60, 3) and cap.mask.shape == (40, 60) and cap.mask.sum() == 25
    missed = make_reader(cfg.model_copy(update={"crop": (100, 70, 40, 40), "resize": (60, 40)}))
    missed.open()  # 001 (96x64) has nothing inside this crop: an empty frame, which the camera skips as too small
    assert missed.read().image.shape == (40, 60, 3) and missed.read().image.size == 0
    outside = make_reader(cfg.model_copy(update={"crop": (200, 0, 40, 40)}))
    outside.open()  # a crop wholly off the frame is said to be so, not "only the part inside it is scored"
    assert outside.read().image.size == 0
    assert "crop [200, 0, 40, 40] (x, y, width, height) lies outside a 160x100 frame: nothing of it" in caplog.text
    assert "crop [200, 0, 40, 40] (x, y, width, height) reaches past" not in caplog.text

    clip = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 100))
    writer.write(frame[:, :, ::-1])
    writer.release()
    video = make_reader(VideoSourceConfig(kind="video", name="line", uri=clip, crop=(40, 10, 120, 80)))
    video.open()
    image = video.read().image
    assert image.shape == (80, 120, 3) and np.abs(image[:, :8].astype(int) - 200).min() > 100  # no fixture left


def test_a_looping_folder_none_of_whose_files_can_be_read_fails_not_spins(tmp_path):
    for name in ("000.png", "001.png"):
        (tmp_path / name).write_bytes(b"not an image")
    reader = FolderReader(FolderSourceConfig(kind="folder", name="shelf", path=tmp_path, loop=True))
    reader.open()
    with pytest.raises(SourceFatal, match="none of the 2 images"):
        reader.read()
    assert reader.unreadable == 2


def _png_claiming(height: int, width: int) -> bytes:
    """A small PNG whose header says it is height x width (its CRC mended): OpenCV refuses it by raising."""
    png = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    png[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    return bytes(png)


def test_a_folder_s_odd_names_and_masks_cost_no_frame_and_end_its_stream(tmp_path, caplog):
    """An outside audit's folder: a file name that is not UTF-8 (OpenCV given it crashed the process: a tif's page
    count, an overlay written for it), a mask whose header claims 40000x40000 px (OpenCV raised, the reader thread
    died and the camera hung without an end of stream) and a mask of half its image's size (the frame's header
    refused it and the camera raised). Each frame is sent, to the end of the stream, each odd mask said."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    frame = np.full((64, 80, 3), 90, np.uint8)
    for name in (b"000.png", b"001.png", b"002.png", "003_caf\xe9.tif".encode("latin-1")):
        (images / os.fsdecode(name)).write_bytes(cv2.imencode(Path(os.fsdecode(name)).suffix, frame)[1].tobytes())
    (masks / "000_mask.png").write_bytes(_png_claiming(40000, 40000))
    (masks / "001_mask.png").write_bytes(cv2.imencode(".png", np.full((32, 40), 255, np.uint8))[1].tobytes())
    cfg = FolderSourceConfig(kind="folder", name="shelf", path=images, masks=masks, fps=100)
    with camera(cfg) as (sub, cam, _):
        msgs = drain(sub)
    frames = frames_of(msgs)
    assert len(frames) == msgs[-1].header.frames == 4 and cam.failure is None
    assert "mask" not in frames[0].arrays and "more pixels than OpenCV reads" in caplog.text  # sent without it
    assert frames[1].arrays["mask"].shape == (64, 80) and frames[1].arrays["mask"].all()  # scaled to its image
    assert "mask 001_mask.png is 40x32, its image 80x64: scaled to the image" in caplog.text
    assert [int(f.arrays["mask"].sum()) for f in frames[2:]] == [0, 0]  # no mask file: a normal image
    written = tmp_path / os.fsdecode(b"overlay_\xe9.png")
    write_rgb(written, read_rgb(images / os.fsdecode("003_caf\xe9.tif".encode("latin-1"))))
    assert read_rgb(written).shape == (64, 80, 3)


def test_a_video_file_named_in_another_encoding_is_refused_in_words(tmp_path):
    """OpenCV given a file name that is not UTF-8 crashed the process (`ssdnet calibrate`, a video camera)."""
    path = tmp_path / os.fsdecode(b"line\xe9.mp4")
    path.write_bytes(b"\x00" * 64)
    cfg = VideoSourceConfig(kind="video", name="cam0", uri=str(path))
    assert expected_frames(cfg) is None
    with pytest.raises(SourceFatal, match="is not UTF-8 .* rename the file"):
        Camera(cfg).run(stop=None)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # run() raises the failure
def test_a_reader_that_raises_ends_its_stream_with_the_reason():
    """A fault of a reader's own (a library's exception, a bug) ended the reader thread, and the camera hung without
    an end of stream, its heartbeats still saying `streaming`."""
    class Broken:
        calls = 0

        def open(self):
            pass

        def read(self):
            self.calls += 1
            if self.calls > 2:
                raise RuntimeError("a driver fault")
            return Capture(np.full((48, 48, 3), 90, np.uint8), None, time.time())

        def close(self):
            pass

        def frame_count(self):
            return None

    cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=48, heartbeat_s=0.05)
    with camera(cfg, Broken()) as (sub, cam, _):
        msgs = drain(sub)
    assert len(frames_of(msgs)) == msgs[-1].header.frames == 2
    assert cam.failure == "RuntimeError: a driver fault"


@pytest.mark.parametrize("run_id", [True, False])
def test_a_camera_names_its_run_in_every_message_unless_told_not_to(run_id):
    """`run_id: false` for a line whose node or subscribers are older than the field (they refuse it): its messages
    are the same on the wire as before it."""
    cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=48, frames=2, heartbeat_s=0.05, run_id=run_id)
    with camera(cfg) as (sub, cam, _):
        msgs = drain(sub)
    assert {m.kind for m in msgs} >= {"frame", "eos"}
    assert {m.header.run for m in msgs} == ({cam.run_id} if run_id else {None})
    assert (cam.run_id is not None) == run_id
    if not run_id:
        assert all("run" not in P.wire_fields(m.header) for m in msgs)


def test_a_folder_or_video_files_frame_count_is_known_before_it_streams(tmp_path):
    """The progress bar of `ssdnet run` and `ssdnet calibrate` showed "N/?" for folder and video cameras, whose frame
    count is knowable: one pass of the folder's images, or of the video's CAP_PROP_FRAME_COUNT, bounded by `frames`;
    endless (None) for a looping one without `frames`, a live camera or a synthetic one."""
    (tmp_path / "frames").mkdir()
    for i in range(5):
        cv2.imwrite(str(tmp_path / "frames" / f"{i}.png"), np.full((40, 40, 3), i, np.uint8))
    (tmp_path / "frames" / "notes.txt").write_text("not an image")
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 40))
    for i in range(7):
        writer.write(np.full((40, 40, 3), i, np.uint8))
    writer.release()
    folder = FolderSourceConfig(kind="folder", name="cam", path=tmp_path / "frames")
    video = VideoSourceConfig(kind="video", name="cam", uri=str(tmp_path / "clip.avi"))
    for cfg, count in ((folder, 5), (video, 7)):
        assert expected_frames(cfg) == count
        assert expected_frames(cfg.model_copy(update={"frames": 3})) == 3
        assert expected_frames(cfg.model_copy(update={"frames": 30})) == count
        assert expected_frames(cfg.model_copy(update={"loop": True})) is None
        assert expected_frames(cfg.model_copy(update={"loop": True, "frames": 30})) == 30
    assert expected_frames(video.model_copy(update={"uri": 0})) is None  # a live camera: not opened to ask
    assert expected_frames(video.model_copy(update={"uri": str(tmp_path / "missing.avi")})) is None
    assert expected_frames(SyntheticSourceConfig(kind="synthetic", name="cam")) is None
    assert expected_frames(SyntheticSourceConfig(kind="synthetic", name="cam", frames=4)) == 4


def test_an_image_sequence_given_as_a_video_camera_streams_its_frames(tmp_path):
    """The config takes `frames/%06d.png` as a video camera's uri (docs/protocol.md section 10; the refusal of a still
    image points at it), but the camera's start-up check looked for a file of that very name and refused it: 'video
    file ... does not exist'."""
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i:06d}.png"), np.full((40, 40, 3), 50 * i, np.uint8))
    reader = make_reader(VideoSourceConfig(kind="video", name="cam", uri=str(tmp_path / "%06d.png")))
    reader.check()
    reader.open()
    assert len(list(iter(reader.read, None))) == 4
    empty = make_reader(VideoSourceConfig(kind="video", name="cam", uri=str(tmp_path / "none_%03d.png")))
    with pytest.raises(SourceFatal, match="no frame"):
        empty.check()


def test_a_camera_s_process_loads_no_torch(tmp_path):
    """A camera reads and sends frames: neither a line's camera process (its config unpickled) nor `ssdnet run LINE
    --stage camera:NAME` (the line's config loaded and checked, the command's parser built) loads the scorer. Each
    line's camera held torch, loaded by the config's defaults: 280 MB of memory against 100 MB, 1.3 s more to start,
    and an exit that took the CPU from the node's last frames; the stage command loaded it with `ssdnet eval`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "line.yaml"
    path.write_text(f"sources:\n  - {{name: cam0, kind: synthetic, size: 64, bind: 'tcp://127.0.0.1:{port}'}}\n")
    line = LineConfig(sources=[{"kind": "synthetic", "name": "cam0"}], node={"ssdnet": {"fit": {"steps": 5}}})
    code = ("import pickle, sys; from pipeline.sources import run_camera; import tools.cli; "
            "line = pickle.loads(sys.stdin.buffer.read()); assert line.node.ssdnet.fit.steps == 5; "
            f"rc = tools.cli.main(['run', {str(path)!r}, '--stage', 'camera:cam0', '--timeout', '0.5']); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(line), capture_output=True, check=True)
    assert out.stdout.decode().splitlines()[-1] == "0 []", (out.stdout, out.stderr[-2000:])
