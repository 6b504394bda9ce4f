"""What a batch command does with an input it cannot use: says which, and goes on with the others (found by feeding
`ssdnet score`, `calibrate` and `eval` a zoo of odd files)."""
from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.images import read_mask, read_rgb
from edge.synthetic import draw_defect, texture
from pipeline.sources import SourceFatal
from tools.calibrate import _reader
from tools.cli import main


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[:, :, ::-1])
    return path


def test_score_goes_on_past_a_symlink_loop_and_every_anomalous_image_says_where(tmp_path, capsys):
    """A symlink loop among the images stopped the whole batch (`Path.resolve` raised before any image was scored);
    an image judged anomalous came without a region (the node's events always have one)."""
    rng = np.random.default_rng(0)
    hole = _write(tmp_path / "hole.png", draw_defect(texture("grass", 96, rng), rng, "hole")[0])
    (tmp_path / "loop_a.png").symlink_to(tmp_path / "loop_b.png")
    (tmp_path / "loop_b.png").symlink_to(tmp_path / "loop_a.png")
    argv = ["score", str(tmp_path / "loop_a.png"), str(hole), "--fast", "--threads", "1", "--out", str(tmp_path / "o"),
            "--threshold", "-5"]  # every image anomalous
    assert main(argv) == 1
    lines = [json.loads(x) for x in (tmp_path / "o" / "scores.jsonl").read_text().splitlines()]
    assert [x["image"] for x in lines] == [str(hole)] and lines[0]["label"] == "anomalous" and lines[0]["regions"]
    assert "loop_a.png" in capsys.readouterr().err


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header (IHDR, CRC mended) claims `width`x`height`."""
    data = bytearray(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def test_score_says_what_is_wrong_with_each_bad_file_in_words_and_goes_on(tmp_path, capsys):
    """Each per-file error named a Python exception class (`ValueError: cannot decode ...`, a 100000x100000 header's
    `error: OpenCV(5.1.0) ... CV_IO_MAX_IMAGE_PIXELS ...`); it says what is wrong with the file and what to do, the
    other files are scored and the exit code is 1."""
    rng = np.random.default_rng(3)
    good = _write(tmp_path / "good.png", texture("grass", 64, rng))
    _write(tmp_path / "tiny.png", texture("grass", 16, rng))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"not an image")
    (tmp_path / "giant.png").write_bytes(_png_claiming(100_000, 100_000))
    (tmp_path / "o" / "good_overlay.png").mkdir(parents=True)  # where its overlay goes: a folder
    bad = {"empty.png": "is empty (0 bytes): still being written, or a failed copy",
           "text.png": "not an image file OpenCV reads (PNG, JPEG, BMP, TIFF, ...)",
           "giant.png": "its header gives more pixels than OpenCV reads (2^30): save it smaller",
           "missing.png": "no such image file",
           "tiny.png": "a 16x16 image is below the minimum of 32x32 px: score a larger crop, or scale it up"}
    files = [str(tmp_path / name) for name in bad]
    assert main(["score", str(good), *files, "--fast", "--threads", "1", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    said = [line for line in err.replace("\r", "\n").splitlines() if line.endswith("; skipped")]
    assert len(said) == len(bad) + 1 and not [line for line in said if re.search(r"[A-Za-z]*(Error|error): ", line)]
    for name, why in bad.items():
        assert any(str(tmp_path / name) in line and why in line for line in said), name
    assert f"{good}: {tmp_path / 'o' / 'good_overlay.png'}: is a directory; skipped" in err  # not the image's fault
    assert "6 images failed" in err
    good2 = _write(tmp_path / "good2.png", texture("grass", 64, rng))
    assert main(["score", str(good2), str(tmp_path / "text.png"), "--fast", "--threads", "1", "--out",
                 str(tmp_path / "o")]) == 1  # the others still scored
    assert [json.loads(x)["image"] for x in (tmp_path / "o" / "scores.jsonl").read_text().splitlines()] == [str(good2)]


def test_a_file_score_cannot_read_or_a_fault_of_its_own_is_said_in_words():
    from tools.score_images import file_problem

    denied = PermissionError(13, "Permission denied", "/data/a.png")
    assert file_problem(Path("/data/a.png"), denied) == "/data/a.png: permission denied"
    assert file_problem(Path("b.png"), RuntimeError("boom")) == "b.png: could not be scored: boom (-v shows where)"


def test_small_images_scored_alone_are_said_to_run_hot(tmp_path, capsys):
    rng = np.random.default_rng(1)
    small = _write(tmp_path / "small.png", texture("gravel", 40, rng))
    large = _write(tmp_path / "large.png", texture("gravel", 96, rng))
    assert main(["score", str(large), "--fast", "--threads", "1", "--out", str(tmp_path / "o1")]) == 0
    assert "under 64 px a side" not in capsys.readouterr().err
    assert main(["score", str(small), "--fast", "--threads", "1", "--out", str(tmp_path / "o2")]) == 0
    assert "1 image under 64 px a side: judged alone, small frames score above the prior" in capsys.readouterr().err


def test_calibrate_skips_a_frame_below_the_minimum_and_eval_names_one(tmp_path, capsys):
    """A 20x20 file in a folder stopped `ssdnet calibrate` (and `ssdnet eval`) with "a 20x20 frame is below the
    minimum", naming no file; a folder camera skips it with a warning, and so does calibrate now."""
    rng = np.random.default_rng(2)
    for i in range(12):
        _write(tmp_path / "frames" / f"{i:03d}.png", texture("brick", 64, rng))
    _write(tmp_path / "frames" / "005a.png", texture("brick", 20, rng))
    assert main(["calibrate", str(tmp_path / "frames"), "--fast", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "frame 7: a 20x20 frame is below the minimum of 32x32 px; skipped" in captured.err
    assert "2 normal frames of" in captured.out  # 12 frames scored: the first 10 set the camera's normal

    good = tmp_path / "ds" / "brick" / "test" / "good"
    _write(good / "000.png", texture("brick", 64, rng))
    _write(good / "001.png", texture("brick", 20, rng))
    assert main(["eval", str(tmp_path / "ds"), "--baselines", "none"]) == 2
    assert "001.png is 20x20 px: below the scorer's minimum of 32x32" in capsys.readouterr().err


def test_calibrate_on_scores_it_cannot_use_says_what_they_are(tmp_path, capsys):
    """A turned-over scores file was opened as a video; `ssdnet score`'s records were "without a score"; random
    bytes gave a UnicodeDecodeError."""
    line = tmp_path / "scores.jsonl.1"  # a line's turned-over scores
    line.write_text("".join(json.dumps({"source": "cam0", "seq": i, "score": 0.1 * i, "calibrating": False}) + "\n"
                            for i in range(20)))
    assert main(["calibrate", str(line)]) == 0
    assert "suggested node.threshold" in capsys.readouterr().out
    single = tmp_path / "single.jsonl"
    single.write_text(json.dumps({"image": "a.png", "score": 1.0}) + "\n")
    assert main(["calibrate", str(single)]) == 2
    assert "1 of single images scored by `ssdnet score`" in capsys.readouterr().err
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(bytes(range(128, 256)) * 8)
    assert main(["calibrate", str(binary)]) == 2
    assert "is not a JSON-lines file of scores (not text)" in capsys.readouterr().err


def test_calibrate_refuses_a_lines_events_and_says_which_records_it_left_out(tmp_path, capsys):
    """A user gave the demo's events.jsonl: only the frames over the threshold, read as every frame's score, made a
    suggestion of 35.8 that would silence the line; a score file's records without a numeric score went unsaid."""
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"source": "cam0", "seq": i, "score": 4.0 + i, "calibrating": False,
                                          "threshold": 3.0, "regions": [{"bbox": [1, 2, 3, 4]}], "log_seq": i + 1})
                              + "\n" for i in range(20)))
    assert main(["calibrate", str(events)]) == 2
    assert "holds 20 events (a line's events.jsonl?)" in capsys.readouterr().err
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"source": "cam0", "seq": i, "score": "high" if i == 3 else 0.1 * i,
                                          "calibrating": False}) + "\n" for i in range(20)))
    assert main(["calibrate", str(scores)]) == 0
    out = capsys.readouterr().out
    assert "1 record of" in out and "without a numeric score, left out" in out and "19 frames of" in out


def test_calibrate_on_a_short_lines_scores_says_they_were_all_calibrating(tmp_path, capsys):
    """A line of 3 frames a camera (all `calibrating`) was told to turn on sinks.scores, which it had."""
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"source": cam, "seq": i, "score": 1.0, "threshold": 3.0, "calibrating": True})
                              + "\n" for cam in ("brick", "grass", "gravel") for i in range(3)))
    assert main(["calibrate", str(scores)]) == 2
    err = capsys.readouterr().err
    assert "9 calibrating (a camera's first frames" in err and "let the line run longer" in err
    assert "sinks.scores" not in err


def test_a_folder_given_as_a_video_says_to_use_a_folder_camera(tmp_path, capsys):
    config = tmp_path / "line.yaml"
    config.write_text(f"sources:\n  - {{name: cam, kind: video, uri: {tmp_path}}}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 1
    assert "is a folder, not a video file: for a folder of images write `kind: folder`" in capsys.readouterr().err


def test_a_multi_page_tiff_says_only_its_first_page_is_read(tmp_path, caplog):
    """A camera's burst saved as one TIFF was scored as its first frame, the others silently left out."""
    pages = [texture("brick", 64, np.random.default_rng(i)) for i in range(3)]
    assert cv2.imwritemulti(str(tmp_path / "burst.tif"), [p[:, :, ::-1] for p in pages])
    assert cv2.imwrite(str(tmp_path / "one.tif"), pages[0][:, :, ::-1])
    with caplog.at_level("WARNING", logger="edge.images"):
        first = read_rgb(tmp_path / "burst.tif")
        read_rgb(tmp_path / "burst.tif")  # read again (a looping folder camera): said once
        read_rgb(tmp_path / "one.tif")
    assert np.array_equal(first, pages[0])
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "burst.tif holds 3 pages: only the first is read" in said[0]


def test_flags_that_would_do_nothing_are_refused_saying_what_they_need(tmp_path, capsys):
    """A new user's `--steps` on the default config fitted nothing (`fit_steps: 0`), `--overlays` without `--out`
    and `--from-start` without `--replay` were accepted and did nothing."""
    image = tmp_path / "a.png"
    _write(image, texture("brick", 64, np.random.default_rng(0)))
    assert main(["score", str(image), "--steps", "2"]) == 2
    assert "--steps sets the U-Net's fit, which the default config does not use" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path), "--overlays"]) == 2
    assert "--overlays writes each frame's overlay into --out DIR" in capsys.readouterr().err
    assert main(["subscribe", "tcp://127.0.0.1:5600", "--from-start"]) == 2
    assert "--from-start reads the node's event log from its start" in capsys.readouterr().err


def test_a_cut_short_image_file_is_said_damaged_not_no_image(tmp_path):
    """The first half of a PNG (a failed copy, a file still being written) was "not an image file OpenCV reads"."""
    image = texture("grass", 64, np.random.default_rng(0))
    for suffix, kind in ((".png", "PNG"), (".tif", "TIFF"), (".bmp", "BMP")):
        data = cv2.imencode(suffix, image)[1].tobytes()
        (path := tmp_path / f"half{suffix}").write_bytes(data[:len(data) // 2])
        for read in (read_rgb, read_mask):
            with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: a damaged {kind} file \(cut short"):
                read(path)
    (tmp_path / "text.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not an image file OpenCV reads"):  # a file that is none is still said so
        read_rgb(tmp_path / "text.png")


def test_calibrate_refuses_a_crop_past_its_frames_before_scoring(tmp_path, capsys):
    """`--crop` past the frames was cut to the part inside them with a log line amid the progress bar, and the
    threshold learnt on that region (a crop wholly outside: every frame skipped, then an error)."""
    frames = tmp_path / "frames"
    for i in range(3):
        _write(frames / f"{i:03d}.png", texture("brick", 64, np.random.default_rng(i))[:48])  # 64x48
    assert main(["calibrate", str(frames), "--fast", "--threads", "1", "--crop", "16", "8", "64", "32"]) == 2
    assert ("ssdnet calibrate: error: --crop 16 8 64 32 (x, y, width, height) reaches past the first frame of "
            f"{frames}, 64x48 px; the part inside it: --crop 16 8 48 32") in capsys.readouterr().err
    with pytest.raises(SourceFatal, match="64x48 px: none of it is inside"):
        _reader(str(frames), None, (64, 0, 32, 32))
    assert _reader(str(frames), (32, 32), (0, 0, 64, 48)).read().image.shape == (32, 32, 3)  # the whole frame: taken


def test_score_into_its_input_folder_leaves_its_own_overlays_out(tmp_path, capsys):
    """`ssdnet score DIR --out DIR` run again scored its own overlays as images (an outside user's: one scored 4.70,
    anomalous): the overlays it writes in --out are no input, and it says it left them out."""
    folder = tmp_path / "shots"
    for i in range(2):
        _write(folder / f"{i:03d}.png", texture("brick", 64, np.random.default_rng(i)))
    argv = ["score", str(folder), "--fast", "--threads", "1", "--out", str(folder)]
    for _ in range(2):
        assert main(argv) == 0
    images = [json.loads(x)["image"] for x in (folder / "scores.jsonl").read_text().splitlines()]
    assert [Path(p).name for p in images] == ["000.png", "001.png"] * 2
    assert "left out 2 overlays (*_overlay.png) in" in capsys.readouterr().err
