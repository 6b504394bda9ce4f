"""Section 22: false alarms of a camera of small normal frames while its memory fills. N normal frames of a
scikit-image texture (edge.synthetic.texture, a random crop each) of SIZE px streamed through the default detector
with `memory.fill_power` 1 and 2 and with the memory on relu3_1 + relu4_1; per config: frames calibrated at
>= 3 (the node's default threshold: an event) after the camera's calibration, and the largest calibrated score.
Usage (repository root): python docs/ablation_runs/fill/small_frames.py [SIZE [N]]   (output: small_frames.log)"""
import sys

import numpy as np
import torch

sys.path.insert(0, '.')
from edge.config import SSDNetConfig, parse_config  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.synthetic import texture  # noqa: E402

torch.set_num_threads(1)
size = int(sys.argv[1]) if len(sys.argv) > 1 else 96
n = int(sys.argv[2]) if len(sys.argv) > 2 else 80
CONFIGS = {'fill_power 1': {'memory': {'fill_power': 1.0}}, 'fill_power 2': {'memory': {'fill_power': 2.0}},
           'relu3_1 + relu4_1, fill_power 1': {'memory': {'layers': ['relu3_1', 'relu4_1'], 'fill_power': 1.0}}}
print(f'{n} normal {size} px frames per camera; events = calibrated >= 3 once calibrated')
for name in ('brick', 'grass', 'gravel'):
    for label, over in CONFIGS.items():
        det = Detector(parse_config(SSDNetConfig, over))
        rng = np.random.default_rng(0)
        cal = []
        for _ in range(n):
            d = det.process(texture(name, size, rng))
            if not d.calibrating:
                cal.append(d.calibrated)
        cal = np.array(cal)
        print(f'{name:7s} {label:32s} events {int((cal >= 3).sum()):3d} of {len(cal)}, max {cal.max():6.2f}, '
              f'p95 {np.percentile(cal, 95):5.2f}', flush=True)
