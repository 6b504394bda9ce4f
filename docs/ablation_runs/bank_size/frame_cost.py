"""Section 23: what a warm 256x256 frame costs with a full 16 MB bank of projected rows (320 values, 26051 rows) against
one of unprojected rows (1280 values, 6543 rows), one thread, side by side (interleaved rounds, medians); each bank
filled to capacity with unit rows after 20 frames (the memory in the map, the border profile filled).
Usage from the repository root: python docs/ablation_runs/bank_size/frame_cost.py (output: frame_cost.log)."""
import sys, time, numpy as np, torch
sys.path.insert(0, '.')
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import sample
torch.set_num_threads(1)
rng = np.random.default_rng(0)
frames = [sample('grass', 256, rng, 0.0)[0] for _ in range(24)]
dets = {'320 values (default)': Detector(SSDNetConfig()),
        '1280 values (dims null)': Detector(SSDNetConfig.model_validate({'memory': {'dims': None}}))}
for det in dets.values():
    for f in frames[:20]:
        det.process(f)
    m = det.memory
    m.bank.copy_(torch.nn.functional.normalize(torch.randn(m.bank.shape, generator=torch.Generator().manual_seed(0)), dim=1))
    m.spacing.fill_(m.typical_spacing)
    m.count = len(m.bank)
times = {k: [] for k in dets}
for r in range(8):
    for k, det in dets.items():
        t = time.perf_counter(); det.process(frames[20 + r % 4]); times[k].append((time.perf_counter() - t) * 1000)
base = np.median(times['1280 values (dims null)'])
for k, v in times.items():
    print(f'{k:26s} warm frame {np.median(v):7.0f} ms  ({np.median(v) / base:.2f}x)  bank rows {len(dets[k].memory.bank)}')
