"""Anomaly maps from reconstructions: the scorer graph (exported as is to ONNX/TensorRT).

For each grid scale s the image is cut into s x s patches. With `masks = M > 0` each patch is
reconstructed M times, each time with one group of blocks (an r x r tiling, r = ceil(sqrt(M)))
filled with the patch's mean colour, and every pixel takes the reconstruction from the pass in
which it was hidden: the net must predict it from its surroundings, so it cannot copy a defect.
With `clean_view` (or M = 0) the clean patch is also reconstructed in one pass: the net, trained to
repair masked, shuffled and noisy blocks, "repairs" what does not fit the texture.

Maps, per view: L2 = squared error summed over channels; perceptual = 1 - cosine similarity of
VGG19 features of the reconstruction and the input, upsampled to the image. Each is averaged over
scales. With `knn_weight > 0` a third map, not from the reconstruction, is added: the VGG19
self-similarity of the input (edge.knn; on the dev set it carries the accuracy, see
docs/ablations.md sections 3 and 5; the frame's cells its only neighbours, never the padding: section 30),
computed on the input enlarged `knn_upscale` times, with local
intensity statistics (edge.local_stats) appended to the VGG19 features; the map shows it less
`knn_spacing_weight` x how much wider than the frame's mean its nearest cells' spacing is (section
28); `knn_far_weight` (off by default) adds to the distance how much farther than a typical cell's its nearest
cells up to `knn_far_share` of the frame's lie (a long defect finds itself along its length: section 65).
Every map is Gaussian-smoothed and normalised by its own image statistics (each image is its own
reference), then weighted and summed (reconstruction maps averaged over views); with `map_units: knn`
the sum is rescaled per frame into the self-similarity map's raw units, so maps of different frames
compare. Image score = mean of the top (1 - q) fraction of the raw self-similarity map (`image_score:
knn`, VGG feature distance: standardising each frame's map by itself removes what tells frames apart;
with a memory, its blend with the memory distance, without the floor (section 21) and without the
spacing term (section 28)) or of the anomaly map (`image_score: map`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import MemoryConfig, ScoreConfig
from .corrupt import _block_size
from .filters import gaussian_blur, gaussian_kernel
from .knn import cell_size, check_grid, grid_features, knn_distance_and_spacing
from .local_stats import stats_features
from .memory import memory_distance, memory_features
from .patches import from_patches, to_patches
from .sizes import history_rows, knn_dim
from .unet import UNet
from .vgg import VGG19Features, cosine_similarity, layer_stride


def mask_groups(h: int, w: int, block: int, groups: int) -> torch.Tensor:
    """(groups, 1, h, w) bool: group g hides the blocks (i, j) with (i % r) * r + (j % r) == g (mod groups)."""
    b = _block_size(block, h, w)
    r = math.ceil(math.sqrt(groups))
    i = torch.arange(h // b).view(-1, 1) % r
    j = torch.arange(w // b).view(1, -1) % r
    gid = ((i * r + j) % groups).repeat_interleave(b, 0).repeat_interleave(b, 1)
    return torch.stack([gid == g for g in range(groups)]).unsqueeze(1)


class AnomalyScorer(nn.Module):
    """(N, 3, H, W) image in [0, 1], H and W multiples of max(scales) * 8 -> (map (N, 1, H, W), score (N,)).
    `forward(..., frame=(h, w))`: the frame is the input's top-left h x w, the rest its padding (default: none); an
    int64 tensor (2,) too (`score.frame_input`: an exported graph's input, one graph for every frame of an input size).

    With `memory` (a MemoryConfig) the camera's memory takes part: forward(x, bank, state, spacing) also
    gets the bank (M, C), its state (7,) [valid rows, typical spacing, a, b, c, p, q] (edge.memory: the
    feature-distance map is max(a x self-similarity + b x memory distance + c, p x self-similarity + q);
    1, 0, 0, 0, -inf leaves the memory out) and its rows' spacing (M,), and returns, third to fifth, the
    frame's memory features (N, C, gh, gw), for the detector to add to the bank, maps (N, 2, gh, gw): the
    self-similarity and the memory distance (0 while the bank has fewer than k rows) on the memory's grid,
    from which the detector keeps the blend's statistics and picks the cells it adds, and the map the image
    score reads (N, 1, H, W): the blend a x S + b x M + c without the floor. With the memory's history
    (`memory.history_frames`) forward(..., history, history_own) also gets the camera's earlier cells (R, D) and
    their own distances (R,) (the state's 8th value: the valid rows) and returns, sixth, the frame's self-similarity
    cells and their own distances (N, D + 1, kh, kw) for the detector to add to it; S and the map's own term each
    take the with-history search's value where it exceeds the frame-alone one by more than `memory.history_margin`
    std of the latter, else keep the frame-alone one (edge.knn; docs/ablations.md sections 34, 35)."""

    def __init__(self, unet: UNet, cfg: ScoreConfig, scales: tuple[int, ...], vgg: VGG19Features | None = None,
                 memory: MemoryConfig | None = None):
        super().__init__()
        if cfg.uses_vgg and vgg is None:
            raise ValueError("score.perceptual_weight > 0 or score.knn_weight > 0 needs the VGG19 feature extractor")
        if memory is not None and cfg.knn_weight <= 0:
            raise ValueError("the memory is part of the self-similarity term: it needs score.knn_weight > 0")
        self.unet, self.cfg, self.scales, self.memory = unet, cfg, tuple(scales), memory
        self.history = memory is not None and history_rows(memory, knn_dim(cfg)) > 0
        self.search_pieces: int | None = None  # the bank's search in this many pieces; None: as its rows give
        self.vgg = vgg if cfg.uses_vgg else None
        k = gaussian_kernel(cfg.smooth_sigma) if cfg.smooth_sigma > 0 else torch.ones(1)
        self.register_buffer("kernel", k, persistent=False)

    def _features(self, x: torch.Tensor, acts: dict[str, torch.Tensor] | None = None,
                  layers: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """VGG19 features of `layers` (default `score.vgg_layers`: the self-similarity's) from `acts` if given (a
        trunk shared with the fitter and the memory may compute more), else computed."""
        layers = layers or self.cfg.vgg_layers
        acts = self.vgg(x, layers) if acts is None else acts
        return {name: acts[name] for name in layers}

    def views(self) -> tuple[int, ...]:
        """Mask-group counts of the reconstructions scored: M (masked passes) and/or 0 (clean input)."""
        m = self.cfg.masks
        return (m, 0) if m and self.cfg.clean_view else (m,)

    def reconstruct(self, x: torch.Tensor, s: int, masks: int) -> torch.Tensor:
        """Reconstruction of `x` from its s x s grid patches: `masks` passes composited, 0 = one clean pass."""
        p = to_patches(x, s)
        if masks == 0:
            return from_patches(self.unet(p), s)
        hide = mask_groups(p.shape[-2], p.shape[-1], self.cfg.mask_block, masks).to(x.device)  # (M,1,h,w)
        mean = p.mean(dim=(2, 3), keepdim=True)
        inp = torch.where(hide.unsqueeze(1), mean.unsqueeze(0), p.unsqueeze(0))  # (M,B,C,h,w)
        out = self.unet(inp.flatten(0, 1)).view(inp.shape)
        rec = (out * hide.unsqueeze(1).to(out.dtype)).sum(0)
        return from_patches(rec, s)

    def _smooth(self, m: torch.Tensor) -> torch.Tensor:
        """Gaussian smoothing in fp32 (also under autocast: the maps and the score keep fp32's resolution,
        which the per-camera calibration of the score needs)."""
        with torch.autocast(m.device.type, enabled=False):
            return gaussian_blur(m.float(), self.kernel)

    def _normalise(self, m: torch.Tensor) -> torch.Tensor:
        """Make maps of different units comparable, per image: 'std' standardises, 'mean' divides
        by the image mean (a defect of a few % barely moves it) and subtracts 1, 'none' keeps raw
        units. `two_sided`: an error far *below* the image's typical one is anomalous too (a smooth
        defect in a busy texture is easier to predict than the texture)."""
        if self.cfg.normalise == "std":
            m = (m - m.mean(dim=(2, 3), keepdim=True)) / (m.std(dim=(2, 3), keepdim=True) + 1e-8)
        elif self.cfg.normalise == "mean":
            m = m / (m.mean(dim=(2, 3), keepdim=True) + 1e-8) - 1
        return m.abs() if self.cfg.two_sided else m

    def raw_maps(self, x: torch.Tensor, acts: dict[str, torch.Tensor] | None = None
                 ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per view: smoothed multi-scale L2 map and perceptual map (None when its weight is 0; on
        `score.perceptual_vgg_layers`), unnormalised. `acts`: the input's VGG19 activations, if already computed."""
        perceptual, layers = self.cfg.perceptual_weight > 0, self.cfg.perceptual_vgg_layers
        feats = self._features(x, acts, layers) if perceptual else None
        out = []
        for masks in self.views():
            l2 = torch.zeros_like(x[:, :1])
            perc = torch.zeros_like(x[:, :1])
            for s in self.scales:
                rec = self.reconstruct(x, s, masks).float()
                l2 = l2 + ((x - rec) ** 2).sum(1, keepdim=True) / len(self.scales)
                if perceptual:
                    for name, f_rec in self._features(rec, None, layers).items():
                        d = 1 - cosine_similarity(f_rec, feats[name]).unsqueeze(1)
                        d = F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)
                        perc = perc + d / (len(feats) * len(self.scales))
            out.append((self._smooth(l2), self._smooth(perc) if perceptual else None))
        return out

    def knn_upscale(self, h: int, w: int) -> int:
        """The self-similarity input's enlargement for an h x w frame: `knn_upscale`, lowered (to 1 at
        least) while the enlarged frame would exceed `knn_max_pixels`."""
        f = self.cfg.knn_upscale
        while f > 1 and h * w * f * f > self.cfg.knn_max_pixels:
            f -= 1
        return f

    def knn_cell(self, h: int, w: int) -> tuple[int, int]:
        """The self-similarity of an h x w input: its enlargement and its cells' side on the enlarged input."""
        f = self.knn_upscale(h, w)
        stride = max(layer_stride(name) for name in self.cfg.vgg_layers)
        return f, cell_size(h * f, w * f, max(self.cfg.knn_cell * f, stride), self.cfg.knn_max_cells)

    @property
    def knn_dim(self) -> int:
        return knn_dim(self.cfg)

    def knn_cells_shape(self, h: int, w: int) -> tuple[int, int, int]:
        """(D + 1, kh, kw): the self-similarity's cells of an h x w input with their own distances."""
        f, cell = self.knn_cell(h, w)
        return self.knn_dim + 1, -(-h * f // cell), -(-w * f // cell)

    def check_frame(self, h: int, w: int, frame: tuple[int, int]) -> None:
        """The self-similarity's refusal of a frame too small for `knn_k` (edge.knn.check_grid), for a graph of an
        h x w input that reads the frame's size as an input and would score it with padding for neighbours."""
        if self.cfg.knn_weight > 0:
            f, cell = self.knn_cell(h, w)
            check_grid(*((side * f + cell - 1) // cell for side in frame), self.cfg.knn_k)

    def knn_map(self, x: torch.Tensor, feats: dict[str, torch.Tensor] | None = None,
                frame: tuple[int, int] | torch.Tensor | None = None,
                history: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Smoothed VGG19 self-similarity map of the input (edge.knn), unnormalised, and how much wider than
        the frame's mean its nearest cells' spacing is: (N, 2, H, W), with `history` (rows, their own distances,
        valid rows) also the same two of the search with it (N, 4, H, W); and the cells with their own distances
        (N, D + 1, kh, kw; None without `history`). `feats`: the input's VGG19 features if already computed
        (unused when the input is enlarged first); `frame`: the frame's height and width in the padded input (its
        cells alone are neighbours), numbers or an int64 tensor (2,) (an exported graph's input)."""
        cfg, (h, w) = self.cfg, (int(x.shape[-2]), int(x.shape[-1]))
        f, cell = self.knn_cell(h, w)
        if f > 1:
            feats = self._features(F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False))
        elif feats is None:
            feats = self._features(x)
        g = grid_features(feats, (h * f, w * f), cell)
        if cfg.knn_stats_weight > 0:
            g = torch.cat([g.float(), cfg.knn_stats_weight * stats_features(x, cell // f, cfg.knn_stats_sigma)], dim=1)
        cells = None if frame is None else tuple((side * f + cell - 1) // cell for side in frame)  # rounded up
        d = knn_distance_and_spacing(g, cfg.knn_k, cfg.knn_radius, cells, history, cfg.knn_far_share,
                                      cfg.knn_far_weight)
        smoothed = self._smooth(F.interpolate(d, size=(h, w), mode="bilinear", align_corners=False))
        return smoothed, torch.cat([g.float(), d[:, :1]], dim=1) if history is not None else None

    def _raise(self, alone: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        """The with-history map where it stands more than `memory.history_margin` std of the frame-alone map above
        it, else the frame-alone map (the std over the whole input, its padding included: one reduction that every
        backend exports; a robust median is not an ONNX op)."""
        margin = self.memory.history_margin * alone.std(dim=(2, 3), keepdim=True)
        return torch.where(later > alone + margin, later, alone)

    def memory_map(self, x: torch.Tensor, acts: dict[str, torch.Tensor], bank: torch.Tensor, state: torch.Tensor,
                   spacing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Smoothed distance of every location to the camera's memory (edge.memory; 0 while the bank has
        fewer than k valid rows), less `spacing_weight` x how much wider than the bank's typical spacing
        (`state[1]`) it is at the nearest rows; the plain distance on the memory's grid, unsmoothed; and the
        frame's memory features."""
        size = (int(x.shape[-2]), int(x.shape[-1]))
        feats = memory_features(acts, size, self.memory)
        d, nearest = memory_distance(feats, bank, state[0], self.memory.k, self.search_pieces)
        wider = spacing.float()[nearest].mean(1, keepdim=True) - state[1]
        filled = state[0].reshape(()) > 0
        d = torch.where(filled, d, torch.zeros_like(d))  # an empty bank's inf stays out
        m = torch.where(filled, d - self.memory.spacing_weight * wider, torch.zeros_like(d))
        return self._smooth(F.interpolate(m, size=size, mode="bilinear", align_corners=False)), d, feats

    def forward(self, x: torch.Tensor, bank: torch.Tensor | None = None, state: torch.Tensor | None = None,
                spacing: torch.Tensor | None = None, history: torch.Tensor | None = None,
                history_own: torch.Tensor | None = None, frame: tuple[int, int] | torch.Tensor | None = None):
        cfg = self.cfg
        amap = torch.zeros_like(x[:, :1])
        knn_own_input = cfg.knn_weight > 0 and self.knn_upscale(int(x.shape[-2]), int(x.shape[-1])) == 1
        need_acts = cfg.perceptual_weight > 0 or knn_own_input or self.memory is not None
        layers = cfg.scored_layers + (self.memory.layers if self.memory is not None else ())
        acts = self.vgg(x, tuple(dict.fromkeys(layers))) if need_acts else None
        views = self.raw_maps(x, acts) if cfg.uses_unet else []
        for l2, perc in views:
            amap = amap + cfg.pixel_weight * self._normalise(l2) / len(views)
            if perc is not None:
                amap = amap + cfg.perceptual_weight * self._normalise(perc) / len(views)
        if self.history and (history is None or history_own is None or state is None):
            raise ValueError("a scorer with a history needs its rows, their own distances and the memory's state")
        earlier = (history, history_own, state[7]) if self.history else None
        knn, knn_cells = self.knn_map(x, self._features(x, acts) if knn_own_input else None, frame, earlier
                                      ) if cfg.knn_weight > 0 else (None, None)
        extra = ()
        if self.memory is not None:
            if bank is None or state is None or spacing is None:
                raise ValueError("a scorer with a memory needs its bank, state and spacing")
            mem, grid, mem_feats = self.memory_map(x, acts, bank, state, spacing)
            cell = int(x.shape[-2]) // int(grid.shape[-2])
            # the feature-distance map: own frame and the camera's memory, in the self-similarity's units, no lower
            # than the floor that keeps part of the frame's own verdict. The memory and the image score read the
            # blend of the plain distance; the map shows the frame's own less its spacing term, which fades as the
            # memory takes over (times a^2, the frame's own share of the blend: 1 while the memory stays out)
            # with the history, each takes the with-history verdict where it exceeds the frame-alone one by more than
            # `history_margin` std: the history can raise a cell its earlier frames tell from the texture, never clear
            # a defect it has seen before, and its noise on normal cells stays out (margin 0: the larger of the two)
            fade = cfg.knn_spacing_weight * state[2] * state[2]
            plain, own = knn[:, :1], knn[:, :1] - fade * knn[:, 1:2]
            if self.history:
                plain, own = self._raise(plain, knn[:, 2:3]), self._raise(own, knn[:, 2:3] - fade * knn[:, 3:4])
            blend = state[2] * plain + state[3] * mem + state[4]
            extra = (mem_feats, torch.cat([F.avg_pool2d(plain, cell, cell, ceil_mode=True), grid], dim=1), blend)
            extra += (knn_cells,) if self.history else ()
            knn = torch.maximum(state[2] * own + state[3] * mem + state[4], state[5] * own + state[6])
        elif knn is not None:
            knn = knn[:, :1] - cfg.knn_spacing_weight * knn[:, 1:2]
        score_map = extra[2] if extra else knn
        if knn is not None:
            amap = amap + cfg.knn_weight * self._normalise(knn)
            if cfg.map_units == "knn":  # the same map, rescaled per frame into the kNN distance's units
                amap = knn.mean(dim=(2, 3), keepdim=True) + knn.std(dim=(2, 3), keepdim=True) * amap / cfg.knn_weight
        pixels = int(amap.shape[-2]) * int(amap.shape[-1])  # python ints, also under the ONNX tracer
        k = max(1, int(round((1 - cfg.image_score_quantile) * pixels)))
        score = (score_map if cfg.image_score == "knn" else amap).flatten(1).topk(k, dim=1).values.mean(1)
        return (amap, score, *extra)
