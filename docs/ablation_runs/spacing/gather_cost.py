"""What the spacing adds to a frame: the gather of its cells' nearest rows' spacing, against the memory search,
on the same tensors in one run (a 256x256 frame: 32x32 cells; the default 16 MB bank; one thread).
Run from the repository root: python docs/ablation_runs/spacing/gather_cost.py"""
import time

import torch

from edge.memory import memory_distance

torch.set_num_threads(1)
feats, bank, spacing = torch.randn(1, 768, 32, 32), torch.randn(10894, 768).half(), torch.rand(10894)
count = torch.tensor([10894.0])
search, gather = [], []
for _ in range(5):
    t0 = time.perf_counter()
    d, nearest = memory_distance(feats, bank, count, 3)
    t1 = time.perf_counter()
    s = spacing[nearest].mean(1, keepdim=True)
    search.append(t1 - t0)
    gather.append(time.perf_counter() - t1)
print(f"search {min(search) * 1000:.1f} ms, spacing gather {min(gather) * 1000:.3f} ms (best of 5)")
