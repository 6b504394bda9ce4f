"""A warm 256x256 frame of the default on ONNX Runtime (CPU), one thread: a young camera's (a few frames in its bank)
with the graph given the bank's whole allocation (as before 2026-12-04) and its filled rows alone (its bank axis
dynamic since), a camera's whose bank is full, and the torch scorer's young frame beside them; interleaved, medians.
Usage: python docs/ablation_runs/multires/ort_filled_rows.py"""
import json

import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.bench import _frames, _warm_frame_ms, fill_bank

torch.set_num_threads(1)
ort = SSDNetConfig.model_validate({"score": {"backend": "onnxruntime"}})
names = ("torch, young", "onnxruntime, young, whole allocation", "onnxruntime, young, filled rows",
         "onnxruntime, full bank")
variants = {name: Detector(ort if name.startswith("onnx") else SSDNetConfig()) for name in names}
variants["onnxruntime, young, whole allocation"].backend.filled_rows_only = False
fill_bank(variants["onnxruntime, full bank"].memory)
out = _warm_frame_ms(variants, _frames(256, 9, seed=3), full_bank=False)
for name, det in variants.items():
    out[name]["bank_rows"], out[name]["bank_capacity"] = det.memory.count, len(det.memory.bank)
print(json.dumps(out, indent=1))
