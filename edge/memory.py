"""Per-camera memory of normal appearance: a bounded bank of patch features from the camera's own
earlier frames, and each location's distance to its nearest entries (zero-shot: only what the camera
has streamed, no labels, no training set).

Features (`memory_features`): VGG19 layers of the frame at its own scale (relu3_1 + relu4_1 + relu5_1
by default: deeper than the self-similarity's, so a location is described with tens to a hundred pixels
of context, which large defects need: docs/ablations.md section 21), each averaged over a 3x3
neighbourhood (PatchCore-style), pooled onto a grid of cells of at least `cell` px (coarser for big
frames; relu5_1's 16 px interpolated onto 8 px cells), L2-normalised per layer, and projected to `dims` values
by a fixed random matrix (distances kept to a few %; at 160 values 8x the rows of 1280 in the same MB: sections 23,
24).
`memory_distance` is the mean Euclidean distance of each cell to its k nearest valid bank rows; it runs inside the
scorer graph (edge.scoring), so it exports with it (the bank, its state [valid rows, typical spacing, the blend's a,
b, c, the floor's p, q] and its rows' spacing are graph inputs; the projection is a constant of the graph).

The memory distance M and the frame's own self-similarity S are distances in different feature
spaces; the scorer blends them as max(a * S + b * M + c, p * S + q) (`FeatureMemory.blend`, `.floor`),
from running medians of what the scorer reports on this camera's admitted frames (before their cells
went in): M counts `weight` x (typical within-frame variance of S / that of M) as much as S (inverse-variance weights;
`scale_by` 'spread': the stds' ratio, as before docs/ablations.md section 17; 'level': the means',
before section 16), and the blended map keeps S's typical level and spread. So where the memory
distance of a camera's normal frames varies much (a stochastic texture that the bank covers sparsely)
it counts for less, where it is tighter than S (a tile line) for more (sections 16, 17); and the image
score, and its calibration, do not jump when the memory becomes ready. The floor (`own_floor`) keeps part
of the frame's own verdict: where S stands far above its typical level, the memory can lower the map by at
most (1 - own_floor) of that excess, so a defect that has reached the bank is still flagged (section 20).

`FeatureMemory` owns the bank: a ring of `capacity` rows (fp16, `size_mb` per camera), filled by
`add` with a subset of the cells a frame's map calls normal (of a random draw of candidates, the
farthest from the bank and from each other: a streaming coreset, as PatchCore subsamples its bank
once), and only from frames whose calibrated score is normal (edge.detector decides): a defect does
not become "normal". Once the memory is ready, a frame's rows wait in a queue until `delay_frames` more
frames have added theirs, so a run of alike frames (a defect that scores like a normal frame, repeated)
cannot vouch for itself.

With `history_frames` the memory also keeps a ring of the camera's last frames' fine cells (`add_history`:
`history_cells` random cells of each scored frame, the self-similarity's features and each cell's own distance in
its frame), which the frame's self-similarity searches beside its own cells (edge.knn). The map takes the
with-history verdict only where it exceeds the frame-alone one by `history_margin` (edge.scoring): a clean earlier
frame shows where a faint defect differs from the texture, and a defect seen before, which the history would call
normal, keeps its own verdict (docs/ablations.md sections 34, 35).
"""
from __future__ import annotations

import functools
import math
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from .calibration import MAD_TO_STD
from .config import MemoryConfig
from .knn import cell_size
from .sizes import capacity, feature_dim, history_rows

LEVELS_KEPT = 100  # admitted frames whose (self-similarity, memory distance) means and spreads set the blend
# (and whose novel shares set the frame rule's bound)
MIN_SHARES = 20  # novel shares before they set the bound
SEARCH_ROWS = 4096  # bank rows searched at once: a frame's product with them is 16 MB, not the whole bank's 212 MB
# (0.6x the time on a CPU, docs/performance.md); each piece's k nearest are then merged


@functools.lru_cache(maxsize=8)
def projection(channels: int, dims: int, device: str = "cpu") -> torch.Tensor:
    """(channels, dims) fp32: a fixed Gaussian random projection (seed 0, the same for every camera, run and
    backend), scaled by 1 / sqrt(dims) so that lengths and distances are kept in expectation."""
    m = np.random.default_rng(0).standard_normal((channels, dims)) / math.sqrt(dims)
    return torch.from_numpy(m.astype(np.float32)).to(device)


def grid_shape(height: int, width: int, cfg: MemoryConfig) -> tuple[int, int]:
    """The memory grid of a (padded) height x width frame."""
    cell = cell_size(height, width, cfg.cell, cfg.max_cells)
    return math.ceil(height / cell), math.ceil(width / cell)


def memory_features(acts: dict[str, torch.Tensor], size: tuple[int, int], cfg: MemoryConfig) -> torch.Tensor:
    """(N, C, gh, gw) fp32: each of `cfg.layers` 3x3-averaged, pooled onto cells (a layer coarser than the cells,
    relu5_1's 16 px under 8 px cells, is interpolated onto them), L2-normalised."""
    cell = cell_size(size[0], size[1], cfg.cell, cfg.max_cells)
    grid = grid_shape(size[0], size[1], cfg)
    out = []
    for name in cfg.layers:
        a = acts[name]
        if cfg.aggregate > 1:
            a = F.avg_pool2d(a, cfg.aggregate, 1, cfg.aggregate // 2, count_include_pad=False)
        k = max(1, cell // max(1, size[0] // int(a.shape[-2])))
        a = F.avg_pool2d(a, k, k, ceil_mode=True) if k > 1 else a
        if tuple(int(v) for v in a.shape[-2:]) != grid:
            a = F.interpolate(a.float(), size=grid, mode="bilinear", align_corners=False)
        out.append(F.normalize(a.float(), dim=1))
    feats = torch.cat(out, dim=1) / math.sqrt(len(out))
    if cfg.dims is None:
        return feats
    p = projection(int(feats.shape[1]), cfg.dims, str(feats.device))
    return torch.einsum("nchw,cd->ndhw", feats, p)


FEATURE_FIELDS = ("layers", "aggregate", "cell", "max_cells")  # how a bank row is made from a frame


def _saved(value: object) -> object:
    """A config value as a state holds it (a tuple as a list)."""
    return list(value) if isinstance(value, tuple) else value


def check_features(state: dict, cfg: MemoryConfig) -> None:
    """ValueError where a memory's state (`FeatureMemory.state_dict`) holds rows made otherwise than `cfg` makes
    them (other VGG19 layers, averaging or cells): rows of the same width would be searched as if they were alike.
    A field the state lacks (a checkpoint from before it was saved) is taken."""
    for name in FEATURE_FIELDS:
        saved, now = state.get(name), _saved(getattr(cfg, name))
        if saved is not None and _saved(saved) != now:
            raise ValueError(f"a memory of {name} {saved} does not fit memory.{name} {now}")


def memory_distance(feats: torch.Tensor, bank: torch.Tensor, count: torch.Tensor, k: int, pieces: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, gh, gw) features, (M, C) bank of which the first `count` rows are valid -> (N, 1, gh, gw) mean
    Euclidean distance to the k nearest valid rows (fp32; infinite while count < k) and (N, k, gh, gw) their
    indices in the bank.

    The bank is searched in `pieces` pieces of equal rows (the last may be shorter); default `search_pieces(M)`, at
    most `SEARCH_ROWS` rows each. An exported graph's count is its allocation's, a constant, and the rows of its
    pieces follow the bank it is given (a dynamic bank axis: `search_rows` says which banks it takes)."""
    c, gh, gw = (int(v) for v in feats.shape[1:])  # the batch stays symbolic in an exported graph
    q = feats.float().permute(0, 2, 3, 1).reshape(-1, c)
    b = bank.float()
    invalid = torch.ones_like(b[:, 0]).cumsum(0) > count.float().reshape(())  # rows past the fill count
    pieces = pieces or search_pieces(int(b.shape[0]))
    rows = -(-b.shape[0] // pieces)  # traced from the bank's shape: follows a dynamic bank axis
    with torch.autocast(feats.device.type, enabled=False):
        bb = (b * b).sum(1).masked_fill(invalid, float("inf"))  # (M,)
        tops, idxs = [], []
        for i in range(pieces):  # 2 q.b - |b|^2 per piece: the nearest maximise it
            piece = slice(i * rows, (i + 1) * rows)
            closeness = torch.addmm(-bb[None, piece], q, b[piece].t(), alpha=2)
            top, idx = closeness.topk(min(k, closeness.shape[1]), dim=1)
            tops.append(top)
            idxs.append(idx + i * rows)
        top, pick = torch.cat(tops, 1).topk(k, dim=1)
        idx = torch.cat(idxs, 1).gather(1, pick)
        d = ((q * q).sum(1, keepdim=True) - top).clamp_min(0).sqrt().mean(1)
    return d.reshape(-1, 1, gh, gw), idx.reshape(-1, gh, gw, k).permute(0, 3, 1, 2)


def search_pieces(rows: int) -> int:
    """How many pieces `memory_distance` searches a bank of `rows` rows in."""
    return max(1, -(-rows // SEARCH_ROWS))


def search_rows(capacity: int, count: int, k: int) -> int:
    """The bank rows to search for a camera's `count` filled ones in an exported graph traced at its `capacity`:
    all of them, or (a young camera) the fewest that cover them and give each of the graph's pieces k rows."""
    pieces = search_pieces(capacity)
    return min(capacity, pieces * max(k, -(-count // pieces)))


def farthest_points(rows: torch.Tensor, n: int, start: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of `n` of the (R, C) `rows`, picked one by one, each the row farthest from those picked before
    and, with `start` (R,), from the bank (its distance to it): greedy k-centre, a coreset that covers the rows."""
    gap = start.float().clone() if start is not None else torch.full_like(rows[:, 0], float("inf"))
    picked = []
    for _ in range(n):
        j = gap.argmax()
        picked.append(j)
        gap = torch.minimum(gap, (rows - rows[j]).norm(dim=1))
        gap[j] = -1.0  # never twice
    return torch.stack(picked)


class FeatureMemory:
    """The bank of one camera: `capacity` rows of `dim` fp16 features, written as a ring."""

    def __init__(self, cfg: MemoryConfig, device: torch.device | str = "cpu", seed: int = 0, history_dim: int = 0):
        self.cfg, self.dim = cfg, feature_dim(cfg)
        dim = self.dim
        self.bank = torch.zeros(capacity(cfg, dim), dim, dtype=torch.float16, device=device)
        self.spacing = torch.zeros(len(self.bank), dtype=torch.float32, device=device)  # each row's, at its write
        rows = history_rows(cfg, history_dim)  # the history: earlier frames' self-similarity cells
        self.history = torch.zeros(rows, history_dim, dtype=torch.float16, device=device)
        self.history_own = torch.zeros(rows, dtype=torch.float32, device=device)  # each cell's distance in its frame
        self.generator = torch.Generator(device=self.bank.device)
        self.history_generator = torch.Generator(device=self.bank.device)
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget everything (a camera's model reset)."""
        self.count, self.next, self.frames = 0, 0, 0
        self.history_count, self.history_next = 0, 0
        self.history_generator.manual_seed(self.seed + 1)
        self.pending: deque[tuple[torch.Tensor, torch.Tensor]] = deque()  # (rows, spacing) of the last
        # `delay_frames` admitted frames
        self.levels: deque[tuple[float, float, float, float]] = deque(maxlen=LEVELS_KEPT)  # (S, M) means, stds
        self.shares: deque[float] = deque(maxlen=LEVELS_KEPT)  # novel shares of the frames the frame rule let through
        self.generator.manual_seed(self.seed)

    @property
    def ready(self) -> bool:
        """Enough frames in the bank for its distances to mean something (then the scorer uses it)."""
        return self.frames >= self.cfg.min_frames and self.count >= self.cfg.k and bool(self.levels)

    def _medians(self, columns: slice) -> tuple[float, ...]:
        """Medians of the finite values of some of the levels' columns (0 without any)."""
        cols = np.array(self.levels, dtype=np.float64).reshape(-1, 4)[:, columns].T
        return tuple(float(np.median(c[np.isfinite(c)])) if np.isfinite(c).any() else 0.0 for c in cols)

    @property
    def typical(self) -> tuple[float, float]:
        """This camera's typical (self-similarity, memory distance): medians over its recent normal frames' means."""
        return self._medians(slice(0, 2))

    @property
    def scale(self) -> float:
        """What puts the memory distance into the self-similarity's units: the ratio of their typical spreads,
        squared (`scale_by` 'variance'), as it is ('spread'), or of their typical levels ('level')."""
        s, m = self._medians(slice(0, 2) if self.cfg.scale_by == "level" else slice(2, 4))
        if m <= 0:
            return 0.0
        return (s / m) ** 2 if self.cfg.scale_by == "variance" else s / m

    @property
    def blend(self) -> tuple[float, float, float]:
        """(a, b, c) of the feature-distance map a x S + b x M + c: (1, 0, 0), the self-similarity alone, until
        the memory is ready and has a scale. Then M counts `weight` x `scale` times as much as S, and the map keeps
        S's typical level; with 'variance' also its typical spread (the two taken as independent), otherwise
        it is (S + weight x scale x M) / (1 + weight) plus what moves M's typical level onto S's. With
        `weight_by_fill` the weight grows with the bank's fill, (its frames / `fill_frames`, or its rows / its
        capacity if larger) ** `fill_power`, up to 1."""
        scale = self.scale if self.ready else 0.0
        if scale <= 0:
            return 1.0, 0.0, 0.0
        fill = min(1.0, max(self.frames / self.cfg.fill_frames, self.count / len(self.bank)))
        fill = fill ** self.cfg.fill_power if self.cfg.weight_by_fill else 1.0
        w, (s, m) = self.cfg.weight * fill, self.typical
        a = 1 / math.sqrt(1 + w * w * scale) if self.cfg.scale_by == "variance" else 1 / (1 + w)
        b = a * w * scale
        return a, b, s - a * s - b * m

    @property
    def floor(self) -> tuple[float, float]:
        """(p, q) of the floor p x S + q under the blended map (`own_floor`: S's typical level + own_floor x S's
        excess over it); (0, -inf), no floor, while the memory stays out of the map or `own_floor` is null."""
        f = self.cfg.own_floor
        if f is None or self.blend[1] == 0:
            return 0.0, -math.inf
        return f, (1 - f) * self.typical[0]

    def observe_levels(self, self_similarity: tuple[float, float], memory: tuple[float, float]) -> None:
        """A normal frame's (mean, std) self-similarity and memory distance (scored before its cells went in)."""
        values = (*self_similarity, *memory)
        if self.count >= self.cfg.k and all(math.isfinite(v) for v in values) and memory[0] > 0:
            self.levels.append((self_similarity[0], memory[0], self_similarity[1], memory[1]))

    @property
    def novel_bound(self) -> float:
        """The novel share above which a frame above the camera's median adds nothing to the bank: `admit_max_novel`,
        or (`admit_novel_mads`, once `MIN_SHARES` are in) that many robust stds above the median share of the
        camera's recent frames that this rule let through (`observe_novel`) if higher. A stochastic texture whose
        normal frames are often that novel keeps learning them, instead of losing the looks it refuses; the frames
        it refuses do not move it, so a run of large defects cannot let itself in (docs/ablations.md section 63)."""
        bound, mads = self.cfg.admit_max_novel, self.cfg.admit_novel_mads
        if mads is None or len(self.shares) < MIN_SHARES:
            return bound
        s = np.fromiter(self.shares, dtype=np.float64)
        med = float(np.median(s))
        return max(bound, med + mads * MAD_TO_STD * float(np.median(np.abs(s - med))))

    def observe_novel(self, share: float) -> None:
        """The novel share of a frame the rule let through (the camera's score calls it normal)."""
        if math.isfinite(share):
            self.shares.append(share)

    @property
    def nbytes(self) -> int:
        """The bank's bytes with its spacing (`size_mb`) and the queue's (at most `delay_frames` x `per_frame` rows)."""
        tensors = (self.bank, self.spacing, self.history, self.history_own, *(t for rows in self.pending for t in rows))
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def typical_spacing(self) -> float:
        """The median spacing of the bank's rows (0 while empty)."""
        return float(self.spacing[: self.count].median()) if self.count else 0.0

    def state_tensor(self) -> torch.Tensor:
        """What the scorer graph takes besides the bank and its spacing: (8,) float32 [valid rows (0 while fewer
        than k), typical spacing, the blend's a, b, c (`blend`: 1, 0, 0 keeps the memory out of the map), the
        floor's p, q (`floor`: 0, -inf is none) and the history's valid rows]."""
        rows = self.count if self.count >= self.cfg.k else 0
        return torch.tensor([float(rows), self.typical_spacing, *self.blend, *self.floor, float(self.history_count)],
                            device=self.bank.device)

    def add_history(self, cells: torch.Tensor, own: torch.Tensor, valid: torch.Tensor) -> int:
        """Write `history_cells` of (1, D, gh, gw) `cells` where `valid` (gh, gw) is True (the frame, not its
        padding), drawn at random, with their own distances in the frame `own` (gh, gw), into the history ring
        (the oldest frame's are overwritten once it is full). Returns how many."""
        if len(self.history) == 0:
            return 0
        idx = torch.nonzero(valid.reshape(-1).to(self.history.device))[:, 0]
        draw = torch.randperm(idx.numel(), generator=self.history_generator, device=idx.device)
        idx = idx[draw[: self.cfg.history_cells]]
        slots = (self.history_next + torch.arange(idx.numel(), device=idx.device)) % len(self.history)
        self.history[slots] = cells[0].reshape(int(cells.shape[1]), -1).t()[idx].to(self.history.dtype)
        self.history_own[slots] = own.reshape(-1)[idx].to(self.history_own)
        self.history_next = int((self.history_next + idx.numel()) % len(self.history))
        self.history_count = min(len(self.history), self.history_count + int(idx.numel()))
        return int(idx.numel())

    def add(self, feats: torch.Tensor, normal: torch.Tensor, distance: torch.Tensor | None = None,
            frame_cells: int | None = None) -> int:
        """Write up to `cfg.per_frame` cells (and `cfg.per_frame_share` of the frame's `frame_cells`, default the
        whole grid's) of (1, C, gh, gw) `feats` where `normal` (gh, gw) is True: of `cfg.candidates` of them drawn at
        random, those farthest from the bank (`distance`, (gh, gw): each cell's memory distance) and from each other.
        Once the memory is ready they wait until `cfg.delay_frames` more frames have been added before they go into
        the bank (no frame is compared with them until then; before, they go in at once: the camera first needs a
        memory). A row's spacing is its cell's `distance` (the bank's density where it goes in); while the bank has
        fewer than k rows, its distance to the k nearest of the rows picked with it. Returns how many were picked."""
        rows = feats[0].permute(1, 2, 0).reshape(-1, self.dim)
        idx = torch.nonzero(normal.reshape(-1).to(rows.device))[:, 0]
        if idx.numel() == 0 or len(self.bank) == 0:
            return 0
        share = math.ceil(self.cfg.per_frame_share * (normal.numel() if frame_cells is None else frame_cells))
        n = min(self.cfg.per_frame, share, idx.numel(), len(self.bank))
        draw = torch.randperm(idx.numel(), generator=self.generator, device=idx.device)
        idx = idx[draw[: max(n, self.cfg.candidates)]]
        pick = idx[:n]
        if idx.numel() > n:
            start = distance.reshape(-1)[idx] if distance is not None and self.count >= self.cfg.k else None
            pick = idx[farthest_points(rows[idx].float(), n, start)]
        picked = rows[pick]
        if distance is not None and self.count >= self.cfg.k:
            spacing = distance.reshape(-1)[pick]
        else:
            own = torch.cdist(picked.float(), picked.float()).fill_diagonal_(float("inf"))
            k = min(self.cfg.k, len(picked) - 1)
            spacing = own.topk(k, largest=False).values.mean(1) if k else torch.zeros(len(picked))
        self.pending.append((picked.to(self.bank.dtype), spacing.to(self.spacing)))
        while len(self.pending) > (self.cfg.delay_frames if self.ready else 0):
            self._write(*self.pending.popleft())
        return int(pick.numel())

    def _write(self, rows: torch.Tensor, spacing: torch.Tensor) -> None:
        """Write one frame's rows and their spacing into the ring (the oldest rows are overwritten once full)."""
        slots = (self.next + torch.arange(len(rows), device=self.bank.device)) % len(self.bank)
        self.bank[slots] = rows
        self.spacing[slots] = spacing
        self.next = int((self.next + len(rows)) % len(self.bank))
        self.count = min(len(self.bank), self.count + len(rows))
        self.frames += 1

    def state_dict(self) -> dict:
        """The filled rows and their spacing, oldest first, the rows still waiting, and the sampling state."""
        def oldest_first(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t[self.next:], t[: self.next]]) if self.count == len(self.bank) else t[: self.count]
        return {"bank": oldest_first(self.bank).clone(), "spacing": oldest_first(self.spacing).clone(),
                "frames": self.frames, "levels": [list(v) for v in self.levels], "shares": list(self.shares),
                "generator": self.generator.get_state(), "pending": [r.clone() for r, _ in self.pending],
                "pending_spacing": [s.clone() for _, s in self.pending],
                "history": self.history[: self.history_count].clone(),
                "history_own": self.history_own[: self.history_count].clone(),
                "history_next": self.history_next, "history_generator": self.history_generator.get_state(),
                **{name: _saved(getattr(self.cfg, name)) for name in FEATURE_FIELDS}}

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved memory; a bank of another width is refused, a longer one keeps its newest rows.
        Checkpoints from before the delay have no queue; from before the spacing, rows without one count as
        typically spaced (the camera's typical memory distance) until they are overwritten; from before the
        spreads, the memory stays out of the map until the camera's next admitted frame gives it one; from before
        the novel shares, the frame rule's bound starts at `admit_max_novel`; from before the history, or with one of
        another shape, the history starts empty (it refills in `history_frames` frames)."""
        bank, pending = state["bank"], state.get("pending", [])
        check_features(state, self.cfg)
        for rows in (bank, *pending):
            if rows.ndim != 2 or rows.shape[1] != self.dim:
                raise ValueError(f"a memory of {tuple(rows.shape)} does not fit features of width {self.dim}")
        missing = torch.tensor(math.nan)  # no spacing saved: filled in with the typical distance below
        spacing = state.get("spacing", missing.expand(len(bank)))
        pending_spacing = state.get("pending_spacing", [missing.expand(len(r)) for r in pending])
        if spacing.shape != (len(bank),) or len(pending_spacing) != len(pending) or any(
                s.shape != (len(r),) for r, s in zip(pending, pending_spacing, strict=True)):
            raise ValueError("a memory's spacing does not match its rows")
        if any(len(v) not in (2, 4) for v in state["levels"]):
            raise ValueError("a memory's levels are (means) or (means, spreads) of S and M")
        self.reset()
        self.levels.extend((*map(float, v), *[math.nan] * (4 - len(v))) for v in state["levels"])
        self.shares.extend(float(v) for v in state.get("shares", ()) if math.isfinite(v))
        typical = self.typical[1]
        n = min(len(bank), len(self.bank))
        self.bank[:n] = bank[len(bank) - n:].to(self.bank)
        self.spacing[:n] = spacing[len(bank) - n:].to(self.spacing).nan_to_num(typical)
        self.count = n
        self.next = n % len(self.bank) if len(self.bank) else 0
        self.frames = int(state["frames"])
        self.generator.set_state(state["generator"])
        self.pending.extend((r.to(self.bank), s.to(self.spacing).nan_to_num(typical))
                            for r, s in zip(pending, pending_spacing, strict=True))
        history = state.get("history")
        if history is not None and len(history) and len(history) <= len(self.history) and (
                history.shape[1:] == self.history.shape[1:] and state["history_own"].shape == (len(history),)):
            self.history[: len(history)] = history.to(self.history)
            self.history_own[: len(history)] = state["history_own"].to(self.history_own)
            self.history_count, self.history_next = len(history), int(state["history_next"]) % len(self.history)
            self.history_generator.set_state(state["history_generator"])
