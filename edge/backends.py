"""Scorer backends: the anomaly-map pass on torch, ONNX Runtime or TensorRT, with per-frame weights.

Every backend has the same interface:

    scorer = make_scorer(cfg, anomaly_scorer, device)
    scorer.update_weights(fitter.model.state_dict())   # after every fit; no re-export, no rebuild
    amap, score = scorer.score(x)                      # x (N, 3, H, W) float32 in [0, 1]
                                                       # -> (N, 1, H, W) float32 tensor, (N,) tensor

- ``torch``: the AnomalyScorer module itself (eager; optional bf16 autocast / channels_last /
  torch.compile for benchmarking). It shares the Fitter's U-Net, so the Detector never pushes
  weights to it.
- ``onnxruntime``: the scorer exported to ONNX once per input size (static H, W; dynamic batch).
  Two ways to take new weights, chosen per execution provider by measurement (docs/export.md):
  ``inputs`` (U-Net weights are graph inputs, bound zero-copy from torch tensors with IOBinding on
  every call) and ``reload`` (weights stay initializers; a new session is created from the in-memory
  model with the new weights written in, so ONNX Runtime can pre-pack them, about 80 ms at the default
  config). ``auto`` = ``reload`` on the CPU provider (faster there), ``inputs`` elsewhere.
  The providers that actually loaded are checked: a silent fall back to the CPU raises
  ProviderFallbackError unless ``allow_cpu_fallback``.
- ``tensorrt``: a native FP16 (or FP32) engine, built once per (graph, shape, precision, TensorRT
  version, GPU) and cached on disk; new weights go in with ``trt.Refitter`` (``refit``), or as engine
  inputs (``inputs``). A new or cached engine must pass a parity gate against the FP32 PyTorch map
  on its first frame or it is refused (ParityError) and deleted from the cache.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "tensorrt")
CPU_PROVIDER = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ENGINE_CACHE_ENV = "SSDNET_ENGINE_CACHE"


class BackendError(RuntimeError):
    """A scorer backend that cannot be used as configured."""


class BackendUnavailable(BackendError):
    """The backend's runtime (package, GPU, provider) is not present on this machine."""


class ProviderFallbackError(BackendError):
    """ONNX Runtime would run on other providers than asked for (typically a silent CPU fall back)."""


class ParityError(BackendError):
    """An engine's output differs from the FP32 PyTorch scorer by more than the tolerance."""


def _unet_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("unet."): v for k, v in state_dict.items()}


class Scorer(ABC):
    """A scorer backend; see the module docstring."""

    name: str = "?"

    @abstractmethod
    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """New U-Net weights (UNet.state_dict() keys, with or without a ``unet.`` prefix)."""

    @abstractmethod
    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float32 in [0, 1] -> (anomaly map (N, 1, H, W) float32, score (N,) float32)."""

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score(x)

    def info(self) -> dict:
        return {"backend": self.name}


# --------------------------------------------------------------------------------------------- torch


class TorchScorer(Scorer):
    """The AnomalyScorer module, eager (optionally bf16 autocast, channels_last, torch.compile)."""

    name = "torch"

    def __init__(self, module: torch.nn.Module, *, bf16: bool = False, channels_last: bool | None = None,
                 compile: bool = False):
        self.module = module
        self.bf16 = bf16
        if channels_last is not None:
            module.unet.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self._fn = torch.compile(module) if compile else module
        self.compiled = compile

    @property
    def device(self) -> torch.device:
        return next(self.module.unet.parameters()).device

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        state = _unet_state(state_dict)
        own = self.module.unet.state_dict()
        if all(k in own and own[k].data_ptr() == v.data_ptr() for k, v in state.items()):
            return  # the module's own tensors: nothing to copy
        with torch.no_grad():
            self.module.unet.load_state_dict(state)

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = torch.no_grad() if self.compiled else torch.inference_mode()
        with ctx:
            if self.bf16:
                with torch.autocast(x.device.type, dtype=torch.bfloat16 if x.device.type == "cpu" else torch.float16):
                    amap, score = self._fn(x)
            else:
                amap, score = self._fn(x)
        return amap.float(), score.float()

    def info(self) -> dict:
        return {"backend": self.name, "bf16": self.bf16, "compile": self.compiled,
                "channels_last": self.module.unet.enc[0][0].weight.is_contiguous(memory_format=torch.channels_last)}


# --------------------------------------------------------------------------------------- onnxruntime


def select_providers(device: torch.device | str, available: Sequence[str]) -> list[str]:
    """Providers to ask for: CUDA (then CPU for the few nodes it leaves) for a CUDA device, else CPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return ["CUDAExecutionProvider", CPU_PROVIDER]
    return [CPU_PROVIDER]


def check_providers(requested: Sequence[str], loaded: Sequence[str], allow_cpu_fallback: bool = False) -> list[str]:
    """Fail loudly unless ONNX Runtime runs on the first provider asked for.

    ONNX Runtime only warns when a provider cannot load (a missing CUDA/cuDNN/TensorRT library, or
    one not built in) and goes on with the CPU. Returns the warnings issued when the fall back is
    allowed.
    """
    requested, loaded = list(requested), list(loaded)
    if not requested:
        raise ValueError("no execution provider requested")
    primary = requested[0]
    if loaded and loaded[0] == primary:
        return []
    msg = (f"ONNX Runtime was asked for {requested} but loaded {loaded or 'nothing'}: "
           f"{primary} is not usable on this machine (wrong onnxruntime package, or missing CUDA/cuDNN/TensorRT libraries)")
    if not loaded or not allow_cpu_fallback or CPU_PROVIDER not in loaded:
        raise ProviderFallbackError(msg + "; set score.allow_cpu_fallback: true to run on the CPU anyway")
    log.warning("%s; running on %s (allow_cpu_fallback)", msg, loaded[0])
    return [msg]


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu)") from None
    return ort


_ORT_ELEM = {torch.float32: np.float32, torch.float16: np.float16}


class _OrtGraph:
    """One session for one input size."""

    def __init__(self, exported, session, providers: list[str], strategy: str):
        self.exported = exported
        self.session = session
        self.providers = providers
        self.strategy = strategy
        self.binding = session.io_binding()
        self.bound_weights: dict[str, torch.Tensor] = {}  # keeps bound buffers alive
        self.version = -1  # weight version in the session (reload) or bound (inputs)


class OnnxRuntimeScorer(Scorer):
    """The exported scorer on ONNX Runtime; one graph per input size, built on first use."""

    name = "onnxruntime"
    STRATEGIES = ("auto", "inputs", "reload")

    def __init__(self, module: torch.nn.Module, *, device: torch.device | str = "cpu",
                 providers: Sequence[str] | None = None, allow_cpu_fallback: bool = False,
                 strategy: str = "auto", threads: int | None = None, exporter: str = "torchscript",
                 opset: int | None = None):
        ort = _ort()
        if strategy not in self.STRATEGIES:
            raise ValueError(f"strategy must be one of {self.STRATEGIES}, got {strategy!r}")
        self.module = module
        self.device = torch.device(device)
        self.available = list(ort.get_available_providers())
        requested = list(providers) if providers else select_providers(self.device, self.available)
        self.requested = requested
        self.allow_cpu_fallback = allow_cpu_fallback
        usable = [p for p in requested if p in self.available]
        if not usable or usable[0] != requested[0]:
            # ORT would only warn about an unknown provider: decide here, loudly
            check_providers(requested, usable or [], allow_cpu_fallback)
            if CPU_PROVIDER not in usable:
                usable.append(CPU_PROVIDER)
        self.providers = usable
        self.strategy_choice = strategy
        self.threads = threads if threads is not None else torch.get_num_threads()
        self.exporter = exporter
        self.opset = opset
        self._graphs: dict[tuple[int, int], _OrtGraph] = {}
        self._state: dict[str, torch.Tensor] | None = None
        self._version = 0
        self.last_export_s = 0.0
        self.last_session_s = 0.0

    def _strategy(self, provider: str) -> str:
        if self.strategy_choice != "auto":
            return self.strategy_choice
        return "reload" if provider == CPU_PROVIDER else "inputs"

    def _session_options(self):
        ort = _ort()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = self.threads
        so.log_severity_level = 3
        return so

    def _new_session(self, model_bytes: bytes, providers: list[str]):
        ort = _ort()
        t0 = time.perf_counter()
        sess = ort.InferenceSession(model_bytes, self._session_options(), providers=providers)
        self.last_session_s = time.perf_counter() - t0
        check_providers(providers, sess.get_providers(), self.allow_cpu_fallback)
        return sess

    def _graph(self, h: int, w: int) -> _OrtGraph:
        g = self._graphs.get((h, w))
        if g is not None:
            return g
        from export.onnx_export import DEFAULT_OPSET, export_scorer

        strategy = self._strategy(self.providers[0])
        t0 = time.perf_counter()
        exported = export_scorer(self.module, h, w, weights_as_inputs=strategy == "inputs", exporter=self.exporter,
                                 opset=self.opset or (DEFAULT_OPSET if self.exporter == "torchscript" else 18),
                                 state_dict=self._state)
        self.last_export_s = time.perf_counter() - t0
        sess = self._new_session(exported.to_bytes(), self.providers)
        g = _OrtGraph(exported, sess, sess.get_providers(), strategy)
        if self._state is None:
            self._state = {k: v.detach() for k, v in self.module.unet.state_dict().items()}
        g.version = self._version if strategy == "reload" else -1
        self._graphs[(h, w)] = g
        return g

    @property
    def _io_device(self) -> torch.device:
        primary = next(iter(self._graphs.values())).providers[0] if self._graphs else self.providers[0]
        return self.device if primary in GPU_PROVIDERS else torch.device("cpu")

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        # keep references only; the copy (reload) or the binding (inputs) happens at the next score
        self._state = {k: v.detach() for k, v in _unet_state(state_dict).items()}
        self._version += 1

    def _weights(self, g: _OrtGraph, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        from export.onnx_export import weights_for_graph

        return {name: t.to(device=device, dtype=dtype).contiguous()
                for name, t in weights_for_graph(g.exported, self._state).items()}

    def _refresh(self, g: _OrtGraph) -> None:
        if g.version == self._version:
            return
        dtype = torch.float16 if g.exported.precision == "fp16" else torch.float32
        if g.strategy == "reload":
            from export.onnx_export import write_initializers

            weights = self._weights(g, torch.device("cpu"), dtype)
            write_initializers(g.exported.model, {k: v.numpy() for k, v in weights.items()})
            g.session = self._new_session(g.exported.to_bytes(), self.providers)
            g.binding = g.session.io_binding()
        else:
            dev = self._io_device
            g.bound_weights = self._weights(g, dev, dtype)
            for name, t in g.bound_weights.items():
                g.binding.bind_input(name, dev.type, dev.index or 0, _ORT_ELEM[dtype], list(t.shape), t.data_ptr())
        g.version = self._version

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        g = self._graph(h, w)
        self._refresh(g)
        dev = self._io_device
        xin = x.detach().to(device=dev, dtype=torch.float32).contiguous()
        amap = torch.empty((n, 1, h, w), dtype=torch.float32, device=dev)
        score = torch.empty((n,), dtype=torch.float32, device=dev)
        b = g.binding
        idx = dev.index or 0
        b.bind_input("image", dev.type, idx, np.float32, list(xin.shape), xin.data_ptr())
        b.bind_output("anomaly_map", dev.type, idx, np.float32, list(amap.shape), amap.data_ptr())
        b.bind_output("score", dev.type, idx, np.float32, list(score.shape), score.data_ptr())
        if dev.type == "cuda":
            b.synchronize_inputs()
        g.session.run_with_iobinding(b)
        if dev.type == "cuda":
            b.synchronize_outputs()
        return amap, score

    def info(self) -> dict:
        g = next(iter(self._graphs.values()), None)
        return {"backend": self.name, "requested_providers": self.requested,
                "providers": g.providers if g else self.providers,
                "strategy": g.strategy if g else self._strategy(self.providers[0]),
                "exporter": self.exporter}


# ------------------------------------------------------------------------------------------ tensorrt


@dataclass(frozen=True)
class ParityTolerance:
    """FP16 engine vs FP32 PyTorch. Map differences are in units of the reference map's own std per
    image, whatever the map's units (`score.map_units`).

    Measured (docs/export.md, fitted default config, 256 x 256): an fp16 U-Net (emulated by ONNX
    Runtime on the CPU) moves the map by at most 2e-4 std, bf16 autocast by at most 0.034 std and
    the score by 0.14 %; a wrong weight mapping or a broken layer moves it by whole stds. The
    defaults leave a GPU's fp16 kernels about 3x the bf16 error.
    """

    map_atol: float = 0.1  # max |map_engine - map_torch|, std units
    map_mean_atol: float = 0.01  # mean |map_engine - map_torch|, std units
    score_rtol: float = 0.01  # |score_engine - score_torch| <= score_atol + score_rtol * |score_torch|
    score_atol: float = 0.02


@dataclass(frozen=True)
class ParityReport:
    ok: bool
    map_max_abs: float
    map_mean_abs: float
    score_abs: float
    tolerance: ParityTolerance
    reason: str = ""


def parity_check(ref_map, ref_score, got_map, got_score, tol: ParityTolerance = ParityTolerance()) -> ParityReport:
    """Compare an engine's outputs with the FP32 reference; non-finite values always fail."""
    rm, gm = np.asarray(ref_map, dtype=np.float64), np.asarray(got_map, dtype=np.float64)
    rs, gs = np.asarray(ref_score, dtype=np.float64).reshape(-1), np.asarray(got_score, dtype=np.float64).reshape(-1)
    if rm.shape != gm.shape or rs.shape != gs.shape:
        return ParityReport(False, float("inf"), float("inf"), float("inf"), tol,
                            f"shape mismatch: map {gm.shape} vs {rm.shape}, score {gs.shape} vs {rs.shape}")
    if not (np.isfinite(gm).all() and np.isfinite(gs).all()):
        return ParityReport(False, float("inf"), float("inf"), float("inf"), tol, "non-finite values in the engine output")
    spread = rm.reshape(len(rm), -1).std(axis=1).reshape((-1,) + (1,) * (rm.ndim - 1)) if rm.ndim > 1 else rm.std()
    d = np.abs(gm - rm) / (spread + 1e-12)  # in units of the reference map's std
    dmax, dmean = float(d.max(initial=0.0)), float(d.mean()) if d.size else 0.0
    ds = np.abs(gs - rs)
    reasons = []
    if dmax > tol.map_atol:
        reasons.append(f"max |map diff| {dmax:.4f} > {tol.map_atol}")
    if dmean > tol.map_mean_atol:
        reasons.append(f"mean |map diff| {dmean:.4f} > {tol.map_mean_atol}")
    bad = ds > tol.score_atol + tol.score_rtol * np.abs(rs)
    if bad.any():
        reasons.append(f"|score diff| {float(ds.max()):.4f} > {tol.score_atol} + {tol.score_rtol} * |score|")
    return ParityReport(not reasons, dmax, dmean, float(ds.max(initial=0.0)), tol, "; ".join(reasons))


def engine_cache_key(model_hash: str, input_shape: Sequence[int], precision: str, trt_version: str,
                     gpu_name: str, strategy: str = "refit") -> str:
    """Key of a cached engine: any change of graph, shape, precision, TensorRT, GPU or strategy -> new key."""
    parts = {"model": model_hash, "shape": [int(s) for s in input_shape], "precision": precision,
             "tensorrt": trt_version, "gpu": gpu_name, "strategy": strategy, "v": 1}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def default_engine_cache() -> Path:
    env = os.environ.get(ENGINE_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "ssdnet" / "engines"


class EngineCache:
    """Serialized engines on disk, ``<key>.engine`` with a ``<key>.json`` of what the key was made of."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_engine_cache()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.engine"

    def load(self, key: str) -> bytes | None:
        p = self.path(key)
        return p.read_bytes() if p.is_file() else None

    def store(self, key: str, plan: bytes, meta: dict) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        p = self.path(key)
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(plan)
        os.replace(tmp, p)
        p.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        return p

    def evict(self, key: str) -> None:
        for p in (self.path(key), self.path(key).with_suffix(".json")):
            p.unlink(missing_ok=True)


def _trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable("TensorRT is not installed (pip install 'ssdnet-edge[tensorrt]'; on Jetson use JetPack's)") from None
    return trt


def build_engine(onnx_bytes: bytes, input_shape: Sequence[int], *, max_batch: int = 1, workspace_mib: int = 2048) -> bytes:
    """Build a refittable, strongly typed engine; precision comes from the graph (fp16 U-Net or fp32).

    Strong typing is the only mode of TensorRT 11 and opt-in from 10.x: the FP16 ONNX export casts
    the U-Net to fp16 and keeps the map arithmetic in fp32, so no precision flags are needed.
    """
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse the scorer graph:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
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

    def __init__(self, module: torch.nn.Module, *, device: torch.device | str = "cuda", precision: str = "fp16",
                 strategy: str = "refit", cache: EngineCache | str | Path | None = None, max_batch: int = 1,
                 tolerance: ParityTolerance = ParityTolerance()):
        self.trt = _trt()
        if not torch.cuda.is_available():
            raise BackendUnavailable("the tensorrt backend needs a CUDA GPU visible to torch")
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
        self._engines: dict[tuple[int, int], dict] = {}
        self._state: dict[str, torch.Tensor] | None = None
        self._version = 0
        self.parity: ParityReport | None = None

    @property
    def _wdtype(self) -> torch.dtype:
        return torch.float16 if self.precision == "fp16" else torch.float32

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        self._state = {k: v.detach() for k, v in _unet_state(state_dict).items()}
        self._version += 1

    def _current_state(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            self._state = {k: v.detach() for k, v in self.module.unet.state_dict().items()}
        return self._state

    def _entry(self, h: int, w: int) -> dict:
        e = self._engines.get((h, w))
        if e is not None:
            return e
        from export.onnx_export import export_scorer

        trt = self.trt
        exported = export_scorer(self.module, h, w, fp16=self.precision == "fp16",
                                 weights_as_inputs=self.strategy == "inputs", state_dict=self._current_state())
        gpu = torch.cuda.get_device_name(self.device)
        key = engine_cache_key(exported.model_hash(), (self.max_batch, 3, h, w), self.precision, trt.__version__, gpu, self.strategy)
        plan = self.cache.load(key)
        fresh = plan is None
        if fresh:
            t0 = time.perf_counter()
            plan = build_engine(exported.to_bytes(), (1, 3, h, w), max_batch=self.max_batch)
            log.info("built TensorRT engine %s in %.1f s", key, time.perf_counter() - t0)
            self.cache.store(key, plan, {"model_hash": exported.model_hash(), "shape": [self.max_batch, 3, h, w],
                                         "precision": self.precision, "tensorrt": trt.__version__, "gpu": gpu,
                                         "strategy": self.strategy, "weights": exported.weight_names})
        engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:
            self.cache.evict(key)
            raise BackendError(f"cached TensorRT engine {key} could not be deserialized; evicted, rebuild on next use")
        e = {"key": key, "exported": exported, "engine": engine, "context": engine.create_execution_context(),
             "refitter": trt.Refitter(engine, self.logger) if self.strategy == "refit" else None,
             "version": -1, "weights": {}, "gated": False}
        if e["refitter"] is not None:
            refittable = set(e["refitter"].get_all_weights())
            missing = set(exported.weight_names.values()) - refittable
            if missing:
                self.cache.evict(key)
                raise BackendError(f"engine weights not refittable by name: {sorted(missing)[:5]}")
        self._engines[(h, w)] = e
        return e

    def _refresh(self, e: dict) -> None:
        if e["version"] == self._version:
            return
        from export.onnx_export import weights_for_graph

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
            ok = r.refit_cuda_engine_async(stream.cuda_stream) if hasattr(r, "refit_cuda_engine_async") else r.refit_cuda_engine()
            if not ok:
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
        ctx.set_tensor_address("anomaly_map", amap.data_ptr())
        ctx.set_tensor_address("score", score.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        e["_alive"] = xin
        return amap, score

    def _gate(self, e: dict, x: torch.Tensor, amap: torch.Tensor, score: torch.Tensor) -> None:
        ref_module = copy.deepcopy(self.module).to(self.device).float()
        ref_module.unet.load_state_dict(self._current_state())
        with torch.inference_mode():
            rm, rs = ref_module(x.to(self.device, torch.float32))
        rep = parity_check(rm.cpu().numpy(), rs.cpu().numpy(), amap.cpu().numpy(), score.cpu().numpy(), self.tolerance)
        self.parity = rep
        if not rep.ok:
            self.cache.evict(e["key"])
            self._engines = {k: v for k, v in self._engines.items() if v is not e}
            raise ParityError(f"TensorRT {self.precision} engine refused: {rep.reason} (tolerance {asdict(self.tolerance)})")
        log.info("TensorRT engine %s passed the parity gate: max |map diff| %.4f, |score diff| %.4f",
                 e["key"], rep.map_max_abs, rep.score_abs)
        e["gated"] = True

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] > self.max_batch:
            raise ValueError(f"batch {x.shape[0]} > the engine's max batch {self.max_batch}")
        e = self._entry(x.shape[-2], x.shape[-1])
        self._refresh(e)
        amap, score = self._run(e, x)
        if not e["gated"]:
            self._gate(e, x, amap, score)
        return amap, score

    def info(self) -> dict:
        e = next(iter(self._engines.values()), None)
        return {"backend": self.name, "precision": self.precision, "strategy": self.strategy,
                "tensorrt": self.trt.__version__, "engine": e["key"] if e else None,
                "parity": asdict(self.parity) if self.parity else None}


# ---------------------------------------------------------------------------------------- factory


def make_scorer(cfg, module: torch.nn.Module, device: torch.device | str) -> Scorer:
    """The scorer backend named by `cfg.score.backend` (cfg: SSDNetConfig) around an AnomalyScorer."""
    sc = cfg.score
    backend = getattr(sc, "backend", "torch")
    if backend == "torch":
        return TorchScorer(module, bf16=getattr(sc, "amp", False))
    if backend == "onnxruntime":
        return OnnxRuntimeScorer(module, device=device, allow_cpu_fallback=getattr(sc, "allow_cpu_fallback", False))
    if backend == "tensorrt":
        return TensorRTScorer(module, device=device, precision=getattr(sc, "engine_precision", "fp16"))
    raise ValueError(f"unknown scorer backend {backend!r}; choose from {BACKENDS}")


# ------------------------------------------------------------------------------------------ probe


def _tiny_scorer():
    from .config import ScoreConfig
    from .scoring import AnomalyScorer
    from .unet import UNet

    unet = UNet(4).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.1)
    return AnomalyScorer(unet, ScoreConfig(masks=2, smooth_sigma=1.0, perceptual_weight=0.0, knn_weight=0.0, image_score="map", map_units="std"), (1, 2)).eval()


def probe_backends(include_compile: bool = False) -> list[dict]:
    """Try every backend and execution provider for real on a tiny scorer graph (16 x 16).

    Each entry: backend, provider, ok, detail, ms (one scored frame after a weight update).
    """
    results = []
    scorer = _tiny_scorer()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref_map, _ = scorer(x)
    state = {k: v.clone() for k, v in scorer.unet.state_dict().items()}

    def attempt(backend: str, provider: str | None, make, dev: str = "cpu"):
        entry = {"backend": backend, "provider": provider, "ok": False, "detail": "", "ms": None, "info": {}}
        try:
            s = make()
            s.score(x.to(dev))  # export / build / first-call set-up
            s.update_weights(state)
            t0 = time.perf_counter()
            amap, _ = s.score(x.to(dev))
            entry["ms"] = round((time.perf_counter() - t0) * 1000, 2)
            err = float((amap.float().cpu() - ref_map).abs().max())
            if not np.isfinite(err) or err > 0.05:
                raise BackendError(f"wrong output: max |map diff| {err:.3g}")
            entry["ok"], entry["detail"], entry["info"] = True, f"max |map diff| {err:.2g}", s.info()
        except Exception as e:  # noqa: BLE001 - a probe reports every failure
            entry["detail"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        results.append(entry)

    attempt("torch", "cpu", lambda: TorchScorer(copy.deepcopy(scorer)))
    if torch.cuda.is_available():
        attempt("torch", "cuda", lambda: TorchScorer(copy.deepcopy(scorer).cuda()), "cuda")
    if include_compile:
        attempt("torch.compile", "cpu", lambda: TorchScorer(copy.deepcopy(scorer), compile=True))
    try:
        ort = _ort()
        providers = [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]
    except BackendUnavailable as e:
        results.append({"backend": "onnxruntime", "provider": None, "ok": False, "detail": str(e), "ms": None})
        providers = []
    for p in providers:
        dev = "cuda" if p in GPU_PROVIDERS and torch.cuda.is_available() else "cpu"
        for strategy in (("reload", "inputs") if p == CPU_PROVIDER else ("inputs",)):
            attempt("onnxruntime", f"{p} ({strategy})",
                    lambda p=p, dev=dev, strategy=strategy: OnnxRuntimeScorer(
                        copy.deepcopy(scorer), device=dev, providers=[p] + ([CPU_PROVIDER] if p != CPU_PROVIDER else []),
                        strategy=strategy), dev)
    tmp_cache = Path(os.environ.get("TMPDIR", "/tmp")) / "ssdnet-probe-engines"
    for precision in ("fp16", "fp32"):
        attempt("tensorrt", precision,
                lambda precision=precision: TensorRTScorer(copy.deepcopy(scorer), precision=precision, cache=tmp_cache),
                "cuda" if torch.cuda.is_available() else "cpu")
    return results
