"""Per-image fitting of the SSDnet U-Net: a cold fit of N steps or a warm start of K steps.

One step: for each grid scale, a random `patch_fraction` of the image's patches is corrupted
(edge.corrupt) and reconstructed; loss = pixel_weight * L2 + perceptual_weight * mean over VGG19
layers of (1 - per-location cosine similarity) between reconstruction and clean patch, over every pixel or, with
`loss.hidden_only`, the hidden ones; Adam, with the
gradient's norm clipped to `fit.grad_clip` (unclipped, the fit blew up past ~100 steps).
Everything happens on the device, with no host round trip inside a step.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import SSDNetConfig
from .corrupt import corrupt
from .device import autocast, autocast_dtype, memory_format, native_mixed_precision, resolve_device
from .patches import pad_to_multiple, to_patches
from .unet import UNet
from .vgg import VGG19Features, build_vgg, cosine_similarity


@dataclass
class FitStats:
    steps: int
    seconds: float
    loss: float  # mean loss over the last steps (nan when no step ran)


def _weighted_mean(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The mean of `x` weighted by `weight` (its shape; None: a plain mean)."""
    return x.mean() if weight is None else (x * weight).sum() / weight.sum().clamp_min(1e-6)


def image_to_tensor(image: np.ndarray, device: torch.device, multiple: int) -> torch.Tensor:
    """uint8 HxWx3 RGB (or HxW gray) -> (1, 3, H', W') float in [0, 1], reflect-padded to `multiple`."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    image = np.require(image, requirements="CW")  # contiguous; a read-only frame copied (torch.from_numpy warns)
    x = torch.from_numpy(image).to(device).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    return pad_to_multiple(x, multiple)


class Fitter:
    """Owns the U-Net, its optimizer and the VGG19 loss; fits them to one image at a time."""

    def __init__(self, cfg: SSDNetConfig, device: str | torch.device | None = None, vgg: VGG19Features | None = None):
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else resolve_device(cfg.device)
        self.amp = cfg.fit.amp and native_mixed_precision(self.device.type)
        self.fmt = memory_format(self.device, self.amp, cfg.fit.channels_last)
        self.multiple = cfg.fit.pad_multiple
        self.vgg = None
        if cfg.loss.perceptual_weight > 0:
            self.vgg = (vgg or build_vgg(cfg, score=False)).to(self.device, memory_format=self.fmt)
            if self.amp:  # a copy in the autocast dtype: autocast would re-cast the frozen weights on every call
                self.vgg = copy.deepcopy(self.vgg).to(autocast_dtype(self.device))
        self.generator = torch.Generator(self.device)
        torch.manual_seed(cfg.fit.seed)
        self.model = UNet(cfg.model.base_channels).to(self.device, memory_format=self.fmt)
        self._initial = self.state_dict()
        self.reset()

    def reset(self) -> None:
        """Initial weights, a fresh optimizer and the config's seed: the start of a cold fit.
        The model object stays the same, so scorers holding it see every update."""
        self.generator.manual_seed(self.cfg.fit.seed)
        self.load_state_dict(self._initial)

    def _new_optimizer(self) -> None:
        # fused: one kernel, not a loop over parameters
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.fit.lr, fused=True)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.device.type == "cuda")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Start from given weights (the warm start); the optimizer restarts too."""
        self.model.load_state_dict(state)
        self._new_optimizer()

    def _loss(self, clean: torch.Tensor) -> torch.Tensor:
        """The loss on one batch of clean patches (call under `autocast`)."""
        cfg = self.cfg
        corrupted, hidden = corrupt(clean, cfg.corruption, self.generator)
        out = self.model(corrupted.contiguous(memory_format=self.fmt))
        weight = hidden.float() if cfg.loss.hidden_only else None  # (N, 1, H, W): the hidden pixels'
        loss = cfg.loss.pixel_weight * _weighted_mean(((out.float() - clean) ** 2).mean(1),
                                                      None if weight is None else weight[:, 0])
        if self.vgg is not None:
            with torch.no_grad():
                target = self.vgg(clean, cfg.loss.vgg_layers)
            feats = self.vgg(out, cfg.loss.vgg_layers)  # only the loss's layers of a trunk shared with the scorer
            cos = [_weighted_mean(sim := cosine_similarity(feats[k], target[k]).float(),
                                  None if weight is None else F.adaptive_avg_pool2d(weight, sim.shape[-2:])[:, 0])
                   for k in cfg.loss.vgg_layers]
            loss = loss + cfg.loss.perceptual_weight * (1 - sum(cos) / len(cos))
        return loss

    def patch_grids(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image's patches at every grid scale, in the fit's memory layout."""
        return [to_patches(x, s).contiguous(memory_format=self.fmt) for s in self.cfg.fit.scales]

    def step_loss(self, grids: list[torch.Tensor]) -> torch.Tensor:
        """One step's loss: a random `patch_fraction` of each scale's patches, summed over scales.
        One autocast region for all scales, so the U-Net's weights are cast once per step."""
        loss = torch.zeros((), device=self.device)
        with autocast(self.device, self.amp):
            for p in grids:
                k = max(1, math.ceil(self.cfg.fit.patch_fraction * p.shape[0]))
                idx = torch.randperm(p.shape[0], generator=self.generator, device=self.device)[:k]
                loss = loss + self._loss(p[idx])
        return loss

    def fit(
        self,
        image: np.ndarray | torch.Tensor,
        steps: int | None = None,
        init_state: dict[str, torch.Tensor] | None = None,
        progress: Callable[[int, float], None] | None = None,
    ) -> FitStats:
        """Fit on one image for `steps` steps (default cfg.fit.steps; edge.schedule plans warm steps to a budget).

        With `init_state`, start from those weights (warm start); otherwise continue from the
        current ones. Call `reset()` first for a cold fit. `image` is uint8 HxWx3 or a tensor
        from `image_to_tensor`.
        """
        if init_state is not None:
            self.load_state_dict(init_state)
        steps = self.cfg.fit.steps if steps is None else steps
        x = image if isinstance(image, torch.Tensor) else image_to_tensor(image, self.device, self.multiple)
        grids = self.patch_grids(x)
        self.model.train()
        t0 = time.perf_counter()
        done, recent = 0, []
        while done < steps:
            loss = self.step_loss(grids)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.cfg.fit.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the loss-scaled one
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.fit.grad_clip, foreach=True)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            done += 1
            recent.append(loss.detach())
            if progress is not None:
                progress(done, float(loss.detach()))
        self.model.eval()
        tail = recent[-5:]
        mean_loss = float(torch.stack(tail).mean()) if tail else float("nan")
        return FitStats(done, time.perf_counter() - t0, mean_loss / len(grids) if tail else mean_loss)
