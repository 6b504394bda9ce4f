"""VGG19 feature self-similarity: how far each location's features lie from the k nearest *other*
locations of the same image, outside its own neighbourhood (optionally with local intensity
statistics appended to the features, edge.local_stats). A location unlike the rest of the
texture is far from all of them. The scorer adds it as a map (`score.knn_weight`); alone it is the
`vgg_knn` baseline. Plain tensor ops with static shapes, so it exports to ONNX/TensorRT."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cell_size(height: int, width: int, min_cell: int, max_cells: int) -> int:
    """Smallest power-of-two cell side >= `min_cell` whose grid has at most `max_cells` cells.
    The comparison matrix is cells x cells, so this bounds memory for large frames."""
    cell = min_cell
    while math.ceil(height / cell) * math.ceil(width / cell) > max_cells:
        cell *= 2
    return cell


def grid_features(acts: dict[str, torch.Tensor], size: tuple[int, int], cell: int) -> torch.Tensor:
    """(N, C, gh, gw): each layer average-pooled onto a grid of `cell` px cells of an image of `size`,
    L2-normalised per location, concatenated and rescaled to unit norm."""
    feats = []
    for a in acts.values():
        stride = max(1, size[0] // a.shape[-2])
        if cell % stride:
            raise ValueError(f"cell of {cell} px is not a multiple of a VGG layer's stride {stride}")
        k = cell // stride
        # pooled first: a bf16 frame is not copied whole to fp32
        pooled = F.avg_pool2d(a, k, k, ceil_mode=True) if k > 1 else a
        feats.append(F.normalize(pooled.float(), dim=1))
    return torch.cat(feats, dim=1) / math.sqrt(len(feats))


def knn_distance(feats: torch.Tensor, k: int, radius: int) -> torch.Tensor:
    """(N, C, gh, gw) features -> (N, 1, gh, gw): mean Euclidean distance of each location to its k
    nearest locations more than `radius` cells away (Chebyshev) in the same image. On a grid too small
    to leave k candidates outside that radius, the radius shrinks."""
    return knn_distance_and_spacing(feats, k, radius)[:, :1]


def check_grid(fh: int, fw: int, k: int) -> None:
    """ValueError where a frame of fh x fw cells leaves a cell fewer than k others: its k nearest would be padding or
    nothing (an exported graph, which takes the frame's size as an input, cannot say so: its scorer asks here)."""
    if fh * fw - 1 < k:
        raise ValueError(f"a {fh}x{fw} feature grid is too small for k={k} neighbours (score.knn_k, and score.knn_cell "
                         "px a cell: a smaller one, or larger frames)")


def _outside(fh, fw, r: torch.Tensor) -> torch.Tensor:
    """A cell's fewest candidates outside a radius of `r` cells in an fh x fw frame (numbers or 0-d tensors)."""
    side = 2 * r + 1
    return fh * fw - (torch.minimum(side, torch.as_tensor(fh, dtype=side.dtype))
                      * torch.minimum(side, torch.as_tensor(fw, dtype=side.dtype)))


def knn_distance_and_spacing(feats: torch.Tensor, k: int, radius: int,
                             frame: tuple[int, int] | tuple[torch.Tensor, torch.Tensor] | None = None,
                             history: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                             far_share: float = 0.0, far_weight: float = 0.0) -> torch.Tensor:
    """(N, 2, gh, gw): `knn_distance`, and how much wider than the frame's mean the spacing of those k
    nearest locations is (the mean of their own distances, less its mean over the frame). A look of the
    texture that is rare but alike where it occurs has far neighbours that are far from theirs too; a
    defect's nearest locations are the common texture, near theirs (the idea of the local outlier factor).
    With `far_weight`, the distance gains that many times how much farther than a typical cell's its nearest
    cells up to `far_share` of the frame's cells lie: a long defect's cells find k of each other along it, outside
    the radius, but not that many (docs/ablations.md section 65).
    `frame`: the grid's first rows x columns that hold the frame; the rest (the reflect padding, a mirror of
    the frame's last rows and columns, where a defect would find itself) is never a neighbour. They may be 0-d
    tensors (an exported graph's input: one graph serves every frame its grid holds), except with `far_weight`.

    `history` (rows (R, C), their own distances in their frames (R,), valid rows ()): the camera's earlier
    cells (edge.memory's history). Then (N, 4, gh, gw): also the same two of the k nearest among the frame's
    candidates and the history's rows together, the distance rescaled to the frame-alone distance's mean over
    the frame (more candidates are nearer; the frame keeps its level, only the ranking inside it changes)."""
    gh, gw = (int(v) for v in feats.shape[-2:])  # python ints under the ONNX tracer; the batch stays symbolic
    fh, fw = frame or (gh, gw)
    numbers = not isinstance(fh, torch.Tensor)
    if numbers:
        check_grid(fh, fw, k)
    else:  # compared with the cells' float coordinates
        fh, fw = fh.float(), fw.float()
    # the radius shrinks until each cell keeps k candidates outside it (the fewest fall as the radius grows)
    radius = (_outside(fh, fw, torch.arange(1, radius + 1, dtype=torch.float32)) >= k).sum()
    if far_weight > 0 and not numbers:
        raise ValueError("knn_far_weight counts the frame's cells in Python: it needs the frame's size as numbers")
    far_k = min(round(far_share * fh * fw), int(_outside(fh, fw, radius))) if far_weight > 0 else 0
    # the neighbourhood mask is the Kronecker product of two band matrices (rows, columns); their
    # coordinates come from the input, so an ONNX export computes the cells x cells mask at run time
    # instead of storing it as a constant (16 MB at 4096 cells)
    ys = torch.ones_like(feats[0, 0, :, 0]).cumsum(0)
    xs = torch.ones_like(feats[0, 0, 0, :]).cumsum(0)
    band_y = (ys[:, None] - ys[None]).abs() <= radius.to(ys.dtype)
    band_x = (xs[:, None] - xs[None]).abs() <= radius.to(xs.dtype)
    near = band_y[:, None, :, None] & band_x[None, :, None, :]
    if not numbers or (fh, fw) != (gh, gw):
        near = near | ((ys > fh)[:, None] | (xs > fw)[None])[None, None]  # (the padding's cells as neighbours)
    near = near.reshape(gh * gw, gh * gw)
    inside = ((ys <= fh)[:, None] & (xs <= fw)[None]).reshape(1, -1).float()  # the frame's cells
    q = feats.float().flatten(2)  # (n, c, cells)
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: per row, the nearest b maximise 2 a.b - |b|^2, so pick on
    # that and take the distances of the k picked only (fewer passes over the cells x cells matrix).
    # In fp32 even under autocast: near-duplicates differ in the 3rd decimal, where bf16 rounds.
    with torch.autocast(feats.device.type, enabled=False):
        sq = (q * q).sum(1)  # (n, cells)
        closeness = torch.baddbmm(-sq[:, None, :], q.transpose(1, 2), q, alpha=2).masked_fill_(near, float("-inf"))
        top, nearest = closeness.topk(max(k, far_k), dim=2)
        dists = (sq[:, :, None] - top).clamp_min(0).sqrt()
        top, nearest = top[..., :k], nearest[..., :k]
        d = dists[..., :k].mean(2)
        if far_k > k:
            gap = dists.mean(2) - d
            d = d + far_weight * (gap - (gap * inside).sum(1, keepdim=True) / inside.sum()).clamp_min(0)
        out = [d, _wider(d, nearest, k)]
        if history is not None:
            rows, rows_own, count = history
            b = rows.float()
            invalid = torch.ones_like(b[:, 0]).cumsum(0) > count.float().reshape(())  # rows past the fill count
            bb = (b * b).sum(1).masked_fill(invalid, float("inf"))
            top_h, nearest_h = (torch.matmul(q.transpose(1, 2), b.t()) * 2 - bb).topk(min(k, int(b.shape[0])), dim=2)
            # the k nearest of both: the frame's (indices < cells) and the history's (cells + row)
            top_both, pick = torch.cat([top, top_h], 2).topk(k, dim=2)
            index = torch.gather(torch.cat([nearest, nearest_h + gh * gw], 2), 2, pick)
            dh = (sq[:, :, None] - top_both).clamp_min(0).sqrt().mean(2)
            level = (d * inside).sum(1, keepdim=True) / (dh * inside).sum(1, keepdim=True).clamp_min(1e-12)
            own = torch.cat([d, rows_own.float()[None].expand(d.shape[0], -1)], 1)
            out += [dh * level, _wider(own, index, k)]
        return torch.stack(out, 1).unflatten(2, (gh, gw))


def _wider(own: torch.Tensor, nearest: torch.Tensor, k: int) -> torch.Tensor:
    """(n, cells): the mean own distance of each cell's k nearest (`nearest` (n, cells, k) indices into `own`
    (n, candidates)), less its mean over the cells."""
    spacing = torch.gather(own, 1, nearest.flatten(1)).unflatten(1, (-1, k)).mean(2)
    return spacing - spacing.mean(1, keepdim=True)
