"""`ssdnet score IMAGE...`: per image, a cold SSDnet fit, then the anomaly map (.npy), a heat-map
overlay (.png) and one JSON line with the score, in the output folder."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.config import load_config
from edge.detector import Detector
from edge.overlay import heatmap_overlay, read_rgb, write_rgb


def _cmd(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.steps is not None:
        cfg = cfg.model_copy(update={"fit": cfg.fit.model_copy(update={"steps": args.steps})})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    det = Detector(cfg)
    scores_path = out / "scores.jsonl"
    with scores_path.open("a") as log:
        for path in tqdm([Path(p) for p in args.images], desc="ssdnet score", unit="img"):
            image = read_rgb(path)
            det.reset()
            d = det.process(image)
            np.save(out / f"{path.stem}_map.npy", d.anomaly_map)
            write_rgb(out / f"{path.stem}_overlay.png", heatmap_overlay(image, d.anomaly_map))
            line = {"image": str(path), "score": round(d.score, 4), "fit_steps": d.fit_steps,
                    "fit_ms": round(d.fit_ms, 1), "score_ms": round(d.score_ms, 1),
                    "map": str(out / f"{path.stem}_map.npy"), "overlay": str(out / f"{path.stem}_overlay.png")}
            log.write(json.dumps(line) + "\n")
            tqdm.write(json.dumps(line))
    print(f"wrote maps, overlays and {scores_path}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="anomaly maps and overlays for image files", description=__doc__)
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--out", default="ssdnet-out", help="output folder (default: ssdnet-out)")
    p.add_argument("--config", help="SSDnet YAML config (default: built-in defaults)")
    p.add_argument("--steps", type=int, help="override fit.steps")
    p.set_defaults(func=_cmd)
