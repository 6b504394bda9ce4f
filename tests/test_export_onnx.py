"""ONNX export of the scorer graph and the ONNX Runtime backend: parity with PyTorch across weight updates.

Tolerances: the exported fp32 graph computes what the torch scorer computes, in another order;
maps (in units of the image's std) agree to ~1e-5, so 1e-3 is asserted. The fp16 U-Net graph
agrees to ~1e-3 on random weights; 0.05 is asserted.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import edge.scoring
from edge.border import has_interior
from edge.config import FitConfig, LossConfig, ModelConfig, ScoreConfig, SSDNetConfig, parse_config
from edge.detector import Detector
from edge.device import resolve_device
from edge.fitter import image_to_tensor
from edge.frames import working_size
from edge.images import write_rgb
from edge.memory import FeatureMemory
from edge.scorers import (
    BackendChoice,
    OnnxRuntimeScorer,
    ParityError,
    TorchScorer,
    build_scorer,
    choose_backend,
    parity_check,
)
from edge.scorers.base import MAX_GRAPHS
from edge.scorers.onnx_graph import (
    FRAME_INPUT,
    INPUT_NAME,
    MEMORY_INPUTS,
    OUTPUT_NAMES,
    ExportError,
    export_scorer,
    graph_hash,
    map_weight_names,
    weights_for_graph,
)
from edge.scorers.tensorrt_scorer import NO_GPU, NOT_INSTALLED
from edge.scoring import AnomalyScorer
from edge.synthetic import texture
from edge.unet import UNet
from edge.vgg import VGG19Features, VGGWeightsError
from export.cli import EXIT_UNAVAILABLE
from export.onnx_export import save, sidecar
from test_protocol_doc import examples
from tools.cli import main

H = W = 64
EXPORT_DOC = Path(__file__).resolve().parents[1] / "docs" / "export.md"
FP32_ATOL = 1e-3
FP16_ATOL = 0.05


def tiny_cfg(**score) -> SSDNetConfig:
    return SSDNetConfig(model=ModelConfig(base_channels=8), loss=LossConfig(perceptual_weight=0.0),
                        fit=FitConfig(steps=2, warm_steps=1, amp=False),
                        score=ScoreConfig(**{"pixel_weight": 0.1, "perceptual_weight": 0.0, "knn_weight": 0.0,
                                             "image_score": "map", "map_units": "std", "amp": False, **score}),
                        device="cpu")


def make_scorer(cfg: SSDNetConfig, seed: int = 0) -> AnomalyScorer:
    torch.manual_seed(seed)
    unet = UNet(cfg.model.base_channels).eval()
    with torch.no_grad():
        unet.head.weight.normal_(0, 0.05)  # not the identity
    return AnomalyScorer(unet, cfg.score, cfg.fit.scales).eval()


def perturbed(state: dict[str, torch.Tensor], seed: int, scale: float = 0.02) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g) for k, v in state.items()}


def image(n: int = 1, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    imgs = [texture("brick", H, rng) for _ in range(n)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def scorer() -> AnomalyScorer:
    return make_scorer(tiny_cfg())


@pytest.fixture(scope="module")
def exported(scorer):
    return export_scorer(scorer, H, W)


def test_checker_passes_and_io_is_as_specified(exported):
    m = exported.model
    onnx.checker.check_model(m, full_check=True)
    assert exported.opset == 17
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,) = [i for i in m.graph.input if i.name == INPUT_NAME]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, H, W]
    outs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
    assert outs == {OUTPUT_NAMES[0]: ["batch", 1, H, W], OUTPUT_NAMES[1]: ["batch"]}


def test_every_torch_parameter_maps_to_exactly_one_onnx_name(scorer, exported):
    torch_names = [n for n, _ in scorer.unet.named_parameters()]
    assert sorted(exported.weight_names) == sorted(torch_names)
    onnx_names = list(exported.weight_names.values())
    assert len(set(onnx_names)) == len(onnx_names)
    inits = {i.name: i for i in exported.model.graph.initializer}
    for t, o in exported.weight_names.items():
        assert o == "unet." + t  # stable names: the torch parameter names
        assert tuple(inits[o].dims) == tuple(scorer.unet.get_parameter(t).shape)
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(inits[o]),
                                      scorer.unet.get_parameter(t).detach().numpy())


def test_sidecar_contents(exported, tmp_path):
    onnx_path, json_path = save(exported, tmp_path)
    assert onnx_path.name == "scorer.onnx" and json_path.name == "scorer.json"
    side = json.loads(json_path.read_text())
    assert side["opset"] == 17 and side["format"] == "onnx" and side["precision"] == "fp32"
    assert side["height"] == H and side["width"] == W and side["dynamic_batch"] is True
    assert side["inputs"] == [{"name": "image", "shape": ["batch", 3, H, W], "dtype": "float32"}]
    assert [o["name"] for o in side["outputs"]] == ["anomaly_map", "score"]
    assert side["outputs"][0]["shape"] == ["batch", 1, H, W]
    assert {w["torch"]: w["onnx"] for w in side["weights"]} == exported.weight_names
    assert all(w["kind"] == "initializer" and w["dtype"] == "float32" for w in side["weights"])
    assert side["model_hash"] == exported.model_hash()
    assert side["config"]["scales"] == [2, 4, 8] and side["config"]["frame"] is None  # the whole input
    onnx.checker.check_model(str(onnx_path))


def test_weights_as_inputs_moves_every_weight_to_the_inputs(scorer):
    ex = export_scorer(scorer, H, W, weights_as_inputs=True)
    inputs = {i.name for i in ex.model.graph.input}
    inits = {i.name for i in ex.model.graph.initializer}
    for name in ex.weight_names.values():
        assert name in inputs and name not in inits
    assert all(w["kind"] == "input" for w in sidecar(ex)["weights"])


@pytest.mark.parametrize("strategy", ["reload", "inputs"])
def test_onnxruntime_matches_torch_after_weight_updates(scorer, strategy):
    torch_scorer = TorchScorer(copy.deepcopy(scorer))
    ort_scorer = OnnxRuntimeScorer(copy.deepcopy(scorer), strategy=strategy)
    x = image(2)  # dynamic batch: 2 images
    base = {k: v.clone() for k, v in scorer.unet.state_dict().items()}
    for i in range(3):
        state = perturbed(base, seed=i)
        torch_scorer.update_weights(state)
        ort_scorer.update_weights(state)
        rm, rs = torch_scorer.score(x)
        om, os_ = ort_scorer.score(x)
        assert om.shape == (2, 1, H, W) and os_.shape == (2,)
        assert float((om - rm).abs().max()) < FP32_ATOL
        assert float((os_ - rs).abs().max()) < FP32_ATOL
    assert ort_scorer.info()["strategy"] == strategy
    assert ort_scorer.info()["providers"][0] == "CPUExecutionProvider"


def test_weights_are_bound_not_copied_into_the_export(scorer):
    """A weight update changes the output without another export (the graph object stays the same)."""
    ort_scorer = OnnxRuntimeScorer(copy.deepcopy(scorer), strategy="inputs")
    x = image(1)
    m0, _ = ort_scorer.score(x)
    graph = ort_scorer._graphs[(H, W)]
    ort_scorer.update_weights(perturbed(scorer.unet.state_dict(), seed=7, scale=0.1))
    m1, _ = ort_scorer.score(x)
    assert ort_scorer._graphs[(H, W)] is graph and graph.exported is not None
    assert float((m1 - m0).abs().max()) > 1e-3


def test_session_options_keep_the_cpu_arena_without_the_memory_pattern(scorer):
    """The memory pattern off (a graph holds 19-45% less, no latency cost: docs/security_runs/measure_graphs.log),
    the CPU arena on (without it every frame allocates its activations: 11-20% slower)."""
    so = OnnxRuntimeScorer(copy.deepcopy(scorer))._session_options()
    assert so.enable_mem_pattern is False and so.enable_cpu_mem_arena is True


def test_parity_after_real_fit_steps():
    """Detector on onnxruntime vs on torch: same fits, same maps (a cold fit, then a warm frame)."""
    rng = np.random.default_rng(3)
    frames = [texture("grass", H, rng) for _ in range(2)]
    results = {}
    for backend in ("torch", "onnxruntime"):
        cfg = tiny_cfg(backend=backend)
        det = Detector(cfg, "cpu")
        results[backend] = [det.process(f) for f in frames]
        if backend == "onnxruntime":
            assert det.backend.name == "onnxruntime"
    for a, b in zip(results["torch"], results["onnxruntime"], strict=True):
        assert a.model_version == b.model_version
        assert np.abs(a.anomaly_map - b.anomaly_map).max() < FP32_ATOL
        assert abs(a.score - b.score) < FP32_ATOL


def test_one_model_scores_every_frame_size_with_at_most_max_graphs_sessions():
    """A camera whose frame size changes keeps its model on ONNX Runtime: one session per input size (the frame
    padded to multiples of 64), the last MAX_GRAPHS kept (a size that comes back after eviction gets a new one), and
    every map matches torch's."""
    import cv2

    sizes = [(64, 64), (48, 80), (72, 56), (130, 40), (40, 130), (50, 60)]  # 5 input sizes, then the first again
    frames = [cv2.resize(texture("grass", 96, np.random.default_rng(i)), (w, h)) for i, (h, w) in enumerate(sizes)]
    torch_det, ort_det = Detector(tiny_cfg(), "cpu"), Detector(tiny_cfg(backend="onnxruntime"), "cpu")
    for i, frame in enumerate(frames):
        a, b = torch_det.process(frame), ort_det.process(frame)
        assert b.model_version == i + 1 and b.anomaly_map.shape == frame.shape[:2]
        assert np.abs(a.anomaly_map - b.anomaly_map).max() < FP32_ATOL and abs(a.score - b.score) < FP32_ATOL
    backend = ort_det.backend
    assert len(backend._graphs) == MAX_GRAPHS and backend.sessions_created == 6
    assert list(backend._graphs) == [(128, 64), (192, 64), (64, 192), (64, 64)]


def test_one_graph_scores_every_frame_of_its_input_size_at_parity_with_torch():
    """The frame's size is the ONNX Runtime graph's input (the self-similarity keeps the padding's cells out by it):
    frames of four sizes that pad to 64x128 share one session, and each one's map, score and memory outputs match
    the fp32 torch scorer's on that frame, its memory searched too (a graph per frame size before: 4 sessions)."""
    import cv2

    cfg = parse_config(SSDNetConfig, {"model": {"base_channels": 8}, "fit": {"steps": 1, "warm_steps": 1, "amp": False},
                                      "score": {"amp": False, "backend": "torch"},
                                      "memory": {"size_mb": 1, "delay_frames": 0}, "device": "cpu"})
    det = Detector(cfg, "cpu")
    rng = np.random.default_rng(0)
    for _ in range(3):  # rows in the camera's memory
        det.process(texture("grass", 64, rng))
    assert det.memory.count > 0
    ref, ort_scorer = TorchScorer(det.backend.module), OnnxRuntimeScorer(copy.deepcopy(det.backend.module))
    for s in (ref, ort_scorer):
        s.use_memory(det.memory)
    for h, w in [(64, 128), (50, 100), (33, 70), (64, 90)]:
        x = image_to_tensor(cv2.resize(texture("grass", 128, rng), (w, h)), torch.device("cpu"), 64)
        assert x.shape[-2:] == (64, 128)
        (rm, rs), (om, os_) = ref.score(x, (h, w)), ort_scorer.score(x, (h, w))
        rep = parity_check(rm[..., :h, :w], rs, om[..., :h, :w], os_)
        assert rep.ok and rep.map_max_abs < FP32_ATOL and rep.score_abs < FP32_ATOL, (h, w, rep)
        assert float((ort_scorer.score_map - ref.score_map)[..., :h, :w].abs().max()) < FP32_ATOL
    assert ort_scorer.sessions_created == 1 and list(ort_scorer._graphs) == [(64, 128)]
    assert FRAME_INPUT in {i.name for i in ort_scorer._graphs[(64, 128)].session.get_inputs()}


def test_a_graph_without_the_self_similarity_has_no_frame_input(scorer):
    """The frame's size is an input only where the graph reads it: not without the self-similarity (the U-Net's maps
    cover the padded input)."""
    ex = export_scorer(scorer, H, W, frame_input=True)
    assert [i.name for i in ex.model.graph.input] == [INPUT_NAME]


def test_a_failing_exported_scorer_gives_way_to_torch_for_good(monkeypatch, caplog):
    """An engine that does not build or fails its parity gate (TensorRT on a device; faked here on ONNX Runtime)
    costs the camera no frame: its model scores with torch from then on, as a torch detector does."""
    import cv2

    frames = [cv2.resize(texture("grass", 96, np.random.default_rng(i)), (64, 64)) for i in range(3)]
    torch_det, det = Detector(tiny_cfg(), "cpu"), Detector(tiny_cfg(backend="onnxruntime"), "cpu")
    tries = []

    def fails(self, x, frame=None):
        tries.append(1)
        raise ParityError("engine refused: map differs")

    monkeypatch.setattr(OnnxRuntimeScorer, "score", fails)
    said = []  # the frame the fallback happened on says so (the node counts it: `scorer_fallbacks`)
    with caplog.at_level(logging.ERROR, logger="edge.detector"):
        for frame in frames:
            a, b = torch_det.process(frame), det.process(frame)
            assert np.abs(a.anomaly_map - b.anomaly_map).max() < FP32_ATOL and abs(a.score - b.score) < FP32_ATOL
            said.append(b.scorer_fallback)
    assert det.backend.name == "torch" and len(tries) == 1 and said == [True, False, False]
    assert "the onnxruntime scorer failed (engine refused: map differs): this camera scores with torch" in caplog.text


def test_detector_restore_pushes_weights():
    det = Detector(tiny_cfg(backend="onnxruntime"), "cpu")
    ref = Detector(tiny_cfg(), "cpu")
    state = perturbed(ref.fitter.model.state_dict(), seed=5, scale=0.05)
    det.restore(state)
    ref.restore(state)
    x = image(1)
    m1, s1 = det.score(x, H, W)
    m2, s2 = ref.score(x, H, W)
    assert np.abs(m1 - m2).max() < FP32_ATOL and abs(s1 - s2) < FP32_ATOL


def test_fp16_graph_keeps_fp32_io_and_fp16_weights(scorer):
    ex = export_scorer(scorer, H, W, fp16=True)
    onnx.checker.check_model(ex.model, full_check=True)
    inits = {i.name: i for i in ex.model.graph.initializer}
    for o in ex.weight_names.values():
        assert inits[o].data_type == onnx.TensorProto.FLOAT16
    side = sidecar(ex)
    assert side["precision"] == "fp16" and side["inputs"][0]["dtype"] == "float32"
    assert all(o["dtype"] == "float32" for o in side["outputs"])
    x = image(1)
    sess = ort.InferenceSession(ex.to_bytes(), providers=["CPUExecutionProvider"])
    m, s = sess.run(None, {"image": x.numpy()})
    with torch.inference_mode():
        rm, rs = scorer(x)
    assert np.abs(m - rm.numpy()).max() < FP16_ATOL
    assert abs(float(s[0]) - float(rs[0])) < FP16_ATOL


def test_model_hash_ignores_weight_values_but_not_the_graph(scorer, exported):
    other = copy.deepcopy(scorer)
    other.unet.load_state_dict(perturbed(scorer.unet.state_dict(), seed=1))
    assert export_scorer(other, H, W).model_hash() == exported.model_hash()
    changed = make_scorer(tiny_cfg(masks=2))
    assert export_scorer(changed, H, W).model_hash() != exported.model_hash()
    assert graph_hash(exported.model) != exported.model_hash()  # weights count unless excluded


def test_weights_for_graph_accepts_prefixed_and_plain_keys(scorer, exported):
    plain = scorer.unet.state_dict()
    prefixed = {"unet." + k: v for k, v in plain.items()}
    assert weights_for_graph(exported, plain).keys() == weights_for_graph(exported, prefixed).keys()
    with pytest.raises(KeyError):
        weights_for_graph(exported, {k: v for k, v in list(plain.items())[1:]})


def test_a_weight_that_is_not_addressable_is_an_error(exported):
    fingerprints = {"enc.0.0.weight": b"not in the graph"}
    with pytest.raises(ExportError, match="not individually addressable"):
        map_weight_names(exported.model, fingerprints)


def test_size_must_fit_the_scales(scorer):
    with pytest.raises(ValueError, match="multiples of 64"):
        export_scorer(scorer, 96, 64)


def test_export_leaves_the_scorer_untouched(scorer):
    before = {k: v.clone() for k, v in scorer.unet.state_dict().items()}
    export_scorer(scorer, H, W, fp16=True)
    after = scorer.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == torch.float32 for k in before)
    assert "round" not in vars(edge.scoring)


@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None,
                    reason="the dynamo exporter needs onnxscript, not installed")
def test_dynamo_exporter_keeps_names_and_parity(scorer):
    ex = export_scorer(scorer, H, W, exporter="dynamo", opset=18)
    assert sorted(ex.weight_names) == sorted(n for n, _ in scorer.unet.named_parameters())
    ort_scorer = OnnxRuntimeScorer(copy.deepcopy(scorer), strategy="inputs", exporter="dynamo")
    x = image(1)
    with torch.inference_mode():
        rm, _ = scorer(x)
    om, _ = ort_scorer.score(x)
    assert float((om - rm).abs().max()) < FP32_ATOL


@pytest.mark.parametrize("score, per_frame", [
    (dict(masks=0, perceptual_weight=0.5, vgg_layers=("relu1_2",)), True),  # perceptual + self-similarity maps
    (dict(pixel_weight=0.0, perceptual_weight=0.0), False),  # self-similarity only (the fast preset)
    (dict(pixel_weight=0.0, perceptual_weight=0.0, knn_far_weight=1.0, knn_far_share=0.2), False),  # long defects
])
@pytest.mark.parametrize("frame", [None, (50, 60)], ids=["whole", "padded"])
def test_scorer_with_vgg_maps_exports(score, per_frame, frame):
    """VGG19 maps (VGG19 frozen in the graph) match torch in ONNX Runtime; only U-Net weights are
    per-frame inputs, and with no U-Net map there are none. A frame padded to the input's size is its graph's input
    (the padding is no neighbour of the self-similarity, edge.knn), with the far cells' term a constant of it."""
    cfg = ScoreConfig(amp=False, **score)
    try:
        vgg = VGG19Features(None, cfg.vgg_layers)
    except VGGWeightsError as e:
        pytest.skip(f"no VGG19 weights here: {str(e).splitlines()[0]}")
    torch.manual_seed(0)
    sc = AnomalyScorer(UNet(4).eval(), cfg, (1, 2), vgg).eval()
    with torch.no_grad():
        sc.unet.head.weight.normal_(0, 0.05)
    ort_scorer = OnnxRuntimeScorer(copy.deepcopy(sc), strategy="inputs")
    x = image(1)[..., :64, :64]
    with torch.inference_mode():
        rm, rs = sc(x, frame=frame)
        whole, _ = sc(x)
    om, os_ = ort_scorer.score(x, frame)
    assert float((om - rm).abs().max()) < FP32_ATOL and abs(float(os_[0] - rs[0])) < FP32_ATOL
    assert (frame is None) == bool(torch.equal(rm, whole))  # the padding's cells left out change the map
    graph = ort_scorer._graphs[(64, 64) if cfg.frame_input else (64, 64, frame)]
    exported = graph.exported
    assert graph.reads_frame == cfg.frame_input and exported.config["frame"] == (None if cfg.frame_input else frame)
    if not cfg.frame_input:  # the far cells' count is a number: the frame's size a constant
        with pytest.raises(ValueError, match="frame_input"):
            export_scorer(sc, 64, 64, frame_input=True)
    with pytest.raises(ValueError, match="does not fit"):
        ort_scorer.score(x, (65, 60))  # a frame larger than its padded input
    names = exported.weight_names
    assert bool(names) == per_frame and all(n.split(".")[0] in ("enc", "dec", "up", "head") for n in names)


def test_cli_export_writes_onnx_and_sidecar(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("ssdnet:\n  model: {base_channels: 4}\n  fit: {scales: [1, 2]}\n")
    out = tmp_path / "out"
    assert main(["export", "--format", "onnx", "--height", "60", "--width", "64", "--config", str(cfg), "--out",
                 str(out)]) == 0
    printed = capsys.readouterr()  # progress before each long step on stderr; stdout as before: what it wrote
    assert "exporting the scorer graph for 64x64" in printed.err and "writing" in printed.err
    assert printed.out.startswith("frames of 60x64 are padded to 64x64") and "wrote " in printed.out
    side = json.loads((out / "scorer.json").read_text())
    assert side["height"] == 64 and side["width"] == 64 and side["camera"] == side["scored_frame"] == [60, 64]
    # the frame inside the padded input is the graph's input, as on the node: every frame that pads to 64x64
    assert side["config"]["frame"] is None and side["frame_sizes"] == [[49, 49], [64, 64]]
    assert side["config"]["base_channels"] == 4
    model = onnx.load(str(out / "scorer.onnx"))
    onnx.checker.check_model(model)
    # every input a consumer must feed is in the sidecar: the image, its frame and the camera's memory
    assert [i["name"] for i in side["inputs"]] == [i.name for i in model.graph.input] == [INPUT_NAME, FRAME_INPUT,
                                                                                          *MEMORY_INPUTS]



def test_cli_export_names_an_out_with_brackets_as_it_is(tmp_path, capsys, monkeypatch):
    """Its progress lines are rich markup: an --out of "[/]" failed the export (MarkupError), "[red]" went missing."""
    monkeypatch.setenv("COLUMNS", "500")  # the path on one line
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("ssdnet:\n  model: {base_channels: 4}\n  fit: {scales: [1, 2]}\n")
    out = tmp_path / "[/]" / "[red]x"
    assert main(["export", "--format", "onnx", "--height", "64", "--width", "64", "--config", str(cfg), "--out",
                 str(out)]) == 0
    assert "[red]x" in capsys.readouterr().err and (out / "scorer.onnx").is_file()

@pytest.mark.parametrize("columns", [80, 60])
def test_backends_wraps_the_install_hint_on_a_narrow_terminal(monkeypatch, capsys, columns):
    """`ssdnet backends` on a narrow terminal: each detail whole in its column (wrapped, a long word folded), the
    TensorRT install hint not cut off."""
    detail = f"BackendUnavailable: {NOT_INSTALLED}"
    rows = [{"backend": "onnxruntime", "provider": "CPUExecutionProvider (reload)", "ok": True,
             "detail": "max |map diff| 1.5e-07", "ms": 88.8},
            {"backend": "tensorrt", "provider": "fp16", "ok": False, "detail": detail, "ms": None}]
    monkeypatch.setattr("export.cli.probe_backends", lambda include_compile=False: rows)
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cells = "".join(line.split("\u2502")[-2].strip() for line in lines if line.count("\u2502") == 6)  # detail column
    assert max(map(len, lines)) <= columns and detail.replace(" ", "") in cells.replace(" ", "")


@pytest.mark.parametrize(("backend", "provider", "row"), [("torch", "cpu", 0), ("tensorrt", "cuda", 3),
                                                         ("onnxruntime", "CUDAExecutionProvider", 2)])
def test_backends_json_names_the_row_auto_picks(monkeypatch, capsys, backend, provider, row):
    """`ssdnet backends --json` left out what `score.backend: auto` picks (the table's last line): the picked row
    carries its reason under `auto`, every other row null (TensorRT's by `score.engine_precision`, fp16)."""
    rows = [{"backend": "torch", "provider": "cpu", "ok": True},
            {"backend": "onnxruntime", "provider": "CPUExecutionProvider (inputs)", "ok": True},
            {"backend": "onnxruntime", "provider": "CUDAExecutionProvider (inputs)", "ok": True},
            {"backend": "tensorrt", "provider": "fp16", "ok": True},
            {"backend": "tensorrt", "provider": "fp32", "ok": True}]
    monkeypatch.setattr("export.cli.probe_backends", lambda include_compile=False: copy.deepcopy(rows))
    monkeypatch.setattr("export.cli.choose_backend", lambda *_a: BackendChoice(backend, provider, "the reason"))
    assert main(["backends", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r.pop("auto") for r in got] == ["the reason" if i == row else None for i in range(len(rows))]
    assert got == rows  # every other key as it was


def test_backends_json_auto_is_the_choice_on_this_machine(capsys):
    assert main(["backends", "--json"]) == 0
    picked = [r for r in json.loads(capsys.readouterr().out) if r["auto"] is not None]
    choice = choose_backend(ScoreConfig(), resolve_device("auto"))
    assert [(r["backend"], r["auto"]) for r in picked] == [(choice.backend, choice.reason)] and picked[0]["ok"]


def test_cli_export_scales_a_large_camera_down_as_the_detector_does(tmp_path):
    """Above ssdnet.max_pixels a frame is scored scaled down (edge.frames.working_size): the export is for that size
    and frame, the graph the Detector's exported scorer builds for this camera (so a pre-warmed engine is the one
    used), not one for pixels it never scores."""
    settings = {"model": {"base_channels": 4}, "fit": {"scales": [1, 2]}, "max_pixels": 4096,
                "score": {"backend": "onnxruntime"}}
    (tmp_path / "cfg.yaml").write_text(json.dumps({"ssdnet": settings}))
    assert main(["export", "--height", "100", "--width", "80", "--config", str(tmp_path / "cfg.yaml"), "--out",
                 str(tmp_path / "out")]) == 0
    side = json.loads((tmp_path / "out" / "scorer.json").read_text())
    det = Detector(parse_config(SSDNetConfig, settings), "cpu")
    det.process(texture("brick", 100, np.random.default_rng(0))[:, :80])
    (key,) = det.backend._graphs  # (input height, width); the frame inside it is the graph's input
    frame = tuple(side["scored_frame"])
    assert side["camera"] == [100, 80] and (side["height"], side["width"]) == key
    assert frame == working_size(100, 80, 4096) and frame[0] * frame[1] <= 4096 < 100 * 80


@pytest.mark.parametrize(("height", "width", "other", "inset", "far"),
                         [(120, 128, (113, 120), 8, 0.0), (60, 64, (50, 56), 0, 0.0), (120, 128, None, 8, 0.5),
                          (90, 90, (95, 95), 0, 0.0), (96, 96, None, 8, 0.0)])
def test_the_docs_standalone_example_scores_an_exported_file_as_ssdnet_score_does(tmp_path, height, width, other,
                                                                                   inset, far):
    """docs/export.md's example (numpy and onnxruntime only, a clean interpreter) scores a frame with the files
    `ssdnet export` wrote, the camera memory fed empty: the torch scorer's map with an empty memory, and the raw score
    `ssdnet score` gives the frame (a camera's first frame), read as the sidecar says: the frame alone, not its
    padding, and 8 px inside its border where it has an interior (edge.border; a frame under ~96 px a side has none).
    Before the sidecar said so the example took the graph's own score: 0.766 for `ssdnet score`'s 0.669 at
    120 x 128. The file held its camera's frame size as a constant: a 100x110 frame in the 120x128 camera's 128x128
    input came out 0.19 off torch's map, a 136x128 one failed in np.pad; the frame's size is the graph's input now, as
    on the node (`other`: another size that pads to the input), and a frame of a size the file cannot score is refused
    naming the sizes it can. With `score.knn_far_weight` the frame's size stays a constant: that size alone."""
    block = examples(EXPORT_DOC)["standalone"]
    assert set(re.findall(r"^(?:import|from) (\w+)", block, re.M)) == {"json", "os", "numpy", "onnxruntime"}
    # the torch twin in fp32, as the ONNX file is (`score.amp` would score in bf16 on a CPU with native bf16)
    settings = {"model": {"base_channels": 4}, "fit": {"scales": [1, 2]},
                "score": {"amp": False, "knn_far_weight": far}}
    (tmp_path / "cfg.yaml").write_text(json.dumps({"ssdnet": settings}))  # YAML reads JSON
    assert main(["export", "--height", str(height), "--width", str(width), "--config", str(tmp_path / "cfg.yaml"),
                 "--out", str(tmp_path / "out")]) == 0
    side = json.loads((tmp_path / "out" / "scorer.json").read_text())
    assert side["first_frame_score"] == {"map": "score_map", "inset": inset, "quantile": 0.999}
    (tmp_path / "example.py").write_text(block)
    cfg = parse_config(SSDNetConfig, settings)
    scorer = build_scorer(cfg, device="cpu", backend="torch")
    scorer.use_memory(FeatureMemory(cfg.memory, history_dim=scorer.module.knn_dim))

    def example(frame: np.ndarray) -> subprocess.CompletedProcess:
        np.save(tmp_path / "frame.npy", frame)
        return subprocess.run([sys.executable, "-I", str(tmp_path / "example.py")], capture_output=True, text=True,
                              env={**os.environ, "SCORER_DIR": str(tmp_path / "out"),
                                   "FRAME": str(tmp_path / "frame.npy"), "MAP": str(tmp_path / "map.npy")},
                              cwd=tmp_path, timeout=300)

    for h, w in [(height, width), *([other] if other else [])]:
        frame = texture("brick", 128, np.random.default_rng(3))[:h, :w]
        run = example(frame)
        assert run.returncode == 0, run.stderr
        amap, raw = np.load(tmp_path / "map.npy"), json.loads(run.stdout)["score"]
        write_rgb(tmp_path / "frame.png", frame)
        assert main(["score", str(tmp_path / "frame.png"), "--config", str(tmp_path / "cfg.yaml"), "--out",
                     str(tmp_path / f"scored{h}")]) == 0
        want_score = json.loads((tmp_path / f"scored{h}" / "scores.jsonl").read_text())["raw_score"]  # 4 decimals
        want_map, _ = scorer.score(image_to_tensor(frame, torch.device("cpu"), 16), (h, w))
        assert amap.shape == (h, w) and np.abs(amap - want_map[0, 0, :h, :w].numpy()).max() < FP32_ATOL, (h, w)
        assert abs(raw - want_score) < FP32_ATOL and np.ptp(amap) > 10 * FP32_ATOL  # a map, not a constant
    refused = example(texture("brick", 160, np.random.default_rng(3))[: height + 16, :width])
    (lo, hi) = side["frame_sizes"]
    assert refused.returncode != 0 and (f"a {height + 16}x{width} frame: this graph scores frames of "
                                        f"{lo[0]}x{lo[1]} to {hi[0]}x{hi[1]}") in refused.stderr
    # every size it names is read with the camera's inset: 90 x 90 has no interior, 96 x 96 has (edge.border); the
    # 96 x 96 camera's file would take 81 x 81 to 96 x 96 but for that (ssdnet score gave 0.035 more at 90 x 90)
    assert all(has_interior(*size) == (inset > 0) for size in (lo, hi)), (lo, hi)
    padded = [-(-height // 16) * 16, -(-width // 16) * 16]
    assert hi == {(90, 90): [95, 95]}.get((height, width), [height, width] if far else padded)
    assert (lo == hi) == (far > 0 or (height, width) == (96, 96))


def test_cli_export_tensorrt_one_outcome_per_environment(tmp_path, capsys):
    """With TensorRT and a CUDA GPU the engine is built and written; without either, a message that
    says which is missing and the exit code for an unavailable backend (not a generic error)."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("ssdnet:\n  model: {base_channels: 4}\n  fit: {scales: [1, 2]}\n")
    out = tmp_path / "trt"
    rc = main(["export", "--format", "tensorrt", "--height", "32", "--width", "32", "--config", str(cfg),
               "--out", str(out)])
    err = capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:
        assert rc == EXIT_UNAVAILABLE == 3 and "TensorRT is not installed" in err
        assert not out.exists()
    elif not torch.cuda.is_available():
        assert rc == EXIT_UNAVAILABLE and "no CUDA GPU" in err
    else:
        assert rc == 0, err
        side = json.loads((out / "scorer.json").read_text())
        assert side["format"] == "tensorrt" and (out / side["engine"]).stat().st_size > 0


UNET_CFG = "ssdnet:\n  model: {base_channels: 4}\n  fit: {scales: [1, 2]}\n  score: {pixel_weight: 0.1}\n"


@pytest.mark.parametrize("flag", ["--fp16", "--weights-as-inputs"])
def test_cli_export_refuses_unet_flags_where_the_config_has_no_unet(tmp_path, capsys, flag):
    """The default config scores no U-Net map: --fp16 wrote an fp32 graph byte for byte, its sidecar saying fp16, and
    --weights-as-inputs said true with no weights. Refused as `ssdnet score --steps` is, naming the config that fits."""
    out = tmp_path / "out"
    assert main(["export", "--height", "64", "--width", "64", flag, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ssdnet export: error: {flag}: for the U-Net, which the default config does not use")
    assert "--config configs/ssdnet-fit.yaml" in err and "\n" not in err and not out.exists()


@pytest.mark.parametrize("flags", ["--weights-as-inputs", "--exporter dynamo", "--opset 18",
                                   "--opset 18 --weights-as-inputs"])
def test_cli_export_tensorrt_refuses_the_onnx_only_flags_before_any_work(tmp_path, capsys, monkeypatch, flags):
    """--format tensorrt built the engine the node builds whatever these said (weights refitted, torchscript, opset
    17), and wrote a sidecar as if they had been taken: on a GPU, minutes of building for flags that did nothing."""
    monkeypatch.chdir(tmp_path)
    Path("cfg.yaml").write_text(UNET_CFG)
    class Reached(Exception):
        pass

    def work(*_a):
        raise Reached

    monkeypatch.setattr("export.cli._scorer", work)
    argv = ["export", "--format", "tensorrt", "--height", "64", "--width", "64", "--config", "cfg.yaml",
            "--out", "out"]
    with pytest.raises(Reached):  # the defaults, and the default opset said out loud, go on to the work
        main([*argv, "--opset", "17"])
    capsys.readouterr()
    assert main([*argv, *flags.split()]) == 2
    err = capsys.readouterr().err.strip()
    named = " and ".join(f for f in ("--weights-as-inputs", "--exporter dynamo", "--opset 18") if f in flags)
    assert err == (f"ssdnet export: error: {named}: for --format onnx; --format tensorrt builds the engine the node "
                   "builds and looks up in its cache (weights refitted, the torchscript exporter, opset 17)")
    assert not Path("out").exists()


@pytest.mark.parametrize(("flags", "says"), [
    ("--state image.png", "--state image.png is not a torch state dict (UnpicklingError in torch.load; "),
    ("--state list.pt", "--state list.pt holds a list, not a state dict of U-Net weights"),
    ("--state other.pt", "--state other.pt does not fit this config's U-Net (model.base_channels 4): 37 weights "),
    ("--opset 5", "--opset 5: the torchscript exporter exports the scorer at opsets 13 to 23"),
])
def test_cli_export_says_a_bad_state_or_opset_in_one_line(tmp_path, capfd, monkeypatch, flags, says):
    """--state of an image was an UnpicklingError traceback, of a list an AttributeError one, of another model's
    weights a 500-character RuntimeError line (exit 1); --opset 5 printed the exporter's graph (568 lines) first."""
    monkeypatch.chdir(tmp_path)
    Path("cfg.yaml").write_text(UNET_CFG)
    write_rgb(tmp_path / "image.png", np.zeros((8, 8, 3), np.uint8))
    torch.save([1, 2], "list.pt")
    torch.save({"unet.foo": torch.zeros(2)}, "other.pt")
    argv = ["export", "--height", "64", "--width", "64", "--config", "cfg.yaml", "--out", "out", *flags.split()]
    assert main(argv) == 2
    out, err = capfd.readouterr()
    assert out == "" and err.splitlines()[-1].startswith(f"ssdnet export: error: {says}"), err
    assert "Traceback" not in err and not Path("out").exists()


@pytest.mark.parametrize("command", [["export", "--out", "{file}"], ["export", "--out", "{file}/sub"],
                                     ["bench-scorer", "--json", "{file}/x.json"], ["bench-scorer", "--json", "{dir}"]])
def test_cli_export_and_bench_refuse_an_output_path_before_the_work(tmp_path, capsys, monkeypatch, command):
    """A file where the output folder goes, or a folder for --json, was found after the export or the whole
    benchmark (bench-scorer: NotADirectoryError / IsADirectoryError, exit 1, no JSON)."""
    def work(*_a, **_k):
        raise AssertionError("the work ran first")

    monkeypatch.setattr("export.cli._scorer", work)
    monkeypatch.setattr("export.cli.run_bench", work)
    (tmp_path / "afile").write_text("")
    argv = [a.format(file=tmp_path / "afile", dir=tmp_path) for a in command]
    assert main([*argv[:1], "--height", "64", "--width", "64", *argv[1:]]) == 2
    says = (f"--json {tmp_path} is a folder: give the file to write" if "{dir}" in command
            else f"{tmp_path / 'afile'} is a file, where a folder goes")
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"ssdnet {command[0]}: error: {says}")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available(),
                    reason="TensorRT runs here")
def test_bench_scorer_says_an_asked_for_backend_that_cannot_run_failed(tmp_path, capsys):
    """--backend tensorrt without TensorRT printed the torch baseline alone and exited 0."""
    (tmp_path / "cfg.yaml").write_text(UNET_CFG)
    out = tmp_path / "bench.json"
    rc = main(["bench-scorer", "--height", "32", "--width", "32", "--repeat", "1", "--config",
               str(tmp_path / "cfg.yaml"), "--backend", "tensorrt", "--json", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    rows = json.loads(out.read_text())["rows"]
    why = rows[-1]["error"]  # what `ssdnet backends` says
    assert rc == EXIT_UNAVAILABLE and [(r["backend"], r["ok"]) for r in rows] == [("torch", True), ("tensorrt", False)]
    assert why in (f"BackendUnavailable: {NOT_INSTALLED}", f"BackendUnavailable: {NO_GPU}")
    assert err == f"ssdnet bench-scorer: error: --backend tensorrt did not run: {why}"
