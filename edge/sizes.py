"""Sizes of a camera's model, without torch: a VGG19 layer's channels, a memory row's width, the rows a bank holds,
a camera's memory in MB. The config's checks and the node's memory budget read them where no scorer runs (a camera's
stage loads no torch)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import MemoryConfig, ScoreConfig

# conv layers per VGG19 block; a 2x2 max-pool follows each block
VGG_BLOCKS = ((3, 64, 64), (64, 128, 128), (128, 256, 256, 256, 256), (256, 512, 512, 512, 512),
              (512, 512, 512, 512, 512))
STATS_CHANNELS = 5  # the local statistics (edge.local_stats): intensity mean and std, three colour offsets
BYTES_PER_VALUE = 2  # a memory bank is stored in fp16
SPACING_BYTES = 4  # and each row's spacing in fp32


def layer_channels(name: str) -> int:
    """Channels of a VGG19 layer ("relu3_1" -> 256)."""
    block, conv = (int(v) for v in name.removeprefix("relu").split("_"))
    return VGG_BLOCKS[block - 1][conv]


def knn_dim(cfg: ScoreConfig) -> int:
    """Width D of a self-similarity cell (a history row): the VGG19 layers' channels and the local statistics."""
    return sum(layer_channels(name) for name in cfg.vgg_layers) + (STATS_CHANNELS if cfg.knn_stats_weight > 0 else 0)


def feature_dim(cfg: MemoryConfig) -> int:
    """Width of a memory row: `cfg.dims`, or the channels of `cfg.layers` without a projection."""
    return cfg.dims or sum(layer_channels(name) for name in cfg.layers)


def capacity(cfg: MemoryConfig, dim: int) -> int:
    """Bank rows (and their spacing) that fit `cfg.size_mb`."""
    return int(cfg.size_mb * 2**20 // (dim * BYTES_PER_VALUE + SPACING_BYTES))


def history_rows(cfg: MemoryConfig, history_dim: int) -> int:
    """Rows of the history ring: `history_frames` x `history_cells` (none without a width or a bank)."""
    return cfg.history_frames * cfg.history_cells if history_dim and cfg.size_mb > 0 else 0


def footprint_mb(cfg: MemoryConfig, history_dim: int = 0) -> float:
    """A camera's memory at most, MB: the bank (`size_mb`), the rows waiting out `delay_frames` and the history
    (rows of `history_dim` values)."""
    row = feature_dim(cfg) * BYTES_PER_VALUE + SPACING_BYTES
    queue = cfg.delay_frames * cfg.per_frame * row if cfg.size_mb > 0 else 0
    history = history_rows(cfg, history_dim) * (history_dim * BYTES_PER_VALUE + SPACING_BYTES)
    return cfg.size_mb + (queue + history) / 2**20
