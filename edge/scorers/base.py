"""The scorer-backend interface and its errors (one module per backend beside this one).

Every backend has the same interface:

    scorer = build_scorer(cfg)                          # edge.scorers.factory
    scorer.update_weights(fitter.model.state_dict())    # after every fit; no re-export, no rebuild
    amap, score = scorer.score(x, (h, w))               # x (N, 3, H, W) float32 in [0, 1], the frame
                                                        # h x w of it (the rest: padding; default: all)
                                                        # -> (N, 1, H, W) float32 tensor, (N,) tensor

With a memory in the config (edge.memory), the camera's FeatureMemory is handed over once
(`scorer.use_memory(memory)`); every `score` reads its bank and state as graph inputs and leaves
the frame's memory features and maps (self-similarity and memory distance on the memory's grid) in
`scorer.features` and `scorer.memory_maps`, and the map its image score reads (the blend without the
floor, edge.scoring) in `scorer.score_map`, for the detector; with the memory's history also its history
and leaves the frame's self-similarity cells in `scorer.knn_cells`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Mapping

import torch

from ..memory import FeatureMemory, grid_shape, search_rows
from ..sizes import feature_dim

BACKENDS = ("torch", "onnxruntime", "tensorrt")
CPU_PROVIDER = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
MAX_GRAPHS = 4  # input sizes an exported backend holds a graph (session, engine) for at once


class BackendError(RuntimeError):
    """A scorer backend that cannot be used as configured."""


class BackendUnavailable(BackendError):
    """The backend's runtime (package, GPU, provider) is not present on this machine."""


class ProviderFallbackError(BackendError):
    """ONNX Runtime would run on other providers than asked for (typically a silent CPU fall back)."""


class ParityError(BackendError):
    """An engine's output differs from the FP32 PyTorch scorer by more than the tolerance."""


def padded_frame(h: int, w: int, frame: tuple[int, int] | None) -> tuple[int, int] | None:
    """`frame`, checked to lie inside an h x w input; None when it is all of it (one graph serves both)."""
    if frame is None or tuple(frame) == (h, w):
        return None
    fh, fw = (int(v) for v in frame)
    if not (0 < fh <= h and 0 < fw <= w):
        raise ValueError(f"a {fh}x{fw} frame does not fit its {h}x{w} padded input")
    return fh, fw


class GraphCache(OrderedDict):
    """An exported backend's graphs by input size, at most MAX_GRAPHS: a camera whose frame size changes keeps its
    model, and the graph of the size it used least recently is let go (built again if that size comes back)."""

    def get(self, key: Hashable, default=None):
        """The graph for `key` (a use: it becomes the most recent), or `default`."""
        if key not in self:
            return default
        self.move_to_end(key)
        return self[key]

    def __setitem__(self, key: Hashable, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > MAX_GRAPHS:
            self.popitem(last=False)


def unet_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """UNet.state_dict() keys, whether or not they carry the ``unet.`` prefix of the scorer module."""
    return {k.removeprefix("unet."): v for k, v in state_dict.items()}


def detached(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """References to a U-Net state (no copy), keys without the ``unet.`` prefix."""
    return {k: v.detach() for k, v in unet_state(state_dict).items()}


class Scorer(ABC):
    """A scorer backend around an AnomalyScorer module (`module`); see the module docstring."""

    name: str = "?"
    module: torch.nn.Module
    memory: FeatureMemory | None = None  # the camera's memory, read at every score
    features: torch.Tensor | None = None  # the last scored frame's memory features (None without a memory)
    memory_maps: torch.Tensor | None = None  # and its self-similarity and memory distance on that grid (N, 2, gh, gw)
    score_map: torch.Tensor | None = None  # and the map its image score reads (N, 1, H, W)
    knn_cells: torch.Tensor | None = None  # and, with a history, its self-similarity cells (N, D + 1, kh, kw)
    filled_rows_only = False  # search the bank's filled rows alone (eager, or a graph with a dynamic bank axis);
    # else the bank's whole allocation (static shapes), the rows past the fill count masked out

    def use_memory(self, memory: FeatureMemory) -> None:
        """Score against this memory from now on (a reference: later additions are seen)."""
        self.memory = memory

    def memory_inputs(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(bank, state, spacing[, history, its own distances]) for the graph, or () when the scorer has no memory
        (an empty one until handed one)."""
        if self.module.memory is None:
            return ()
        if self.memory is None:
            self.memory = FeatureMemory(self.module.memory, device, history_dim=self.module.knn_dim)
        m = self.memory
        history = (m.history.to(device), m.history_own.to(device)) if self.module.history else ()
        rows = search_rows(len(m.bank), m.count, self.module.memory.k) if self.filled_rows_only else len(m.bank)
        return m.bank[:rows].to(device), m.state_tensor().to(device), m.spacing[:rows].to(device), *history

    def memory_outputs(self, n: int, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Buffers for an exported graph's memory outputs, fp32: features (n, C, gh, gw), maps (n, 2, gh, gw),
        the score's map (n, 1, h, w) and, with a history, the self-similarity's cells (n, D + 1, kh, kw)."""
        cfg, grid = self.module.memory, grid_shape(h, w, self.module.memory)
        cells = ((n, *self.module.knn_cells_shape(h, w)),) if self.module.history else ()
        return tuple(torch.empty(shape, dtype=torch.float32, device=device)
                     for shape in ((n, feature_dim(cfg), *grid), (n, 2, *grid), (n, 1, h, w), *cells))

    def keep_memory_outputs(self, outs: tuple[torch.Tensor, ...]) -> None:
        """Hold a scoring pass's memory outputs for the detector (none: the scorer has no memory)."""
        outs = tuple(t.float() for t in outs)
        self.features, self.memory_maps, self.score_map = outs[:3] if outs else (None, None, None)
        self.knn_cells = outs[3] if len(outs) > 3 else None

    @abstractmethod
    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """New U-Net weights (UNet.state_dict() keys, with or without a ``unet.`` prefix)."""

    @abstractmethod
    def score(self, x: torch.Tensor, frame: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float32 in [0, 1] whose top-left `frame` (height, width) is the frame and the rest its
        padding (None: all of it) -> (anomaly map (N, 1, H, W) float32, score (N,) float32)."""

    def __call__(self, x: torch.Tensor, frame: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score(x, frame)

    def info(self) -> dict:
        return {"backend": self.name}
