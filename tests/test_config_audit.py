"""An audit of values a config accepted and then failed on: each is refused when the config loads, naming its key
(exit 2 at the command line, no traceback), or said as the torch scorer says it."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from edge.config import ConfigError, SSDNetConfig, load_config, parse_config
from edge.detector import Detector
from pipeline.config import LineConfig, load_line_config
from pipeline.sources import crop_outside
from tools.cli import main as cli_main


def line(source: dict | None = None, **rest) -> dict:
    return {"sources": [{"kind": "synthetic", "name": "a", "frames": 1, **(source or {})}], **rest}


def refusal(cls, data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(cls, data, "line.yaml")
    return str(e.value)


def test_a_max_frame_pixels_under_the_smallest_frame_is_refused():
    """`max_frame_pixels: 256` with `min_side: 1` loaded, and every frame was downscaled to 16x16 and failed in the
    detector (below the minimum of 32x32 px)."""
    text = refusal(LineConfig, line(node={"min_side": 1, "max_frame_pixels": 256}))
    assert "node: the scorer's smallest frame, 32^2 (1024) must be at most max_frame_pixels (256)" in text
    parse_config(LineConfig, line(node={"min_side": 1, "max_frame_pixels": 1024}))


def test_an_fps_whose_wait_overflows_is_refused():
    """`fps: 1e-12` loaded; the camera's wait for its second frame raised OverflowError in its reader thread (a
    traceback) and the camera sent nothing more, for ever without --timeout."""
    text = refusal(LineConfig, line({"fps": 1e-12}))
    assert "sources.0.synthetic.fps: 1e-12 is one frame every 1e+12 s: at least 1.16e-05 (a frame a day)" in text
    parse_config(LineConfig, line({"fps": 1 / 3600}))  # a frame an hour: fine


def test_a_timeout_past_a_year_is_refused_in_the_config_and_on_the_command_line(tmp_path, capsys):
    """`timeout_s: 1e12` (or --timeout 1e12) loaded; a stage's timer thread raised OverflowError (a traceback), and
    the stage ran without its timeout."""
    assert "timeout_s: Input should be less than or equal to 31622400" in refusal(LineConfig, line(timeout_s=1e12))
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(line()))
    with pytest.raises(SystemExit) as e:
        cli_main(["run", str(path), "--out", str(tmp_path / "out"), "--stage", "node", "--timeout", "1e12"])
    assert e.value.code == 2
    assert "--timeout: must be above 0 and at most 3.16224e+07, got 1e12" in capsys.readouterr().err


def test_a_local_statistics_window_wider_than_the_smallest_frame_is_refused(tmp_path, capsys):
    """`knn_stats_sigma: 64` loaded, and every frame padded to under 193 px failed in torch's padding ("Padding size
    should be less than the corresponding input dimension"), naming no key. The bound is smooth_sigma's, whose hint
    also named a value it refused (10.5 at fit.scales [2])."""
    text = refusal(SSDNetConfig, {"score": {"knn_stats_sigma": 64}})
    assert "score.knn_stats_sigma 64 blurs 192 px a side, too wide for the 64 px map of the smallest frame" in text
    assert "at most 21.1 here" in text
    for key in ("knn_stats_sigma", "smooth_sigma"):
        assert "at most 10.4 here" in refusal(SSDNetConfig, {"score": {key: 10.5}, "fit": {"scales": [2]}})
        parse_config(SSDNetConfig, {"score": {key: 10.4}, "fit": {"scales": [2]}})
    parse_config(SSDNetConfig, {"score": {"knn_stats_sigma": 64, "knn_stats_weight": 0}})  # not read: fine
    path = tmp_path / "ssdnet.yaml"
    path.write_text("score: {knn_stats_sigma: 64}\n")
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    assert cli_main(["score", str(image), "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "score.knn_stats_sigma 64" in err and "Traceback" not in err
    det = Detector(parse_config(SSDNetConfig, {"score": {"knn_stats_sigma": 21.1}}), device="cpu")
    rng = np.random.default_rng(0)
    d = det.process((rng.random((32, 40, 3)) * 255).astype(np.uint8))
    assert np.isfinite(d.score)


def test_a_loss_of_zero_weights_is_refused_where_the_u_net_is_fitted():
    """`loss: {pixel_weight: 0, perceptual_weight: 0}` loaded with the reconstruction maps on, and the U-Net's fit ran
    its steps on a loss of 0. The default fits nothing, so there the loss is not read and is taken."""
    zero = {"pixel_weight": 0, "perceptual_weight": 0}
    text = refusal(SSDNetConfig, {"loss": zero, "score": {"pixel_weight": 0.1}})
    assert "loss.pixel_weight and loss.perceptual_weight are both 0" in text
    parse_config(SSDNetConfig, {"loss": zero})


def _alias_bomb(depth: int, key: str) -> str:
    """A YAML file of a few hundred bytes whose `key` holds 9^depth items (each level 9 aliases of the last)."""
    lines = ["x0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, depth)]
    return "\n".join(lines) + f"\n{key}: *a{depth - 1}\n"


@pytest.mark.parametrize("key", ["node", "sources"])
def test_a_huge_value_where_a_section_goes_is_named_in_a_line(tmp_path, key):
    """A section given a list of 9^7 items (a 600-byte file) printed its whole repr: a 25 MB error message, and
    seconds and gigabytes more for each level."""
    path = tmp_path / "line.yaml"
    path.write_text(_alias_bomb(7, key))
    with pytest.raises(ConfigError) as e:
        load_line_config(path)
    text = str(e.value)
    assert f"{key}" in text and "a section of its own keys" in text and len(text) < 5000
    path.write_text("fit: [" + ", ".join(["1"] * 10_000) + "]\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "fit: a section of its own keys (a mapping, `key: value` lines), not [1, 1, 1, 1, ...]" in str(e.value)


def test_onnxruntime_refuses_a_frame_too_small_for_knn_k_as_torch_does():
    """`knn_k: 64` on a 64x64 frame (8x8 cells): torch refused it naming score.knn_k; the onnxruntime graph, which
    takes the frame's size as an input, scored the padding as neighbours: a raw score of 2.9e17, an event over the
    whole frame."""
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    for backend in ("torch", "onnxruntime"):
        cfg = parse_config(SSDNetConfig, {"score": {"knn_k": 64, "backend": backend}})
        with pytest.raises(ValueError, match="a 8x8 feature grid is too small for k=64 neighbours"):
            Detector(cfg, device="cpu").process(image)


def test_a_memory_budget_no_frame_fits_is_refused():
    """`node.memory_budget_mb: 1e-6` loaded; the node warned at its start and refused every frame (memory_budget):
    "no frame was scored", exit 1 after the whole run."""
    text = refusal(LineConfig, line(node={"memory_budget_mb": 1e-6}))
    assert "node: memory_budget_mb (1e-06) cannot hold one camera's model and the scoring of the smallest frame " \
           "(32x32), so every frame would be refused: at least" in text
    parse_config(LineConfig, line(node={"memory_budget_mb": 125}))  # one camera at 32x32 fits: taken
    parse_config(LineConfig, line(node={"memory_budget_mb": None}))


def _run_refused(tmp_path, capsys, data: dict) -> str:
    """`ssdnet run` of `data`: exit 2 before any stage starts (no OUT/summary.json), and the error it printed."""
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli_main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / "summary.json").exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_an_event_log_or_checkpoint_dir_of_the_wrong_kind_is_refused_before_the_line_starts(tmp_path, capsys):
    """`node.event_log` an existing folder, or `node.checkpoint_dir` an existing file: the cameras and the node
    started, then the node failed to open it ("node failed to start: ...", exit 1)."""
    folder, file = tmp_path / "events", tmp_path / "models"
    folder.mkdir()
    file.write_text("")
    err = _run_refused(tmp_path, capsys, line(node={"event_log": str(folder)}))
    assert f"node.event_log {folder} is a folder: name the SQLite file of the event log" in err
    err = _run_refused(tmp_path, capsys, line(node={"checkpoint_dir": str(file)}))
    assert f"node.checkpoint_dir {file} is a file: name a folder" in err


@pytest.mark.parametrize("loop", [False, True])
def test_a_folder_source_without_images_is_refused_before_the_line_starts(tmp_path, capsys, loop):
    """A `kind: folder` source on a folder with no image file (looping or not) loaded, and its camera failed to start
    ("a failed to start: no images ...", exit 1)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    source = {"kind": "folder", "name": "a", "path": str(empty), "loop": loop}
    err = _run_refused(tmp_path, capsys, {"sources": [source]})
    assert f"sources[a].path {empty}: no images (.png" in err and "a folder source needs at least one" in err


@pytest.mark.parametrize("kind", ["folder", "video"])
def test_a_crop_outside_the_first_frame_is_refused_before_the_line_starts(tmp_path, capsys, kind):
    """A `crop` that misses a folder's or a video file's 96x64 frames wholly: every frame was skipped as too small,
    and the run ended with "no frame was scored" (exit 1) after all of them. A crop that overlaps them is taken."""
    frame = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    if kind == "folder":
        (tmp_path / "frames").mkdir()
        cv2.imwrite(str(tmp_path / "frames" / "000.png"), frame)
        source = {"kind": "folder", "name": "a", "path": str(tmp_path / "frames")}
    else:
        writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
        writer.write(frame)
        writer.release()
        source = {"kind": "video", "name": "a", "uri": str(tmp_path / "clip.avi")}
    for x, y in [(96, 0), (0, 64), (500, 500)]:
        err = _run_refused(tmp_path, capsys, {"sources": [{**source, "crop": [x, y, 32, 32]}]})
        assert f"sources[a].crop [{x}, {y}, 32, 32] (x, y, width, height) lies outside its first frame, 96x64 px" in err
    overlapping = parse_config(LineConfig, {"sources": [{**source, "crop": [64, 32, 64, 64]}]}).sources[0]
    first = tmp_path / "frames" / "000.png" if kind == "folder" else None  # (the pre-flight's listing of the folder)
    assert crop_outside(overlapping, first) is None  # overlapping: the part inside is scored


@pytest.mark.parametrize("key", ["score.pixel_weight", "score.perceptual_weight", "score.knn_weight",
                                 "score.knn_stats_weight", "loss.pixel_weight", "loss.perceptual_weight",
                                 "memory.weight"])
def test_a_weight_that_overflows_the_maps_is_refused(key):
    """`score.knn_weight: 1e300` (or another map's, the loss's, the memory's) loaded; every frame's fp32 map was inf,
    each scored as its worst finite value and logged `non-finite anomaly map` (the fit's loss: every step diverged).
    A million, where the other weights already count for nothing, is taken."""
    section, name = key.split(".")
    text = refusal(SSDNetConfig, {section: {name: 1e300}})
    assert f"{key}: Input should be less than or equal to 1000000" in text
    parse_config(SSDNetConfig, {section: {name: 1e6}})
