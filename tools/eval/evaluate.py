"""`ssdnet eval`: SSDnet and zero-shot baselines on an MVTec-AD style folder.

Each image is judged on its own. Modes:
- cold: a fresh model is fitted on every test image (`fit.steps`), then scores it;
- warm: a model is cold-fitted once per category on one `good` image (the reference, the first in
  sorted order), and every test image gets `fit.warm_steps` from those weights;
- stream: what the edge node does with a camera: the category's images in sorted order are one
  stream, the first gets a cold fit, every later one is scored and warm-fitted from the weights the
  previous one left (`fit.score_before_warm_fit`); the camera's memory and score calibration follow
  the stream too.

`--warmup DIR [--warmup-frames N]` (stream mode): before a category's test images, the camera streams
N unlabelled frames of DIR/<category>/ if that folder exists, else of DIR itself (sorted by name),
exactly as the node would (scored, fitted, remembered, calibrated; nothing is measured on them).
Categories that share one warm-up list start from one warmed-up state (the detector's state_dict,
weights, optimizer, random state, memory and calibration: what the node would have) instead of
streaming it again.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from edge.args import at_least, between, check_output_file
from edge.config import MIN_SIDE, ConfigError, SSDNetConfig, load_config
from edge.detector import Detector
from edge.images import IMAGE_SUFFIXES, image_files, read_rgb

from ..score_images import set_threads
from .baselines import BASELINES
from .dataset import GOOD, DatasetError, Sample, list_categories, load_category
from .metrics import summarize

METRICS = ("pixel_auroc", "pixel_auprc", "aupro", "pixel_f1_max", "image_auroc", "seconds_per_image")
HEADERS = dict(zip(METRICS, ("pixel AUROC", "pixel AUPRC", "AUPRO@30%", "pixel F1max", "image AUROC", "s/image"),
                   strict=True))


def corrupt_input(image: np.ndarray, noise_sigma: float, dead_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Robustness check: Gaussian noise (sigma in grey levels) and dead (black) pixels."""
    if noise_sigma > 0:
        image = np.clip(image + rng.normal(0, noise_sigma, image.shape), 0, 255).astype(np.uint8)
    if dead_fraction > 0:
        image = image.copy()
        image[rng.random(image.shape[:2]) < dead_fraction] = 0
    return image


def _metrics(maps, samples: list[Sample], scores, seconds: float) -> dict[str, float]:
    out = summarize(maps, [s.mask for s in samples], scores, [s.label for s in samples])
    out["seconds_per_image"] = seconds / len(samples)
    return out


def _mean(rows: list[dict[str, float]], keys=METRICS) -> dict[str, float]:
    """The mean of each metric over the rows that define it (NaN where none does; `undefined` names them)."""
    defined = {k: [r[k] for r in rows if math.isfinite(r[k])] for k in keys}
    return {k: float(np.mean(v)) if v else math.nan for k, v in defined.items()}


def _sampled(samples: list[Sample], limit: int | None) -> list[Sample]:
    """At most `limit` samples, taken in turn from each defect type (good among them), in their stream order: a quick
    look sees both labels (the first `limit` in name order were often all good, every metric undefined)."""
    if limit is None:
        return samples
    by_type: dict[str, list[Sample]] = {}
    for s in samples:
        by_type.setdefault(s.defect_type, []).append(s)
    turns = [s for group in itertools.zip_longest(*by_type.values()) for s in group if s is not None]
    kept = {id(s) for s in turns[:limit]}
    return [s for s in samples if id(s) in kept]


def undefined(result: dict) -> dict[str, list[str]]:
    """Per category the metrics it could not define (no defect pixels, no good image): left out of the means."""
    return {cat: names for cat, m in result["categories"].items()
            if (names := [k for k in METRICS if not math.isfinite(m[k])])}


def json_safe(value):
    """`value` with NaN (an undefined metric) as None: the JSON file stays JSON (NaN is not, for strict parsers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def by_defect_type(maps, samples: list[Sample], scores) -> dict[str, dict[str, float]]:
    """The metrics of each defect type: its images pooled with the category's good ones."""
    out = {}
    for kind in sorted({s.defect_type for s in samples} - {GOOD}):
        idx = [i for i, s in enumerate(samples) if s.defect_type in (kind, GOOD)]
        out[kind] = summarize([maps[i] for i in idx], [samples[i].mask for i in idx], [scores[i] for i in idx],
                              [samples[i].label for i in idx])
    return out


def warmup_paths(folder: Path, category: str, limit: int | None) -> list[Path]:
    """The warm-up frames of a category: DIR/<category>/ if it exists, else DIR's own images, sorted."""
    source = folder / category if (folder / category).is_dir() else folder
    if not source.is_dir():
        raise DatasetError(f"warm-up folder not found: {source}")
    paths = image_files(source)
    if not paths:
        raise DatasetError(f"no warm-up images ({', '.join(IMAGE_SUFFIXES)}) in {source}")
    return paths[:limit]


def _check_side(path: Path, shape: tuple[int, ...], what: str = "") -> None:
    """A DatasetError naming `path` (`what` it is) when its image is below the scorer's minimum side."""
    h, w = shape[:2]
    if min(h, w) < MIN_SIDE:
        raise DatasetError(f"{what}{path} is {w}x{h} px: below the scorer's minimum of {MIN_SIDE}x{MIN_SIDE}")


def _check_warmup_frame(path: Path) -> None:
    try:
        shape = read_rgb(path).shape
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read warm-up frame: {e}") from None
    _check_side(path, shape, "warm-up frame ")


def warm_up(det: Detector, paths: list[Path], tick: Callable[[], None]) -> dict:
    """Stream `paths` through a reset detector as the node would; its state afterwards (a copy)."""
    det.reset()
    for path in paths:
        det.process(read_rgb(path))
        tick()
    return copy.deepcopy(det.state_dict())


def run_ssdnet(det: Detector, samples: list[Sample], images: list[np.ndarray], mode: str, tick: Callable[[], None],
               warmed: dict | None = None):
    """Maps and scores of SSDnet for one category, and the seconds it took. `warmed`: the stream
    starts from this detector state (after a warm-up) instead of a reset."""
    maps, scores = [], []
    t0 = time.perf_counter()
    reference = None
    if mode == "warm":
        ref = next((i for i, s in enumerate(samples) if s.defect_type == GOOD), 0)
        det.reset()
        det.process(images[ref])
        reference = det.fitter.state_dict()
    if mode == "stream":
        det.reset()
        if warmed is not None:
            det.restore(warmed)
    for image in images:
        if mode == "cold":
            det.reset()
        elif mode == "warm":
            det.restore(reference)
        d = det.process(image)
        maps.append(d.anomaly_map)
        scores.append(d.score)
        tick()
    return maps, scores, time.perf_counter() - t0


def evaluate(root: Path, cfg: SSDNetConfig, categories: list[str] | None = None, mode: str = "cold",
             baselines: tuple[str, ...] = tuple(BASELINES), noise_sigma: float = 0.0, dead_fraction: float = 0.0,
             limit: int | None = None, jobs: int = 1, warmup: Path | None = None,
             warmup_frames: int | None = None, threads: int | None = None) -> dict:
    """Per-category and mean metrics for SSDnet and each baseline. `jobs` > 1 splits the categories
    over that many worker processes (torch threads shared out among them, or `threads` each); the result is the
    same.
    `warmup` (stream mode): a folder of unlabelled frames streamed first (`warmup_frames` at most)."""
    categories = categories or list_categories(root)
    if unknown := [b for b in baselines if b not in BASELINES]:  # refused before any work: `ssdnet eval` exits 2
        raise ConfigError(f"--baselines: unknown {', '.join(unknown)}; choose from {', '.join(BASELINES)}, or none")
    if warmup is not None and mode != "stream":
        raise ValueError("--warmup streams frames before a camera's test images: it needs --mode stream")
    frames = {p for c in (categories if warmup is not None else ()) for p in warmup_paths(warmup, c, warmup_frames)}
    for path in sorted(frames):  # a missing or empty folder, a frame unreadable or too small: said now, naming it
        _check_warmup_frame(path)
    args = (root, cfg, mode, baselines, noise_sigma, dead_fraction, limit, warmup, warmup_frames)
    jobs = max(1, min(jobs, len(categories)))
    cores = os.cpu_count() or 1
    if jobs == 1:
        set_threads(threads)
        return summarise(_evaluate_part(*args, categories))
    threads = min(threads, cores) if threads is not None else max(1, cores // jobs)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=torch.set_num_threads,
                             initargs=(threads,)) as pool:
        calls = [(*args, categories[i::jobs], i) for i in range(jobs)]
        parts = list(pool.map(_evaluate_part, *zip(*calls, strict=True)))
    merged = parts[0]
    for part in parts[1:]:
        merged["categories"].update(part["categories"])
        merged["images"] += part["images"]
        for b in baselines:
            merged["baselines"][b]["categories"].update(part["baselines"][b]["categories"])
    merged["categories"] = {c: merged["categories"][c] for c in categories}  # the asked-for order
    return summarise(merged)


def _evaluate_part(root: Path, cfg: SSDNetConfig, mode: str, baselines: tuple[str, ...], noise_sigma: float,
                   dead_fraction: float, limit: int | None, warmup: Path | None, warmup_frames: int | None,
                   categories: list[str], position: int = 0) -> dict:
    """Per-category metrics of `categories`, with a progress bar (`position`: its line, one per worker)."""
    data = {c: _sampled(load_category(root, c), limit) for c in categories}
    for sample in (x for samples in data.values() for x in samples):  # said now, naming it, not by the detector
        _check_side(sample.path, sample.image.shape)
    warm = {c: warmup_paths(warmup, c, warmup_frames) if warmup is not None else [] for c in categories}
    det = Detector(cfg)
    total = sum(len(v) for v in data.values()) + sum(len(p) for p in {tuple(p) for p in warm.values()})
    result = {"config": cfg.model_dump(mode="json"), "mode": mode, "dataset": str(root),
              "input_noise_sigma": noise_sigma, "dead_pixel_fraction": dead_fraction,
              "warmup_dir": str(warmup) if warmup is not None else None,
              "warmup_frames": max((len(p) for p in warm.values()), default=0),
              "categories": {}, "images": [], "baselines": {b: {"categories": {}} for b in baselines}}
    warmed: dict[tuple[Path, ...], dict] = {}  # warm-up list -> the detector state after it
    with tqdm(total=total, desc="ssdnet eval", unit="img", position=position) as bar:
        for cat, samples in data.items():
            bar.set_postfix_str(cat)
            key = tuple(warm[cat])
            if key and key not in warmed:
                bar.set_postfix_str(f"{cat} (warm-up)")
                warmed[key] = warm_up(det, warm[cat], bar.update)
            rng = np.random.default_rng([cfg.fit.seed, zlib.crc32(cat.encode())])  # same corruption however split
            images = [corrupt_input(s.image, noise_sigma, dead_fraction, rng) for s in samples]
            maps, scores, secs = run_ssdnet(det, samples, images, mode, bar.update, warmed.get(key))
            result["categories"][cat] = {**_metrics(maps, samples, scores, secs), "warmup_frames": len(key),
                                         "defect_types": by_defect_type(maps, samples, scores)}
            result["images"] += [{"path": str(s.path), "label": s.label, "score": round(sc, 4)}
                                 for s, sc in zip(samples, scores, strict=True)]
            for b in baselines:
                t0 = time.perf_counter()
                bmaps = [BASELINES[b](im) for im in images]
                bscores = [float(np.quantile(m, cfg.score.image_score_quantile)) for m in bmaps]
                result["baselines"][b]["categories"][cat] = _metrics(bmaps, samples, bscores, time.perf_counter() - t0)
    return result


def summarise(result: dict) -> dict:
    """Add the means over categories (overall and per defect type) and how many categories SSDnet wins against
    each baseline."""
    result["mean"] = _mean(list(result["categories"].values()))
    kinds: dict[str, list[dict[str, float]]] = {}
    for cat in result["categories"].values():
        for kind, m in cat["defect_types"].items():
            kinds.setdefault(kind, []).append(m)
    result["mean_by_defect_type"] = {k: _mean(rows, rows[0]) for k, rows in sorted(kinds.items())}
    result["beats_baseline"] = {}
    for b, base in result["baselines"].items():
        rows = base["categories"]
        base["mean"] = _mean(list(rows.values()))
        result["beats_baseline"][b] = sum(result["categories"][c]["pixel_auroc"] > rows[c]["pixel_auroc"] for c in rows)
    return result


def print_table(result: dict, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:  # a log file or a pipe: do not squeeze the table into 80 columns
        console.width = max(console.width, 150)
    table = Table(title=f"SSDnet, {result['mode']} mode, on {result['dataset']}")
    table.add_column("category")
    for k in METRICS:
        table.add_column(HEADERS[k], justify="right")
    baselines = list(result["baselines"])
    for b in baselines:
        table.add_column(f"AUROC {b}", justify="right")

    def row(name: str, m: dict, base: list[dict], style: str | None = None):
        cells = [f"{m[k]:.3f}" if k != "seconds_per_image" else f"{m[k]:.2f}" for k in METRICS]
        table.add_row(name, *cells, *[f"{x['pixel_auroc']:.3f}" for x in base], style=style)

    for cat, m in result["categories"].items():
        row(cat, m, [result["baselines"][b]["categories"][cat] for b in baselines])
    row("mean", result["mean"], [result["baselines"][b]["mean"] for b in baselines], style="bold")
    console.print(table)
    if result["mean_by_defect_type"]:
        console.print("SSDnet by defect type (its images with the category's good ones; mean over the categories "
                      "that have it), pixel AUROC / AUPRC (image AUROC): " + ", ".join(
                          f"{k} {m['pixel_auroc']:.3f} / {m['pixel_auprc']:.3f} ({m['image_auroc']:.3f})"
                          for k, m in result["mean_by_defect_type"].items()))
    for cat, names in undefined(result).items():
        console.print(f"[yellow]{cat}: {', '.join(names)} undefined (no defect pixels or no good image among its "
                      "images): left out of the mean[/yellow]")
    for b in baselines:
        console.print(f"SSDnet pixel AUROC above {b} on "
                      f"{result['beats_baseline'][b]}/{len(result['categories'])} categories")


def _cmd(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    overrides = {k: v for k, v in (("steps", args.steps), ("warm_steps", args.warm_steps)) if v is not None}
    if overrides:
        cfg = cfg.model_copy(update={"fit": cfg.fit.model_copy(update=overrides)})
    if args.device:
        cfg = cfg.model_copy(update={"device": args.device})
    cats = list(dict.fromkeys(c for c in args.categories.split(",") if c)) if args.categories else None  # once each
    baselines = tuple(b for b in args.baselines.split(",") if b) if args.baselines != "none" else ()
    if args.warmup and args.mode != "stream":
        raise ConfigError("--warmup streams frames before a camera's test images: it needs --mode stream")
    if args.json:  # a folder or a read-only place fails now, not after the evaluation
        check_output_file(Path(args.json), "--json", "eval.json")
    try:
        result = evaluate(Path(args.dataset), cfg, cats, args.mode, baselines, args.input_noise, args.dead_pixels,
                          args.limit, args.jobs, Path(args.warmup) if args.warmup else None, args.warmup_frames,
                          args.threads)
    except DatasetError as e:
        raise FileNotFoundError(str(e)) from None
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(json_safe(result), indent=2, allow_nan=False))
        print(f"wrote {args.json}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate SSDnet and baselines on an MVTec-AD style folder",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="folder with <category>/test/<type>/*.png and <category>/ground_truth/")
    p.add_argument("--categories", help="comma-separated subset (default: all)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--config", help="SSDnet YAML config, or a line config (its node.ssdnet); default: built-in "
                                    "defaults")
    p.add_argument("--mode", choices=("cold", "warm", "stream"), default="cold",
                   help="cold: each image alone (default); warm: each from the last's weights; stream: each "
                        "category's images through one camera's Detector as the node runs them (memory, calibration)")
    p.add_argument("--steps", type=at_least(0), help="override fit.steps")
    p.add_argument("--warm-steps", type=at_least(0), help="override fit.warm_steps")
    p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated, or 'none'")
    p.add_argument("--input-noise", type=at_least(0, float), default=0.0,
                   help="add Gaussian noise (sigma, grey levels)")
    p.add_argument("--dead-pixels", type=between(0, 1), default=0.0, help="set this fraction of pixels to black")
    p.add_argument("--limit", type=at_least(1), help="at most this many images per category (quick looks)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--warmup", metavar="DIR",
                   help="stream mode: unlabelled frames streamed before each category's test images "
                        "(DIR/<category>/ if it exists, else DIR's images, sorted)")
    p.add_argument("--warmup-frames", type=at_least(0), metavar="N", help="at most N warm-up frames (default: all)")
    p.add_argument("--jobs", type=at_least(1), default=1,
                   help="worker processes, categories split among them (CPU: one per core is fastest)")
    p.add_argument("--threads", type=at_least(1), help="torch threads per process (default: the cores shared out "
                                                       "among the jobs; on a busy machine 1 can be 10x faster)")
    p.set_defaults(func=_cmd)
