"""The ``onnxruntime`` backend: the scorer graph (edge.scorers.onnx_graph) on ONNX Runtime.

One session per input size (static H, W; dynamic batch), built on the first frame of that size, which scores every
frame padded to that size (the frame's size is the graph's input `frame`; with `score.knn_far_weight` a constant: a
session per frame size); the last MAX_GRAPHS sessions are kept (edge.scorers.base.GraphCache).
New weights per frame never build a new session by default:

- ``inputs`` (the default, ``auto``, on every provider): the U-Net weights are graph inputs, bound
  zero-copy from torch tensors with IOBinding; a weight update only re-binds them.
- ``reload`` (an option, measured in ``ssdnet bench``; docs/export.md): the weights stay
  initializers, and every weight update writes them into the in-memory model and creates a new
  session from it, so ONNX Runtime can pre-pack them (about 80 ms per frame at the default config).

The providers that actually loaded are checked: a silent fall back to the CPU raises
ProviderFallbackError unless ``allow_cpu_fallback``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .base import (
    CPU_PROVIDER,
    GPU_PROVIDERS,
    BackendUnavailable,
    GraphCache,
    ProviderFallbackError,
    Scorer,
    detached,
    padded_frame,
)
from .onnx_graph import (
    DEFAULT_OPSET,
    DYNAMO_OPSET,
    FRAME_INPUT,
    INPUT_NAME,
    OUTPUT_NAMES,
    ExportedScorer,
    export_scorer,
    memory_io,
    weights_for_graph,
    write_initializers,
)

log = logging.getLogger(__name__)
_ORT_ELEM = {torch.float32: np.float32, torch.float16: np.float16}


def ort():
    """The onnxruntime module. Imported on first use: onnxruntime (or onnxruntime-gpu) is only loaded
    by a process that scores through it, and a missing or broken install is a BackendUnavailable."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu)") from None
    return onnxruntime


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
    msg = (f"ONNX Runtime was asked for {requested} but loaded {loaded or 'nothing'}: {primary} is not usable on "
           "this machine (wrong onnxruntime package, or missing CUDA/cuDNN/TensorRT libraries)")
    if not loaded or not allow_cpu_fallback or CPU_PROVIDER not in loaded:
        raise ProviderFallbackError(msg + "; set score.allow_cpu_fallback: true to run on the CPU anyway")
    log.warning("%s; running on %s (allow_cpu_fallback)", msg, loaded[0])
    return [msg]


class _OrtGraph:
    """One session for one input size."""

    def __init__(self, exported: ExportedScorer, session, providers: list[str], strategy: str):
        self.exported = exported
        self.session = session
        self.providers = providers
        self.strategy = strategy
        self.binding = session.io_binding()
        self.bound_weights: dict[str, torch.Tensor] = {}  # keeps bound buffers alive
        self.version = -1  # weight version in the session (reload) or bound (inputs)
        self.reads_frame = FRAME_INPUT in {i.name for i in session.get_inputs()}  # the frame's size as an input


class OnnxRuntimeScorer(Scorer):
    """The exported scorer on ONNX Runtime; one graph per input size (or, with `knn_far_weight`, per frame size),
    built on first use."""

    name = "onnxruntime"
    filled_rows_only = True  # its graphs have a dynamic bank axis (edge.scorers.onnx_graph), whichever the exporter
    STRATEGIES = ("auto", "inputs", "reload")

    def __init__(self, module: torch.nn.Module, *, device: torch.device | str = "cpu",
                 providers: Sequence[str] | None = None, allow_cpu_fallback: bool = False,
                 strategy: str = "auto", threads: int | None = None, exporter: str = "torchscript",
                 opset: int | None = None):
        rt = ort()
        if strategy not in self.STRATEGIES:
            raise ValueError(f"strategy must be one of {self.STRATEGIES}, got {strategy!r}")
        self.module = module
        self.device = torch.device(device)
        self.available = list(rt.get_available_providers())
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
        self._graphs = GraphCache()  # (h, w) or, without a frame input, (h, w, frame) -> _OrtGraph
        self._state: dict[str, torch.Tensor] | None = None
        self._version = 0
        self.last_export_s = 0.0
        self.last_session_s = 0.0
        self.sessions_created = 0

    @property
    def strategy(self) -> str:
        """How new weights go in: ``inputs`` (bound, the default everywhere) or ``reload`` (new session)."""
        return "inputs" if self.strategy_choice == "auto" else self.strategy_choice

    def _session_options(self):
        rt = ort()
        so = rt.SessionOptions()
        so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = self.threads
        so.log_severity_level = 3
        # no memory pattern (the CPU arena kept): 19-45% less RSS held per session, latency x0.96-1.01
        # (python docs/security_runs/measure_graphs.py options)
        so.enable_mem_pattern = False
        return so

    def _new_session(self, model_bytes: bytes, providers: list[str]):
        t0 = time.perf_counter()
        sess = ort().InferenceSession(model_bytes, self._session_options(), providers=providers)
        self.last_session_s = time.perf_counter() - t0
        self.sessions_created += 1
        check_providers(providers, sess.get_providers(), self.allow_cpu_fallback)
        return sess

    def _graph(self, h: int, w: int, frame: tuple[int, int] | None) -> _OrtGraph:
        frame_input = self.module.cfg.frame_input
        key = (h, w) if frame_input else (h, w, frame)
        g = self._graphs.get(key)
        if g is not None:
            return g
        strategy = self.strategy
        t0 = time.perf_counter()
        opset = self.opset or (DEFAULT_OPSET if self.exporter == "torchscript" else DYNAMO_OPSET)
        exported = export_scorer(self.module, h, w, weights_as_inputs=strategy == "inputs", exporter=self.exporter,
                                 opset=opset, state_dict=self._state, frame=None if frame_input else frame,
                                 frame_input=frame_input, dynamic_bank=True)
        self.last_export_s = time.perf_counter() - t0
        sess = self._new_session(exported.to_bytes(), self.providers)
        g = _OrtGraph(exported, sess, sess.get_providers(), strategy)
        if self._state is None:
            self._state = detached(self.module.unet.state_dict())
        g.version = self._version if strategy == "reload" else -1
        self._graphs[key] = g
        return g

    @property
    def _io_device(self) -> torch.device:
        primary = next(iter(self._graphs.values())).providers[0] if self._graphs else self.providers[0]
        return self.device if primary in GPU_PROVIDERS else torch.device("cpu")

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        # keep references only; the binding (inputs) or the copy (reload) happens at the next score
        self._state = detached(state_dict)
        self._version += 1

    def _weights(self, g: _OrtGraph, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        return {name: t.to(device=device, dtype=dtype).contiguous()
                for name, t in weights_for_graph(g.exported, self._state).items()}

    def _refresh(self, g: _OrtGraph) -> None:
        if g.version == self._version:
            return
        dtype = torch.float16 if g.exported.precision == "fp16" else torch.float32
        if g.strategy == "reload":
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

    def score(self, x: torch.Tensor, frame: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        frame = padded_frame(h, w, frame)
        if self.module.cfg.frame_input:  # a graph of the frame's size as an input: too few cells for knn_k are said
            self.module.check_frame(h, w, frame or (h, w))  # here, as torch does (the graph scored the padding)
        g = self._graph(h, w, frame)
        self._refresh(g)
        dev = self._io_device
        xin = x.detach().to(device=dev, dtype=torch.float32).contiguous()
        amap = torch.empty((n, 1, h, w), dtype=torch.float32, device=dev)
        score = torch.empty((n,), dtype=torch.float32, device=dev)
        b = g.binding
        idx = dev.index or 0
        b.bind_input(INPUT_NAME, dev.type, idx, np.float32, list(xin.shape), xin.data_ptr())
        if g.reads_frame:
            size = torch.tensor(frame or (h, w), dtype=torch.int64, device=dev)  # alive until the run below
            b.bind_input(FRAME_INPUT, dev.type, idx, np.int64, [2], size.data_ptr())
        b.bind_output(OUTPUT_NAMES[0], dev.type, idx, np.float32, list(amap.shape), amap.data_ptr())
        b.bind_output(OUTPUT_NAMES[1], dev.type, idx, np.float32, list(score.shape), score.data_ptr())
        memory = self.memory_inputs(dev)
        outs = self.memory_outputs(n, h, w, dev) if memory else ()
        if memory:  # the camera's bank and state in, the frame's memory features and maps out
            names_in, names_out = memory_io(self.module.history)
            for name, t in zip(names_in, memory, strict=True):
                b.bind_input(name, dev.type, idx, _ORT_ELEM[t.dtype], list(t.shape), t.data_ptr())
            for name, t in zip(names_out, outs, strict=True):
                b.bind_output(name, dev.type, idx, np.float32, list(t.shape), t.data_ptr())
        if dev.type == "cuda":
            b.synchronize_inputs()
        g.session.run_with_iobinding(b)
        if dev.type == "cuda":
            b.synchronize_outputs()
        self.keep_memory_outputs(outs)
        return amap, score

    def info(self) -> dict:
        g = next(iter(self._graphs.values()), None)
        return {"backend": self.name, "requested_providers": self.requested,
                "providers": g.providers if g else self.providers,
                "strategy": g.strategy if g else self.strategy,
                "exporter": self.exporter}
