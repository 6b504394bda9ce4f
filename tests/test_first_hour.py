"""What a new user meets first: `ssdnet score` and `ssdnet calibrate` on a few files, readable overlays and regions,
clear errors for a missing or unreadable video, and a summary without None after Ctrl-C."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.images import write_rgb
from edge.overlay import annotated_overlay, scale_range
from edge.synthetic import draw_defect, sample, texture
from pipeline import protocol as P
from pipeline.config import VideoSourceConfig
from pipeline.launcher import print_summary, run_line
from pipeline.regions import find_regions
from pipeline.sinks import JsonLines, ScoresSink
from pipeline.sources import Camera, SourceFatal
from pipeline.stages import LineError
from test_pipeline_launcher import anomaly, line_config
from test_pipeline_node import FastDetector
from tools.calibrate import _reader, suggest
from tools.cli import main


def border_map(h=240, w=320, seed=0) -> np.ndarray:
    """A good frame's self-similarity map: noise around 0.3, rising toward the right border (as measured)."""
    rng = np.random.default_rng(seed)
    amap = 0.3 + 0.01 * rng.standard_normal((h, w))
    amap[:, -12:] += np.linspace(0, 0.08, 12)
    return amap.astype(np.float32)


def test_a_good_frame_gets_no_boxes_glued_to_its_borders_and_a_defect_gets_one():
    amap = border_map()
    loose = find_regions(amap, 3.0, 16)
    assert loose and any(r.bbox[0] + r.bbox[2] == 320 for r in loose)  # the bug: the border rise comes out as boxes
    assert find_regions(amap, 3.0, 16, min_peak=0.73) == ()
    amap[100:130, 150:180] = 0.9
    (region,) = find_regions(amap, 3.0, 16, min_peak=0.73)
    assert region.bbox == (150, 100, 30, 30) and region.peak == pytest.approx(0.9)


def test_an_event_says_where_even_when_its_map_stays_under_the_threshold():
    # the score reads the feature distance before the map's spacing term, so a frame can be an event whose map
    # peaks under the threshold (the demo's grass #31: score 5.9, map 2.4): it had no box
    amap = border_map()
    amap[100:130, 150:180], amap[20:26, 40:46] = 0.65, 0.6
    assert find_regions(amap, 3.0, 16, min_peak=0.73) == ()
    (region,) = find_regions(amap, 3.0, 16, min_peak=0.73, event=True)  # the highest-peaked component
    assert region.bbox == (150, 100, 30, 30) and region.peak == pytest.approx(0.65)
    amap[20:26, 40:46] = 0.9  # a component that reaches the threshold: only it, as for any frame
    assert [r.bbox for r in find_regions(amap, 3.0, 16, min_peak=0.73, event=True)] == [(40, 20, 6, 6)]
    assert find_regions(amap, 3.0, 16, max_regions=0, min_peak=0.95, event=True) == ()


def test_a_defect_over_much_of_the_frame_is_outlined_where_the_map_passes_the_threshold():
    # real-dev's frays after 200 warm-up frames: maps peaking at 6.3-6.9 with not one pixel 3 std above their mean
    amap = border_map()
    amap[:, :150] = 0.9  # nearly half the frame
    assert not ((amap - amap.mean()) > 3.0 * amap.std()).any()
    (region,) = find_regions(amap, 3.0, 16, min_peak=0.73)
    assert region.bbox == (0, 0, 150, 240) and region.peak == pytest.approx(0.9)
    assert find_regions(amap, 3.0, 16) == ()  # without the threshold: the frame's own spread alone


def test_overlays_share_one_colour_scale_so_a_good_frame_stays_blue():
    image = np.full((64, 64, 3), 128, np.uint8)
    good = annotated_overlay(None, np.full((64, 64), 0.35, np.float32), 0.4, 0.73)
    bad_map = np.full((64, 64), 0.35, np.float32)
    bad_map[20:40, 20:40] = 1.2
    bad = annotated_overlay(image, bad_map, 1.1, 0.73, [(20, 20, 20, 20)])
    assert good.shape == (64 + 44, 220, 3)  # the frame, then verdict, score and colour scale below it
    assert good[:64, :64, 2].mean() > 100 and good[:64, :64, 0].mean() < 10  # all blue
    red, blue = bad[30, 30].astype(int), bad[5, 5].astype(int)
    assert red[0] - red[2] > 50 and blue[2] - blue[0] > 50  # the defect red, the rest blue
    assert tuple(bad[20, 25]) == tuple(bad[39, 25]) == (255, 255, 255)  # its box
    assert scale_range(0.73) == (0.365, 1.095) and scale_range(0.73, (0, 2)) == (0, 2)
    assert not np.array_equal(good[64:, :30], bad[64:, :30])  # OK vs ANOMALY badge


def test_a_grey_product_filmed_to_a_video_file_raises_events_where_its_frames_do(tmp_path):
    """A colour camera's video of a grey product is not exactly grey: its colour varies by ~0.01 grey levels, and a
    codec's invisible colour ghost of a defect lingers in the next frames. Scored as the node scores them (one
    Detector, calibrated against node.threshold 3), the decoded clip's events are its frames' (21 of 40 frames were
    false events before the local statistics' spread had a floor: docs/ablations.md section 44)."""
    rng, src = np.random.default_rng(0), texture("gravel", 320, np.random.default_rng(0))
    video = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (256, 256))
    frames = []
    for i in range(24):
        y, x = rng.integers(0, 60, 2)
        bgr = np.ascontiguousarray(src[y:y + 256, x:x + 256, ::-1])
        if i == 18:
            cv2.circle(bgr, (128, 128), 12, (30, 30, 200), -1)
        video.write(bgr)
        frames.append(bgr[..., ::-1].copy())
    video.release()
    capture, decoded = cv2.VideoCapture(str(tmp_path / "clip.mp4")), []
    while (got := capture.read())[0]:
        decoded.append(got[1][..., ::-1].copy())
    assert len(decoded) == 24 and 0 < np.abs(decoded[0].astype(int) - frames[0]).mean() < 8  # lossy, not broken

    def events(clip: list[np.ndarray]) -> set[int]:
        det = Detector(SSDNetConfig(), "cpu")
        return {i for i, f in enumerate(clip) if det.process(f).calibrated > 3.0}

    as_written, as_decoded = events(frames), events(decoded)
    assert 18 in as_decoded and 18 in as_written
    assert len(as_decoded - {18}) <= len(as_written - {18}) + 1


def test_a_missing_or_unreadable_video_fails_at_once_with_the_reason(tmp_path):
    missing = VideoSourceConfig(kind="video", name="cam0", uri=str(tmp_path / "clip.mp4"))
    with pytest.raises(SourceFatal, match="does not exist") as absolute:
        Camera(missing).run(stop=None)
    assert "relative to" not in str(absolute.value)  # an absolute path is not relative to anything
    with pytest.raises(SourceFatal, match=r"does not exist \(uri is relative to "):
        Camera(missing.model_copy(update={"uri": "recordings/monday.mp4"})).run(stop=None)
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 4096)
    with pytest.raises(SourceFatal, match="junk.mp4"):
        Camera(missing.model_copy(update={"uri": str(tmp_path / "junk.mp4")})).run(stop=None)
    cfg = line_config().model_copy(update={"sources": (missing,)})
    with pytest.raises(LineError, match="cam0 failed to start: video file .* does not exist"):
        run_line(cfg, tmp_path / "out", detector_factory=FastDetector)


@pytest.mark.skipif(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER), reason="this OpenCV has GStreamer")
def test_a_gstreamer_pipeline_on_an_opencv_without_gstreamer_fails_at_once_saying_so():
    """configs/jetson.yaml's CSI camera through PyPI's OpenCV wheel (no GStreamer): not reconnecting for ever."""
    csi = VideoSourceConfig(kind="video", name="cam0", uri="nvarguscamerasrc sensor-id=0 ! videoconvert ! appsink")
    for cfg in (csi, csi.model_copy(update={"api": "gstreamer"})):
        with pytest.raises(SourceFatal, match="built without GSTREAMER, which cam0's uri needs"):
            Camera(cfg).run(stop=None)


def test_the_summary_after_ctrl_c_reads_without_none(capsys):
    summary = {"frames": 0, "sent": None, "dropped": None, "fps": None, "events": 0, "wall_s": 3.2,
               "latency_ms": {"end_to_end": None}}
    print_summary(summary)
    out = capsys.readouterr().out
    assert "None" not in out and "0 (no camera reported)" in out and "fewer than two results" in out


def test_the_summary_of_a_half_without_defects_reads_without_none(capsys):
    """The demo with --frames 4 printed 'over each camera's last half  None / None, image AUROC None' (an audit)."""
    def part(auroc, frames):
        return {"pixel_auroc": auroc, "pixel_auprc": auroc and 0.4, "image_auroc": auroc and 0.75, "frames": frames}
    summary = {"frames": 12, "sent": 12, "dropped": 0, "fps": 3.6, "events": 1, "wall_s": 7.8, "latency_ms": {},
               "stream": {**part(0.94, 12), "first_half": part(0.93, 6), "last_half": part(None, 6)}}
    print_summary(summary)
    out = capsys.readouterr().out
    assert "None" not in out and "- (no defective frame among 6)" in out and "0.93 / 0.4, image AUROC 0.75" in out


def test_suggested_threshold_is_a_high_quantile_of_normal_scores():
    scores = np.linspace(-3.0, 5.0, 201)  # calibrated: robust std above the camera's normal
    assert suggest(scores, 0.99, 0.0) == pytest.approx(4.92)
    assert suggest(scores, 0.99, 0.05) == pytest.approx(4.92 * 1.05)
    # a few frames, or negative ones, read the tail low: never below normal noise's quantile (2 frames gave 0.22, and
    # -0.318 from two below the camera's normal, which flagged half of them)
    assert suggest(np.array([-0.8, 0.2]), 0.99, 0.0) == pytest.approx(2.326, abs=1e-3)
    assert suggest(np.array([-0.5, -0.3]), 0.99, 0.05) == pytest.approx(2.326 * 1.05, abs=1e-3)


def test_calibrate_says_one_thing_about_few_frames(capsys):
    """19 frames below normal noise's tail: the suggestion is that floor, and the report said so, then on the next line
    that it was "about the highest score seen" (an audit). The floor's line alone; a few frames above it, the other."""
    import argparse

    from tools.calibrate import _report

    args = argparse.Namespace(quantile=0.99, margin=0.05, source="x")
    _report(np.linspace(-1.0, 0.97, 19), "19 frames", 3.0, args, None)
    out = capsys.readouterr().out
    assert "which the suggestion starts from" in out
    assert "highest score seen" not in out
    _report(np.linspace(-1.0, 4.0, 19), "19 frames", 3.0, args, None)
    out = capsys.readouterr().out
    assert "highest score seen" in out and "starts from" not in out


def _frames(folder, n, size=64, defect=0.0, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    images = [sample("grass", size, rng, defect)[0] for _ in range(n)]
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image[:, :, ::-1])
    return images


@pytest.mark.slow
def test_score_keeps_going_past_an_unreadable_file_and_calibrate_reads_a_folder_and_a_video(tmp_path, capsys):
    images = _frames(tmp_path / "frames", 14)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    files = [str(tmp_path / "frames" / "000.png"), str(tmp_path / "broken.png"), str(tmp_path / "missing.png"),
             str(tmp_path / "frames" / "001.png")]
    assert main(["score", *files, "--fast", "--threads", "1", "--out", str(tmp_path / "scored")]) == 1
    lines = [json.loads(x) for x in (tmp_path / "scored" / "scores.jsonl").read_text().splitlines()]
    assert [x["image"] for x in lines] == [files[0], files[3]] and all(x["label"] for x in lines)
    err = capsys.readouterr().err
    assert "2 images failed" in err  # each says what is wrong with it: not an image, or not there
    assert f"cannot decode {files[1]}: not an image file" in err and f"no such image file: {files[2]}; skipped" in err

    assert main(["calibrate", str(tmp_path / "frames"), "--fast", "--threads", "1", "--out",
                 str(tmp_path / "cal")]) == 0
    out = capsys.readouterr().out
    cal = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    # the first calibration.min_frames (10) set the camera's normal; the other 4 are judged against it
    assert cal["frames"] == 4 and f"threshold: {cal['suggested_threshold']:.3f}" in out
    assert cal["suggested_threshold"] >= cal["scores"]["max"]

    video = tmp_path / "line.avi"  # a 20-frame MJPG video, as a camera recording would be
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(20):
        writer.write(images[i % 5][:, :, ::-1])
    writer.release()
    assert main(["calibrate", str(video), "--fast", "--threads", "1", "--frames", "13"]) == 0
    assert "3 normal frames of" in capsys.readouterr().out
    assert main(["calibrate", str(tmp_path / "nope.mp4"), "--fast"]) == 2
    assert "nope.mp4: no such folder or video file" in capsys.readouterr().err
    # an image sequence (OpenCV's `%03d.png`), as a video camera takes it: no file of that name, yet frames
    assert main(["calibrate", str(tmp_path / "frames" / "%03d.png"), "--fast", "--threads", "1", "--frames", "12"]) == 0
    assert "2 normal frames of" in capsys.readouterr().out

    # frames cut as the camera's `crop` cuts them (the threshold must be learnt on what the node will score)
    for source, resize, shape in ((tmp_path / "frames", None, (40, 48, 3)), (video, (32, 32), (32, 32, 3))):
        reader = _reader(str(source), resize, (8, 4, 48, 40))
        reader.open()
        assert reader.read().image.shape == shape
    assert main(["calibrate", str(tmp_path / "frames"), "--fast", "--threads", "1", "--crop", "8", "4", "48", "40",
                 "--frames", "12"]) == 0
    assert "2 normal frames of" in capsys.readouterr().out
    # --skip: a camera's first frames, which it learns on, are scored but not judged
    assert main(["calibrate", str(tmp_path / "frames"), "--fast", "--threads", "1", "--skip", "11"]) == 0
    out = capsys.readouterr().out
    assert "3 normal frames of" in out and "(after the first 11)" in out
    assert main(["calibrate", str(tmp_path / "frames"), "--fast", "--threads", "1", "--skip", "14"]) == 2
    assert "--skip 14" in capsys.readouterr().err


def test_calibrate_says_how_many_first_frames_it_left_out_when_blank_frames_came_first(tmp_path, capsys):
    """A recording that starts with the light off: its 3 blank frames teach the camera nothing, so its first 13
    frames set its normal, not 10; the report said '(after the first 10)' beside 4 frames of 17."""
    _frames(tmp_path / "frames", 14)
    for i in range(3):  # '-' comes before the digits: these are read first
        cv2.imwrite(str(tmp_path / "frames" / f"-{i}.png"), np.zeros((64, 64, 3), np.uint8))
    assert main(["calibrate", str(tmp_path / "frames"), "--threads", "1"]) == 0
    assert "4 normal frames of" in (out := capsys.readouterr().out) and "(after the first 13)" in out, out


def test_single_images_of_normal_textures_are_not_events_and_holes_can_be(tmp_path):
    """`ssdnet score` judges each image against the calibration's prior alone. scikit-image's grass and gravel score
    0.72-0.81 on their own, as real-dev's normal tiles do (0.79), above the old prior's threshold (0.6 + 3 x 0.06):
    half of the grass was an event. The prior measured on normal frames (docs/ablations.md section 60) calls none
    of them anomalous and still some drawn holes on brick."""
    rng = np.random.default_rng(0)
    normal = [texture(name, 128, rng) for name in ("brick", "grass", "gravel") for _ in range(4)]
    holes = [draw_defect(texture("brick", 128, rng), rng, "hole")[0] for _ in range(6)]
    for i, image in enumerate(normal + holes):
        cv2.imwrite(str(tmp_path / f"{'normal' if i < len(normal) else 'hole'}_{i:02d}.png"), image[:, :, ::-1])
    assert main(["score", str(tmp_path), "--threads", "1", "--out", str(tmp_path / "scored")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "scored" / "scores.jsonl").read_text().splitlines()]
    verdicts = {Path(x["image"]).name: x["label"] for x in lines}
    assert len(verdicts) == len(normal) + len(holes)
    assert not [n for n, label in verdicts.items() if n.startswith("normal") and label == "anomalous"]
    assert sum(label == "anomalous" for n, label in verdicts.items() if n.startswith("hole")) >= 2


def test_calibrate_reads_a_lines_scores_jsonl_across_its_turned_over_files(tmp_path, capsys):
    """`ssdnet calibrate OUT/scores.jsonl`: the node's calibrated scores as logged, nothing scored again; a camera's
    first (`calibrating`) frames are left out; every kept file is read; each camera's quantiles are reported, and
    each product's apart when its frames name one."""
    path, expected = tmp_path / "scores.jsonl", []
    sink = ScoresSink(path, max_mb=4096 / 2**20, backups=100)  # ~4 KB a file: several files
    for seq in range(60):
        for cam, base in (("cam0", 0.0), ("cam1", 1.0)):
            calibrating = seq < 10
            score = 50.0 if calibrating else base + (seq % 10) / 10  # a prior's wild score must not count
            product = "brick" if cam == "cam1" and seq >= 30 else None  # cam1 changes over to brick at frame 30
            header = anomaly(seq).header.model_copy(update={"source": cam, "score": score, "calibrating": calibrating,
                                                            "product": product})
            sink.handle(P.Message(header), 2.0)
            expected += [] if calibrating else [score]
    sink.close()
    assert len(JsonLines.files(path)) > 2
    assert main(["calibrate", str(path), "--out", str(tmp_path / "cal")]) == 0
    out = capsys.readouterr().out
    cal = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert cal["frames"] == 100 and cal["suggested_threshold"] == pytest.approx(suggest(np.array(expected)), abs=1e-4)
    assert {name: c["frames"] for name, c in cal["cameras"].items()} == {"cam0": 50, "cam1": 20, "cam1@brick": 30}
    assert cal["cameras"]["cam1@brick"]["max"] == pytest.approx(1.9) and "2 cameras (3 with their products)" in out
    # --skip N: each camera's and product's first N frames left out (calibrating or not; a changeover is learnt
    # afresh), as for a folder
    assert main(["calibrate", str(path), "--skip", "15", "--out", str(tmp_path / "skip")]) == 0
    cal = json.loads((tmp_path / "skip" / "calibration.json").read_text())
    assert {name: c["frames"] for name, c in cal["cameras"].items()} == {"cam0": 45, "cam1": 15, "cam1@brick": 15}
    assert main(["calibrate", str(path), "--skip", "60"]) == 2
    assert "100 left out by --skip 60" in capsys.readouterr().err
    assert main(["calibrate", str(path), "--fast"]) == 2
    assert "drop --fast" in capsys.readouterr().err
    single = tmp_path / "single.jsonl"  # `ssdnet score`'s records: single images, no camera normal
    single.write_text(json.dumps({"image": "a.png", "score": 4.0}) + '\n[1, 2]\n{"score": 1, "threshold": "x"}\n')
    assert main(["calibrate", str(single)]) == 2
    assert "no calibrated frame scores" in capsys.readouterr().err


def test_the_tensorrt_snippet_of_docs_export_md_is_a_valid_line_config():
    import re
    from pathlib import Path

    import yaml

    from edge.config import SSDNetConfig
    from pipeline.config import LineConfig

    text = (Path(__file__).resolve().parents[1] / "docs" / "export.md").read_text()
    snippet = yaml.safe_load(re.search(r"```yaml\n(node:\n.*?)```", text, re.S).group(1))
    line = LineConfig.model_validate({"sources": [{"kind": "synthetic", "name": "a"}], **snippet})
    assert line.node.ssdnet.score.backend == "auto" and line.node.ssdnet.score.engine_precision == "fp16"
    assert SSDNetConfig.model_validate(snippet["node"]["ssdnet"]).score.allow_cpu_fallback is False


@pytest.mark.slow
def test_a_scorer_backend_that_cannot_load_is_refused_at_start_up(tmp_path):
    import importlib.util

    import torch

    if importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available():
        pytest.skip("TensorRT and a GPU are here: the backend loads")
    cfg = line_config(frames=2)
    node = cfg.node.model_copy(update={"ssdnet": cfg.node.ssdnet.model_copy(update={
        "score": cfg.node.ssdnet.score.model_copy(update={"backend": "tensorrt"})})})
    with pytest.raises(LineError, match="node failed to start: [^:]*(TensorRT|CUDA)"):
        run_line(cfg.model_copy(update={"node": node}), tmp_path)


def test_the_readme_camera_example_is_a_valid_line_config(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    import yaml

    from pipeline.config import LineConfig

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## Your camera.*?```yaml\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "frames").mkdir()
    cfg = LineConfig.model_validate(yaml.safe_load(block))
    flows = {s.name: s.credit_flow for s in cfg.sources}
    assert flows == {"press3": False, "web2": False, "usb0": False, "clip": True, "shelf": True}
    assert cfg.sinks.scores and cfg.sinks.console and not cfg.node.ssdnet.score.uses_unet


def test_images_of_one_name_in_several_folders_get_their_own_outputs(tmp_path):
    for seed, folder in enumerate(("good", "hole")):
        _frames(tmp_path / folder, 1, defect=float(seed), seed=seed)
    files = [str(tmp_path / "good" / "000.png"), str(tmp_path / "hole" / "000.png"), str(tmp_path / "good" / "000.png")]
    assert main(["score", *files, "--threads", "1", "--out", str(tmp_path / "out")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert [Path(x["map"]).name for x in lines] == ["good_000_map.npy", "hole_000_map.npy", "good_000_2_map.npy"]
    assert all(Path(x["overlay"]).is_file() and np.load(x["map"]).shape == (64, 64) for x in lines)


def test_a_second_run_into_the_same_folder_keeps_the_maps_the_first_one_points_at(tmp_path):
    """scores.jsonl is appended to: a second run's 000.png overwrote the first run's 000_map.npy, and the first
    run's line then pointed at another image's map."""
    for seed, folder in enumerate(("good", "hole")):
        _frames(tmp_path / folder, 1, defect=float(seed), seed=seed)
    out = tmp_path / "out"
    assert main(["score", str(tmp_path / "good" / "000.png"), "--threads", "1", "--out", str(out)]) == 0
    first = np.load(out / "000_map.npy")
    assert main(["score", str(tmp_path / "hole" / "000.png"), "--threads", "1", "--out", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert [Path(x["map"]).name for x in lines] == ["000_map.npy", "000_2_map.npy"]
    np.testing.assert_array_equal(np.load(lines[0]["map"]), first)


@pytest.mark.parametrize("argv, says", [
    (["score", "x.png", "--threads", "0"], "--threads: must be at least 1"),
    (["eval", "ds", "--limit", "-1"], "--limit: must be at least 1"),
    (["eval", "ds", "--warmup-frames", "-1"], "--warmup-frames: must be at least 0"),
    (["soak", "line.yaml", "--minutes", "nan"], "--minutes: must be at least 0.1"),
    (["bench", "--frames", "two"], "--frames: not an integer"),
    (["score", "x.png", "--threshold", "nan"], "--threshold: must be a finite number"),  # every image "normal"
    (["calibrate", "x", "--margin", "-3"], "--margin: must be at least 0"),
    (["calibrate", "x", "--quantile", "1"], "--quantile: must be in (0, 1)"),  # failed after every frame was scored
    (["run", "line.yaml", "--out", "o", "--timeout", "0"], "--timeout: must be above 0"),  # ran without a bound
    (["eval", "ds", "--dead-pixels", "2"], "--dead-pixels: must be from 0 to 1"),
    (["eval", "ds", "--warm-steps", "-5"], "--warm-steps: must be at least 0"),
    (["view", "tcp://127.0.0.1:1", "--port", "70000"], "--port: must be from 0 to 65535"),
    (["bench-scorer", "--repeat", "0"], "--repeat: must be at least 1"),
    (["bench-scorer", "--height", "-5"], "--height: must be at least 32"),
    (["subscribe", "tcp://127.0.0.1:1", "--timeout", "-1"], "--timeout: must be above 0"),
])
def test_a_count_out_of_range_is_one_usage_line(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.parametrize("command", [["score", "x.png"], ["calibrate", "frames"]])
def test_an_out_that_is_a_file_is_said_so(tmp_path, capsys, monkeypatch, command):
    """`--out` naming a file said "FileExistsError: [Errno 17] File exists" (found in an audit)."""
    monkeypatch.chdir(tmp_path)
    _frames(tmp_path / "frames", 1)
    (tmp_path / "afile").write_text("")
    assert main([*command, "--out", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"ssdnet {command[0]}: error: {tmp_path / 'afile'} is a file, where a folder goes")


def test_an_error_deep_in_a_command_is_one_line_and_v_shows_the_traceback(tmp_path, capsys, monkeypatch):
    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("export.cli.save", full_disk)  # an --out under a file is refused before the export now
    argv = ["export", "--height", "64", "--width", "64", "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()  # export's progress lines, then the error
    assert err[-1].startswith("ssdnet export: error: ") and "-v shows where" in err[-1]
    assert not any("Traceback" in line or line.startswith("ssdnet") for line in err[:-1])
    with pytest.raises(OSError):
        main(["-v", *argv])


def test_a_mono12_cameras_16_bit_files_score_as_their_8_bit_frames(tmp_path, capsys):
    """Machine-vision cameras save Mono12 frames as 16-bit PNG/TIFF holding 0-4095. `ssdnet score` and `ssdnet
    eval` read such a file at the bits it fills: the same frame saved at 8 bits, at 12 bits (with the sensor's
    finer levels) and at full 16 bits gets the same image score and map, not a 16x too dark frame's. `ssdnet score
    FOLDER` scores the folder's images; a folder without any is reported."""
    rng = np.random.default_rng(3)
    image, _ = sample("gravel", 96, rng)
    grey = image.mean(axis=2)
    files = {"8bit": grey.round().astype(np.uint8),
             "12bit": (grey * 16 + rng.integers(0, 16, grey.shape)).astype(np.uint16),
             "16bit": (grey * 257).round().astype(np.uint16)}
    (tmp_path / "frames").mkdir(), (tmp_path / "empty").mkdir()
    for name, frame in files.items():
        cv2.imwrite(str(tmp_path / "frames" / f"{name}.png"), frame)
    assert main(["score", str(tmp_path / "frames"), str(tmp_path / "empty"), "--fast", "--threads", "1", "--out",
                 str(tmp_path / "scored")]) == 1
    assert f"{tmp_path / 'empty'}: no images (.png," in capsys.readouterr().err
    scores = {Path(x["image"]).stem: x["score"]
              for x in map(json.loads, (tmp_path / "scored" / "scores.jsonl").read_text().splitlines())}
    assert list(scores) == ["12bit", "16bit", "8bit"]  # the folder's files in name order
    maps = {n: np.load(tmp_path / "scored" / f"{n}_map.npy") for n in files}
    for name in ("12bit", "16bit"):
        assert scores[name] == pytest.approx(scores["8bit"], rel=0.05), scores
        assert np.corrcoef(maps[name].ravel(), maps["8bit"].ravel())[0, 1] > 0.98


def test_score_with_a_line_config_judges_by_its_node_threshold(tmp_path):
    """`ssdnet score --config line.yaml` took the line's node.ssdnet but judged at 3.0 whatever its node.threshold
    (found in an audit: an image the line would pass called anomalous); --threshold still wins."""
    _frames(tmp_path / "hole", 1, defect=1.0, seed=1)
    line = tmp_path / "line.yaml"
    line.write_text(f"sources: [{{name: cam, kind: folder, path: {tmp_path / 'hole'}}}]\n"
                    "node: {threshold: 1000.0, region_threshold: 2.5}\n")
    image = str(tmp_path / "hole" / "000.png")
    for extra, threshold, region_threshold in (([], 1000.0, 2.5), (["--threshold", "4", "--region-threshold", "3"],
                                                                   4.0, 3.0)):
        out = tmp_path / f"out{threshold:g}"
        assert main(["score", image, "--config", str(line), *extra, "--threads", "1", "--out", str(out)]) == 0
        record = json.loads((out / "scores.jsonl").read_text())
        assert (record["threshold"], record["region_threshold"]) == (threshold, region_threshold)
    assert json.loads((tmp_path / "out1000" / "scores.jsonl").read_text())["label"] == "normal"
    line.write_text(f"sources: [{{name: cam, kind: folder, path: {tmp_path / 'hole'}}}]\nnode: node.yaml\n")
    assert main(["score", image, "--config", str(line), "--threads", "1", "--out", str(tmp_path / "bad")]) == 2


def test_calibrate_with_a_line_config_says_what_its_node_threshold_would_flag(tmp_path, capsys):
    """`ssdnet calibrate FOLDER --config line.yaml` (a line config, as its help allows) compared with 3.0, not the
    line's node.threshold, as `--line` does."""
    _frames(tmp_path / "frames", 12)
    line = tmp_path / "line.yaml"
    line.write_text(f"sources: [{{name: cam, kind: folder, path: {tmp_path / 'frames'}}}]\n"
                    "node: {threshold: 1000.0}\n")
    assert main(["calibrate", str(tmp_path / "frames"), "--config", str(line), "--threads", "1"]) == 0
    assert "the current threshold 1000.000 would flag 0.0%" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "says"), [
    (["calibrate", "{tmp}/missing"], "{tmp}/missing: no such folder or video file"),
    (["calibrate", "{tmp}/missing/"], "{tmp}/missing/: no such folder or video file"),
    # a video camera's uri refuses a still image: it said "invalid config --crop / --resize: uri: ... `kind: folder`"
    (["calibrate", "{tmp}/part.png"], "{tmp}/part.png is one image: calibrate reads a camera's normal production, "
                                      "a folder of its images or a video file"),
    (["calibrate", "{tmp}/scores.jsonl"], "{tmp}/scores.jsonl does not exist"),
    (["calibrate", "{tmp}/binary.jsonl"], "is not a JSON-lines file of scores"),
    (["calibrate", "{tmp}/binary.jsonl", "--frames", "3"], "holds the node's scores already: drop --frames"),
    (["calibrate", "{tmp}", "--line", "{tmp}/line.yaml", "--fast"], "--line takes the line's node.ssdnet"),
    (["score", "x.png", "--config", "{tmp}/line.yaml", "--fast"], "--fast and --config exclude each other"),
])
def test_a_calibrate_or_score_input_error_is_one_error_line_with_the_usage_exit_code(tmp_path, capsys, argv, says):
    """`ssdnet calibrate MISSING` printed 'ssdnet calibrate: video file ... does not exist' without the "error:"
    every other command's errors carry, and `--line` with `--fast` (or score's `--config` with `--fast`) exited 1
    with 'ssdnet: ...': each is now `ssdnet COMMAND: error: ...`, exit 2 (a usage or input error)."""
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "line.yaml").write_text("sources: []\n")
    cv2.imwrite(str(tmp_path / "part.png"), np.zeros((64, 64, 3), np.uint8))
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ssdnet {argv[0]}: error: ") and says.format(tmp=tmp_path) in err[0]


@pytest.mark.parametrize("n, extra", [(10, []), (12, ["--skip", "12"]), (30, ["--frames", "8"])])
def test_calibrate_refuses_too_few_frames_before_scoring_any(tmp_path, capsys, monkeypatch, n, extra):
    """A folder of 10 normal images scored for 25 s (the model loaded, every frame scored) and only then said they
    were too few (an audit): the first 10 frames set the camera's normal, so it is said before scoring."""
    import tools.calibrate

    _frames(tmp_path / "normal", n, size=32)
    monkeypatch.setattr(tools.calibrate, "Detector", lambda *a, **k: pytest.fail("scored frames it then refused"))
    assert main(["calibrate", str(tmp_path / "normal"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssdnet calibrate: error: ") and "too few" in err[0], err


def test_calibrate_reads_a_short_video_rather_than_trust_its_frame_count(tmp_path, monkeypatch):
    """A video's frame count is its container's estimate in some formats (the review): a video that says it holds
    too few frames is read, not refused unread."""
    import tools.calibrate

    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    for _ in range(8):
        writer.write(np.zeros((32, 32, 3), np.uint8))
    writer.release()

    class Reached(Exception):
        pass

    def scoring(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(tools.calibrate, "Detector", scoring)
    with pytest.raises(Reached):
        main(["calibrate", str(tmp_path / "clip.avi")])


def test_a_live_view_port_in_use_is_one_error_line_before_the_line_starts(tmp_path, capsys):
    """`ssdnet run --view` with port 8765 taken printed 'ssdnet run: error: OSError: [Errno 98] ... (-v shows where)'
    and exited 1 (an audit): the port is the config's to change, so it is a config error, exit 2, no class name."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "line.yaml"
        config.write_text(f"sources:\n  - {{name: cam0, kind: synthetic, size: 64, frames: 2}}\n"
                          f"sinks:\n  view: {{port: {port}}}\n")
        assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ssdnet run: error: the live view cannot listen on 127.0.0.1:{port} ")
    assert "sinks.view.port" in err[0] and "Error" not in err[0]


@pytest.mark.parametrize("stage", ["all", "node"])
def test_a_cuda_device_on_a_machine_without_one_is_one_error_line_before_the_line_starts(tmp_path, capsys,
                                                                                         monkeypatch, stage):
    """`device: cuda` without a GPU (configs/jetson.yaml on a laptop) started the cameras, then printed the node's
    traceback and 'ssdnet run: error: node failed to start: RuntimeError: device 'cuda' ...', exit 1 (an audit): the
    device is the config's to change, so it is a config error before any stage starts, exit 2, saying what to set."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine, whatever it has
    from services import free_port

    camera, node, replay = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))  # a node stage needs fixed ports
    config = tmp_path / "line.yaml"
    config.write_text(f"sources:\n  - {{name: cam0, kind: synthetic, size: 64, frames: 2, bind: '{camera}'}}\n"
                      f"node: {{bind: '{node}', replay_bind: '{replay}', ssdnet: {{device: cuda}}}}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--stage", stage]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssdnet run: error: device 'cuda' was asked for but "), err
    assert "cpu" in err[0] and "node.ssdnet.device" in err[0] and "Error" not in err[0], err
    assert [p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")] == []  # its locks only


@pytest.mark.parametrize("argv", [["bench", "--quick", "--device", "cuda"],
                                  ["eval", "DATA", "--device", "cuda", "--baselines", "none"]], ids=["bench", "eval"])
def test_eval_and_bench_asked_for_cuda_without_one_say_so_in_one_line(tmp_path, capsys, monkeypatch, argv):
    """`ssdnet bench --device cuda` without a GPU ran its CPU benchmarks and failed late with exit 1 (the closing
    review): like `run`, `score` and `eval`, it is one error line, exit 2."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "cat" / "test" / "good").mkdir(parents=True)
    write_rgb(tmp_path / "cat" / "test" / "good" / "000.png", texture("brick", 64, np.random.default_rng(0)))
    assert main([str(tmp_path) if a == "DATA" else a for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ssdnet {argv[0]}: error: device 'cuda' was asked for"), err
