"""`ssdnet score IMAGE|FOLDER... [--fast] [--threads N]`: per image (a folder stands for its image files in name
order), the anomaly map (.npy), an overlay (.png: the map on the image on one colour scale for every image, regions,
the verdict, the score against the threshold and the colour scale) and one JSON line with the score and the verdict
(appended to OUT/scores.jsonl), in the output folder, named after the image (with its folders where two images share
a name: good_000, hole_000; _2, _3, ... where an earlier run's map has the name, so no line points at another's).

The default config fits nothing (docs/ablations.md section 6); `--config configs/ssdnet-fit.yaml` fits SSDnet's
U-Net on every image (a cold fit of `fit.steps` steps, minutes per image on a busy CPU; the bar shows the steps).
`--fast` (configs/self-similarity.yaml, the same as the default now) is kept for existing command lines. An image
that cannot be read or scored, or a folder without images, is reported (what is wrong with it and what to do) and
skipped; the exit code is 1 when any was. A 16-bit file (a Mono10 to Mono16 camera's) is read at the bits its values
fill (`edge.frames.bit_depth`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge.args import at_least, finite
from edge.config import ConfigError, SSDNetConfig, load_config, load_yaml, parse_config, refuse_without_unet
from edge.detector import Detector
from edge.frames import MIN_SIDE, FrameError
from edge.images import IMAGE_SUFFIXES, image_files, read_rgb, write_rgb
from edge.overlay import annotated_overlay
from pipeline.config import NodeConfig
from pipeline.regions import find_regions
from pipeline.sinks import counted

log = logging.getLogger(__name__)
DEFAULT_THRESHOLD = NodeConfig.model_fields["threshold"].default
PRIOR_MIN_SIDE = 64  # under this side a frame judged alone scores above the prior (`_cmd`)
OVERLAY_SUFFIX = "_overlay.png"  # what each image's overlay is named after it
FAST = {"score": {"pixel_weight": 0.0, "perceptual_weight": 0.0}}  # configs/self-similarity.yaml


def ssdnet_config(config: str | None, fast: bool, steps: int | None = None) -> SSDNetConfig:
    """The SSDnet config of `--config FILE`, `--fast` (nothing fitted) and `--steps`."""
    if config and fast:
        raise ConfigError("--fast and --config exclude each other (--fast is configs/self-similarity.yaml)")
    cfg = load_config(config) if config else SSDNetConfig()
    if fast:
        cfg = SSDNetConfig.model_validate({**cfg.model_dump(), "score": {**cfg.score.model_dump(), **FAST["score"]}})
    if steps is not None:
        refuse_without_unet("--steps sets the U-Net's fit", cfg, config)
        cfg = cfg.model_copy(update={"fit": cfg.fit.model_copy(update={"steps": steps})})
    return cfg


def line_node(config: str | None) -> NodeConfig:
    """The node section of a line config given as `--config` (whose threshold and region threshold then judge the
    images, as its node judges its frames); the defaults for an SSDnet config or none."""
    data = load_yaml(config) if config else {}
    node = data.get("node", {}) if "sources" in data else {}
    return parse_config(NodeConfig, node, f"{config} (node)")


def set_threads(threads: int | None) -> None:
    """torch's threads: `threads`, at most the machine's cores (more only contend: 999 cost ~10x a frame)."""
    if threads is not None:
        torch.set_num_threads(min(threads, os.cpu_count() or 1))


def fit_progress(det: Detector, desc: str) -> tqdm | None:
    """Show the fit's steps inside an image (a cold fit of the default config takes minutes on a CPU)."""
    if not det.cfg.score.uses_unet:
        return None
    bar = tqdm(total=det.cfg.fit.steps, desc=desc, unit="step", leave=False)
    fit = det.fitter.fit

    def step(done: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def with_progress(image, steps=None, init_state=None, progress=None):
        bar.reset(total=steps if steps is not None else det.cfg.fit.steps)
        return fit(image, steps, init_state, progress=step)

    det.fitter.fit = with_progress  # this instance only: the Detector's policy stays its own
    return bar


def fast_hint(cfg: SSDNetConfig, config: str | None, fast: bool) -> None:
    if cfg.score.uses_unet and not fast and not torch.cuda.is_available():
        print(f"ssdnet: the {'config' if config else 'default config'} fits SSDnet's U-Net on every image "
              f"({cfg.fit.steps} steps: minutes per image on a CPU). The image score comes from the self-similarity "
              "map either way and the dev set's accuracy is the same without the fit: --fast scores in seconds "
              "(configs/self-similarity.yaml).", file=sys.stderr)


def output_names(paths: list[Path], out: Path | None = None) -> list[str]:
    """A unique output name per image: its stem, with as many of its folders as tell it from the other images of
    that stem (MVTec folders name a 000.png in every defect folder: good_000, hole_000); an image given twice, or
    whose map an earlier run left in `out` (whose scores.jsonl lines point at it): _2, _3, ..."""
    parts = [Path(os.path.abspath(p)).with_suffix("").parts for p in paths]  # no resolve: a symlink loop fails alone
    by_stem: dict[str, set[tuple[str, ...]]] = {}
    for q in parts:
        by_stem.setdefault(q[-1], set()).add(q)
    names = []
    for mine in parts:
        others = by_stem[mine[-1]] - {mine}
        k = 1
        while k < len(mine) and any(q[-k:] == mine[-k:] for q in others):
            k += 1
        names.append("_".join(mine[-k:]))
    used: set[str] = set()
    for i, name in enumerate(names):
        n, names[i] = 1, name
        while names[i] in used or (out is not None and (out / f"{names[i]}_map.npy").exists()):
            n += 1
            names[i] = f"{name}_{n}"
        used.add(names[i])
    return names


def file_problem(path: Path, e: Exception) -> str:
    """What is wrong with an image that could not be scored and what to do, in words (no exception class), naming
    the file; the traceback of a fault of ssdnet's own goes to the debug log (-v)."""
    if isinstance(e, OSError) and e.strerror:  # the system's words: permission denied, an I/O error, a full disk
        text = f"{e.filename or path}: {e.strerror.lower()}"
    elif isinstance(e, (OSError, ValueError)):  # edge.images and edge.frames say what is wrong, most what to do
        text = str(e)
    else:
        log.debug("scoring %s failed", path, exc_info=True)
        text = f"could not be scored: {e} (-v shows where)"
    return text if str(path) in text else f"{path}: {text}"


def _cmd(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    cfg = ssdnet_config(args.config, args.fast, args.steps)
    fast_hint(cfg, args.config, args.fast)
    node = line_node(args.config)
    args.threshold = node.threshold if args.threshold is None else args.threshold
    args.region_threshold = node.region_threshold if args.region_threshold is None else args.region_threshold
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    det = Detector(cfg)
    steps_bar = fit_progress(det, "cold fit")
    scores_path, failed, done, small = out / "scores.jsonl", [], 0, 0
    paths, own = [], 0
    for arg in map(Path, args.images):
        files = image_files(arg) if arg.is_dir() else [arg]
        if arg.is_dir() and arg.resolve() == out.resolve():  # its overlays, written by a run before: no input
            kept = [f for f in files if not f.name.endswith(OVERLAY_SUFFIX)]
            own, files = own + len(files) - len(kept), kept
        if not files:
            failed.append(str(arg))
            print(f"ssdnet score: {arg}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder", file=sys.stderr)
        paths += files
    if own:
        print(f"ssdnet score: left out {counted(own, 'overlay')} (*{OVERLAY_SUFFIX}) in {out}, written by an earlier "
              "run: --out is also an input folder", file=sys.stderr)
    with scores_path.open("a") as log:
        for path, name in zip(tqdm(paths, desc="ssdnet score", unit="img"), output_names(paths, out), strict=True):
            try:
                image = read_rgb(path)
                if min(image.shape[:2]) < MIN_SIDE:  # said here with what to do: the detector's error says only what
                    raise FrameError(f"a {image.shape[1]}x{image.shape[0]} image is below the minimum of "
                                     f"{MIN_SIDE}x{MIN_SIDE} px: score a larger crop, or scale it up")
                det.reset()
                d = det.process(image)
                amap = d.calibrated_map()  # each image alone: judged against the calibration prior
                label = "anomalous" if d.calibrated > args.threshold else "normal"
                regions = find_regions(amap, args.region_threshold, 16, min_peak=args.threshold,
                                       event=label == "anomalous", inset=d.score_inset)  # every verdict says where
                np.save(out / f"{name}_map.npy", amap)
                write_rgb(out / f"{name}{OVERLAY_SUFFIX}",
                          annotated_overlay(image, amap, d.calibrated, args.threshold, [r.bbox for r in regions]))
            except Exception as e:  # one bad file costs that file, never the batch
                failed.append(str(path))
                tqdm.write(f"ssdnet score: {file_problem(path, e)}; skipped", file=sys.stderr)
                continue
            line = {"image": str(path), "score": round(d.calibrated, 4), "raw_score": round(d.score, 4),
                    "threshold": args.threshold, "region_threshold": args.region_threshold, "label": label,
                    "regions": [list(r.bbox) for r in regions], "fit_steps": d.fit_steps,
                    "fit_ms": round(d.fit_ms, 1), "score_ms": round(d.score_ms, 1),
                    "map": str(out / f"{name}_map.npy"), "overlay": str(out / f"{name}{OVERLAY_SUFFIX}")}
            log.write(json.dumps(line) + "\n")
            log.flush()
            tqdm.write(json.dumps(line))
            done += 1
            small += min(image.shape[:2]) < PRIOR_MIN_SIDE
    if steps_bar is not None:
        steps_bar.close()
    print(f"scored {done} of {counted(len(paths), 'image')}"
          + (f"; wrote maps, overlays and {scores_path}" if done else ""))
    if small:
        print(f"ssdnet score: {counted(small, 'image')} under {PRIOR_MIN_SIDE} px a side: judged alone, small frames "
              "score above the prior (measured on 110-256 px frames; normal 32 px crops are over threshold 3 in 83 % "
              "of cases, 64 px in 10 %): judge them against normal images of their size (`ssdnet calibrate`)",
              file=sys.stderr)
    if failed:
        print(f"ssdnet score: {counted(len(failed), 'image')} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="SSDnet YAML config, or a line config (its node.ssdnet); default: built-in "
                                    "defaults")
    p.add_argument("--fast", action="store_true", help="nothing fitted (configs/self-similarity.yaml; the "
                                                       "default fits nothing too since docs/ablations.md section 6)")
    p.add_argument("--threads", type=at_least(1), help="torch threads (default: all cores; never more than it has)")


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="anomaly maps, overlays and scores for image files", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, TIFF, 8 or 16 bits) or folders of them")
    p.add_argument("--out", default="ssdnet-out",
                   help="output folder (default: ssdnet-out; scores.jsonl there is appended to)")
    add_common(p)
    p.add_argument("--steps", type=at_least(0), help="override fit.steps")
    p.add_argument("--threshold", type=finite,
                   help="image-score threshold of the verdict (default: a line --config's node.threshold, else "
                        f"{DEFAULT_THRESHOLD}; `ssdnet calibrate` suggests one for your images)")
    p.add_argument("--region-threshold", type=finite,
                   help="regions: the map above this many of its own std (default: node.region_threshold, a line "
                        "--config's or 3.0)")
    p.set_defaults(func=_cmd)
