"""A warm 256 px frame at one thread: the default (section 38), section 37's default and the previous default (the fit
on), interleaved in one run (docs/ablations.md section 38). Usage (repository root): python
docs/ablation_runs/multires/frame_cost.py (output: frame_cost.log)."""
import json

import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.bench import PREVIOUS_DEFAULT, SECTION37_SCALE, _config_with, _frames, _warm_frame_ms

torch.set_num_threads(1)
cfg = SSDNetConfig()
variants = {"default (section 38)": Detector(cfg),
            "section 37's default": Detector(_config_with(cfg, {"score": SECTION37_SCALE})),
            "previous default": Detector(_config_with(cfg, PREVIOUS_DEFAULT))}
print(json.dumps(_warm_frame_ms(variants, _frames(256, 7, seed=3)), indent=1))
