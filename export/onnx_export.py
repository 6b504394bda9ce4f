"""Scorer artefacts on disk: `ssdnet export` writes DIR/scorer.onnx and its sidecar DIR/scorer.json.

The graph itself comes from edge.scorers.onnx_graph (the same in-memory export the ONNX Runtime and
TensorRT backends use). The sidecar holds the input and output names, shapes and dtypes, the opset,
the exporter, the precision, the model hash, the config, and the weights the scorer accepts
(docs/export.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch

from edge.scorers.onnx_graph import ExportedScorer

SIDECAR_VERSION = 1


def _shape_of(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim]


def _dtype_name(elem_type: int) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name


def sidecar(exported: ExportedScorer) -> dict:
    """What a consumer of DIR/scorer.onnx needs to know, as JSON."""
    g = exported.model.graph
    inits = {i.name for i in g.initializer}
    weights = set(exported.weight_names.values())
    return {
        "sidecar_version": SIDECAR_VERSION,
        "format": "onnx",
        "opset": exported.opset,
        "exporter": exported.exporter,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "precision": exported.precision,
        "height": exported.height,
        "width": exported.width,
        "dynamic_batch": True,
        "inputs": [{"name": i.name, "shape": _shape_of(i), "dtype": _dtype_name(i.type.tensor_type.elem_type)}
                   for i in g.input if i.name not in weights],  # the image, and the camera's memory where it has one
        "outputs": [{"name": o.name, "shape": _shape_of(o), "dtype": _dtype_name(o.type.tensor_type.elem_type)}
                    for o in g.output],
        "weights_as_inputs": exported.weights_as_inputs,
        "weights": [
            {"onnx": onnx_name, "torch": torch_name, "shape": exported.weight_shapes.get(onnx_name),
             "dtype": exported.weight_dtype.name, "kind": "initializer" if onnx_name in inits else "input"}
            for torch_name, onnx_name in exported.weight_names.items()
        ],
        "model_hash": exported.model_hash(),
        "config": exported.config,
    }


def save(exported: ExportedScorer, out_dir: str | Path, stem: str = "scorer") -> tuple[Path, Path]:
    """Write OUT/<stem>.onnx and OUT/<stem>.json; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path, json_path = out / f"{stem}.onnx", out / f"{stem}.json"
    onnx.save(exported.model, onnx_path)
    json_path.write_text(json.dumps(sidecar(exported), indent=2) + "\n")
    return onnx_path, json_path


def amend_sidecar(path: Path, extra: dict) -> None:
    """Add keys to a written sidecar (the camera size, the TensorRT engine)."""
    data = json.loads(path.read_text())
    data.update(extra)
    path.write_text(json.dumps(data, indent=2) + "\n")
