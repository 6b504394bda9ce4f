"""Warm-up folders for real-dev with 10 % defective frames (section 9 of docs/ablations.md).

Per category: real-stream-dev's 200 normal frames, every tenth (index 5, 15, ...) replaced by one of that
category's own defective test images. Those images are then tested, the strictest case: a defect admitted to
the memory would make its own test frame look normal. Usage: python warm10.py SHARED_DATASETS OUT
then ssdnet eval SHARED_DATASETS/real-dev --mode stream --jobs 2 --baselines none
     --config recon_off.yaml --warmup OUT --warmup-frames 200
"""
import shutil
import sys
from pathlib import Path

shared, out = Path(sys.argv[1]), Path(sys.argv[2])
frames = sorted((shared / "real-stream-dev").glob("*.png"))
for category in sorted(p.name for p in (shared / "real-dev").glob("mtd_*")):
    bad = sorted(p for p in (shared / "real-dev" / category / "test").rglob("*.png") if p.parent.name != "good")
    folder = out / category
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        pick = bad[(i // 10) % len(bad)] if i % 10 == 5 else frame
        shutil.copy(pick, folder / f"{i:03d}{pick.suffix}")
