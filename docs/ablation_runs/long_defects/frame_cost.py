"""A warm 256 px frame at one thread: the default and the default with section 65's long-defect term
(`score.knn_far_weight: 1`), interleaved in one run. Usage (repository root):
python docs/ablation_runs/long_defects/frame_cost.py (output: frame_cost.log)."""
import json

import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.bench import _config_with, _frames, _warm_frame_ms

torch.set_num_threads(1)
cfg = SSDNetConfig()
variants = {"default": Detector(cfg),
            "knn_far_weight 1": Detector(_config_with(cfg, {"score": {"knn_far_weight": 1.0}}))}
print(json.dumps(_warm_frame_ms(variants, _frames(256, 7, seed=3)), indent=1))
