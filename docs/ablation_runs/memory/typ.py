"""Typical memory distance and the defective warm-up frames' admission, one category, a config (section 14).
Usage from the repository root: python docs/ablation_runs/memory/typ.py CATEGORY CONFIG.yaml SPLIT/warmup
(SPLIT from warm10_split.py; CONFIG {} or memory: {delay_frames: 16} with delay.patch applied)."""
import sys, torch
sys.path.insert(0, '.')
from pathlib import Path
from edge.config import SSDNetConfig, parse_config
from edge.detector import Detector
from tools.eval.evaluate import warmup_paths
import cv2, yaml
torch.set_num_threads(1)
cat, cfgf = sys.argv[1], sys.argv[2]
det = Detector(parse_config(SSDNetConfig, yaml.safe_load(open(cfgf)) or {}))
paths = warmup_paths(Path(sys.argv[3]), cat, 200)
added_bad = 0
for i, p in enumerate(paths):
    d = det.process(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
    if i % 10 == 5:
        added_bad += d.memory_added
        print(f"{i} z {d.calibrated:.2f} added {d.memory_added} typical {det.memory.typical}", flush=True)
print("rows from defective frames", added_bad)
