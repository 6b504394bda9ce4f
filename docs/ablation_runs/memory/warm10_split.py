"""Warm-up with 10 % defective frames, defects of the same kind but not the tested frames (section 11).

Per category of real-dev, its defective images are split by their sorted index: the even ones go into the
warm-up (every tenth of real-stream-dev's 200 frames, index 5, 15, ..., replaced by one of them), the odd
ones are tested, in a copy of real-dev holding only them and the good images. Usage:
    python warm10_split.py SHARED_DATASETS OUT
then, for the defective and the clean warm-up on the same test images:
    ssdnet eval OUT/real-dev-odd --mode stream --jobs 2 --baselines none --warmup OUT/warmup --warmup-frames 200
    ssdnet eval OUT/real-dev-odd --mode stream --jobs 2 --baselines none \
        --warmup SHARED_DATASETS/real-stream-dev --warmup-frames 200
"""
import shutil
import sys
from pathlib import Path

shared, out = Path(sys.argv[1]), Path(sys.argv[2])
frames = sorted((shared / "real-stream-dev").glob("*.png"))
for cat_dir in sorted((shared / "real-dev").glob("mtd_*")):
    bad = sorted(p for p in (cat_dir / "test").rglob("*.png") if p.parent.name != "good")
    warm, tested = bad[0::2], bad[1::2]
    for p in sorted((cat_dir / "test" / "good").glob("*.png")) + tested:
        dst = out / "real-dev-odd" / cat_dir.name / "test" / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
        if p.parent.name != "good":
            mask = cat_dir / "ground_truth" / p.parent.name / f"{p.stem}_mask.png"
            gt = out / "real-dev-odd" / cat_dir.name / "ground_truth" / p.parent.name / mask.name
            gt.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(mask, gt)
    folder = out / "warmup" / cat_dir.name
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        pick = warm[(i // 10) % len(warm)] if i % 10 == 5 else frame
        shutil.copy(pick, folder / f"{i:03d}{pick.suffix}")
