"""A frame's cost with mixed precision as the node now runs it (fp32 where the CPU has no native bf16) against
bf16 forced on (emulated on such a CPU): the default Detector, 200x200 brick frames, one torch thread.
Usage: python docs/ablation_runs/bf16/emulated.py   (prints seconds per frame; `emulated.log`)"""
import time
from unittest import mock

import numpy as np
import torch

import edge.device
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import texture

torch.set_num_threads(1)
frames = [texture("brick", 200, np.random.default_rng(0)) for _ in range(4)]
print("torch capability", torch.backends.cpu.get_cpu_capability(), "native bf16",
      edge.device.native_mixed_precision("cpu"))
for forced in (False, True):
    patches = [mock.patch.object(edge.device, "cpu_has_native_bf16", lambda: True)] if forced else []
    for p in patches:
        p.start()
    det = Detector(SSDNetConfig(), "cpu")
    times = []
    for f in frames:
        t = time.perf_counter()
        det.process(f)
        times.append(time.perf_counter() - t)
    print("bf16 forced" if forced else "as the node runs", "s per frame", [round(t, 2) for t in times],
          "median", round(float(np.median(times)), 2))
    for p in patches:
        p.stop()
