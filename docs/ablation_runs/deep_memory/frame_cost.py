"""Section 21: what relu5_1 in the memory costs a warm 256x256 frame, one thread, side by side (interleaved rounds,
medians): the default against `memory: {layers: [relu3_1, relu4_1]}`, each camera's memory filled first.
Usage from the repository root: python docs/ablation_runs/deep_memory/frame_cost.py (output: frame_cost.log)."""
import sys, time, numpy as np, torch
sys.path.insert(0, '.')
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import sample
torch.set_num_threads(1)
rng = np.random.default_rng(0)
frames = [sample('grass', 256, rng, 0.0)[0] for _ in range(24)]
dets = {'relu3_1+relu4_1+relu5_1 (default)': Detector(SSDNetConfig()),
        'relu3_1+relu4_1': Detector(SSDNetConfig.model_validate({'memory': {'layers': ['relu3_1', 'relu4_1']}}))}
for det in dets.values():
    for f in frames[:20]:  # the memory in the map (16 frames) and the border profile filled
        det.process(f)
times = {k: [] for k in dets}
for r in range(8):
    for k, det in dets.items():
        t = time.perf_counter(); det.process(frames[20 + r % 4]); times[k].append((time.perf_counter() - t) * 1000)
base = np.median(times['relu3_1+relu4_1'])
for k, v in times.items():
    print(f'{k:36s} warm frame {np.median(v):7.0f} ms  ({np.median(v) / base:.2f}x)  memory rows {dets[k].memory.count}')
