"""A grey texture as a colour camera's video shows it: the same 40 frames as PNG files and as an MPEG-4 clip
(OpenCV's mp4v, its default quality), a red disc drawn into frames 20 and 30. Each frame through one Detector per
camera as the node runs it (default config); the calibrated score against node.threshold 3.0, without and with the
local statistics' spread floor (edge.local_stats.SPREAD_FLOOR) in the same run.

    python docs/ablation_runs/colour_floor/codec_ghost.py [--frames 40]   # ~4 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

import edge.local_stats as local_stats
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import texture

DEFECTS = (20, 30)


def clip(n: int, folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(the frames as written, the frames as the video decodes them), RGB."""
    rng = np.random.default_rng(0)
    src = texture("gravel", 320, rng)
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (256, 256))
    frames = []
    for i in range(n):
        y, x = rng.integers(0, 60, 2)
        bgr = np.ascontiguousarray(src[y:y + 256, x:x + 256, ::-1])
        if i in DEFECTS:
            cv2.circle(bgr, (128, 128), 12, (30, 30, 200), -1)
        writer.write(bgr)
        frames.append(bgr[..., ::-1].copy())
    writer.release()
    cap, decoded = cv2.VideoCapture(str(folder / "clip.mp4")), []
    while (ok_frame := cap.read())[0]:
        decoded.append(ok_frame[1][..., ::-1].copy())
    return frames, decoded


def stream(frames: list[np.ndarray], threshold: float = 3.0) -> tuple[str, int, int]:
    det, marks, events, false = Detector(SSDNetConfig(), "cpu"), [], 0, 0
    for i, f in enumerate(frames):
        d = det.process(f)
        flagged = d.calibrated > threshold
        events += flagged
        false += flagged and i not in DEFECTS
        marks.append(f"{d.calibrated:.1f}{'*' if flagged else ''}")
    return " ".join(marks), events, false


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        written, decoded = clip(args.frames, Path(tmp))
    for floor in (0.0, local_stats.SPREAD_FLOOR):
        local_stats.SPREAD_FLOOR = floor
        for name, frames in (("png", written), ("mp4", decoded)):
            marks, events, false = stream(frames)
            print(f"floor {floor * 255:.1f} grey levels, {name}: {events} events, {false} on frames without a defect")
            print(f"  calibrated scores (* an event): {marks}")


if __name__ == "__main__":
    main()
