"""Every frame size from 32x32 up scores, square or not, odd or even, in the detector (every scorer
configuration), `ssdnet score`, `ssdnet eval` and every baseline; smaller frames get a clear error."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import MIN_SIDE, SSDNetConfig, parse_config
from edge.detector import Detector
from edge.frames import FrameError, working_size
from edge.scorers import graph_size
from edge.synthetic import draw_defect, texture
from tools.cli import main
from tools.eval.baselines import BASELINES

CONFIGS = {  # the default, the fit-free preset, the reconstruction maps alone (each with short fits)
    "default": {},
    "self-similarity": {"score": {"pixel_weight": 0, "perceptual_weight": 0}},
    "reconstruction": {"score": {"knn_weight": 0, "pixel_weight": 1, "perceptual_weight": 1, "map_units": "std",
                                 "image_score": "map"}},
}
sides = st.integers(MIN_SIDE, 200)


def _cfg(extra: dict) -> SSDNetConfig:
    base = {"model": {"base_channels": 8}, "fit": {"steps": 1, "warm_steps": 1}}
    return parse_config(SSDNetConfig, {**base, **extra})


@pytest.fixture(scope="module")
def detectors() -> dict[str, Detector]:
    return {name: Detector(_cfg(extra)) for name, extra in CONFIGS.items()}


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return cv2.resize(texture("gravel", 128, np.random.default_rng(seed)), (w, h), interpolation=cv2.INTER_AREA)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=sides, w=sides, name=st.sampled_from(sorted(CONFIGS)))
def test_detector_scores_any_size(detectors, h, w, name):
    det = detectors[name]
    det.reset()
    for seed in (0, 1):  # a cold fit, then a warm one
        d = det.process(_frame(h, w, seed))
        assert d.anomaly_map.shape == (h, w)
        assert np.isfinite(d.anomaly_map).all() and np.isfinite(d.score)


@settings(max_examples=8, deadline=None)
@given(h=sides, w=sides)
def test_baselines_score_any_size(h, w):
    image = _frame(h, w)
    for name, baseline in BASELINES.items():
        m = baseline(image)
        assert m.shape == (h, w), name
        assert np.isfinite(m).all(), name


def test_a_4k_frame_is_scored_at_the_working_size(detectors):
    det = detectors["self-similarity"]
    det.reset()
    d = det.process(_frame(2160, 3840))
    assert d.anomaly_map.shape == (2160, 3840) and np.isfinite(d.anomaly_map).all()
    h, w = working_size(2160, 3840, det.cfg.max_pixels)
    assert h * w <= det.cfg.max_pixels and abs(w / h - 3840 / 2160) < 0.01


@pytest.mark.parametrize(("h", "w"), [(32, 32768), (40, 30000), (2160, 3840), (5000, 33), (33, 1 << 20)])
def test_the_working_size_keeps_within_max_pixels_or_says_why(h, w):
    """A 100000x32 strip was scored at 55901x32: 1.7x max_pixels (a 10^6 px strip would be 17x)."""
    max_pixels = 1 << 20
    try:
        sh, sw = working_size(h, w, max_pixels)
    except FrameError as e:
        assert f"a {w}x{h} frame cannot be scaled down to max_pixels" in str(e)
        assert h * w > max_pixels and min(h, w) * max(h, w) * (MIN_SIDE / min(h, w)) ** 2 > max_pixels
        return
    assert sh * sw <= max_pixels and min(sh, sw) >= MIN_SIDE
    assert abs(sw / sh - w / h) < 0.02 * w / h


def test_a_strip_too_long_to_scale_is_a_clear_error(detectors):
    with pytest.raises(FrameError, match="cut it into shorter tiles"):
        detectors["self-similarity"].process(np.zeros((32, 40000), np.uint8))


@pytest.mark.parametrize("shape", [(MIN_SIDE - 1, 100), (100, 8), (0, 0)])
def test_too_small_a_frame_is_a_clear_error(detectors, shape):
    with pytest.raises(FrameError, match="below the minimum of 32x32"):
        detectors["self-similarity"].process(np.zeros((*shape, 3), np.uint8))


def test_the_widest_settings_allowed_score_the_smallest_frame_or_name_the_key():
    """`score.smooth_sigma` at its bound, 21, scores a 32 px frame (its padded map is 64 px); a self-similarity grid too
    coarse for its k neighbours says which keys set it."""
    rng = np.random.default_rng(0)
    frame = texture("gravel", MIN_SIDE, rng)
    widest = Detector(parse_config(SSDNetConfig, {"score": {"smooth_sigma": 21}}), "cpu")
    assert np.isfinite(widest.process(frame).score)
    with pytest.raises(ValueError, match=r"too small for k=5 neighbours \(score.knn_k, and score.knn_cell"):
        Detector(parse_config(SSDNetConfig, {"score": {"knn_cell": 64}}), "cpu").process(texture("gravel", 64, rng))


def test_a_drawn_defect_in_an_odd_frame_is_found(detectors):
    """The size handling keeps the map aligned with the frame: the defect's pixels score high."""
    rng = np.random.default_rng(3)
    image, mask = draw_defect(_frame(97, 161, 3), rng, "hole")
    det = detectors["self-similarity"]
    det.reset()
    amap = det.process(image).anomaly_map
    assert amap[mask].mean() > np.quantile(amap[~mask], 0.9)


def test_score_and_eval_take_odd_non_square_frames(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "odd"
    for i, (h, w) in enumerate([(111, 256), (256, 110), (33, 47)]):
        for kind in ("good", "hole"):
            folder = root / "tiles" / "test" / kind
            folder.mkdir(parents=True, exist_ok=True)
            image = _frame(h, w, i)
            if kind == "hole":
                image, mask = draw_defect(image, rng, "hole")
                gt = root / "tiles" / "ground_truth" / kind
                gt.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(gt / f"{i:03d}_mask.png"), mask.astype(np.uint8) * 255)
            cv2.imwrite(str(folder / f"{i:03d}.png"), image[:, :, ::-1])
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("model: {base_channels: 8}\nfit: {steps: 1, warm_steps: 1}\n")
    out = tmp_path / "eval.json"
    assert main(["eval", str(root), "--config", str(cfg), "--mode", "stream", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["baselines"]) == set(BASELINES)
    assert 0.5 < result["mean"]["pixel_auroc"] <= 1.0
    images = sorted((root / "tiles" / "test" / "good").glob("*.png"))
    assert main(["score", *map(str, images), "--config", str(cfg), "--out", str(tmp_path / "scored")]) == 0
    lines = (tmp_path / "scored" / "scores.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(np.isfinite(json.loads(line)["score"]) for line in lines)


def test_a_camera_whose_frame_size_changes_keeps_its_model_in_the_node(tmp_path):
    """A camera sending frames of four sizes (as a folder of crops does) is scored on every frame by one model:
    its version counts on, its memory keeps what earlier sizes gave it, and each map has its frame's size."""
    from adversary import control_parts, frame_parts, node_line, until_eos, wait_until

    sizes = [(64, 64), (48, 80), (72, 56), (64, 64), (33, 47), (80, 48)]
    ssdnet = {"model": {"base_channels": 8}, "fit": {"steps": 1, "warm_steps": 1}, "score": {"backend": "torch"},
              "memory": {"delay_frames": 0}}
    # the refusal's window wider than any run's: on a loaded machine the first four frames took more than the
    # default 10 s and the fifth was built a graph instead (CI, 2026-12-07)
    with node_line(tmp_path, frames=3, fps=20, connect_cameras={0: ["crops"]}, factory=None, ssdnet=ssdnet,
                   threshold=0.0, min_model_rebuild_s=3600) as ln:
        rows = []  # the camera's memory after each frame
        for seq, (h, w) in enumerate(sizes):
            ln.intruders[0].send(frame_parts("crops", seq=seq, image=_frame(h, w, seq)))
            wait_until(lambda n=seq + 1: ln.node.counters.source("crops")["scored"] == n, timeout=60)
            rows.append(ln.node.detectors["crops"].memory.count)
        ln.intruders[0].send(control_parts("eos", "crops", seq=len(sizes) - 1, frames=len(sizes)))
        msgs = until_eos(ln.sub, ("cam0", "crops"), timeout=60)
        node = ln.node
        crops = [m for m in msgs if m.kind == "anomaly" and m.source == "crops"]
        assert [m.arrays["map"].shape for m in crops] == sizes
        assert [m.header.model_version for m in crops] == list(range(1, len(sizes) + 1))  # never a new model
        assert node.counters.rejected["shape_change"] == 0 and node.counters.source("crops")["rejected"] == 0
        assert rows == sorted(rows) and rows[-1] > rows[0] > 0  # nothing forgotten when the size changed


def test_on_onnxruntime_frames_of_mixed_sizes_that_pad_to_one_input_size_share_its_graph(tmp_path):
    """On ONNX Runtime the frame's size is its graph's input: a camera's frames of four sizes that pad to 64x64 are
    all scored by one graph (a graph per frame size before: the second size was refused as shape_change for
    node.min_model_rebuild_s); a frame of another input size that soon still is, its graph yet to be built."""
    from adversary import frame_parts, node_line, wait_until

    sizes = [(64, 64), (50, 60), (33, 47), (60, 40), (100, 64)]  # the last pads to 128x64
    ssdnet = {"model": {"base_channels": 8}, "fit": {"steps": 1, "warm_steps": 1}, "score": {"backend": "onnxruntime"}}
    # the refusal's window wider than any run's: on a loaded machine the first four frames took more than the
    # default 10 s and the fifth was built a graph instead (CI, 2026-12-07)
    with node_line(tmp_path, frames=3, fps=20, connect_cameras={0: ["crops"]}, factory=None, ssdnet=ssdnet,
                   threshold=0.0, min_model_rebuild_s=3600) as ln:
        node = ln.node
        for seq, (h, w) in enumerate(sizes):
            ln.intruders[0].send(frame_parts("crops", seq=seq, image=_frame(h, w, seq)))
        wait_until(lambda: node.counters.source("crops")["scored"] + node.counters.rejected["shape_change"] == 5,
                   timeout=60)
        assert node.counters.source("crops")["scored"] == 4 and node.counters.rejected["shape_change"] == 1
        assert dict(node.frame_sizes["crops"]) == {(64, 64): (60, 40)}  # its graph, and the last frame it scored
        assert node.detectors["crops"].backend.sessions_created == 1


def test_the_graph_a_frame_is_scored_with():
    """ONNX Runtime's: the frame padded to multiples of 64 (fit.scales' 8 x 8), unless the far cells' term holds the
    frame's size as a constant; TensorRT's (the frame's size a constant) and torch's (none): the frame's size."""
    cfg = SSDNetConfig()
    assert graph_size("onnxruntime", cfg, 50, 130) == (64, 192) and graph_size("onnxruntime", cfg, 64, 64) == (64, 64)
    assert graph_size("tensorrt", cfg, 50, 130) == graph_size("torch", cfg, 50, 130) == (50, 130)
    far = parse_config(SSDNetConfig, {"score": {"knn_far_weight": 1.0}})
    assert graph_size("onnxruntime", far, 50, 130) == (50, 130)


def test_a_frame_the_detector_refuses_costs_the_node_that_frame_not_the_camera_s_model():
    """With node.max_frame_pixels above ssdnet.max_pixels a too-thin strip reaches the detector: its FrameError made
    the node drop the camera's model, as for a detector that broke."""
    from pipeline import protocol as P
    from pipeline.config import NodeConfig
    from pipeline.node import EdgeNode
    from test_pipeline_node import FastDetector

    class Refusing(FastDetector):
        def process(self, image):
            if image.shape[1] > 16 * image.shape[0]:
                raise FrameError("a strip")
            return super().process(image)

    def frame(seq: int, h: int, w: int) -> P.Message:
        image = np.zeros((h, w, 3), np.uint8)
        return P.Message(P.FrameHeader(kind="frame", source="cam0", seq=seq, t_capture=1.0, stamps={"capture": 1.0},
                                       payloads=(P.describe("image", image),)), {"image": image})

    node = EdgeNode(NodeConfig(), (), Refusing)
    node._process(frame(0, 64, 64))
    model = node.detectors["cam0"]
    node._process(frame(1, 32, 1024))
    node._process(frame(2, 64, 64))
    assert node.detectors["cam0"] is model and model.calls == 2
    assert (node.counters.source("cam0")["failed"], node.counters.source("cam0")["scored"]) == (1, 2)


def test_a_frame_recalled_as_a_surface_the_camera_knew_keeps_its_size_when_scaled_down():
    """A frame over `max_pixels` that shows a surface the camera knew is processed again as that surface's: it was
    passed on at its working size, so its map came back at that size, not the frame's (the node refused the map)."""
    det = Detector(parse_config(SSDNetConfig, {"max_pixels": 96 * 72, "memory": {"size_mb": 0}}))
    det._recall = lambda *args: True  # the frame shows a kept surface
    frame = texture("gravel", 192, np.random.default_rng(0))[:144]
    d = det.process(frame)
    assert d.normal_recalled and d.anomaly_map.shape == frame.shape[:2]
