"""A warm 256x256 frame of the default on this CPU: the torch scorer (what `auto` picks on a CPU) against ONNX Runtime's
CPU provider, a young camera's (9 frames in its bank) and a full bank's; interleaved, medians, plus each scorer's set-up
(first frame) and the process's resident memory. Usage: python docs/ablation_runs/multires/cpu_backends.py [THREADS]"""
import json
import resource
import sys
import time

import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.bench import _frames, _warm_frame_ms, fill_bank

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
frames = _frames(256, 9, seed=3)
variants, setup = {}, {}
for backend in ("torch", "onnxruntime"):
    for bank in ("young", "full bank"):
        det = Detector(SSDNetConfig.model_validate({"score": {"backend": backend}}))
        if bank == "full bank":
            fill_bank(det.memory)
        t0 = time.perf_counter()
        det.process(frames[0])
        setup[f"{backend}, {bank}"] = round(time.perf_counter() - t0, 2)
        variants[f"{backend}, {bank}"] = det
        print(f"{backend}, {bank}: first frame {setup[f'{backend}, {bank}']} s, max RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)
out = _warm_frame_ms(variants, frames, full_bank=False)
for name, det in variants.items():
    out[name].update(first_frame_s=setup[name], bank_rows=det.memory.count, threads=torch.get_num_threads())
print(json.dumps(out, indent=1))
