"""An object line, which the dev sets lack: four object categories in MVTec-AD layout, each a product seen again and
again with a small jitter (a shift of up to 6 px, a turn of up to 4 degrees, brightness 0.95-1.05, sensor noise;
`MARGIN` px cut from each side of the view), 10 good and 12 defective test frames by default (edge.synthetic's
scratch, stain and hole, drawn on the object only) and a folder of 300 normal frames per category (warm-up, and the
false-event probe `false_events.py`).

    python docs/ablation_runs/objects/make_objects.py OUT   # OUT/objects (the test set), OUT/objects-stream
    python docs/ablation_runs/objects/make_objects.py OUT 20 60 0   # GOOD DEFECTIVE STREAM frames: as MVTec's sizes

Objects: `nut` (a hex nut rendered on a dark belt, its face gravel's grain, as MVTec's metal_nut without the turns),
`nut_turned` (the same nut at any turn, as MVTec's metal_nut), `cup` (scikit-image's coffee photo), `coins`
(scikit-image's coins: many alike small objects, as a tray).
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from edge.synthetic import draw_defect

MARGIN = 16  # px cut from each side of a jittered view: where a shift and a turn of up to 4 degrees bring in what the
# product image lacks (its mirror image, whose seams a camera over a belt never shows; nut_turned's any turn brings in
# only the plain belt's); 0: section 54's frames (docs/ablations.md section 56)


def nut() -> tuple[np.ndarray, np.ndarray]:
    """A 256 px grey hex nut with a bore and a chamfer ring on a dark belt, and its object mask."""
    size, c = 256, 128
    grain = cv2.resize(data.gravel()[:256, :256], (size, size)).astype(np.float32)
    image = np.full((size, size), 35.0, np.float32) + np.random.default_rng(3).normal(0, 3, (size, size))
    hexagon = np.array([[c + 100 * np.cos(a), c + 100 * np.sin(a)] for a in np.arange(6) * np.pi / 3], np.int32)
    body = np.zeros((size, size), np.uint8)
    cv2.fillPoly(body, [hexagon], 1)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - c, xx - c)
    face = 150 + 0.25 * (grain - grain.mean()) - 0.25 * (yy - c)  # the light from above
    face = np.where((r > 70) & (r < 80), face - 40, face)  # the chamfer ring
    image = np.where(body > 0, face, image)
    image = np.where(r < 45, 20.0, image)  # the bore
    mask = (body > 0) & (r >= 45)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def photo(name: str, box: tuple[int, int, int, int], width: int) -> tuple[np.ndarray, np.ndarray]:
    """A crop (y0, y1, x0, x1) of a scikit-image photo, grey, `width` px wide; the object mask is everything."""
    image = getattr(data, name)()
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
    y0, y1, x0, x1 = box
    crop = image[y0:y1, x0:x1]
    height = round(crop.shape[0] * width / crop.shape[1])
    crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    return crop, np.ones(crop.shape, bool)


OBJECTS = {  # name: (the product, its mask), the largest turn in degrees
    "nut": (nut, 4),
    "nut_turned": (nut, 180),
    "cup": (lambda: photo("coffee", (20, 400, 80, 560), 256), 4),
    "coins": (lambda: photo("coins", (0, 303, 0, 384), 256), 4),
}


def jitter(image: np.ndarray, mask: np.ndarray, turn: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """The product as the camera sees it this time: shifted, turned by up to `turn` degrees, lit and noisy (the mask
    moved with it), `MARGIN` px from each side cut away."""
    h, w = image.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-turn, turn), 1.0)
    m[:, 2] += rng.uniform(-6, 6, 2)
    seen = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    seen = seen.astype(np.float32) * rng.uniform(0.95, 1.05) + rng.normal(0, 2, seen.shape)
    inner = slice(MARGIN, h - MARGIN), slice(MARGIN, w - MARGIN)
    return np.clip(seen, 0, 255).astype(np.uint8)[inner], moved[inner]


def defective(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A drawn defect on the object: redrawn until at least 0.2 % of the frame changes inside the object."""
    rgb = np.repeat(image[..., None], 3, axis=2)
    for _ in range(100):
        drawn, where = draw_defect(rgb, rng)
        where &= mask
        if where.mean() >= 0.002:
            return np.where(where, drawn[..., 0], image), where
    raise RuntimeError("no defect fits on the object")


def main(out: Path, n_good: int = 10, n_defective: int = 12, n_stream: int = 300) -> None:
    for name, (make, turn) in OBJECTS.items():
        rng = np.random.default_rng(len(name))  # each category's own frames, whatever the others
        product, body = make()
        test = out / "objects" / name
        for i in range(n_good):
            seen, _ = jitter(product, body, turn, rng)
            path = test / "test" / "good" / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), seen)
        for i in range(n_defective):
            seen, moved = jitter(product, body, turn, rng)
            image, where = defective(seen, moved, rng)
            path = test / "test" / "drawn" / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), image)
            gt = test / "ground_truth" / "drawn" / f"{i:03d}_mask.png"
            gt.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(gt), where.astype(np.uint8) * 255)
        stream = out / "objects-stream" / name
        stream.mkdir(parents=True, exist_ok=True)
        for i in range(n_stream):
            cv2.imwrite(str(stream / f"{i:04d}.png"), jitter(product, body, turn, rng)[0])
        print(name, product.shape)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *map(int, sys.argv[2:5]))
