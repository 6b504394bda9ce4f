"""How many frames in a row, each mostly novel to the camera's memory, should move its normal now that a moved camera
keeps the surface it left and takes it back at the first frame that shows it (docs/ablations.md sections 51, 52)?
Per `memory.move_frames` N: section 51's changeovers (40 frames of FIRST, 120 of SECOND with a drawn defect in every
third; the frame that moved, the first 30 frames' normal and defective frames flagged, the later 90's), a lighting
step (40 gravel frames, 90 at GAIN x; moves, defects and normal frames flagged) and a cover (40 gravel frames, a flat
patch over 90 % of the frame for COVER frames, 20 gravel frames; moves, recalls, normal frames flagged after).

    python docs/ablation_runs/changeover/move_frames.py changeover N FIRST SECOND   # ~1.5 min
    python docs/ablation_runs/changeover/move_frames.py lighting N GAIN             # ~1 min
    python docs/ablation_runs/changeover/move_frames.py cover N FRAMES               # ~40 s

Each prints one row of docs/results/changeover/move_frames.txt (N 1, 2, 3, 5; 36 runs, ~20 min with 2 at a time).
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import changeover as co  # noqa: E402
from occlusion import covered  # noqa: E402

from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.synthetic import draw_defect  # noqa: E402

THRESHOLD = 3.0


def stream(det: Detector, frames: list[np.ndarray]) -> tuple[list[float], list[int], list[int]]:
    """Calibrated scores, and the frames that moved and that recalled."""
    cal, moved, recalled = [], [], []
    for i, frame in enumerate(frames):
        d = det.process(frame)
        cal.append(d.calibrated)
        if d.normal_moved:
            moved.append(i)
        if d.normal_recalled:
            recalled.append(i)
    return cal, moved, recalled


def with_defects(frames) -> tuple[list[np.ndarray], np.ndarray]:
    rng, out, labels = np.random.default_rng(1), [], []
    for i, frame in enumerate(frames):
        if i % 3 == 2:
            frame, _ = draw_defect(frame, rng)
        out.append(frame)
        labels.append(i % 3 == 2)
    return out, np.array(labels)


def flagged(cal: np.ndarray, labels: np.ndarray, part: slice) -> str:
    c, m = cal[part], labels[part]
    return f"{int((c[m] > THRESHOLD).sum())}/{int(m.sum())}, {int((c[~m] > THRESHOLD).sum())}/{int((~m).sum())}"


def main(kind: str, n: int, *args: str) -> None:
    torch.set_num_threads(1)
    det = Detector(SSDNetConfig.model_validate({"memory": {"move_frames": n}}), "cpu")
    rng = np.random.default_rng(0)
    first = args[0] if kind == "changeover" else "gravel"
    stream(det, list(co.crops(first, 40, rng)))
    if kind == "changeover":
        frames, labels = with_defects(co.crops(args[1], 120, rng))
    elif kind == "lighting":
        gain = float(args[0])
        frames, labels = with_defects(np.clip(f * gain, 0, 255).astype(np.uint8) for f in co.crops("gravel", 90, rng))
    else:
        cover = int(args[0])
        frames = [covered(f, 0.9) for f in co.crops("gravel", cover, rng)] + list(co.crops("gravel", 20, rng))
        labels = np.array([False] * len(frames))
    cal, moved, recalled = stream(det, frames)
    cal = np.array(cal)
    if kind == "cover":
        print(f"| cover {args[0]} | {n} | {moved} | {recalled} | {flagged(cal, labels, slice(cover, None))} |")
    else:
        print(f"| {kind} {' '.join(args)} | {n} | {moved} | {recalled} | {flagged(cal, labels, slice(0, 30))} | "
              f"{flagged(cal, labels, slice(30, None))} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
