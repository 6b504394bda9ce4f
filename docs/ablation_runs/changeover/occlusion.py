"""Something covering part of the view for a few frames (a hand, a passing worker): does the camera take it for a
changeover (edge.detector's move rules, docs/ablations.md sections 47 and 51)? 40 frames of TEXTURE (256 px crops,
default config), then FRAMES frames with a flat skin-coloured patch, shaded left to right, over the top COVER share
of the frame, then 20 frames of TEXTURE again. Prints, per (cover, frames): the frame at which the camera's normal
moved (none: -), the covered frames' largest novel share, how many of the 20 frames after were flagged (> 3.0), and
the one of them that took the camera's kept surface back (section 52; none: -).

    python docs/ablation_runs/changeover/occlusion.py [TEXTURE]   # ~6 min on 2 CPU cores
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import texture


def covered(frame: np.ndarray, share: float) -> np.ndarray:
    out = frame.copy()
    rows = int(round(share * frame.shape[0]))
    shade = np.linspace(0.8, 1.1, frame.shape[1])[None, :, None]
    out[:rows] = np.clip(np.array([200, 150, 120])[None, None] * shade, 0, 255).astype(np.uint8)
    return out


def run(src: np.ndarray, share: float, frames: int) -> tuple[str, float, int, str]:
    """(moved at, largest novel share while covered, frames flagged of the 20 after, the one that recalled) of one
    camera."""
    rng, det = np.random.default_rng(0), Detector(SSDNetConfig(), "cpu")
    shares, judge = [], det._surface_moved
    det._surface_moved = lambda novel: shares.append(0.0 if novel is None else float(novel)) or judge(novel)

    def crop():
        y, x = rng.integers(0, 64, 2)
        return src[y:y + 256, x:x + 256].copy()

    for _ in range(40):
        det.process(crop())
    moved, start = "-", len(shares)
    for t in range(frames):
        if det.process(covered(crop(), share)).normal_moved:
            moved = str(t + 1)
    after = [det.process(crop()) for _ in range(20)]
    recalled = next((str(t + 1) for t, d in enumerate(after) if d.normal_recalled), "-")
    return moved, max(shares[start:]), sum(d.calibrated > 3.0 for d in after), recalled


def main(name: str) -> None:
    torch.set_num_threads(1)
    src = texture(name, 320, np.random.default_rng(1))
    print(f"| {name}: cover, frames | moved at | largest novel share | after: flagged of 20 | after: recalled at |")
    for share, frames in ((0.5, 4), (0.5, 8), (0.9, 4), (0.9, 8), (0.9, 24)):
        moved, novel, flagged, recalled = run(src, share, frames)
        print(f"| {share:.0%}, {frames} | {moved} | {novel:.2f} | {flagged} | {recalled} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gravel")
