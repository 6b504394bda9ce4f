"""`ssdnet calibrate FOLDER|VIDEO [--line CONFIG]`: the `node.threshold` a line should use, from normal production.

Scores every frame of a folder of images or a video file of *normal* production (no defects) the
way the node does (one detector, the frames in order: a cold fit on the first, then warm fits, the
camera's memory and its score calibration), prints the distribution of the calibrated scores (robust
std above the camera's own normal, what `node.threshold` compares with) once the first
`calibration.min_frames` are past, and suggests `node.threshold`: the `--quantile` (default 0.99)
of them (at least 2.33, the 0.99 quantile of normal noise in those units: a few frames read a high quantile low)
raised by `--margin` (default 5 %), so about 1 % of normal frames or fewer would raise an event. Use the
line's own config (`--line`: its `node.ssdnet` section) so the scores are the ones the node will compute;
`--fast` (nothing fitted) gives the same image scores as the default config (the score comes from the
self-similarity map) in a fraction of the time. `--out DIR` writes every frame's score to DIR/scores.jsonl (and
with `--overlays` its overlay). More frames give a steadier threshold: below 50 the suggestion is about the highest
score seen. `--skip N` leaves a camera's first N frames out of the suggestion (scored, not judged): the frames it
learns its product on, which on an object line raise events for its first ~100 (docs/ablations.md section 56).

`ssdnet calibrate OUT/scores.jsonl` reads a running line's scores instead (`sinks.scores: true`; its turned-over
files too): nothing is scored again, the node's calibrated scores are taken as they are (a camera's first frames,
marked `calibrating`, and with `--skip N` each camera's (and product's) first N, left out), with the same suggestion
over every camera and each camera's own quantiles. The
line should have run on normal production: a defect rate above 1 - `--quantile` raises the suggestion.
"""
from __future__ import annotations

import argparse
import codecs
import json
import re
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
from tqdm import tqdm

from edge.args import at_least
from edge.config import MIN_SIDE, ConfigError, parse_config
from edge.detector import Detector
from edge.frames import FrameError
from edge.images import IMAGE_SUFFIXES, write_rgb
from edge.overlay import annotated_overlay
from pipeline.config import FolderSourceConfig, VideoSourceConfig, is_image_sequence, is_video_file, load_line_config
from pipeline.regions import find_regions
from pipeline.sinks import JsonLines, counted
from pipeline.sources import SourceError, SourceFatal, expected_frames, make_reader

from .score_images import DEFAULT_THRESHOLD, add_common, fast_hint, fit_progress, line_node, set_threads, ssdnet_config


def noise_quantile(quantile: float) -> float:
    """The `quantile` of normal noise in calibrated units (robust std above the camera's normal): 2.33 at 0.99."""
    return NormalDist().inv_cdf(quantile)


def suggest(scores: np.ndarray, quantile: float = 0.99, margin: float = 0.05) -> float:
    """The threshold for calibrated scores of normal frames: their `quantile`, at least that of normal noise in these
    units (a few frames read a high quantile low: 2 frames suggested 0.22), raised by `margin` (a fraction of it)."""
    value = max(float(np.quantile(scores, quantile)), noise_quantile(quantile))
    return value + margin * abs(value)


def _text(path: Path) -> bool:
    """Whether a file's first 64 KiB are UTF-8 (a character cut at its end allowed)."""
    with open(path, "rb") as f:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(f.read(65536))
        except UnicodeDecodeError:
            return False
    return True


def _error(text: str) -> int:
    """Print `text` as the command's one error line; returns the exit code of an input error."""
    print(f"ssdnet calibrate: error: {text}", file=sys.stderr)
    return 2


def _reader(path: str, resize: tuple[int, int] | None, crop: tuple[int, int, int, int] | None = None):
    p, given = Path(path), {"name": "calibrate", "crop": crop, "resize": resize}
    if is_video_file(path) and not is_image_sequence(path) and not p.exists():
        raise SourceFatal(f"{path}: no such folder or video file")
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:  # a video camera's uri refuses it too
        raise SourceFatal(f"{path} is one image: calibrate reads a camera's normal production, a folder of its images "
                          "or a video file")
    if p.is_dir():
        cfg = parse_config(FolderSourceConfig, {"kind": "folder", "path": p, **given}, "--crop / --resize")
    else:
        cfg = parse_config(VideoSourceConfig, {"kind": "video", "uri": path, **given}, "--crop / --resize")
    reader = make_reader(cfg)
    reader.check()
    if crop is not None:
        _check_crop(cfg, path)
    return reader


class _AsDecoded:
    """A reader's shaper that leaves its frames as decoded: no crop, resize or scaling down."""

    @staticmethod
    def frame(bgr: np.ndarray) -> np.ndarray:
        return bgr


def _check_crop(cfg: FolderSourceConfig | VideoSourceConfig, path: str) -> None:
    """SourceFatal when `cfg.crop` reaches past the source's first frame. A camera only warns (it must go on) and
    scores the part inside; here the threshold would be learnt on another region than the one given, after minutes
    of scoring: a mistyped crop (another resolution, X Y and W H swapped) is said now instead."""
    probe = make_reader(cfg.model_copy(update={"crop": None, "resize": None}))
    probe.shaper = _AsDecoded()
    try:
        probe.open()
        first = probe.read()
    except SourceError:  # said when the frames are read
        return
    finally:
        probe.close()
    if first is None:
        return
    height, width = first.image.shape[:2]
    x, y, w, h = cfg.crop
    if x + w > width or y + h > height:
        inside = (f"; the part inside it: --crop {x} {y} {min(w, width - x)} {min(h, height - y)}"
                  if x < width and y < height else ": none of it is inside")
        raise SourceFatal(f"--crop {x} {y} {w} {h} (x, y, width, height) reaches past the first frame of {path}, "
                          f"{width}x{height} px{inside}")


def _cmd(args: argparse.Namespace) -> int:
    if args.overlays and not args.out:
        return _error("--overlays writes each frame's overlay into --out DIR: give --out")
    if SCORES_FILE.search(args.source):
        return _from_scores(args)
    set_threads(args.threads)
    threshold, vrange = DEFAULT_THRESHOLD, None
    if args.line:
        if args.config or args.fast:
            raise ConfigError("--line takes the line's node.ssdnet; drop --config/--fast")
        line = load_line_config(args.line)
        cfg, threshold, vrange = line.node.ssdnet, line.node.threshold, line.sinks.overlay_range
    else:
        cfg, threshold = ssdnet_config(args.config, args.fast), line_node(args.config).threshold
    try:
        reader = _reader(args.source, tuple(args.resize) if args.resize else None,
                         tuple(args.crop) if args.crop else None)
        reader.open()
    except SourceError as e:
        return _error(str(e))
    fast_hint(cfg, args.config or args.line, args.fast)
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    total = expected_frames(reader.cfg.model_copy(update={"frames": args.frames}))
    learn = max(cfg.calibration.min_frames, args.skip)
    # said before minutes of scoring, not after; a video's frame count is its container's word (an estimate in some
    # formats), so a video is refused early only where --frames bounds it
    exact = reader.cfg.kind == "folder" or (args.frames is not None and total == args.frames)
    if total is not None and total <= learn and exact:
        reader.close()
        return _error(f"{counted(total, 'frame')} to read from {args.source}: too few to judge against the camera's "
                      f"own normal (its first {cfg.calibration.min_frames} set it; --skip {args.skip}): give more "
                      f"than {learn}")
    det = Detector(cfg)
    steps_bar = fit_progress(det, "first frame: cold fit")
    scores: list[float] = []
    seen, read = -1, 0
    log = (out / "scores.jsonl").open("w") if out is not None else None
    bar = tqdm(total=total, desc="ssdnet calibrate", unit="frame")
    try:
        while args.frames is None or seen + 1 < args.frames:
            try:
                cap = reader.read()
            except SourceError as e:
                tqdm.write(f"ssdnet calibrate: {e}; stopping here", file=sys.stderr)
                break
            if cap is None:
                break
            read += 1
            try:
                d = det.process(cap.image)
            except FrameError as e:  # as a folder camera does: that frame, not the calibration
                tqdm.write(f"ssdnet calibrate: frame {read}: {e}; skipped (set --resize, or a crop that lies "
                           "within the frames)", file=sys.stderr)
                continue
            seq = seen = seen + 1
            if not d.calibrating and seq >= args.skip:  # the first frames set the camera's normal: not judged
                scores.append(float(d.calibrated))
            bar.update(1)
            bar.set_postfix(score=f"{d.calibrated:.2f}")
            if log is not None:
                log.write(json.dumps({"seq": seq, "score": round(float(d.calibrated), 5),
                                      "raw_score": round(float(d.score), 5), "calibrating": d.calibrating}) + "\n")
            if out is not None and args.overlays:
                amap = d.calibrated_map()
                regions = find_regions(amap, 3.0, 16, min_peak=threshold, event=d.calibrated > threshold,
                                       inset=d.score_inset)
                write_rgb(out / f"{seq:06d}_overlay.png", annotated_overlay(
                    cap.image, amap, d.calibrated, threshold, [r.bbox for r in regions], vrange))
    finally:
        bar.close()
        if steps_bar is not None:
            steps_bar.close()
        reader.close()
        if log is not None:
            log.close()
    if not scores:
        return _error(f"{counted(seen + 1, 'frame')} scored of {read} read from {args.source}: too few to judge "
                      f"against the camera's own normal (its first {cfg.calibration.min_frames} set it; "
                      f"--skip {args.skip})")
    first = seen + 1 - len(scores)  # those that set the camera's normal (a blank frame sets nothing) or --skip left out
    _report(np.array(scores), f"{len(scores)} normal frames of {args.source} (after the first {first})", threshold,
            args, out)
    return 0


def _report(s: np.ndarray, what: str, threshold: float, args: argparse.Namespace, out: Path | None,
            cameras: dict[str, np.ndarray] | None = None) -> None:
    """Print the distribution of normal frames' calibrated scores `s` (`what` they are) and the suggested threshold;
    with `out`, write it to OUT/calibration.json. `cameras`: the same per camera, or camera@product (a line's
    scores.jsonl)."""
    value, q = suggest(s, args.quantile, args.margin), _quantiles(s)
    per_camera = {name: {"frames": len(c), **_quantiles(c)} for name, c in (cameras or {}).items()}
    print(f"{what}, calibrated score min {q['min']:.3f}  median {q['p50']:.3f}  p90 {q['p90']:.3f}  "
          f"p95 {q['p95']:.3f}  p99 {q['p99']:.3f}  max {q['max']:.3f}")
    for name, c in (cameras or {}).items():
        cq = per_camera[name]
        print(f"  {name}: {len(c)} frames, median {cq['p50']:.3f}  p99 {cq['p99']:.3f}  max {cq['max']:.3f}; "
              f"{np.mean(c > threshold):.1%} above the current threshold")
    print(f"the current threshold {threshold:.3f} would flag {np.mean(s > threshold):.1%} of these frames")
    print(f"suggested node.threshold: {value:.3f}  (the {args.quantile:g} quantile + {args.margin:.0%}; flags "
          f"{np.mean(s > value):.1%} of these frames)")
    if np.mean(s > threshold) > 1 - args.quantile:
        print(f"note: {np.mean(s > threshold):.1%} of these frames are above the current threshold: if they are "
              "defects, not normal production, the suggestion is too high; calibrate on defect-free production")
    floored = np.quantile(s, args.quantile) < noise_quantile(args.quantile)
    if floored:
        print(f"the {args.quantile:g} quantile of these frames ({np.quantile(s, args.quantile):.3f}) is below that of "
              f"normal noise in these units ({noise_quantile(args.quantile):.3f}), which the suggestion starts from "
              f"instead: too few frames ({len(s)}) to see the tail")
    elif len(s) < 50:
        print("few frames: the suggestion is about the highest score seen; score more normal production "
              "for a steadier threshold")
    print(f"\nin the line config:\n  node:\n    threshold: {value:.3f}")
    if out is not None:
        summary = {"source": args.source, "frames": len(s), "suggested_threshold": round(value, 5),
                   "quantile": args.quantile, "margin": args.margin, "scores": q}
        if per_camera:
            summary["cameras"] = per_camera
        (out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")


def _quantiles(s: np.ndarray) -> dict[str, float]:
    q = np.quantile(s, (0.5, 0.9, 0.95, 0.99))
    return {"min": float(s.min()), "p50": float(q[0]), "p90": float(q[1]), "p95": float(q[2]), "p99": float(q[3]),
            "max": float(s.max())}


def _from_scores(args: argparse.Namespace) -> int:
    """`ssdnet calibrate OUT/scores.jsonl`: the suggestion from a line's logged scores, nothing scored again."""
    given = [flag for flag, on in (("--line", args.line), ("--config", args.config), ("--fast", args.fast),
                                   ("--frames", args.frames), ("--resize", args.resize), ("--crop", args.crop),
                                   ("--overlays", args.overlays)) if on]
    if given:
        return _error(f"{args.source} holds the node's scores already: drop {', '.join(given)}")
    cameras: dict[str, list[float]] = {}
    seen: dict[str, int] = {}  # each camera's (and product's) frames so far, for --skip
    threshold, skipped, held, single, first, events = DEFAULT_THRESHOLD, 0, 0, 0, 0, 0
    files = JsonLines.files(args.source)
    if not files:
        return _error(f"{args.source} does not exist")
    for rec in JsonLines.records(args.source):  # oldest first: the last record's threshold is the line's current
        if "log_seq" in rec or isinstance(rec.get("regions"), list):
            events += 1  # an event (events.jsonl): a frame over the threshold, not every frame's score
            continue
        try:
            score, current = float(rec["score"]), float(rec.get("threshold", threshold))
        except (ValueError, KeyError, TypeError):
            skipped += 1  # not a score record
            continue
        if "image" in rec or not np.isfinite(score):
            single += "image" in rec
            continue  # `ssdnet score`'s single images: no camera normal
        product = rec.get("product")  # a camera's products apart: <camera>@<product>, as its checkpoints are named
        name = str(rec.get("source", "-")) + (f"@{product}" if product is not None else "")
        seen[name] = seen.get(name, 0) + 1
        if rec.get("calibrating") is True:
            first += 1
            continue  # a camera's first frames: they set its normal
        threshold = current
        if seen[name] <= args.skip:
            held += 1
            continue
        cameras.setdefault(name, []).append(score)
    if events:
        return _error(f"{args.source} holds {counted(events, 'event')} (a line's events.jsonl?): only the frames that "
                      "were over the threshold, so a threshold set from them would silence the line; give the line's "
                      "OUT/scores.jsonl (sinks.scores: true), every frame's score")
    if not (cameras or skipped or first or held or single) and not any(map(_text, files)):
        return _error(f"{args.source} is not a JSON-lines file of scores (not text)")
    if not cameras:
        return _error(f"no calibrated frame scores in {', '.join(map(str, files))} "
                      f"({counted(skipped, 'record')} without a score, {first} calibrating (a camera's first frames, "
                      f"which set its normal), {held} left out by --skip {args.skip}"
                      + (f", {single} of single images scored by `ssdnet score`, which have no camera normal: give "
                         "their folder instead" if single else "") + ")"
                      + ("; let the line run longer: a camera's calibrating frames are not judged" if first else
                         "; a line writes them with sinks.scores: true"))
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    per_camera = {name: np.array(c) for name, c in sorted(cameras.items())}
    names = f"{len(files)} files of {args.source}" if len(files) > 1 else args.source
    scores = np.concatenate(list(per_camera.values()))
    sources = {name.split("@")[0] for name in per_camera}
    groups = f" ({len(per_camera)} with their products)" if len(per_camera) > len(sources) else ""
    if skipped:
        print(f"note: {counted(skipped, 'record')} of {names} without a numeric score, left out")
    _report(scores, f"{len(scores)} frames of {names}, {counted(len(sources), 'camera')}{groups}", threshold, args, out,
            per_camera)
    return 0


SCORES_FILE = re.compile(r"\.jsonl(\.\d+)?$")  # a line's scores.jsonl, or one of its turned-over files


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="suggest node.threshold from a folder or video of normal production, "
                                         "or a line's scores",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="folder of images or a video file of normal (defect-free) production, or a "
                                  "line's OUT/scores.jsonl (sinks.scores: true)")
    p.add_argument("--line", help="the line config whose node.ssdnet scores the frames (recommended)")
    add_common(p)
    p.add_argument("--frames", type=at_least(1), help="score at most this many frames")
    p.add_argument("--skip", type=at_least(0), default=0,
                   help="leave each camera's first N frames out of the suggestion (scored, not judged): the frames "
                        "it learns on; an object line's first ~100 raise events (docs/ablations.md section 56)")
    p.add_argument("--crop", type=at_least(0), nargs=4, metavar=("X", "Y", "W", "H"),
                   help="cut the region of interest out of the frames as the camera's `crop` does (before --resize); "
                        "it must lie within the frames")
    p.add_argument("--resize", type=at_least(MIN_SIDE), nargs=2, metavar=("W", "H"),
                   help="resize frames as the camera does")
    p.add_argument("--quantile", type=_fraction, default=0.99, help="quantile of the normal scores (default 0.99)")
    p.add_argument("--margin", type=at_least(0, float), default=0.05,
                   help="raise the quantile by this fraction (default 0.05)")
    p.add_argument("--out", help="write DIR/scores.jsonl (every frame) and DIR/calibration.json")
    p.add_argument("--overlays", action="store_true", help="with --out: every frame's overlay too")
    p.set_defaults(func=_cmd)


