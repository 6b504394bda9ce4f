"""Section 5: per-frame time of the streaming detector (Detector.process on warm frames: score, then
the warm fit) for three configs, interleaved frame by frame so the shared machine's load hits them
alike; 256x256 synthetic frames, one torch thread.
  python docs/ablation_runs/speed_sec5.py   (prints a table, writes speed_sec5.json)"""
import json
import statistics

import numpy as np
import torch

from tools.bench import _frames
from edge.config import SSDNetConfig
from edge.detector import Detector

CONFIGS = {
    "default (self-similarity 2x + statistics, reconstruction 0.1)": {},
    "configs/self-similarity.yaml (nothing fitted)": {"score": {"pixel_weight": 0.0, "perceptual_weight": 0.0}},
    "section 4 default (self-similarity 1x, reconstruction 0.25)": {
        "score": {"pixel_weight": 0.25, "perceptual_weight": 0.25, "knn_upscale": 1, "knn_stats_weight": 0.0,
                  "map_units": "std"}},
}


def main(frames: int = 6) -> None:
    torch.set_num_threads(1)
    images = _frames(256, frames + 1, seed=2)
    dets = {name: Detector(SSDNetConfig.model_validate(cfg), "cpu") for name, cfg in CONFIGS.items()}
    for det in dets.values():
        det.process(images[0])  # the cold first frame
    times = {name: [] for name in dets}
    for image in images[1:]:
        for name, det in dets.items():
            d = det.process(image)
            times[name].append((d.fit_ms + d.score_ms, d.fit_ms, d.score_ms))
    out = {}
    base = statistics.median(t[0] for t in times[next(iter(dets))])
    print(f"{'config':66s} {'frame ms':>9s} {'fit ms':>7s} {'score ms':>9s} {'vs default':>10s}")
    for name, t in times.items():
        frame, fit, score = (statistics.median(v[i] for v in t) for i in range(3))
        out[name] = {"frame_ms": round(frame, 1), "fit_ms": round(fit, 1), "score_ms": round(score, 1),
                     "speedup_vs_default": round(base / frame, 2)}
        print(f"{name:66s} {frame:9.0f} {fit:7.0f} {score:9.0f} {base / frame:9.2f}x")
    json.dump(out, open("docs/ablation_runs/speed_sec5.json", "w"), indent=1)


if __name__ == "__main__":
    main()
