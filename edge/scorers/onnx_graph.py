"""In-memory ONNX export of the SSDnet scorer graph (edge.scoring.AnomalyScorer), for the ONNX Runtime
and TensorRT backends; `ssdnet export` (export/) writes it to disk with its sidecar JSON.

The graph takes the image (N, 3, H, W) float32 in [0, 1] and returns the anomaly map (N, 1, H, W)
and the image score (N,): patching, masked passes, the U-Net, smoothing, standardisation and the
top-k score are all inside it. H and W are static (one graph per input size), the batch is
dynamic. The frame inside the padded input (its height and width) is a constant of the graph, or with
``frame_input=True`` its input ``frame`` (int64 (2,)): then one graph scores every frame that pads to its size
(a graph that does not read it, without the self-similarity, has no such input).

The U-Net's weights change every frame, so the export keeps them addressable by name:
- as initializers whose names are the torch parameter names prefixed by ``unet.`` (what a
  TensorRT refit or an ONNX Runtime reload writes), or
- with ``weights_as_inputs=True``, as graph inputs of the same names, bound on every call.
The torch -> ONNX name map is not assumed: before tracing, every U-Net parameter of the traced copy
is given unique random values and found again by its bytes among the exported initializers, so a
parameter that the exporter folded or renamed is caught here instead of being silently frozen.

Exporters (torch 2.13): the legacy TorchScript exporter (``exporter="torchscript"``, default) needs
nothing beyond torch, emits opset 17 exactly and keeps the parameter names; the dynamo exporter
(``exporter="dynamo"``) gives a smaller graph but needs the ``onnxscript`` package and emits
opset >= 18. docs/export.md has the comparison.
"""
from __future__ import annotations

import copy
import hashlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from ..memory import FeatureMemory, grid_shape, search_pieces
from ..sizes import feature_dim
from .base import padded_frame

DEFAULT_OPSET = 17
DYNAMO_OPSET = 18  # the dynamo exporter's minimum (docs/export.md)
INPUT_NAME = "image"
FRAME_INPUT = "frame"  # with frame_input: the frame's (height, width) in the padded image, int64 (2,)
OUTPUT_NAMES = ("anomaly_map", "score")
MEMORY_INPUTS = ("memory", "memory_state", "memory_spacing")  # with a memory: the bank (M, C) fp16,
# [valid rows, typical spacing, blend a, b, c, floor p, q] (7,), each row's spacing (M,)
BANK_INPUTS = (MEMORY_INPUTS[0], MEMORY_INPUTS[2])  # their rows are the `bank_rows` axis of a dynamic bank
MEMORY_OUTPUTS = ("memory_features", "memory_maps", "score_map")  # with a memory: (N, C, gh, gw), (N, 2, gh, gw)
# on its grid, and the map the image score reads (N, 1, H, W)
HISTORY_INPUTS = ("history", "history_own")  # with the memory's history: its rows (R, D) fp16 and their own
# distances (R,); the state's 8th value is its valid rows
HISTORY_OUTPUTS = ("knn_cells",)  # and the frame's self-similarity cells with their own distances (N, D + 1, kh, kw)
WEIGHT_PREFIX = "unet."
EXPORTERS = ("torchscript", "dynamo")


class ExportError(RuntimeError):
    """The scorer could not be exported in a form whose weights can be replaced per frame."""


def _fp16_unet(unet: torch.nn.Module) -> None:
    """Run `unet` in fp16 inside an fp32 graph: half weights, casts at its input and output.

    The parameter names do not change, so the fp16 initializers keep the torch names.
    """
    unet.half()
    unet.register_forward_pre_hook(lambda _m, args: tuple(a.half() for a in args))
    unet.register_forward_hook(lambda _m, _args, out: out.float())


def _unique_fill(params: Mapping[str, torch.Tensor], seed: int = 1234) -> dict[str, bytes]:
    """Give every parameter unique random values; return their bytes (as exported) by name."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in params.items():
        with torch.no_grad():
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float32).to(p.dtype) + 0.5)
        out[name] = p.detach().cpu().contiguous().numpy().tobytes()
    if len(set(out.values())) != len(out):
        raise ExportError("U-Net parameters could not be given distinct values for name mapping")
    return out


def map_weight_names(model: onnx.ModelProto, fingerprints: Mapping[str, bytes]) -> dict[str, str]:
    """{torch name: ONNX initializer name}, matching by exact bytes; every torch name exactly once."""
    by_bytes: dict[bytes, list[str]] = {}
    for init in model.graph.initializer:
        by_bytes.setdefault(numpy_helper.to_array(init).tobytes(), []).append(init.name)
    mapping, problems = {}, []
    for name, data in fingerprints.items():
        hits = by_bytes.get(data, [])
        if len(hits) != 1:
            what = "not found (folded into another constant?)" if not hits else f"found {len(hits)} times: {hits}"
            problems.append(f"{name}: {what}")
        else:
            mapping[name] = hits[0]
    if len(set(mapping.values())) != len(mapping):
        problems.append("two torch parameters map to one ONNX initializer")
    if problems:
        raise ExportError("U-Net weights are not individually addressable in the ONNX graph:\n  "
                          + "\n  ".join(problems))
    return mapping


def memory_io(history: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The graph's memory inputs and outputs, with or without the history's."""
    return (MEMORY_INPUTS + HISTORY_INPUTS, MEMORY_OUTPUTS + HISTORY_OUTPUTS) if history else (MEMORY_INPUTS,
                                                                                              MEMORY_OUTPUTS)


def _static_output_shapes(model: onnx.ModelProto, height: int, width: int,
                          memory_shape: tuple[int, int, int] | None,
                          cells_shape: tuple[int, int, int] | None = None) -> None:
    """The TorchScript exporter leaves H and W of the map symbolic; they are static here."""
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if out.name == OUTPUT_NAMES[0]:
            want: list = ["batch", 1, height, width]
        elif out.name == OUTPUT_NAMES[1]:
            want = ["batch"]
        elif out.name in MEMORY_OUTPUTS and memory_shape is not None:
            want = {MEMORY_OUTPUTS[0]: ["batch", *memory_shape], MEMORY_OUTPUTS[1]: ["batch", 2, *memory_shape[1:]],
                    MEMORY_OUTPUTS[2]: ["batch", 1, height, width]}[out.name]
        elif out.name in HISTORY_OUTPUTS and cells_shape is not None:
            want = ["batch", *cells_shape]
        else:
            continue
        del dims[:]
        for d in want:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d


def _initializers_to_inputs(model: onnx.ModelProto, names: set[str]) -> None:
    keep = [i for i in model.graph.initializer if i.name not in names]
    moved = [i for i in model.graph.initializer if i.name in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    for init in moved:
        model.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))


def graph_hash(model: onnx.ModelProto, exclude: set[str] = frozenset()) -> str:
    """sha256 of the graph with the values of `exclude` initializers blanked (names, shapes kept).

    The refittable U-Net weights change every frame and must not change an engine's cache key.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for init in m.graph.initializer:
        if init.name in exclude:
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.ClearField("int32_data")
    m.ClearField("producer_version")
    return hashlib.sha256(m.SerializeToString(deterministic=True)).hexdigest()


@dataclass
class ExportedScorer:
    """An exported scorer graph plus what a backend needs to feed it new weights."""

    model: onnx.ModelProto
    height: int
    width: int
    opset: int
    exporter: str
    precision: str  # "fp32" or "fp16" (fp16: the U-Net only; I/O and the map arithmetic stay fp32)
    weights_as_inputs: bool
    weight_names: dict[str, str]  # torch UNet parameter name -> ONNX name
    weight_shapes: dict[str, list[int]] = field(default_factory=dict)  # ONNX name -> shape
    config: dict = field(default_factory=dict)

    @property
    def weight_dtype(self) -> np.dtype:
        return np.dtype(np.float16 if self.precision == "fp16" else np.float32)

    def model_hash(self) -> str:
        return graph_hash(self.model, set(self.weight_names.values()))

    def to_bytes(self) -> bytes:
        return self.model.SerializeToString()


def _io_names(frame: bool, memory: bool, history: bool) -> tuple[list[str], list[str]]:
    ins, outs = memory_io(history) if memory else ((), ())
    return [INPUT_NAME, *([FRAME_INPUT] if frame else []), *ins], [*OUTPUT_NAMES, *outs]


def _export_torchscript(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], names: tuple[list[str], list[str]],
                        opset: int, dynamic_bank: bool) -> onnx.ModelProto:
    buf = io.BytesIO()
    in_names, out_names = names
    bank_axes = {name: {0: "bank_rows"} for name in BANK_INPUTS} if dynamic_bank else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about constant sizes: H and W are static by design
        torch.onnx.export(
            module, inputs, buf, dynamo=False, opset_version=opset,
            input_names=in_names, output_names=out_names,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in out_names}, **bank_axes},
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def _export_dynamo(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], names: tuple[list[str], list[str]],
                   opset: int, dynamic_bank: bool) -> onnx.ModelProto:
    try:
        import onnxscript  # noqa: F401  - optional: only the dynamo exporter needs it, and it is no dependency
    except ImportError:
        raise ExportError("exporter 'dynamo' needs the onnxscript package (pip install onnxscript); "
                          "the default exporter 'torchscript' does not") from None
    in_names, out_names = names
    shapes: list[dict | None] = [{0: torch.export.Dim("batch", min=1, max=1024)}, *([None] * (len(inputs) - 1))]
    if dynamic_bank:
        rows = {0: torch.export.Dim("bank_rows", min=2, max=int(inputs[in_names.index(BANK_INPUTS[0])].shape[0]))}
        for name in BANK_INPUTS:
            shapes[in_names.index(name)] = rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, inputs, dynamo=True, opset_version=opset, verbose=False, input_names=in_names,
            output_names=out_names, dynamic_shapes=tuple(shapes),
        )
    return program.model_proto


def export_scorer(
    scorer: torch.nn.Module,
    height: int,
    width: int,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    weights_as_inputs: bool = False,
    exporter: str = "torchscript",
    state_dict: Mapping[str, torch.Tensor] | None = None,
    frame: tuple[int, int] | None = None,
    frame_input: bool = False,
    dynamic_bank: bool = False,
) -> ExportedScorer:
    """Export an AnomalyScorer for images of `height` x `width` (multiples of max(scales) * 8) that hold a
    frame of `frame` (height, width; default: all of it) and its padding, both constants of the graph; with
    `frame_input` (where the config allows it: `score.frame_input`) the frame is the graph's input
    FRAME_INPUT instead.

    With a memory, the graph takes the camera's bank as an input: its whole allocation, or with `dynamic_bank`
    any `edge.memory.search_rows` of it, so a young camera searches its few rows.

    `state_dict` (UNet keys) gives the weights written into the graph; default: the scorer's own.
    The scorer itself is not modified: a CPU copy is traced.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    multiple = max(scorer.scales) * 8
    if height % multiple or width % multiple:
        raise ValueError(f"height and width must be multiples of {multiple} "
                         f"for scales {scorer.scales}, got {height}x{width}")
    if frame_input and (frame is not None or not scorer.cfg.frame_input):
        raise ValueError("frame_input: the frame is an input, not a constant, and the scorer must allow it")
    frame = padded_frame(height, width, frame)
    module = copy.deepcopy(scorer).cpu().float().eval()
    forward = module.forward  # the frame bound on the copy: the tracer sees the graph inputs alone
    if frame_input:
        module.forward = lambda x, size, bank=None, state=None, spacing=None, history=None, history_own=None: forward(
            x, bank, state, spacing, history, history_own, frame=size)
    elif frame is not None:
        module.forward = lambda x, bank=None, state=None, spacing=None, history=None, history_own=None: forward(
            x, bank, state, spacing, history, history_own, frame=frame)
    module.unet.to(memory_format=torch.contiguous_format)
    real = {k: v.detach().float().cpu().contiguous() for k, v in (state_dict or scorer.unet.state_dict()).items()}
    real = {k.removeprefix(WEIGHT_PREFIX): v for k, v in real.items()}
    params = dict(module.unet.named_parameters())
    if set(real) != set(params):
        raise ExportError(f"state dict keys do not match the U-Net: missing {sorted(set(params) - set(real))}, "
                          f"unexpected {sorted(set(real) - set(params))}")
    if fp16:
        _fp16_unet(module.unet)
    module.requires_grad_(False)
    # a scorer without U-Net maps (score.pixel_weight = perceptual_weight = 0) has no per-frame weights
    fingerprints = _unique_fill(params) if scorer.cfg.uses_unet else {}
    inputs: tuple[torch.Tensor, ...] = (torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)),)
    inputs += (torch.tensor([height, width]),) if frame_input else ()
    memory_shape = cells_shape = None
    if scorer.memory is not None:  # the bank and its state are inputs: the graph never holds a camera's memory
        memory = FeatureMemory(scorer.memory, history_dim=scorer.knn_dim)
        module.search_pieces = search_pieces(len(memory.bank))  # a constant: the rows follow a dynamic bank axis
        state = [float(len(memory.bank)), 0.0, 0.5, 0.5, 0.0, 0.5, 0.0, float(len(memory.history))]
        inputs += (memory.bank, torch.tensor(state), memory.spacing)
        inputs += (memory.history, memory.history_own) if scorer.history else ()
        memory_shape = (feature_dim(scorer.memory), *grid_shape(height, width, scorer.memory))
        cells_shape = scorer.knn_cells_shape(height, width) if scorer.history else None
    names = _io_names(frame_input, scorer.memory is not None, scorer.history)
    with torch.no_grad():
        export = _export_torchscript if exporter == "torchscript" else _export_dynamo
        model = export(module, inputs, names, opset, dynamic_bank and scorer.memory is not None)
    mapping = map_weight_names(model, fingerprints)
    wdtype = np.float16 if fp16 else np.float32
    by_name = {i.name: i for i in model.graph.initializer}
    for torch_name, onnx_name in mapping.items():
        by_name[onnx_name].CopyFrom(numpy_helper.from_array(real[torch_name].numpy().astype(wdtype), onnx_name))
    shapes = {onnx_name: list(by_name[onnx_name].dims) for onnx_name in mapping.values()}
    _static_output_shapes(model, height, width, memory_shape, cells_shape)
    if weights_as_inputs:
        _initializers_to_inputs(model, set(mapping.values()))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"exported scorer fails onnx.checker: {e}") from None
    opset_used = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    cfg = {"scales": list(scorer.scales), "score": scorer.cfg.model_dump(mode="json"), "frame": frame,
           "base_channels": int(params["enc.0.0.weight"].shape[0])}
    return ExportedScorer(model, height, width, opset_used, exporter, "fp16" if fp16 else "fp32",
                          weights_as_inputs, mapping, shapes, cfg)


def weights_for_graph(exported: ExportedScorer, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{ONNX name: tensor} for a UNet state dict (keys with or without the ``unet.`` prefix)."""
    state = {k.removeprefix(WEIGHT_PREFIX): v for k, v in state_dict.items()}
    missing = set(exported.weight_names) - set(state)
    if missing:
        raise KeyError(f"state dict lacks U-Net weights {sorted(missing)[:5]}{'...' if len(missing) > 5 else ''}")
    return {onnx_name: state[torch_name] for torch_name, onnx_name in exported.weight_names.items()}


def write_initializers(model: onnx.ModelProto, weights: Mapping[str, np.ndarray]) -> None:
    """Overwrite named initializers in place (raw bytes; same shape and dtype required)."""
    by_name = {i.name: i for i in model.graph.initializer}
    for name, arr in weights.items():
        init = by_name[name]
        if tuple(init.dims) != arr.shape:
            raise ValueError(f"initializer {name}: shape {tuple(init.dims)}, got {arr.shape}")
        init.raw_data = np.ascontiguousarray(arr).tobytes()
