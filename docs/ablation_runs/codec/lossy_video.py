"""The same 40 brick crops (320x240, a 4 px dark scratch on frames 12, 20, 25, 33, 38) as PNG files and as videos
(OpenCV's mp4v, MJPG and lossless FFV1), read by the folder and video sources as a line reads them and scored with the
default detector, one fresh camera each: PSNR, each scratch's contrast, the defect frames' raw and calibrated scores
and the camera's calibration scale (README "Known limits", lossy video). Two mixes part the mp4v file's colour cast
(its channels 3 grey levels apart) from its compression loss.
Usage: python docs/ablation_runs/codec/lossy_video.py OUT"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from edge.config import SSDNetConfig
from pipeline.config import FolderSourceConfig, VideoSourceConfig
from pipeline.node import SSDNetDetectors
from pipeline.sources import make_reader

DEFECTS = (12, 20, 25, 33, 38)
out = Path(sys.argv[1])
(out / "folder").mkdir(parents=True, exist_ok=True)
(out / "masks").mkdir(exist_ok=True)
brick, rng, W, H = data.brick(), np.random.default_rng(0), 320, 240
bgr = []
for i in range(40):
    x, y = rng.integers(0, brick.shape[1] - W), rng.integers(0, brick.shape[0] - H)
    f, m = cv2.cvtColor(brick[y:y + H, x:x + W].copy(), cv2.COLOR_GRAY2BGR), np.zeros((H, W), np.uint8)
    if i in DEFECTS:
        p1 = (int(rng.integers(30, 150)), int(rng.integers(30, 100)))
        p2 = (p1[0] + 120, p1[1] + 80)
        cv2.line(f, p1, p2, (20, 20, 20), 4), cv2.line(m, p1, p2, 255, 4)
    cv2.imwrite(str(out / f"folder/frame_{i:03d}.png"), f), cv2.imwrite(str(out / f"masks/frame_{i:03d}.png"), m)
    bgr.append(f)
for name, fourcc in (("brick.mp4", "mp4v"), ("brick_mjpg.avi", "MJPG"), ("brick_ffv1.avi", "FFV1")):
    writer = cv2.VideoWriter(str(out / name), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), 10, (W, H))
    for f in bgr:
        writer.write(f)
    writer.release()


def frames(cfg) -> list[np.ndarray]:
    reader, got = make_reader(cfg), []
    reader.open()
    while (cap := reader.read()) is not None:
        got.append(cap.image)
    return got


png = frames(FolderSourceConfig(kind="folder", name="png", path=out / "folder"))
videos = {name: frames(VideoSourceConfig(kind="video", name=name, uri=str(out / file)))
          for name, file in (("mp4v", "brick.mp4"), ("mjpg", "brick_mjpg.avi"), ("ffv1", "brick_ffv1.avi"))}
grey = [cv2.cvtColor(cv2.cvtColor(v, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for v in videos["mp4v"]]
cast = [np.clip(p.astype(int) + np.round(v.reshape(-1, 3).mean(0) - p.reshape(-1, 3).mean(0)), 0, 255).astype(np.uint8)
        for p, v in zip(png, videos["mp4v"], strict=True)]
streams = {"png": png, **videos, "mp4v_grey": grey, "png_with_mp4v_cast": cast}
report: dict = {}
for name, stream in streams.items():
    assert len(stream) == 40, (name, len(stream))
    mse = [np.mean((s.astype(float) - p) ** 2) for s, p in zip(stream, png, strict=True)]
    contrast = []
    for i in DEFECTS:
        m = cv2.imread(str(out / f"masks/frame_{i:03d}.png"), 0) > 0
        ring = (cv2.dilate(m.astype(np.uint8), np.ones((11, 11), np.uint8)) > 0) & ~m
        g = cv2.cvtColor(stream[i], cv2.COLOR_RGB2GRAY).astype(float)
        contrast.append(round(g[ring].mean() - g[m].mean(), 1))
    psnr = None if not max(mse) else round(float(np.mean([10 * np.log10(255**2 / e) for e in mse])), 2)  # None: equal
    report[name] = {"psnr_db": psnr,
                    "channel_spread": int(max(np.ptp(s.astype(int), axis=2).max() for s in stream)),
                    "scratch_contrast": contrast}
torch.set_num_threads(1)
factory = SSDNetDetectors(SSDNetConfig())
for name, stream in streams.items():
    detector, rows = factory(name), []
    for image in stream:
        d = detector.process(image)
        rows.append((round(d.score, 4), round(d.calibrated, 2), round(d.calibration[1], 4)))
    report[name].update(events=[i for i, r in enumerate(rows) if r[1] >= 3],
                        defects={i: dict(zip(("raw", "score", "scale"), rows[i], strict=True)) for i in DEFECTS})
    print(name, json.dumps(report[name]), flush=True)
(out / "lossy_video.json").write_text(json.dumps(report, indent=1) + "\n")
