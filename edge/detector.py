"""Per-source anomaly detector: the streaming policy around one Fitter and one scorer.

Policy: the first frame of a source gets a cold fit (`fit.steps`), every later frame a warm start
from the previous frame's weights of as many steps as the frame-deadline scheduler (edge.schedule)
plans: `fit.warm_steps`, or fewer so that the fit fits `fit.budget_ms` and the whole frame
`fit.frame_budget_ms` (at least 1 step; a budget that cannot be met is counted and logged). With
`fit.score_before_warm_fit` a frame is scored with the weights fitted on earlier frames, before the
warm fit on it, so the net has never seen the frame it judges. When no scored map uses the U-Net
(`score.pixel_weight` and `score.perceptual_weight` 0, as in configs/self-similarity.yaml) nothing is
fitted: the frame is only scored.

`Detector` is what the edge node's detector contract (`pipeline.node.Detector`) describes:
`process(image) -> Detection`, `reset()`, `state_dict()`, `restore(state)`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .config import SSDNetConfig
from .fitter import FitStats, Fitter, image_to_tensor
from .frames import check_frame, to_frame_size, to_working_size
from .schedule import StepScheduler
from .scorers import build_scorer
from .vgg import VGG19Features, build_vgg


@dataclass
class Detection:
    anomaly_map: np.ndarray  # float32 (H, W), in the units of `score.map_units`
    score: float
    fit_steps: int
    fit_ms: float
    score_ms: float
    model_version: int
    budget_met: bool = True  # False: the scheduler expected even its minimum steps to overrun a budget
    diverged: bool = False  # the fit on this frame went non-finite; the weights before it were restored


class Detector:
    """Fits and scores the frames of one source."""

    def __init__(self, cfg: SSDNetConfig, device: str | torch.device | None = None, vgg: VGG19Features | None = None):
        self.cfg = cfg
        vgg = vgg if vgg is not None else build_vgg(cfg)
        self.fitter = Fitter(cfg, device, vgg)
        # where the scorer runs (cfg.score.backend); the torch backend shares the Fitter's U-Net
        self.backend = build_scorer(cfg, unet=self.fitter.model, vgg=vgg, device=self.fitter.device)
        self.scorer = self.backend.module  # the AnomalyScorer
        self.model_version = 0
        self.total_steps = 0
        self.diverged = False
        self.diverged_fits = 0
        warm = cfg.fit.warm_steps  # the one scheduler of this source, configured once from the fit config
        self.scheduler = StepScheduler(frame_budget_ms=cfg.fit.frame_budget_ms, fit_budget_ms=cfg.fit.budget_ms,
                                       min_steps=min(1, warm), max_steps=warm)

    def reset(self) -> None:
        """Forget the source: the next frame gets a cold fit."""
        self.model_version = 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The current weights (what a checkpoint holds)."""
        return self.fitter.state_dict()

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from given weights: the next frame gets a warm start from them."""
        self.fitter.load_state_dict(state)
        self._push_weights()
        self.model_version = max(self.model_version, 1)

    @property
    def device(self) -> torch.device:
        return self.fitter.device

    def score(self, x: torch.Tensor, height: int, width: int) -> tuple[np.ndarray, float]:
        """Anomaly map (cropped to height x width) and image score for a padded image tensor."""
        amap, score = self.backend.score(x)
        return amap[0, 0, :height, :width].float().cpu().numpy(), float(score[0])

    def fit(self, x: torch.Tensor) -> FitStats:
        """Cold fit on a source's first frame, else a warm fit of the steps the scheduler plans (no
        step at all when no scored map uses the U-Net)."""
        cold = self.model_version == 0
        if not self.cfg.score.uses_unet:
            self.model_version += 1
            return FitStats(0, 0.0, float("nan"))
        if cold:
            self.fitter.reset()
            steps = self.cfg.fit.steps
        else:
            steps = self.scheduler.plan().steps
        before = None if cold else self.fitter.state_dict()
        stats = self.fitter.fit(x, steps)
        self.diverged = not math.isfinite(stats.loss) or not all(
            torch.isfinite(p).all() for p in self.fitter.model.parameters())
        if self.diverged:  # a NaN/inf fit: keep scoring with the last good weights
            self.diverged_fits += 1
            if before is None:
                self.fitter.reset()
            else:
                self.fitter.load_state_dict(before)
        self.scheduler.observe_fit(stats.steps, stats.seconds * 1000)
        self._push_weights()
        self.model_version += 1
        self.total_steps += stats.steps
        return stats

    def _push_weights(self) -> None:
        """Hand the Fitter's current weights to an exported scorer (no re-export, no rebuild)."""
        if self.backend.name != "torch":
            self.backend.update_weights(self.fitter.model.state_dict())

    def process(self, image: np.ndarray) -> Detection:
        """Fit on and score one uint8 HxWx3 RGB frame of any size from MIN_SIDE up (edge.frames: FrameError
        below, scaled down above `max_pixels`); `fit.budget_ms` bounds the warm fit, `fit.frame_budget_ms`
        the whole call (both through the scheduler, which only ever shortens the warm fit)."""
        start = time.perf_counter()
        image = check_frame(image)
        frame_h, frame_w = image.shape[:2]
        image = to_working_size(image, self.cfg.max_pixels)
        h, w = image.shape[:2]
        x = image_to_tensor(image, self.device, self.fitter.multiple)
        first = self.model_version == 0
        if self.cfg.fit.score_before_warm_fit and not first:
            t0 = time.perf_counter()
            amap, score = self.score(x, h, w)
            score_ms = (time.perf_counter() - t0) * 1000
            stats = self.fit(x)
        else:
            stats = self.fit(x)
            t0 = time.perf_counter()
            amap, score = self.score(x, h, w)
            score_ms = (time.perf_counter() - t0) * 1000
        total_ms = (time.perf_counter() - start) * 1000
        self.scheduler.observe_frame(total_ms, stats.seconds * 1000, score_ms, warm=not first)
        met = first or self.scheduler.last_plan is None or self.scheduler.last_plan.met
        amap = to_frame_size(amap, frame_h, frame_w)
        return Detection(amap, score, stats.steps, stats.seconds * 1000, score_ms, self.model_version, met,
                         self.diverged)
