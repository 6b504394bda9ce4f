"""The ``tensorrt`` backend: a native engine per input size, new weights every frame without a rebuild.

The engine (FP16 U-Net by default, or FP32) is built once per (graph, shape, precision, TensorRT
version, GPU) and cached on disk (edge.scorers.engine_cache), the last MAX_GRAPHS sizes' engines in memory
(edge.scorers.base.GraphCache); new weights go in with
``trt.Refitter`` (``refit``, the default), or as engine inputs (``inputs``). A new or cached engine
must pass a parity gate against the FP32 PyTorch map on its first frame (edge.scorers.parity) or it
is refused (ParityError), deleted from the cache and not built again in the process (`failed`; the Detector
scores with torch instead).
"""
from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from .base import BackendError, BackendUnavailable, GraphCache, ParityError, Scorer, detached, padded_frame
from .engine_cache import EngineCache, engine_cache_key
from .onnx_graph import OUTPUT_NAMES, ExportedScorer, export_scorer, memory_io, weights_for_graph
from .parity import DEFAULT_TOLERANCE, ParityReport, ParityTolerance, parity_check

log = logging.getLogger(__name__)
NOT_INSTALLED = "TensorRT is not installed (pip install 'ssdnet-edge[tensorrt]'; on Jetson use JetPack's)"
NO_GPU = "the tensorrt backend needs a CUDA GPU visible to torch (no CUDA GPU here)"
MIN_MAJOR = 10  # strongly typed networks, the refitter's device weights, execute_async_v3 (JetPack 6.0 ships 8.6)


def tensorrt():
    """The tensorrt module (MIN_MAJOR or later). Imported on first use: it exists only on GPU machines (an optional
    extra)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable(NOT_INSTALLED) from None
    version = str(getattr(trt, "__version__", "0"))
    if int(version.split(".")[0] or 0) < MIN_MAJOR:
        raise BackendUnavailable(f"TensorRT {version} is too old: the tensorrt backend needs TensorRT {MIN_MAJOR} or "
                                 "later (on a Jetson, JetPack 6.1+); choose score.backend onnxruntime or torch")
    return trt


def require_tensorrt():
    """The tensorrt module, when a CUDA GPU is visible to torch too; else BackendUnavailable saying which is missing."""
    trt = tensorrt()
    if not torch.cuda.is_available():
        raise BackendUnavailable(NO_GPU)
    return trt


def build_engine(onnx_bytes: bytes, input_shape: Sequence[int], *, max_batch: int = 1,
                 workspace_mib: int = 2048, refit: bool = True) -> bytes:
    """Build a strongly typed engine, refittable with `refit` (a graph with weights to refit: else every weight
    would be refittable, and none folded); precision comes from the graph (fp16 U-Net or fp32).

    Strong typing is the only mode of TensorRT 11 and opt-in from 10.x: the FP16 ONNX export casts
    the U-Net to fp16 and keeps the map arithmetic in fp32, so no precision flags are needed.
    """
    trt = tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse the scorer graph:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if refit:
        config.set_flag(trt.BuilderFlag.REFIT)
    _, c, h, w = input_shape
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, c, h, w), (1, c, h, w), (max(1, max_batch), c, h, w))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError("TensorRT failed to build the scorer engine (see the TensorRT log above)")
    return bytes(plan)


class TensorRTScorer(Scorer):
    """Native TensorRT engine per input size; weights refitted (or bound as inputs) each frame."""

    name = "tensorrt"
    STRATEGIES = ("refit", "inputs")
    failed: dict[str, str] = {}  # engine key -> why it failed to build or its parity gate, in this process

    def __init__(self, module: torch.nn.Module, *, device: torch.device | str = "cuda", precision: str = "fp16",
                 strategy: str = "refit", cache: EngineCache | str | Path | None = None, max_batch: int = 1,
                 tolerance: ParityTolerance = DEFAULT_TOLERANCE):
        self.trt = require_tensorrt()
        if precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be fp16 or fp32, got {precision!r}")
        if strategy not in self.STRATEGIES:
            raise ValueError(f"strategy must be one of {self.STRATEGIES}, got {strategy!r}")
        self.device = torch.device(device)
        if self.device.type != "cuda":
            self.device = torch.device("cuda")
        self.module = module
        self.precision, self.strategy, self.max_batch, self.tolerance = precision, strategy, max_batch, tolerance
        self.cache = cache if isinstance(cache, EngineCache) else EngineCache(cache)
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        self._engines = GraphCache()  # (h, w, frame) -> engine entry
        self._state: dict[str, torch.Tensor] | None = None
        self._version = 0
        self.parity: ParityReport | None = None

    @property
    def _wdtype(self) -> torch.dtype:
        return torch.float16 if self.precision == "fp16" else torch.float32

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        self._state = detached(state_dict)
        self._version += 1

    def _current_state(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            self._state = detached(self.module.unet.state_dict())
        return self._state

    def _entry(self, h: int, w: int, frame: tuple[int, int] | None) -> dict:
        e = self._engines.get((h, w, frame))
        if e is not None:
            return e
        trt = self.trt
        exported = export_scorer(self.module, h, w, fp16=self.precision == "fp16",
                                 weights_as_inputs=self.strategy == "inputs", state_dict=self._current_state(),
                                 frame=frame)
        gpu = torch.cuda.get_device_name(self.device)
        key = engine_cache_key(exported.model_hash(), (self.max_batch, 3, h, w), self.precision, trt.__version__, gpu,
                               self.strategy)
        if key in self.failed:  # another camera's scorer tried it: not minutes of building again
            raise BackendError(f"TensorRT engine {key} failed before in this process: {self.failed[key]}")
        plan = self.cache.load(key)
        fresh = plan is None
        if fresh:
            t0 = time.perf_counter()
            try:
                plan = build_engine(exported.to_bytes(), (1, 3, h, w), max_batch=self.max_batch,
                                    refit=self._refits(exported))
            except BackendError as err:
                self.failed[key] = str(err)
                raise
            log.info("built TensorRT engine %s in %.1f s", key, time.perf_counter() - t0)
            self.cache.store(key, plan, {"model_hash": exported.model_hash(), "shape": [self.max_batch, 3, h, w],
                                         "precision": self.precision, "tensorrt": trt.__version__, "gpu": gpu,
                                         "strategy": self.strategy, "weights": exported.weight_names})
        engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:
            self.cache.evict(key)
            if fresh:  # a cached one may be stale: the next use builds it anew
                self.failed[key] = "the engine just built could not be deserialized"
            raise BackendError(f"TensorRT engine {key} could not be deserialized; evicted"
                               f"{'' if fresh else ', rebuilt on next use'}")
        e = {"key": key, "exported": exported, "engine": engine, "context": engine.create_execution_context(),
             "refitter": trt.Refitter(engine, self.logger) if self._refits(exported) else None,
             "version": -1, "weights": {}, "gated": False}
        if e["refitter"] is not None:
            refittable = set(e["refitter"].get_all_weights())
            missing = set(exported.weight_names.values()) - refittable
            if missing:
                self.cache.evict(key)
                self.failed[key] = f"engine weights not refittable by name: {sorted(missing)[:5]}"
                raise BackendError(self.failed[key])
        self._engines[(h, w, frame)] = e
        return e

    def _refits(self, exported: ExportedScorer) -> bool:
        """Whether the graph's engine takes new weights by refit: the `refit` strategy, and weights to take."""
        return self.strategy == "refit" and bool(exported.weight_names)

    def _refresh(self, e: dict) -> None:
        if e["version"] == self._version or not e["exported"].weight_names:  # nothing fitted in the graph
            return
        trt = self.trt
        dt = trt.DataType.HALF if self._wdtype == torch.float16 else trt.DataType.FLOAT
        weights = {n: t.to(self.device, self._wdtype).contiguous()
                   for n, t in weights_for_graph(e["exported"], self._current_state()).items()}
        stream = torch.cuda.current_stream(self.device)
        if self.strategy == "refit":
            r = e["refitter"]
            for name, t in weights.items():
                if not r.set_named_weights(name, trt.Weights(dt, t.data_ptr(), t.numel()), trt.TensorLocation.DEVICE):
                    raise BackendError(f"TensorRT refused new weights for {name}")
            if not r.refit_cuda_engine_async(stream.cuda_stream):
                raise BackendError(f"TensorRT refit failed (missing weights: {r.get_missing_weights()})")
        else:
            for name, t in weights.items():
                e["context"].set_tensor_address(name, t.data_ptr())
        e["weights"] = weights  # alive until the next update (refit reads them asynchronously)
        e["version"] = self._version

    def _run(self, e: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = e["context"]
        n, _, h, w = x.shape
        xin = x.detach().to(self.device, torch.float32).contiguous()
        ctx.set_input_shape("image", tuple(xin.shape))
        ctx.set_tensor_address("image", xin.data_ptr())
        amap = torch.empty((n, 1, h, w), dtype=torch.float32, device=self.device)
        score = torch.empty((n,), dtype=torch.float32, device=self.device)
        ctx.set_tensor_address(OUTPUT_NAMES[0], amap.data_ptr())
        ctx.set_tensor_address(OUTPUT_NAMES[1], score.data_ptr())
        memory = tuple(t.contiguous() for t in self.memory_inputs(self.device))
        outs = self.memory_outputs(n, h, w, self.device) if memory else ()
        if memory:  # the camera's bank and state in, the frame's memory features and maps out
            for name, t in zip(sum(memory_io(self.module.history), ()), (*memory, *outs), strict=True):
                ctx.set_tensor_address(name, t.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        e["_alive"] = (xin, memory)
        self.keep_memory_outputs(outs)
        return amap, score

    def _gate(self, e: dict, x: torch.Tensor, amap: torch.Tensor, score: torch.Tensor,
              frame: tuple[int, int] | None = None) -> None:
        ref_module = copy.deepcopy(self.module).to(self.device).float()
        ref_module.unet.load_state_dict(self._current_state())
        with torch.inference_mode():
            rm, rs, *_ = ref_module(x.to(self.device, torch.float32), *self.memory_inputs(self.device), frame=frame)
        rep = parity_check(rm.cpu().numpy(), rs.cpu().numpy(), amap.cpu().numpy(), score.cpu().numpy(), self.tolerance)
        self.parity = rep
        if not rep.ok:
            self.cache.evict(e["key"])
            self.failed[e["key"]] = f"parity: {rep.reason}"
            for k in [k for k, v in self._engines.items() if v is e]:
                del self._engines[k]
            raise ParityError(f"TensorRT {self.precision} engine refused: "
                              f"{rep.reason} (tolerance {asdict(self.tolerance)})")
        log.info("TensorRT engine %s passed the parity gate: max |map diff| %.4f, |score diff| %.4f",
                 e["key"], rep.map_max_abs, rep.score_abs)
        e["gated"] = True

    def score(self, x: torch.Tensor, frame: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] > self.max_batch:
            raise ValueError(f"batch {x.shape[0]} > the engine's max batch {self.max_batch}")
        h, w = x.shape[-2:]
        frame = padded_frame(h, w, frame)
        e = self._entry(h, w, frame)
        self._refresh(e)
        amap, score = self._run(e, x)
        if not e["gated"]:
            self._gate(e, x, amap, score, frame)
        return amap, score

    def info(self) -> dict:
        e = next(iter(self._engines.values()), None)
        return {"backend": self.name, "precision": self.precision, "strategy": self.strategy,
                "tensorrt": self.trt.__version__, "engine": e["key"] if e else None,
                "parity": asdict(self.parity) if self.parity else None}
