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
once a third of the window is defective). Held-out scores join the statistics once they are more
than half of the last `window // 4` frames: then the camera's normal itself has moved (a new
product, new lighting), and the calibration follows it as fast as it would without the hold-out.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from .config import CalibrationConfig

MAD_TO_STD = 1.4826


class ScoreCalibrator:
    def __init__(self, cfg: CalibrationConfig):
        self.cfg = cfg
        self.scores: deque[float] = deque(maxlen=cfg.window)
        self.held: deque[float] = deque(maxlen=cfg.window)  # scores held out as far above normal
        self.recent: deque[bool] = deque(maxlen=max(1, cfg.window // 4))  # was each recent frame held out?

    def reset(self) -> None:
        self.scores.clear()
        self.held.clear()
        self.recent.clear()

    @property
    def calibrating(self) -> bool:
        return len(self.scores) < self.cfg.min_frames

    def stats(self) -> tuple[float, float]:
        """(median, scale) of the raw scores this camera calls normal now."""
        prior_med, prior_scale = self.cfg.prior_median, self.cfg.prior_scale
        if not self.scores:
            return prior_med, prior_scale
        s = np.fromiter(self.scores, dtype=np.float64)
        med = float(np.median(s))
        scale = max(MAD_TO_STD * float(np.median(np.abs(s - med))), self.cfg.min_scale_fraction * abs(med), 1e-6)
        if self.calibrating:  # the prior counts as min_frames observations, the seen frames as themselves
            w = len(s) / self.cfg.min_frames
            med, scale = w * med + (1 - w) * prior_med, w * scale + (1 - w) * prior_scale
        return med, scale

    def calibrate(self, raw: float) -> float:
        """The calibrated score of `raw` against the scores seen so far (call before `observe`)."""
        med, scale = self.stats()
        return (raw - med) / scale

    def observe(self, raw: float) -> None:
        """Add a frame's raw score (held out while calibrated at `hold_out_z` or more, once calibrated)."""
        z = self.cfg.hold_out_z
        held = z is not None and not self.calibrating and self.calibrate(raw) >= z
        self.recent.append(held)
        (self.held if held else self.scores).append(float(raw))
        if 2 * sum(self.recent) > self.recent.maxlen:  # most recent frames are far above: the normal has moved
            self.scores.extend(self.held)
            self.held.clear()

    def state_dict(self) -> dict:
        return {"scores": list(self.scores), "held": list(self.held), "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()` (a checkpoint from before the hold-out has only "scores")."""
        self.scores = deque((float(s) for s in state["scores"]), maxlen=self.scores.maxlen)
        self.held = deque((float(s) for s in state.get("held", ())), maxlen=self.held.maxlen)
        self.recent = deque((bool(h) for h in state.get("recent", ())), maxlen=self.recent.maxlen)
