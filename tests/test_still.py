"""A stopped line: the camera films one product frame after frame. Such frames are scored as any frame and teach the
camera nothing (edge.frames.change, edge.detector), so a stopped line raises no false event, nor does the line when
it starts again (docs/ablations.md section 76)."""
from __future__ import annotations

import numpy as np

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.frames import change, grey
from test_border import brick_crops
from test_pipeline_node import wait_until


def noisy(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The frame as a camera films it again: `sigma` grey levels of sensor noise."""
    return np.clip(frame + rng.normal(0.0, sigma, frame.shape), 0, 255).round().astype(np.uint8)


def test_change_tells_one_product_under_noise_from_another():
    rng = np.random.default_rng(0)
    a, b = brick_crops(2, seed=1)
    ref = grey(a)
    for sigma in (1, 2, 4):  # one product filmed again
        assert change(grey(noisy(a, sigma, rng)), ref) < 0.3
    assert change(grey(np.clip(a.astype(np.int16) + 12, 0, 255).astype(np.uint8)), ref) < 0.05  # a flicker
    assert change(grey(b), ref) > 0.6  # another product
    assert change(grey(np.roll(a, 2, axis=1)), ref) > 0.6  # the product moved 2 px
    assert change(grey(a[:, :300]), ref) == float("inf")  # another size


def test_a_camera_that_starts_on_a_stopped_line_raises_no_false_event():
    """An outside audit: 20 frames of one 96 px brick crop under 1 grey level of noise. Once the camera's memory
    entered its map (the 16th frame) every frame was an event at calibrated z ~20: the few cells of that one frame
    the memory never took (its own outliers) stood out. A still frame is scored and teaches nothing."""
    rng = np.random.default_rng(0)
    scene = brick_crops(1)[0][:96, :96]
    det = Detector(SSDNetConfig(), "cpu")
    first = det.process(noisy(scene, 1, rng))
    rows, scores = det.memory.count, list(det.calibrator.scores)
    detections = [det.process(noisy(scene, 1, rng)) for _ in range(19)]
    assert not first.still and all(d.still for d in detections)
    assert max(d.calibrated for d in detections) < 3.0, [round(d.calibrated, 1) for d in detections]
    assert det.memory.count == rows and list(det.calibrator.scores) == scores and len(det.border.frames) <= 1
    assert all(d.fit_steps == 0 and d.memory_added == 0 for d in detections)


def test_a_product_that_scored_high_when_the_line_stopped_is_reported_once_not_on_every_still_frame():
    """An outside audit: a camera that starts on a stopped line whose product scores high against the calibration
    prior (this 96 px brick crop: z 3.3) judged every still frame against that prior, an event on every frame (z 3.2
    each). A still frame is judged against the stopped product's own score: the product is reported once."""
    rng = np.random.default_rng(0)
    scene = brick_crops(8, seed=0)[5][:96, :96]
    det = Detector(SSDNetConfig(), "cpu")
    first, *stopped = [det.process(noisy(scene, 1, rng)) for _ in range(6)]
    assert first.calibrated >= 3.0 and all(d.still for d in stopped)
    assert max(abs(d.calibrated) for d in stopped) < 0.5, [round(d.calibrated, 2) for d in stopped]


def test_a_calibrated_camera_judges_a_defect_on_a_stopped_product_against_its_normal():
    """A review of the rule above, first written for every camera: once calibrated, the product the line stopped on
    (here z 1.9, a normal frame) raised the bar for a spot that then appeared on it to its own score: the spot scored
    1.9 against it, 3.6 against the camera's normal. A calibrated camera knows its normal: a still frame is judged
    by it."""
    rng = np.random.default_rng(0)
    crops = [c[:128, :128] for c in brick_crops(24, seed=2)]
    det = Detector(SSDNetConfig(), "cpu")
    for c in crops[:14]:
        det.process(c)
    product = det.process(crops[17])  # the line stops on this one
    stopped = [det.process(noisy(crops[17], 1, rng)) for _ in range(2)]
    spot = noisy(crops[17], 1, rng)
    spot[57:71, 57:71] = 60
    flagged = det.process(spot)
    assert not product.calibrating and 1.0 < product.calibrated < 3.0
    assert all(d.still for d in stopped) and flagged.still and flagged.calibrated >= 3.0, flagged.calibrated


def test_a_defect_on_a_stopped_line_is_still_flagged():
    """Still frames are scored against what the camera learnt while the line moved: a dark spot that appears on the
    stopped product is an event, and the camera does not learn it."""
    rng = np.random.default_rng(0)
    crops = [c[:128, :128] for c in brick_crops(13, seed=2)]
    det = Detector(SSDNetConfig(), "cpu")
    moving = [det.process(c) for c in crops[:12]]
    assert not any(d.still for d in moving) and not moving[-1].calibrating
    scene, scores = crops[12], list(det.calibrator.scores)
    det.process(scene)  # the line stops here: the last frame it learns from
    stopped = [det.process(noisy(scene, 1, rng)) for _ in range(4)]
    spot = noisy(scene, 1, rng)
    spot[50:64, 60:74] = 30
    flagged = det.process(spot)
    assert all(d.still for d in stopped) and flagged.still
    assert max(d.calibrated for d in stopped) < 3.0 <= flagged.calibrated
    assert len(det.calibrator.scores) == len(scores) + 1


def test_the_node_counts_still_frames(tmp_path):
    from adversary import frame_parts, node_line

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    frames = [image, image, noisy(image, 1, rng), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    with node_line(tmp_path, frames=5, fps=20, connect_cameras={0: ["line2"]},
                   factory=lambda source: Detector(SSDNetConfig(), "cpu")) as ln:
        for seq, frame in enumerate(frames):
            ln.intruders[0].send(frame_parts("line2", seq=seq, image=frame))
        wait_until(lambda: ln.node.counters.source("line2")["scored"] == 4, timeout=60)
        assert ln.node.counters.source("line2")["still"] == 2


def test_a_new_product_that_stops_under_the_camera_still_moves_it():
    """A reviewer's hole: the first frame of a new product, far above the old product's normal, taught nothing but
    became the scene the next frames were compared with; the line stopping there, its frames were still, none moved
    the camera, and each was an event against the old product's normal. The reference is a frame it learnt from."""
    from edge.synthetic import texture
    from test_memory import cropper, on_brick

    rng = np.random.default_rng(0)
    brick, gravel = texture("brick", 160, np.random.default_rng(1)), texture("gravel", 160, np.random.default_rng(1))
    crop = cropper(rng)
    det = on_brick(SSDNetConfig(), crop, brick)
    product = crop(gravel)
    detections = [det.process(product)] + [det.process(noisy(product, 1, rng)) for _ in range(5)]
    moved = [d.normal_moved for d in detections]
    assert any(moved), [round(d.calibrated, 1) for d in detections]
    assert max(d.calibrated for d in detections[moved.index(True) + 1:]) < 3.0
