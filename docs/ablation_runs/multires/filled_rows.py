"""A warm 256x256 frame of the default, one thread: a young camera's (a few frames in its bank) with the memory
searched over the bank's whole allocation (as before) and over its filled rows alone (the torch scorer now), and a
camera's whose bank is full; interleaved, medians. Usage: python docs/ablation_runs/multires/filled_rows.py"""
import json

import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.bench import _frames, _warm_frame_ms, fill_bank

torch.set_num_threads(1)
variants = {name: Detector(SSDNetConfig()) for name in ("young, whole allocation", "young, filled rows", "full bank")}
variants["young, whole allocation"].backend.filled_rows_only = False
fill_bank(variants["full bank"].memory)
out = _warm_frame_ms(variants, _frames(256, 9, seed=3), full_bank=False)
for name, det in variants.items():
    out[name]["bank_rows"], out[name]["bank_capacity"] = det.memory.count, len(det.memory.bank)
print(json.dumps(out, indent=1))
