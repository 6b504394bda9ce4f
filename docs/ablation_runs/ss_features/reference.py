"""What reference_bound.py and history/rule.py share: a cached frame's self-similarity cells (the default's features:
VGG19 relu1_2 + relu2_2 + relu3_1 of the 2x frame on 4 px cells, local statistics at weight w), the mean distance
to the 5 nearest rows of a reference, section 28's spacing term, and a frame's search of the earlier frames."""
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).parents[3]), str(Path(__file__).parents[1] / 'cross_frame')]
from common import near_mask, topk_nearest  # noqa: E402
from edge.local_stats import stats_features  # noqa: E402


def grid_of(e) -> tuple[int, int]:
    """The frame's cells (4 px each), rows x columns; the cached grid also covers the padding to 64 px."""
    return -(-e['size'][0] // 4), -(-e['size'][1] // 4)


def cells(e, w: float) -> torch.Tensor:
    g = torch.cat([e['g'].float()[None], w * stats_features(e['x'][None].float(), 4, 4.0)], 1)
    fh, fw = grid_of(e)
    return g[0, :, :fh, :fw].reshape(g.shape[1], -1).T.contiguous()


def nearest(q: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of q: the mean distance to its 5 nearest rows of ref, and which rows those are."""
    d, idx = topk_nearest(q, ref, 5, mask)
    return d.mean(1), idx


def spaced(d: torch.Tensor, neighbours_own: torch.Tensor) -> torch.Tensor:
    """Section 28's term: less 0.75 x the neighbours' own distances in their frames, centred on the frame's mean."""
    spacing = neighbours_own.mean(1)
    return d - 0.75 * (spacing - spacing.mean())


def earlier_search(F_: dict, own: dict, k: str, earlier: list[str], grid: tuple[int, int],
                   keep: torch.Tensor | None = None) -> torch.Tensor:
    """Section 13's history as a stream has it: frame k's cells (F_[k]) searched in its own cells (outside its
    neighbourhood on its `grid`) and every earlier frame's (those `keep` marks, if given), defective ones included;
    rescaled to the frame-alone map's median, less the spacing term (`own`: each frame's frame-alone search)."""
    d = own[k][0]
    ref = torch.cat([F_[k]] + [F_[j] for j in earlier])
    ref_own = torch.cat([d] + [own[j][0] for j in earlier])
    mask = torch.cat([near_mask(*grid), torch.zeros(len(d), len(ref) - len(d), dtype=torch.bool)], 1)
    if keep is not None:
        keep = torch.cat([torch.ones(len(d), dtype=torch.bool), keep])
        ref, ref_own, mask = ref[keep], ref_own[keep], mask[:, keep]
    h, idx = nearest(F_[k], ref, mask)
    return spaced(h * d.median() / h.median(), ref_own[idx])
