"""Section 26: does a bf16 fit localise better than fp32, or is it the seed? The reconstruction test's 60-step cold
fit (tests/test_reconstruction.py) over fit seeds, in fp32 or with bf16 forced (emulated on a CPU without it).
Usage: python seed_variance.py fp32|bf16 SEED[,SEED...]"""
import sys
from unittest import mock

import numpy as np
from sklearn.metrics import roc_auc_score

import edge.device
from edge.config import SSDNetConfig, parse_config
from edge.detector import Detector
from edge.synthetic import draw_defect, texture

RECON_ONLY = {"knn_weight": 0, "pixel_weight": 1, "perceptual_weight": 1, "map_units": "std", "image_score": "map"}
bf16 = sys.argv[1] == "bf16"
with mock.patch.object(edge.device, "cpu_has_native_bf16", lambda: bf16):
    for seed in (int(s) for s in sys.argv[2].split(",")):
        rng = np.random.default_rng(5)
        image, mask = draw_defect(texture("grass", 128, rng), rng, "hole")
        cfg = parse_config(SSDNetConfig, {"model": {"base_channels": 16},
                                          "fit": {"steps": 60, "amp": bf16, "seed": seed},
                                          "score": {**RECON_ONLY, "amp": bf16}})
        auroc = roc_auc_score(mask.ravel(), Detector(cfg, "cpu").process(image).anomaly_map.ravel())
        print(sys.argv[1], "seed", seed, round(auroc, 3), flush=True)
