"""Reader for MVTec-AD style test sets (such as textures-dev).

Layout: ``<root>/<category>/test/<defect_type>/<stem>.png`` with the mask of every non-``good`` image
at ``<root>/<category>/ground_truth/<defect_type>/<stem>_mask.png``. A ``train/`` folder is ignored.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.images import image_files, read_mask_values, read_rgb

GOOD = "good"
log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset folder that does not follow the MVTec-AD layout; the message says what is wrong."""


@dataclass(frozen=True)
class Sample:
    path: Path
    category: str
    defect_type: str
    image: np.ndarray  # uint8 HxWx3 RGB
    mask: np.ndarray  # bool HxW, all False for good images
    label: int  # 0 = good, 1 = defective


def list_categories(root: str | Path) -> list[str]:
    """Names of the sub-folders of `root` that hold a ``test/`` folder, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a dataset folder" if root.exists() else
                           f"dataset folder not found: {root}")
    categories = sorted(p.name for p in root.iterdir() if (p / "test").is_dir())
    if not categories:
        raise DatasetError(f"no categories under {root}: expected <category>/test/<defect_type>/*.png")
    return categories


def _read_image(path: Path) -> np.ndarray:
    try:
        return read_rgb(path)  # grey files come back as 3 equal channels, 16-bit ones at the bits they fill
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read image: {e}") from None


def _read_mask(path: Path, shape: tuple[int, int], image_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A defect image's mask: its defect pixels (every nonzero one) and the grey values the file holds."""
    if not path.is_file():
        raise DatasetError(f"defect image {image_path} has no mask (expected {path})")
    try:
        mask = read_mask_values(path)
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read mask: {e}") from None
    if mask.shape != shape:
        raise DatasetError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image is {shape[1]}x{shape[0]}")
    if not mask.any():
        log.warning("mask %s is empty: its image counts as defective (image AUROC) with no defect pixel", path)
    return mask > 0, np.unique(mask)


def _levels(values: np.ndarray) -> str:
    """A mask's grey values in words: all of a few, else the first and last ones and how many."""
    shown = map(str, values) if len(values) <= 6 else [*map(str, values[:3]), "...", str(values[-1])]
    return ", ".join(shown) + (f" ({len(values)} values)" if len(values) > 6 else "")


def load_category(root: str | Path, category: str) -> list[Sample]:
    """All test images of one category, sorted by defect type then file name."""
    folder = Path(root) / category
    test = folder / "test"
    if not folder.is_dir():
        raise DatasetError(f"category folder not found: {folder} (the categories there: "
                           f"{', '.join(list_categories(root))})")
    if not test.is_dir():
        raise DatasetError(f"category {category!r} has no test folder: {test}")
    samples, grey = [], []  # grey: the masks with more than one defect value, and their values
    for type_dir in sorted(p for p in test.iterdir() if p.is_dir()):
        for path in image_files(type_dir):
            image = _read_image(path)
            if type_dir.name == GOOD:
                mask = np.zeros(image.shape[:2], dtype=bool)
            else:
                mask_path = folder / "ground_truth" / type_dir.name / f"{path.stem}_mask.png"
                mask, values = _read_mask(mask_path, image.shape[:2], path)
                if np.count_nonzero(values) > 1:  # 0/255 and 0/1 are binary; 0/128/255 or a grey edge are not
                    grey.append((mask_path, values))
            samples.append(Sample(path, category, type_dir.name, image, mask, int(type_dir.name != GOOD)))
    if not samples:
        raise DatasetError(f"category {category!r} has no test images under {test}")
    if grey:  # once per category, not a line per mask
        log.warning("%s: %d of %d masks not binary, the first %s with values %s: every nonzero pixel counts as a "
                    "defect (grey edges and levels included); save masks of 0 and 255 only", category, len(grey),
                    sum(s.label for s in samples), grey[0][0], _levels(grey[0][1]))
    return samples
