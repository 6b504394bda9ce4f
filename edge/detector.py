"""Per-source anomaly detector: the streaming policy around one Fitter and one scorer.

Policy: the first frame of a source gets a cold fit (`fit.steps`), every later frame a warm start
of `fit.warm_steps` from the previous frame's weights (or as many as fit in `budget_ms`). With
`fit.score_before_warm_fit` a frame is scored with the weights fitted on earlier frames, before the
warm fit on it, so the net has never seen the frame it judges.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .config import SSDNetConfig
from .fitter import FitStats, Fitter, image_to_tensor
from .scoring import AnomalyScorer
from .vgg import VGG19Features


@dataclass
class Detection:
    anomaly_map: np.ndarray  # float32 (H, W), standardised: in units of the image's own std
    score: float
    fit_steps: int
    fit_ms: float
    score_ms: float
    model_version: int


class Detector:
    """Fits and scores the frames of one source."""

    def __init__(self, cfg: SSDNetConfig, device: str | torch.device | None = None, vgg: VGG19Features | None = None):
        self.cfg = cfg
        needs_vgg = cfg.loss.perceptual_weight > 0 or cfg.score.perceptual_weight > 0
        if needs_vgg and vgg is None:
            layers = tuple(dict.fromkeys(cfg.loss.vgg_layers + cfg.score.vgg_layers))
            vgg = VGG19Features(cfg.vgg_weights, layers)
        self.fitter = Fitter(cfg, device, vgg)
        self.scorer = AnomalyScorer(self.fitter.model, cfg.score, cfg.fit.scales, vgg).to(self.fitter.device)
        self.model_version = 0
        self.total_steps = 0

    def reset(self) -> None:
        """Forget the source: the next frame gets a cold fit."""
        self.model_version = 0

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from given weights: the next frame gets a warm start from them."""
        self.fitter.load_state_dict(state)
        self.model_version = max(self.model_version, 1)

    @property
    def device(self) -> torch.device:
        return self.fitter.device

    def score(self, x: torch.Tensor, height: int, width: int) -> tuple[np.ndarray, float]:
        """Anomaly map (cropped to height x width) and image score for a padded image tensor."""
        with torch.inference_mode():
            amap, score = self.scorer(x)
        return amap[0, 0, :height, :width].float().cpu().numpy(), float(score[0])

    def fit(self, x: torch.Tensor, budget_ms: float | None = None) -> FitStats:
        cold = self.model_version == 0
        if cold:
            self.fitter.reset()
        stats = self.fitter.fit(x, self.cfg.fit.steps if cold else self.cfg.fit.warm_steps, budget_ms=None if cold else budget_ms)
        self.model_version += 1
        self.total_steps += stats.steps
        return stats

    def process(self, image: np.ndarray, budget_ms: float | None = None) -> Detection:
        """Fit on and score one uint8 HxWx3 RGB frame."""
        h, w = image.shape[:2]
        x = image_to_tensor(image, self.device, self.fitter.multiple)
        first = self.model_version == 0
        if self.cfg.fit.score_before_warm_fit and not first:
            t0 = time.perf_counter()
            amap, score = self.score(x, h, w)
            score_ms = (time.perf_counter() - t0) * 1000
            stats = self.fit(x, budget_ms)
        else:
            stats = self.fit(x, budget_ms)
            t0 = time.perf_counter()
            amap, score = self.score(x, h, w)
            score_ms = (time.perf_counter() - t0) * 1000
        return Detection(amap, score, stats.steps, stats.seconds * 1000, score_ms, self.model_version)
