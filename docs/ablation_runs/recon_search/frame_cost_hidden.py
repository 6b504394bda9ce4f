"""Section 69's frame cost: a warm 256 px frame at one thread, the default and hidden_fit.yaml, interleaved (tools.bench).
Usage (repository root): python docs/ablation_runs/recon_search/frame_cost_hidden.py"""
import json

import torch

from edge.config import SSDNetConfig, load_config
from edge.detector import Detector
from tools.bench import _frames, _warm_frame_ms

torch.set_num_threads(1)
variants = {"default": Detector(SSDNetConfig()),
            "section 69 (hidden_fit.yaml)": Detector(load_config("docs/ablation_runs/recon_search/hidden_fit.yaml"))}
print(json.dumps(_warm_frame_ms(variants, _frames(256, 7, seed=3)), indent=1))
