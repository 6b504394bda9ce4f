"""False events on normal frames under a camera's nuisances: 40 crops of a grey texture (or a flat grey surface)
streamed through one Detector (default config, node.threshold 3.0), as written, JPEG-compressed, with sensor noise,
a gain flicker, a drifting white balance, or blur; without and with the local statistics' spread floor
(edge.local_stats.SPREAD_FLOOR), each pair on the same frames.

    python docs/ablation_runs/colour_floor/nuisances.py [SCENARIO ...]   # ~12 min on 2 CPU cores
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import cv2
import numpy as np

import edge.local_stats as local_stats
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import texture

FRAMES, THRESHOLD, CALIBRATED_FROM = 40, 3.0, 16
Nuisance = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def jpeg(f: np.ndarray, rng: np.random.Generator, quality: int = 70) -> np.ndarray:
    _, data = cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()


def noise(f: np.ndarray, rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    return np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8)


def gain(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(f * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)


def white_balance_then_jpeg(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return jpeg(np.clip(f * rng.uniform(0.97, 1.03, 3), 0, 255).astype(np.uint8), rng)


def blur(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(f, (0, 0), rng.uniform(0.3, 1.2))


def gravel(rng: np.random.Generator) -> Iterator[np.ndarray]:
    src = texture("gravel", 320, np.random.default_rng(1))
    for _ in range(FRAMES):
        y, x = rng.integers(0, 64, 2)
        yield src[y:y + 256, x:x + 256]


def flat(rng: np.random.Generator) -> Iterator[np.ndarray]:
    for _ in range(FRAMES):
        yield np.full((256, 256, 3), 128, np.uint8)


SCENARIOS: dict[str, tuple[Callable, Nuisance | None]] = {
    "gravel": (gravel, None), "gravel, JPEG 70": (gravel, jpeg), "gravel, noise 3": (gravel, noise),
    "gravel, gain 0.85-1.15": (gravel, gain),
    "gravel, white balance 0.97-1.03, JPEG 70": (gravel, white_balance_then_jpeg),
    "gravel, blur 0.3-1.2 px": (gravel, blur), "flat grey, noise 3": (flat, noise),
    "flat grey, noise 3, JPEG 70": (flat, lambda f, rng: jpeg(noise(f, rng), rng)),
}


def run(frames: Callable, nuisance: Nuisance | None) -> np.ndarray:
    rng, det, scores = np.random.default_rng(0), Detector(SSDNetConfig(), "cpu"), []
    for f in frames(rng):
        scores.append(det.process(f if nuisance is None else nuisance(f, rng)).calibrated)
    return np.array(scores)


def main(names: list[str]) -> None:
    floor = local_stats.SPREAD_FLOOR
    print(f"| normal frames | events of {FRAMES}, no floor (from frame {CALIBRATED_FROM}; max) | "
          f"with the floor |")
    print("|---|---|---|")
    for name in names or SCENARIOS:
        cells = []
        for local_stats.SPREAD_FLOOR in (0.0, floor):
            s = run(*SCENARIOS[name])
            late = int((s[CALIBRATED_FROM:] > THRESHOLD).sum())
            cells.append(f"{int((s > THRESHOLD).sum())} ({late}; {s.max():.1f})")
        print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
