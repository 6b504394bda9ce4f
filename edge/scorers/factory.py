"""Building a scorer: U-Net + VGG19 trunk + AnomalyScorer + the backend the config names (or `auto` picks).

    scorer = build_scorer(cfg)                                 # a fresh U-Net from the config's seed
    scorer = build_scorer(cfg, state)                          # ... with these weights
    scorer = build_scorer(cfg, unet=fitter.model, vgg=vgg)     # the Detector's: shares the Fitter's U-Net
    scorer.module                                              # the AnomalyScorer (what export/ exports)

`score.backend: auto` (the default) picks, once, in this order (`choose_backend`):
1. ``tensorrt`` when TensorRT imports and the scorer runs on a CUDA GPU;
2. ``onnxruntime`` on its CUDA execution provider when that provider loads (a real session is made);
3. else the fastest CPU path measured here: the ``torch`` scorer under bf16 autocast (`score.amp`;
   1.5x faster than ONNX Runtime on this CPU, docs/export.md).

`probe_backends` tries every backend and provider for real on a tiny graph (`ssdnet backends`).
"""
from __future__ import annotations

import copy
import importlib.util
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from onnx import TensorProto, helper

from ..config import FitConfig, ModelConfig, ScoreConfig, SSDNetConfig
from ..device import native_mixed_precision, resolve_device
from ..scoring import AnomalyScorer
from ..unet import UNet
from ..vgg import VGG19Features, build_vgg
from .base import BACKENDS, CPU_PROVIDER, GPU_PROVIDERS, BackendError, BackendUnavailable, Scorer, unet_state
from .onnxruntime_scorer import OnnxRuntimeScorer, check_providers, ort
from .tensorrt_scorer import TensorRTScorer, require_tensorrt, tensorrt
from .torch_scorer import TorchScorer

log = logging.getLogger(__name__)
ORT_GPU_PROVIDER = "CUDAExecutionProvider"  # what OnnxRuntimeScorer asks for on a CUDA device


@dataclass(frozen=True)
class BackendChoice:
    """Which backend scores, on which provider or device, and why (the node logs it, summary.json has it)."""

    backend: str  # torch | onnxruntime | tensorrt
    provider: str  # the ONNX Runtime execution provider, or the torch device ("cpu", "cuda")
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def _ort_gpu_provider_loads() -> bool:
    """True when ONNX Runtime lists its CUDA provider and a session on it really loads (it only warns
    and falls back to the CPU when a CUDA/cuDNN library is missing)."""
    try:
        rt = ort()
    except BackendUnavailable:
        return False
    if ORT_GPU_PROVIDER not in rt.get_available_providers():
        return False
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    try:
        sess = rt.InferenceSession(model.SerializeToString(), providers=[ORT_GPU_PROVIDER, CPU_PROVIDER])
        check_providers([ORT_GPU_PROVIDER, CPU_PROVIDER], sess.get_providers())
    except Exception as e:  # noqa: BLE001 - any failure means: not this provider
        log.debug("ONNX Runtime's %s does not load: %s", ORT_GPU_PROVIDER, e)
        return False
    return True


def choose_backend(score: ScoreConfig, device: torch.device | str) -> BackendChoice:
    """The backend `score.backend` names, or for `auto` the first that works here (module docstring)."""
    dev = torch.device(device)
    name = score.backend
    if name == "torch":
        return BackendChoice("torch", dev.type, "score.backend: torch")
    if name == "onnxruntime":
        return BackendChoice("onnxruntime", ORT_GPU_PROVIDER if dev.type == "cuda" else CPU_PROVIDER,
                             "score.backend: onnxruntime")
    if name == "tensorrt":
        return BackendChoice("tensorrt", "cuda", "score.backend: tensorrt")
    if name != "auto":
        raise ValueError(f"unknown scorer backend {name!r}; choose from {('auto', *BACKENDS)}")
    if dev.type != "cuda":
        if not score.amp:
            return BackendChoice("torch", dev.type, "auto: no CUDA device; torch (score.amp off)")
        if not native_mixed_precision(dev.type):
            return BackendChoice("torch", dev.type, "auto: no CUDA device; torch, in fp32: this CPU has no native bf16")
        return BackendChoice("torch", dev.type, "auto: no CUDA device; torch bf16 is the fastest CPU scorer measured "
                             "(docs/export.md)")
    no_trt = "no TensorRT"
    if importlib.util.find_spec("tensorrt") is not None:
        try:
            tensorrt()
            return BackendChoice("tensorrt", "cuda", "auto: TensorRT and a CUDA GPU")
        except BackendUnavailable as e:  # one too old (JetPack 6.0's 8.6): the next backend
            no_trt = str(e).split(":")[0]
    if _ort_gpu_provider_loads():
        return BackendChoice("onnxruntime", ORT_GPU_PROVIDER, f"auto: {no_trt}; ONNX Runtime's CUDA provider loads")
    return BackendChoice("torch", "cuda", f"auto: {no_trt}, no ONNX Runtime GPU provider; torch on CUDA")


def graph_size(backend: str, cfg: SSDNetConfig, height: int, width: int) -> tuple[int, int]:
    """The size of the graph `backend` scores a height x width frame (the working size) with: ONNX Runtime's take the
    frame's size as an input (`score.frame_input`), so one serves every frame padded to its size (edge.patches); a
    TensorRT engine holds it as a constant: one per frame size, returned as is (as for torch, which builds none)."""
    if backend == "onnxruntime" and cfg.score.frame_input:
        multiple = cfg.fit.pad_multiple
        return -(-height // multiple) * multiple, -(-width // multiple) * multiple
    return height, width


def ensure_available(choice: BackendChoice) -> None:
    """Raise BackendUnavailable now (a node's start-up) when the chosen backend's runtime is not here,
    instead of failing every frame later."""
    if choice.backend == "tensorrt":
        require_tensorrt()
    elif choice.backend == "onnxruntime":
        ort()


def make_scorer(cfg: SSDNetConfig, module: torch.nn.Module, device: torch.device | str,
                backend: str | None = None) -> Scorer:
    """The backend `backend` (default: `cfg.score.backend`, `auto` resolved here) around an AnomalyScorer."""
    sc = cfg.score
    choice = choose_backend(sc.model_copy(update={"backend": backend}) if backend else sc, device)
    if sc.backend == "auto" and backend is None:
        log.debug("scorer backend %s on %s (%s)", choice.backend, choice.provider, choice.reason)
    if choice.backend == "torch":
        return TorchScorer(module, bf16=sc.amp)
    if choice.backend == "onnxruntime":
        return OnnxRuntimeScorer(module, device=device, allow_cpu_fallback=sc.allow_cpu_fallback)
    return TensorRTScorer(module, device=device, precision=sc.engine_precision)


def build_scorer(cfg: SSDNetConfig, state: Mapping[str, torch.Tensor] | None = None, *,
                 unet: UNet | None = None, vgg: VGG19Features | None = None,
                 device: torch.device | str | None = None, backend: str | None = None) -> Scorer:
    """The scorer of `cfg`, ready to score: U-Net, VGG19 trunk, AnomalyScorer and backend.

    - `state`: U-Net weights to load (UNet keys, ``unet.`` prefix optional); default the config's seed init.
    - `unet`: score with this U-Net (the Fitter's: the torch backend then shares it and needs no
      weight push); default a new one, initialised from `cfg.fit.seed` as the Fitter's is.
    - `vgg`: a VGG19 trunk to share (the Detector's, also used by the loss); default one with the
      layers the scored maps and the memory need (`score.scored_layers`, `memory.layers`).
    - `device`: default `cfg.device` resolved; `backend`: overrides `cfg.score.backend`.
    The AnomalyScorer module is the returned scorer's `.module`.
    """
    dev = torch.device(device) if device is not None else resolve_device(cfg.device)
    own = unet is None
    if own:
        torch.manual_seed(cfg.fit.seed)
        unet = UNet(cfg.model.base_channels)
    if state is not None:
        unet.load_state_dict(unet_state(state))
    if vgg is None:
        vgg = build_vgg(cfg, loss=False)
    module = AnomalyScorer(unet, cfg.score, cfg.fit.scales, vgg, cfg.memory if cfg.uses_memory else None).to(dev)
    if own:
        module.eval()
    return make_scorer(cfg, module, dev, backend)


# ------------------------------------------------------------------------------------------ probe

PROBE_CONFIG = SSDNetConfig(
    model=ModelConfig(base_channels=4), fit=FitConfig(scales=(1, 2)),
    score=ScoreConfig(masks=2, smooth_sigma=1.0, pixel_weight=0.1, perceptual_weight=0.0, knn_weight=0.0,
                      image_score="map", map_units="std", backend="torch"))


def _tiny_scorer() -> AnomalyScorer:
    module = build_scorer(PROBE_CONFIG, device="cpu").module
    with torch.no_grad():
        for p in module.unet.parameters():
            p.normal_(0, 0.1)
    return module


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
        providers = [p for p in ort().get_available_providers() if p != "AzureExecutionProvider"]
    except BackendUnavailable as e:
        results.append({"backend": "onnxruntime", "provider": None, "ok": False, "detail": str(e), "ms": None})
        providers = []
    for p in providers:
        dev = "cuda" if p in GPU_PROVIDERS and torch.cuda.is_available() else "cpu"
        for strategy in (("reload", "inputs") if p == CPU_PROVIDER else ("inputs",)):
            attempt("onnxruntime", f"{p} ({strategy})",
                    lambda p=p, dev=dev, strategy=strategy: OnnxRuntimeScorer(
                        copy.deepcopy(scorer), device=dev,
                        providers=[p] + ([CPU_PROVIDER] if p != CPU_PROVIDER else []), strategy=strategy), dev)
    tmp_cache = Path(os.environ.get("TMPDIR", "/tmp")) / "ssdnet-probe-engines"
    for precision in ("fp16", "fp32"):
        attempt("tensorrt", precision,
                lambda precision=precision: TensorRTScorer(copy.deepcopy(scorer), precision=precision, cache=tmp_cache),
                "cuda" if torch.cuda.is_available() else "cpu")
    return results

