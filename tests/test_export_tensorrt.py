"""TensorRT backend and provider logic.

The engine build, refit and parity on a GPU run only where TensorRT and CUDA are present; the
pieces around them (engine-cache keys, weight-name mapping of the fp16 graph, provider selection
and fall-back refusal, the parity gate) are tested everywhere.
"""
from __future__ import annotations

import copy
import importlib.util
import sys
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import edge.scorers.factory as factory
from edge.config import FitConfig, ModelConfig, ScoreConfig, SSDNetConfig
from edge.scorers import (
    CPU_PROVIDER,
    BackendUnavailable,
    EngineCache,
    OnnxRuntimeScorer,
    ParityError,
    ParityTolerance,
    ProviderFallbackError,
    TensorRTScorer,
    check_providers,
    choose_backend,
    engine_cache_key,
    ensure_available,
    make_scorer,
    parity_check,
    select_providers,
)
from edge.scorers.base import GraphCache
from edge.scorers.onnx_graph import export_scorer
from edge.scoring import AnomalyScorer
from edge.unet import UNet
from export.onnx_export import sidecar

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_CUDA = torch.cuda.is_available()
needs_trt = pytest.mark.skipif(not (HAS_TRT and HAS_CUDA), reason="needs TensorRT and a CUDA GPU (not present here)")


def tiny_scorer(masks: int = 2) -> AnomalyScorer:
    torch.manual_seed(0)
    cfg = ScoreConfig(masks=masks, smooth_sigma=1.0, pixel_weight=0.1, perceptual_weight=0.0, knn_weight=0.0,
                      image_score="map", map_units="std")
    unet = UNet(4).eval()
    with torch.no_grad():
        unet.head.weight.normal_(0, 0.05)
    return AnomalyScorer(unet, cfg, (1, 2)).eval()


# ------------------------------------------------------------------------------- engine-cache keys

KEY = dict(model_hash="a" * 64, input_shape=(1, 3, 256, 256), precision="fp16", trt_version="10.13.0",
           gpu_name="NVIDIA Jetson Orin", strategy="refit")


def test_engine_cache_key_is_stable():
    assert engine_cache_key(**KEY) == engine_cache_key(**KEY)
    assert engine_cache_key(**{**KEY, "input_shape": [1, 3, 256, 256]}) == engine_cache_key(**KEY)


@pytest.mark.parametrize("component, value", [
    ("model_hash", "b" * 64),
    ("input_shape", (1, 3, 256, 320)),
    ("input_shape", (4, 3, 256, 256)),
    ("precision", "fp32"),
    ("trt_version", "10.14.1"),
    ("gpu_name", "NVIDIA H100 80GB HBM3"),
    ("strategy", "inputs"),
])
def test_engine_cache_key_changes_with_every_component(component, value):
    assert engine_cache_key(**{**KEY, component: value}) != engine_cache_key(**KEY)


def test_engine_cache_store_load_evict(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    key = engine_cache_key(**KEY)
    assert cache.load(key) is None
    cache.store(key, b"plan-bytes", {"precision": "fp16"})
    assert cache.load(key) == b"plan-bytes"
    assert cache.path(key).with_suffix(".json").is_file()
    cache.evict(key)
    assert cache.load(key) is None and not cache.path(key).with_suffix(".json").exists()


def test_engine_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SSDNET_ENGINE_CACHE", str(tmp_path))
    assert EngineCache().root == tmp_path


def test_model_hash_is_what_keys_the_engine_and_ignores_the_weights():
    sc = tiny_scorer()
    a = export_scorer(sc, 16, 16, fp16=True)
    sc.unet.load_state_dict({k: v + 0.1 for k, v in sc.unet.state_dict().items()})
    b = export_scorer(sc, 16, 16, fp16=True)
    assert a.model_hash() == b.model_hash()  # new weights: refit, not a new engine
    assert export_scorer(sc, 16, 32, fp16=True).model_hash() != a.model_hash()
    assert export_scorer(sc, 16, 16, fp16=False).model_hash() != a.model_hash()


# -------------------------------------------------------------------------------- weight-name map


def test_fp16_graph_weight_names_map_one_to_one_for_refit():
    sc = tiny_scorer()
    ex = export_scorer(sc, 16, 16, fp16=True)
    params = dict(sc.unet.named_parameters())
    assert set(ex.weight_names) == set(params)
    assert len(set(ex.weight_names.values())) == len(params)
    inits = {i.name: i for i in ex.model.graph.initializer}
    for t, o in ex.weight_names.items():
        assert inits[o].data_type == onnx.TensorProto.FLOAT16  # refit takes fp16 weights
        assert list(inits[o].dims) == list(params[t].shape)
    # the sidecar tells a deployment which torch tensor feeds which engine weight
    assert {w["torch"]: w["onnx"] for w in sidecar(ex)["weights"]} == ex.weight_names


# ---------------------------------------------------------------------------- provider selection


def test_select_providers():
    assert select_providers("cpu", [CPU_PROVIDER]) == [CPU_PROVIDER]
    assert select_providers("cuda", [CPU_PROVIDER]) == ["CUDAExecutionProvider", CPU_PROVIDER]


def test_check_providers_accepts_what_was_asked_for():
    assert check_providers([CPU_PROVIDER], [CPU_PROVIDER]) == []
    assert check_providers(["CUDAExecutionProvider", CPU_PROVIDER], ["CUDAExecutionProvider", CPU_PROVIDER]) == []


def test_check_providers_refuses_a_silent_cpu_fallback():
    with pytest.raises(ProviderFallbackError, match="CUDAExecutionProvider"):
        check_providers(["CUDAExecutionProvider", CPU_PROVIDER], [CPU_PROVIDER])
    with pytest.raises(ProviderFallbackError):
        check_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU_PROVIDER],
                        ["CUDAExecutionProvider", CPU_PROVIDER])  # TensorRT EP fell back to CUDA
    with pytest.raises(ProviderFallbackError):
        check_providers(["CUDAExecutionProvider"], [], allow_cpu_fallback=True)


def test_check_providers_allows_the_fallback_when_told():
    warnings = check_providers(["CUDAExecutionProvider", CPU_PROVIDER], [CPU_PROVIDER], allow_cpu_fallback=True)
    assert len(warnings) == 1 and "CUDAExecutionProvider" in warnings[0]


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal where no CUDA provider is present")
def test_onnxruntime_scorer_refuses_missing_gpu_provider_unless_allowed():
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    sc = tiny_scorer()
    with pytest.raises(ProviderFallbackError, match="allow_cpu_fallback"):
        OnnxRuntimeScorer(copy.deepcopy(sc), device="cuda")
    s = OnnxRuntimeScorer(copy.deepcopy(sc), providers=["CUDAExecutionProvider", CPU_PROVIDER], allow_cpu_fallback=True)
    x = torch.rand(1, 3, 16, 16)
    m, _ = s.score(x)
    with torch.inference_mode():
        rm, _ = sc(x)
    assert float((m - rm).abs().max()) < 1e-3
    assert s.info()["providers"] == [CPU_PROVIDER]


def test_make_scorer_follows_the_config(native_bf16):
    sc = tiny_scorer()
    assert make_scorer(SSDNetConfig(), sc, "cpu").name == "torch"
    fp32 = make_scorer(SSDNetConfig(score=ScoreConfig(amp=False)), sc, "cpu")
    assert fp32.info()["bf16"] is False
    amp = make_scorer(SSDNetConfig(score=ScoreConfig(amp=True)), sc, "cpu")
    x = torch.rand(1, 3, 32, 32)
    ref_map, _ = fp32.score(x)
    amp_map, _ = amp.score(x)
    assert amp.info()["bf16"] is True and amp_map.dtype == torch.float32
    assert 0 < float((amp_map - ref_map).abs().max()) < 0.5  # bf16 really ran, and stays close
    ort_scorer = make_scorer(SSDNetConfig(score=ScoreConfig(backend="onnxruntime")), copy.deepcopy(sc), "cpu")
    assert ort_scorer.name == "onnxruntime"


def test_auto_picks_tensorrt_then_ort_gpu_then_the_fastest_cpu_scorer(monkeypatch, native_bf16):
    """`score.backend: auto`: TensorRT with a CUDA device, else ONNX Runtime's CUDA provider when it loads, else
    torch (bf16 on the CPU: the fastest measured here). Availability is faked; the decision is what is tested."""
    auto = ScoreConfig()
    assert auto.backend == "auto"  # the default
    cpu = choose_backend(auto, "cpu")
    assert (cpu.backend, cpu.provider) == ("torch", "cpu") and "fastest CPU scorer" in cpu.reason
    monkeypatch.setattr(factory.importlib.util, "find_spec", lambda name: object() if name == "tensorrt" else None)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    assert choose_backend(auto, torch.device("cuda")).backend == "tensorrt"
    assert choose_backend(auto, "cpu").backend == "torch"  # TensorRT only for a scorer on a CUDA device
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))  # JetPack 6.0's
    monkeypatch.setattr(factory, "_ort_gpu_provider_loads", lambda: False)
    old = choose_backend(auto, torch.device("cuda"))
    assert (old.backend, old.reason) == ("torch", "auto: TensorRT 8.6.1 is too old, no ONNX Runtime GPU provider; "
                                                  "torch on CUDA")
    with pytest.raises(BackendUnavailable, match="needs TensorRT 10 or later"):
        ensure_available(choose_backend(ScoreConfig(backend="tensorrt"), torch.device("cuda")))
    monkeypatch.setattr(factory.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(factory, "_ort_gpu_provider_loads", lambda: True)
    ort_gpu = choose_backend(auto, torch.device("cuda"))
    assert (ort_gpu.backend, ort_gpu.provider) == ("onnxruntime", "CUDAExecutionProvider")
    monkeypatch.setattr(factory, "_ort_gpu_provider_loads", lambda: False)
    torch_cuda = choose_backend(auto, torch.device("cuda"))
    assert (torch_cuda.backend, torch_cuda.provider) == ("torch", "cuda")
    explicit = choose_backend(ScoreConfig(backend="onnxruntime"), "cpu")
    assert (explicit.backend, explicit.provider, explicit.reason) == ("onnxruntime", CPU_PROVIDER,
                                                                      "score.backend: onnxruntime")


def test_the_ort_gpu_probe_says_no_without_a_cuda_provider():
    """A CPU wheel of onnxruntime (as here) lists no CUDA provider: `auto` never picks ONNX Runtime's GPU path."""
    loads = factory._ort_gpu_provider_loads()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert loads is False
    else:  # onnxruntime-gpu: True only when a session really runs on it (a missing cuDNN gives False)
        assert isinstance(loads, bool)


@pytest.mark.skipif(HAS_TRT and HAS_CUDA, reason="checks the error where TensorRT or CUDA is missing")
def test_tensorrt_backend_fails_loudly_without_tensorrt_or_gpu():
    with pytest.raises(BackendUnavailable):
        make_scorer(SSDNetConfig(score=ScoreConfig(backend="tensorrt")), tiny_scorer(), "cpu")


# ------------------------------------------------------------------------------------ parity gate


def _synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    ref_map = rng.standard_normal((1, 1, 64, 64)).astype(np.float32)
    ref_score = np.array([3.2], dtype=np.float32)
    return ref_map, ref_score


def test_parity_gate_passes_identical_and_fp16_like_outputs():
    ref_map, ref_score = _synthetic()
    assert parity_check(ref_map, ref_score, ref_map, ref_score).ok
    noise = np.random.default_rng(1).normal(0, 0.005, ref_map.shape).astype(np.float32)
    rep = parity_check(ref_map, ref_score, ref_map + noise, ref_score * 1.005)
    assert rep.ok, rep.reason
    assert 0 < rep.map_max_abs < 0.1


@pytest.mark.parametrize("change, reason", [
    (lambda m, s: (m + 0.5, s), "max |map diff|"),
    (lambda m, s: (m + 0.05, s), "mean |map diff|"),
    (lambda m, s: (m, s * 1.2), "score"),
    (lambda m, s: (np.where(np.arange(m.size).reshape(m.shape) == 5, np.nan, m), s), "non-finite"),
    (lambda m, s: (m[..., :32], s), "shape"),
    (lambda m, s: (m, np.array([np.inf], dtype=np.float32)), "non-finite"),
])
def test_parity_gate_refuses_outputs_out_of_tolerance(change, reason):
    ref_map, ref_score = _synthetic()
    got_map, got_score = change(ref_map.copy(), ref_score.copy())
    rep = parity_check(ref_map, ref_score, got_map, got_score)
    assert not rep.ok and reason in rep.reason


def test_parity_gate_measures_in_the_reference_maps_std():
    ref_map, ref_score = _synthetic()
    noise = np.random.default_rng(1).normal(0, 0.005, ref_map.shape).astype(np.float32)
    std_units = parity_check(ref_map, ref_score, ref_map + noise, ref_score)
    scaled = parity_check(0.6 + 0.05 * ref_map, ref_score, 0.6 + 0.05 * (ref_map + noise), ref_score)  # knn units
    assert scaled.map_max_abs == pytest.approx(std_units.map_max_abs, rel=1e-3) and scaled.ok
    assert not parity_check(0.05 * ref_map, ref_score, 0.05 * ref_map + 0.025, ref_score).ok  # 0.5 std off


def test_parity_tolerance_is_configurable():
    ref_map, ref_score = _synthetic()
    loose = ParityTolerance(map_atol=1.0, map_mean_atol=1.0, score_rtol=1.0)
    assert parity_check(ref_map, ref_score, ref_map + 0.5, ref_score, loose).ok


def test_gate_refuses_and_evicts_an_engine_that_fails(tmp_path, monkeypatch):
    """The gate's bookkeeping, without TensorRT: a failing engine is dropped and deleted from the cache, and
    remembered, so no other camera's scorer builds it again in this process (minutes on a Jetson)."""
    monkeypatch.setattr(TensorRTScorer, "failed", {})
    sc = tiny_scorer()
    gate = TensorRTScorer.__new__(TensorRTScorer)  # no TensorRT here: set up only what _gate uses
    gate.module, gate.device, gate.tolerance, gate.precision = sc, torch.device("cpu"), ParityTolerance(), "fp16"
    gate.cache = EngineCache(tmp_path)
    gate._state = {k: v.clone() for k, v in sc.unet.state_dict().items()}
    key = "k" * 32
    gate.cache.store(key, b"plan", {})
    entry = {"key": key, "gated": False}
    gate._engines = GraphCache({(16, 16, None): entry})
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        good_map, good_score = sc(x)
    gate._gate(entry, x, good_map.clone(), good_score.clone())
    assert entry["gated"] and gate.parity.ok and gate.cache.load(key) == b"plan"
    entry["gated"] = False
    with pytest.raises(ParityError, match="refused"):
        gate._gate(entry, x, good_map + 1.0, good_score)
    assert gate.cache.load(key) is None and not gate._engines
    assert TensorRTScorer.failed[key].startswith("parity: ")


# ----------------------------------------------------------------------- TensorRT on a real GPU


@needs_trt
@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["refit", "inputs"])
def test_tensorrt_fp16_engine_refits_and_matches_torch(tmp_path, strategy):
    cfg = SSDNetConfig(model=ModelConfig(base_channels=8), fit=FitConfig(amp=False),
                       score=ScoreConfig(pixel_weight=0.1, perceptual_weight=0.0, knn_weight=0.0, image_score="map",
                                         map_units="std"))
    torch.manual_seed(0)
    sc = AnomalyScorer(UNet(8).eval(), cfg.score, cfg.fit.scales).eval().cuda()
    trt_scorer = TensorRTScorer(copy.deepcopy(sc), precision="fp16", strategy=strategy, cache=tmp_path)
    x = torch.rand(1, 3, 64, 64, device="cuda")
    base = {k: v.clone() for k, v in sc.unet.state_dict().items()}
    for i in range(3):
        g = torch.Generator(device="cuda").manual_seed(i)
        state = {k: v + 0.02 * torch.randn(v.shape, generator=g, device="cuda") for k, v in base.items()}
        trt_scorer.update_weights(state)
        sc.unet.load_state_dict(state)
        m, s = trt_scorer.score(x)
        with torch.inference_mode():
            rm, rs = sc(x)
        rep = parity_check(rm.cpu().numpy(), rs.cpu().numpy(), m.cpu().numpy(), s.cpu().numpy())
        assert rep.ok, rep.reason
    assert trt_scorer.parity is not None and trt_scorer.parity.ok
    assert len(list(tmp_path.glob("*.engine"))) == 1  # built once, refitted since
    again = TensorRTScorer(copy.deepcopy(sc), precision="fp16", strategy=strategy, cache=tmp_path)
    again.score(x)  # from the cache
    assert len(list(tmp_path.glob("*.engine"))) == 1
