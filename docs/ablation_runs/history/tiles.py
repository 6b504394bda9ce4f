"""textures-dev cut into smaller frames whose places in the source picture do not overlap (docs/ablations.md
section 36): a stream in which a camera's earlier frames never show the tested frame's own pixels.

textures-dev's 12 crops of a category are 256 px windows of one 512 px picture and overlap (its README), so a
history of earlier frames holds part of the tested frame, defect-free. Here each frame becomes one SIZE px window of
itself: a defective frame's window holds as much of its defect as a window can (at least half of the mask, else the
frame is left out), a good frame's window is any free place (tried in a seeded random order); in `no_overlap` no two
windows of a category share a pixel of the source picture, in `overlap` the same frames keep the window that holds
the most of their defect (a good frame: its centre), wherever the others lie. Both folders stream in textures-dev's
order, so the two differ only in the overlap.

Usage (repository root): python docs/ablation_runs/history/tiles.py ../shared/datasets/textures-dev OUT [SIZE]
then `ssdnet eval OUT/no_overlap --mode stream --jobs 2 --baselines none [--config ...]`, and the same for
OUT/overlap. Prints, per category, how many frames of each type are kept (the same in both folders).
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np

SRC, OUT = Path(sys.argv[1]), Path(sys.argv[2])
SIZE = int(sys.argv[3]) if len(sys.argv) > 3 else 128
FRAME = json.loads((SRC / 'manifest.json').read_text())['image_size']  # textures-dev's frames: [256, 256]
STEP = 4  # window offsets inside a frame are tried on this grid


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Two SIZE px windows, by their top-left corners in the source picture, share a pixel."""
    return abs(a[0] - b[0]) < SIZE and abs(a[1] - b[1]) < SIZE


def windows(mask: np.ndarray | None) -> list[tuple[int, int, int]]:
    """Offsets (y, x) of every SIZE px window in a frame, with the mask pixels each holds, most first."""
    mask = np.zeros(FRAME, bool) if mask is None else mask
    h, w = mask.shape
    integral = cv2.integral(mask.astype(np.uint8))
    out = []
    for y in range(0, h - SIZE + 1, STEP):
        for x in range(0, w - SIZE + 1, STEP):
            held = integral[y + SIZE, x + SIZE] - integral[y, x + SIZE] - integral[y + SIZE, x] + integral[y, x]
            out.append((int(held), y, x))
    return sorted(out, key=lambda t: -t[0])


def place(entries: list[dict], rng: np.random.Generator) -> dict[str, dict[str, tuple[int, int]]]:
    """Each kept frame's window (offset in the frame) in either folder; the defect with the fewest windows that hold
    half of it claims its place first, good frames last."""
    masks = {e['image']: cv2.imread(str(SRC / e['mask']), cv2.IMREAD_GRAYSCALE) > 127 for e in entries if 'mask' in e}
    taken: list[tuple[int, int]] = []
    kept: dict[str, dict[str, tuple[int, int]]] = {'no_overlap': {}, 'overlap': {}}
    options_of = {e['image']: windows(masks.get(e['image'])) for e in entries}

    def freedom(e: dict) -> float:
        mask = masks.get(e['image'])
        return np.inf if mask is None else sum(h >= 0.5 * mask.sum() for h, _, _ in options_of[e['image']])

    for e in sorted(entries, key=freedom):
        mask = masks.get(e['image'])
        options = options_of[e['image']]
        if mask is None:
            options = [options[i] for i in rng.permutation(len(options))]
        need = 0.5 * mask.sum() if mask is not None else 0
        cy, cx = e['crop_yx']
        for held, y, x in options:
            if held < need:
                break
            if not any(overlaps((cy + y, cx + x), t) for t in taken):
                taken.append((cy + y, cx + x))
                kept['no_overlap'][e['image']] = (y, x)
                best = options[0][1:] if mask is not None else tuple((n - SIZE) // 2 for n in FRAME)
                kept['overlap'][e['image']] = best
                break
    return kept


def main() -> None:
    manifest = json.loads((SRC / 'manifest.json').read_text())
    rng = np.random.default_rng(0)
    for cat, info in sorted(manifest['categories'].items()):
        kept = place(info['images'], rng)
        counts: dict[str, int] = {}
        for folder, chosen in kept.items():
            for e in info['images']:
                if e['image'] not in chosen:
                    continue
                y, x = chosen[e['image']]
                name = Path(e['image'])
                target = OUT / folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target), cv2.imread(str(SRC / name))[y:y + SIZE, x:x + SIZE])
                if 'mask' in e:
                    mask = cv2.imread(str(SRC / e['mask']), cv2.IMREAD_GRAYSCALE)[y:y + SIZE, x:x + SIZE]
                    (OUT / folder / e['mask']).parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(OUT / folder / e['mask']), mask)
                if folder == 'no_overlap':
                    counts[e['defect_type']] = counts.get(e['defect_type'], 0) + 1
        print(f'{cat:16s} ' + ' '.join(f'{t} {n}' for t, n in sorted(counts.items())), flush=True)


if __name__ == '__main__':
    main()
