"""Heat-map overlays of anomaly maps, for people who want to look rather than read."""
from __future__ import annotations

import cv2
import numpy as np


def scale_range(threshold: float, vrange: tuple[float, float] | None = None) -> tuple[float, float]:
    """The anomaly-map values a colour scale spans, the same for every frame of a camera: `vrange`, else
    0.5x to 1.5x the image-score threshold (the map is in the image score's units, `score.map_units`)."""
    if vrange is not None:
        return float(vrange[0]), float(vrange[1])
    t = abs(float(threshold)) or 1.0
    return 0.5 * t, 1.5 * t


def _heat(amap: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = np.clip((amap.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
    return cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour=(255, 255, 255)) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def annotated_overlay(image: np.ndarray | None, amap: np.ndarray, score: float, threshold: float,
                      boxes: tuple | list = (), vrange: tuple[float, float] | None = None,
                      alpha: float = 0.5) -> np.ndarray:
    """What an operator looks at: the anomaly map on the frame (JET colours on one scale for every frame,
    `scale_range`, so a good frame stays blue), region boxes (x, y, w, h), and below it the verdict, the
    score against the threshold and the colour scale with its values. Without a frame, the map alone."""
    lo, hi = scale_range(threshold, vrange)
    heat = _heat(np.asarray(amap), lo, hi)
    pic = heat if image is None else cv2.addWeighted(np.ascontiguousarray(image), 1 - alpha, heat, alpha, 0)
    pic = np.ascontiguousarray(pic)
    h, w = pic.shape[:2]
    for x, y, bw, bh in boxes:
        x0, y0 = max(0, min(int(x), w - 1)), max(0, min(int(y), h - 1))
        x1, y1 = max(x0, min(int(x + bw) - 1, w - 1)), max(y0, min(int(y + bh) - 1, h - 1))
        cv2.rectangle(pic, (x0, y0), (x1, y1), (255, 255, 255), 1 if max(h, w) < 600 else 2)
    width = max(w, 220)
    strip_h = 44
    canvas = np.full((h + strip_h, width, 3), 24, np.uint8)
    canvas[:h, :w] = pic
    anomalous = score > threshold
    verdict, colour = ("ANOMALY", (220, 40, 40)) if anomalous else ("OK", (40, 160, 70))
    cv2.rectangle(canvas, (4, h + 4), (4 + (78 if anomalous else 30), h + 20), colour, -1)
    _text(canvas, verdict, (8, h + 17), 0.42)
    _text(canvas, f"score {score:.3f} {'>' if anomalous else '<='} {threshold:.3f}", (92 if anomalous else 42, h + 17),
          0.42, (230, 230, 230))
    bar_x0, bar_x1, bar_y = 4, width - 4, h + 26
    ramp = np.linspace(lo, hi, bar_x1 - bar_x0, dtype=np.float32)[None, :].repeat(8, 0)
    canvas[bar_y : bar_y + 8, bar_x0:bar_x1] = _heat(ramp, lo, hi)
    for value in (lo, threshold, hi):
        if lo <= value <= hi:
            x = bar_x0 + int(round((value - lo) / max(hi - lo, 1e-6) * (bar_x1 - bar_x0 - 1)))
            cv2.line(canvas, (x, bar_y - 2), (x, bar_y + 9), (255, 255, 255), 1)
    _text(canvas, f"{lo:.2f}", (bar_x0, h + strip_h - 1), 0.33, (200, 200, 200))
    _text(canvas, f"{hi:.2f}", (bar_x1 - 28, h + strip_h - 1), 0.33, (200, 200, 200))
    if lo < threshold < hi:
        tx = bar_x0 + int((threshold - lo) / (hi - lo) * (bar_x1 - bar_x0)) - 30
        _text(canvas, f"thr {threshold:.2f}", (max(bar_x0 + 34, min(tx, bar_x1 - 92)), h + strip_h - 1), 0.33,
              (255, 255, 255))
    return canvas
