"""Training corruptions against identity mapping, vectorised on the patches' device.

Each patch gets (in order): block shuffling with probability `shuffle_prob` (a fraction of its
blocks permuted among themselves), block masking (masked blocks filled with the patch's mean
colour, optionally shifted darker/brighter and keeping some texture: a flat, hole- or stain-like
region), and Gaussian noise. The clean patch is the target.
"""
from __future__ import annotations

import torch

from .config import CorruptionConfig


def _blocks(x: torch.Tensor, b: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, nb, C, b, b) blocks, row-major."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // b, b, w // b, b).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c, b, b)


def _unblocks(blocks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    n, nb, c, b, _ = blocks.shape
    return blocks.reshape(n, h // b, w // b, c, b, b).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def _block_size(b: int, h: int, w: int) -> int:
    """Largest block side <= b that divides both patch sides."""
    while h % b or w % b:
        b -= 1
    return b


def block_mask(n: int, h: int, w: int, b: int, ratio: float, generator: torch.Generator | None, device) -> torch.Tensor:
    """(N, 1, H, W) bool mask of random b x b blocks, each masked with probability `ratio`."""
    b = _block_size(b, h, w)
    keep = torch.rand(n, 1, h // b, w // b, generator=generator, device=device) < ratio
    return keep.repeat_interleave(b, dim=2).repeat_interleave(b, dim=3)


def shuffle_blocks(x: torch.Tensor, b: int, prob: float, ratio: float,
                   generator: torch.Generator | None) -> torch.Tensor:
    """Permute a random `ratio` of the b x b blocks among themselves, in a `prob` fraction of patches."""
    n, _, h, w = x.shape
    b = _block_size(b, h, w)
    blocks = _blocks(x, b)
    nb = blocks.shape[1]
    dev = x.device
    chosen = torch.rand(n, nb, generator=generator, device=dev) < ratio
    chosen &= torch.rand(n, 1, generator=generator, device=dev) < prob
    pos = torch.arange(nb, device=dev, dtype=torch.float32).expand(n, nb)
    # chosen blocks first (random order / position order), then the rest in place
    src = torch.argsort(torch.where(chosen, torch.rand(n, nb, generator=generator, device=dev), 1.0 + pos), dim=1)
    dst = torch.argsort(torch.where(chosen, pos, nb + pos), dim=1)
    index = torch.empty_like(src).scatter_(1, dst, src)
    blocks = torch.gather(blocks, 1, index.view(n, nb, 1, 1, 1).expand_as(blocks))
    return _unblocks(blocks, h, w)


def corrupt(x: torch.Tensor, cfg: CorruptionConfig,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply shuffling, masking and noise to a batch of clean patches in [0, 1]; returns them and the (N, 1, H, W) bool
    mask of the hidden (masked) pixels (every pixel when nothing is masked)."""
    n, _, h, w = x.shape
    out, mask = x, torch.ones(n, 1, h, w, dtype=torch.bool, device=x.device)
    if cfg.shuffle_prob > 0 and cfg.shuffle_ratio > 0:
        out = shuffle_blocks(out, cfg.shuffle_block, cfg.shuffle_prob, cfg.shuffle_ratio, generator)
    if cfg.mask_ratio > 0:
        mask = block_mask(n, h, w, cfg.mask_block, cfg.mask_ratio, generator, x.device)
        fill = out.mean(dim=(2, 3), keepdim=True)
        if cfg.fill_shift > 0:  # a darker or brighter flat region, like a hole or a stain
            fill = fill + cfg.fill_shift * (2 * torch.rand(n, 1, 1, 1, generator=generator, device=x.device) - 1)
        if cfg.fill_keep > 0:  # with some of the texture left in
            keep = cfg.fill_keep * torch.rand(n, 1, 1, 1, generator=generator, device=x.device)
            fill = keep * out + (1 - keep) * fill
        out = torch.where(mask, fill, out)
    if cfg.noise_sigma > 0:
        out = out + cfg.noise_sigma * torch.randn(out.shape, generator=generator, device=x.device, dtype=out.dtype)
    return out, mask
