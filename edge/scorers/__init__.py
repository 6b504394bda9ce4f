"""Scorer backends: the anomaly-map pass on torch, ONNX Runtime or TensorRT, with per-frame weights.

One module per backend (`torch_scorer`, `onnxruntime_scorer`, `tensorrt_scorer`), the interface and
errors (`base`), the in-memory ONNX export they share (`onnx_graph`), TensorRT's engine cache
(`engine_cache`) and parity gate (`parity`), and the factory with `build_scorer` and the `auto`
choice (`factory`). docs/export.md has the measurements behind the choices.
"""
from .base import (
    BACKENDS,
    CPU_PROVIDER,
    GPU_PROVIDERS,
    BackendError,
    BackendUnavailable,
    ParityError,
    ProviderFallbackError,
    Scorer,
)
from .engine_cache import ENGINE_CACHE_ENV, EngineCache, default_engine_cache, engine_cache_key
from .factory import (
    BackendChoice,
    build_scorer,
    choose_backend,
    ensure_available,
    graph_size,
    make_scorer,
    probe_backends,
)
from .onnxruntime_scorer import OnnxRuntimeScorer, check_providers, select_providers
from .parity import ParityReport, ParityTolerance, parity_check
from .tensorrt_scorer import TensorRTScorer, build_engine
from .torch_scorer import TorchScorer

__all__ = [
    "BACKENDS", "CPU_PROVIDER", "ENGINE_CACHE_ENV", "GPU_PROVIDERS", "BackendChoice", "BackendError",
    "BackendUnavailable", "EngineCache", "OnnxRuntimeScorer", "ParityError", "ParityReport", "ParityTolerance",
    "ProviderFallbackError", "Scorer", "TensorRTScorer", "TorchScorer", "build_engine", "build_scorer",
    "check_providers", "choose_backend", "default_engine_cache", "engine_cache_key", "ensure_available", "graph_size",
    "make_scorer", "parity_check", "probe_backends", "select_providers",
]
