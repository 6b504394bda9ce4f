"""The scorer's VGG19 in channels_last against NCHW (docs/performance.md): two default detectors, one with its scorer's
VGG19 converted, a warm 256x256 frame with the bank full, one thread, interleaved medians; and the largest difference
of their maps on the same frame. Usage: python docs/ablation_runs/multires/vgg_channels_last.py"""
import json

import numpy as np
import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.bench import _frames, _warm_frame_ms

torch.set_num_threads(1)
nchw, cl = Detector(SSDNetConfig()), Detector(SSDNetConfig())
cl.backend.module.vgg.to(memory_format=torch.channels_last)
images = _frames(256, 9, seed=3)
print(json.dumps(_warm_frame_ms({"NCHW": nchw, "channels_last VGG19": cl}, images), indent=1))
a, b = nchw.process(images[0]).anomaly_map, cl.process(images[0]).anomaly_map
print(f"largest map difference {float(np.abs(a - b).max()):.3g} (map max {float(np.abs(a).max()):.3g})")
