"""Label-free, per-camera image-score calibration: how far a frame's raw score lies above what is
normal for *this* camera, in robust standard deviations.

The calibrator keeps the camera's last `window` raw scores; calibrated = (raw - median) / (1.4826 *
MAD), the MAD floored at `min_scale_fraction` of the median so that a camera with near-constant
scores does not turn noise into alarms. Until `min_frames` scores are in, the camera is
*calibrating*: the median and scale come from the config's prior (measured on normal frames of the
dev sets, docs/ablations.md), blended with what has been seen. One `node.threshold` then serves
every camera: "this many robust standard deviations above the camera's normal".

A frame calibrated at `hold_out_z` or more is held out of the statistics: a burst of defects (a bad
batch) would otherwise widen the camera's normal and mute the alarms after it (the MAD breaks down
once a third of the window is defective); so is a frame as far below it. When more than half of the
last `window // 4` frames are held out on one side, the normal itself has moved (a product
changeover, new lighting): the statistics start afresh, and the detector with them
(docs/ablations.md section 47). A window mixing two products kept the old median for half of it
(after a move down, blind to every defect) and a spread two levels wide (after a move up).

Each score is kept with the weight the camera's memory had in the score (the blend's b, 0 before the memory
enters): the memory's entry and its growing weight move the score's level and spread, so the statistics read the
scores seen while the memory counted at least `memory_share` of what it counts now, and at least the last
`memory_scores` (docs/ablations.md section 59). Without it, 50 warm-up frames left real-dev's calibration on the
frame-alone scores of its first 16, and 3 of 59 defective frames passed threshold 3.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

from .config import CalibrationConfig

MAD_TO_STD = 1.4826


class ScoreCalibrator:
    def __init__(self, cfg: CalibrationConfig):
        self.cfg = cfg
        self.scores: deque[float] = deque(maxlen=cfg.window)  # those of its frames within hold_out_z of its normal
        self.weights: deque[float] = deque(maxlen=cfg.window)  # the memory's weight in each of those scores
        # each recent frame's side: +1 held out above the normal, -1 as far below it, 0 neither
        self.recent: deque[int] = deque(maxlen=max(1, cfg.window // 4))

    def reset(self) -> None:
        self.scores.clear()
        self.weights.clear()
        self.recent.clear()

    @property
    def calibrating(self) -> bool:
        return len(self.scores) < self.cfg.min_frames

    def stats(self, weight: float = 0.0) -> tuple[float, float]:
        """(median, scale) of the raw scores this camera calls normal now, its memory's weight in the score
        `weight`."""
        prior_med, prior_scale = self.cfg.prior_median, self.cfg.prior_scale
        if not self.scores:
            return prior_med, prior_scale
        s = self.read(weight)
        med = float(np.median(s))
        scale = max(MAD_TO_STD * float(np.median(np.abs(s - med))), self.cfg.min_scale_fraction * abs(med), 1e-6)
        if self.calibrating:  # the prior counts as min_frames observations, the seen frames as themselves
            w = len(s) / self.cfg.min_frames
            med, scale = w * med + (1 - w) * prior_med, w * scale + (1 - w) * prior_scale
        return med, scale

    def read(self, weight: float = 0.0) -> np.ndarray:
        """The scores the statistics read, the memory's weight in the score now `weight` (`memory_share`)."""
        s = np.fromiter(self.scores, dtype=np.float64)
        if self.cfg.memory_share is not None and weight > 0:
            alike = np.fromiter(self.weights, dtype=np.float64) >= self.cfg.memory_share * weight
            alike[-self.cfg.memory_scores:] = True  # and at least the last memory_scores
            s = s[alike]
        return s

    def calibrate(self, raw: float, weight: float = 0.0) -> float:
        """The calibrated score of `raw`, its memory's weight in it `weight`, against the scores seen so far (call
        before `observe`)."""
        med, scale = self.stats(weight)
        return (raw - med) / scale

    def observe(self, raw: float, weight: float = 0.0) -> bool:
        """Add a frame's raw score, its memory's weight in it `weight` (held out while calibrated `hold_out_z` or
        more from the normal, either way, once calibrated). True when the camera's normal has moved with it (most
        recent frames were held out on one side): the statistics have started afresh."""
        z, side = self.cfg.hold_out_z, 0
        if z is not None and not self.calibrating:
            c = self.calibrate(raw, weight)
            side = 1 if c >= z else -1 if c <= -z else 0
        self.recent.append(side)
        if side == 0:
            self.scores.append(float(raw))
            self.weights.append(float(weight))
        elif 2 * self.recent.count(side) > self.recent.maxlen:
            self.reset()
            return True
        return False

    def state_dict(self) -> dict:
        return {"scores": list(self.scores), "weights": list(self.weights), "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()` (a checkpoint from before the hold-out has only "scores"; one from before
        section 47 marked held-out frames True, as +1 does; one from before section 59 has no weights: its scores
        count as the memory's weight 0's). ValueError for a NaN or an infinity in them (a damaged checkpoint: every
        frame of its camera failed, its calibrated score NaN)."""
        scores = [float(s) for s in state["scores"]]
        weights = [float(w) for w in state.get("weights", [0.0] * len(scores))]
        if not all(map(math.isfinite, scores + weights)):
            raise ValueError("the calibration's scores hold NaN or infinite values")
        self.scores = deque(scores, maxlen=self.scores.maxlen)
        self.weights = deque(weights, maxlen=self.weights.maxlen)
        self.recent = deque((int(s) for s in state.get("recent", ())), maxlen=self.recent.maxlen)
