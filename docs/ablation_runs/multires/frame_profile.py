"""Where a warm 256 px frame's time goes at the default, one thread (docs/performance.md): the camera's memory bank is
filled (tools.bench.fill_bank: a camera's steady state; before 2026-12-03 the bank held 4096 rows here, but every
frame searched its whole allocation), 30 synthetic frames go through, 6 are timed, 2 more run under torch.profiler
(its self time per op and input shape; the profiler adds ~25 %). Usage (repository root): python
docs/ablation_runs/multires/frame_profile.py (output: frame_profile.log; on a CPU without native bf16:
frame_profile_avx2.log)."""
import time

import torch
from torch.profiler import ProfilerActivity, profile

from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.bench import _frames, fill_bank

torch.set_num_threads(1)
det = Detector(SSDNetConfig())
fill_bank(det.memory)
frames = _frames(256, 38, seed=3)
for f in frames[:30]:
    det.process(f)
ms = []
for f in frames[30:36]:
    t0 = time.perf_counter()
    det.process(f)
    ms.append((time.perf_counter() - t0) * 1000)
print(f"warm frame ms, 6 frames, sorted: {', '.join(f'{m:.0f}' for m in sorted(ms))}; bank rows "
      f"{int(det.memory.count)} of {det.memory.bank.shape[0]}")
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for f in frames[36:38]:
        det.process(f)
print("under the profiler, 2 frames:")
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12,
                                                         max_name_column_width=28, max_shapes_column_width=60))
