"""Per-source anomaly detector: the streaming policy around one Fitter and one scorer.

Policy: the first frame of a source gets a cold fit (`fit.steps`), every later frame a warm start
from the previous frame's weights of as many steps as the frame-deadline scheduler (edge.schedule)
plans: `fit.warm_steps`, or fewer so that the fit fits `fit.budget_ms` and the whole frame
`fit.frame_budget_ms` (at least 1 step; a budget that cannot be met is counted and logged). With
`fit.score_before_warm_fit` a frame is scored with the weights fitted on earlier frames, before the
warm fit on it, so the net has never seen the frame it judges. When no scored map uses the U-Net
(`score.pixel_weight` and `score.perceptual_weight` 0: the default; configs/ssdnet-fit.yaml turns
them on) nothing is fitted: the frame is only scored.

Each source also has a memory of its normal appearance (edge.memory; `memory.size_mb`) that the
scorer searches, and a calibration of its image scores (edge.calibration): a scored frame that looks
normal gives the memory up to `memory.per_frame` of its normal cells (`Detector._remember`), so
defects stay out; every scored frame gives its history (`memory.history_frames`) some of its fine cells, whose
search can only raise the map (edge.scoring), so a defect there cannot vouch for itself.
Its normal frames also teach it how its maps run near the frame's border (edge.border): from its
`border.min_frames`-th normal frame on, the map (and an image score taken from it) is corrected for that.
`reset()` forgets weights, memory, calibration and border profile; `state_dict()` holds them (a checkpoint).
A source whose normal moves (a product changeover: 2 frames in a row mostly novel to its memory, or most recent
scores far from its normal, edge.calibration) is reset by the frame that shows it, and keeps what it knew of the
surface it left (`memory.recall_surfaces`; in its `state_dict()` too, so a checkpoint keeps them): a frame novel
to its memory and not to a kept surface's (`memory.recall_novel`) resumes that surface at once (a product back after
another), and is judged as its frame.

`Detector` is what the edge node's detector contract (`pipeline.node.Detector`) describes:
`process(image) -> Detection`, `reset()`, `state_dict()`, `restore(state)`. Used as a library: one Detector per camera
and per thread (`process` keeps the scorer's last maps: not thread-safe); frames are uint8 RGB (OpenCV's are BGR:
`edge.images.read_rgb`, or `frame[..., ::-1]`; 16-bit ones through `edge.frames.to_uint8`); `state_dict()` is a
snapshot, for `torch.save` and `torch.load(..., weights_only=True)`.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import torch

from .border import BorderProfile
from .calibration import MAD_TO_STD, ScoreCalibrator
from .config import SSDNetConfig
from .fitter import FitStats, Fitter, image_to_tensor
from .frames import BLANK_SPAN, change, check_frame, grey, to_frame_size, to_working_size, value_span
from .memory import FeatureMemory, check_features, memory_distance
from .schedule import StepScheduler
from .scorers import BackendError, build_scorer, make_scorer
from .scorers.onnx_graph import MEMORY_OUTPUTS, OUTPUT_NAMES
from .vgg import VGG19Features, build_vgg

log = logging.getLogger(__name__)


@dataclass
class Detection:
    anomaly_map: np.ndarray  # float32 (H, W), in the units of `score.map_units`
    score: float
    fit_steps: int
    fit_ms: float
    score_ms: float
    model_version: int
    budget_met: bool = True  # False: the scheduler expected even its minimum steps to overrun a budget
    diverged: bool = False  # the fit on this frame went non-finite; the weights before it were restored
    calibrated: float = math.nan  # `score` in robust std above this source's recent scores (edge.calibration)
    calibrating: bool = True  # too few frames yet: `calibrated` leans on the config's prior
    calibration: tuple[float, float] = (0.0, 1.0)  # (median, scale) it was judged against: calibrated = (score - m) / s
    memory_rows: int = 0  # rows in the source's memory after this frame
    memory_added: int = 0  # cells this frame gave the memory (searched `memory.delay_frames` frames later)
    normal_moved: bool = False  # its recent frames lie far from the source's normal: it has started afresh
    normal_recalled: bool = False  # its frame showed a surface the source knew before its normal moved: that resumed
    scorer_fallback: bool = False  # its exported scorer failed on this frame: the torch scorer took over, for good
    score_inset: int = 0  # px from the map's border the image score left out (edge.border: the profile not ready)
    still: bool = False  # it showed the scene the source last learnt from (a stopped line): it taught nothing

    def calibrated_map(self) -> np.ndarray:
        """The map in the calibrated score's units: robust std above this source's normal image score."""
        median, scale = self.calibration
        return ((self.anomaly_map - median) / scale).astype(np.float32)


@dataclass
class Surface:
    """A surface a camera knew before its normal moved: its `Detector.surface_state()` and its memory's typical
    distance."""
    state: dict
    typical: float


def top_mean(amap: np.ndarray, quantile: float) -> float:
    """The scorer's image score rule (edge.scoring): the mean of the map's top (1 - quantile)."""
    k = max(1, round((1 - quantile) * amap.size))
    return float(np.partition(amap.ravel(), amap.size - k)[-k:].mean())


def score_source(cfg: SSDNetConfig) -> str | None:
    """The scorer output the image score is read from where the border profile takes part (edge.border): the
    scorer's score map (`image_score` 'knn' with a memory: the blend, without the floor), the anomaly map when the
    score is its top, or None: the scorer's own score as is (the self-similarity beside reconstruction maps, without
    a memory)."""
    if cfg.score.image_score == "knn" and cfg.uses_memory:
        return MEMORY_OUTPUTS[2]
    return OUTPUT_NAMES[0] if cfg.score.score_is_map_top else None


def first_frame_score(cfg: SSDNetConfig, height: int, width: int) -> dict:
    """How a camera's first frames (its border profile not ready) have their image score read from the scorer's
    outputs, for a height x width frame (the working size): the output `map` (None: the scorer's `score` as is),
    cropped to the frame and `inset` px inside its border, the mean of its top (1 - `quantile`) (`top_mean`).
    `ssdnet export` writes it into the sidecar, for a program of its own to score as the node does."""
    source = score_source(cfg) if cfg.border.enabled else None
    inset = BorderProfile(cfg.border).inset(height, width) if source else 0
    return {"map": source, "inset": inset, "quantile": cfg.score.image_score_quantile}


def frame_cells(grid: torch.Tensor, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(gh, gw) bool, on `grid`'s device: the cells of a (gh, gw) grid over the padded input `x` that hold the
    height x width frame, not its padding."""
    cell = x.shape[-1] // grid.shape[-1]
    valid = torch.zeros_like(grid, dtype=torch.bool)
    valid[: -(-height // cell), : -(-width // cell)] = True
    return valid


def novel_share(dist: torch.Tensor, typical: float, ratio: float) -> torch.Tensor:
    """The share of a frame's cells (their memory distances `dist`) beyond `ratio` x a memory's typical distance: its
    novel cells (a float32 scalar)."""
    return (dist.float() > ratio * typical).float().mean()


def not_outlying(own: torch.Tensor, own_frame: torch.Tensor, mads: float) -> torch.Tensor:
    """(gh, gw) bool: the cells of the self-similarity grid `own` at most `mads` robust stds (1.4826 MAD) above the
    median of `own_frame` (its values on the frame's cells)."""
    med = own_frame.median()
    return own <= med + mads * MAD_TO_STD * (own_frame - med).abs().median()


def robust_std(values: torch.Tensor, clip: float = 3.0) -> float:
    """The std of a frame's cell values with those beyond `clip` robust stds (1.4826 MAD) of their median clipped to
    that bound: the texture's spread, which a few extreme cells (a fixture's bolts in view, a defect) barely move
    and the plain std follows (docs/ablations.md section 46)."""
    median = values.median()
    bound = clip * MAD_TO_STD * (values - median).abs().median()
    return float(values.clamp(median - bound, median + bound).std())


class Detector:
    """Fits and scores the frames of one source."""

    def __init__(self, cfg: SSDNetConfig, device: str | torch.device | None = None, vgg: VGG19Features | None = None):
        self.cfg = cfg
        vgg = vgg if vgg is not None else build_vgg(cfg)
        self.fitter = Fitter(cfg, device, vgg)
        # where the scorer runs (cfg.score.backend); the torch backend shares the Fitter's U-Net
        self.backend = build_scorer(cfg, unet=self.fitter.model, vgg=vgg, device=self.fitter.device)
        self.scorer = self.backend.module  # the AnomalyScorer
        self.model_version = 0
        self.diverged = False
        self.diverged_fits = 0
        self.nonfinite_maps = 0  # scoring passes whose map had inf/NaN (model restarted)
        self._fell_back = False  # the exported scorer gave way to torch since the last Detection said so
        warm = cfg.fit.warm_steps  # the one scheduler of this source, configured once from the fit config
        self.scheduler = StepScheduler(frame_budget_ms=cfg.fit.frame_budget_ms, fit_budget_ms=cfg.fit.budget_ms,
                                       min_steps=min(1, warm), max_steps=warm)
        self.memory = FeatureMemory(cfg.memory, self.fitter.device, cfg.fit.seed,
                                    history_dim=self.scorer.knn_dim) if cfg.uses_memory else None
        if self.memory is not None:
            self.backend.use_memory(self.memory)
        self.calibrator = ScoreCalibrator(cfg.calibration)
        self.border = BorderProfile(cfg.border) if cfg.border.enabled else None
        self.novel_run = 0  # frames in a row with `memory.move_novel` of their cells or more novel
        self.shelf: deque[Surface] = deque(maxlen=cfg.memory.recall_surfaces)  # surfaces it knew, newest last
        # the last frame it learnt from (neither still nor suspect), `grey`, and its image score
        self.reference: tuple[np.ndarray, float] | None = None

    def reset(self) -> None:
        """Forget the source: weights (the next frame gets a cold fit), memory, calibration, border profile and the
        surfaces it knew."""
        self.shelf.clear()
        self._start_afresh()

    def _start_afresh(self) -> None:
        """Forget the source's weights, memory, calibration and border profile (not the surfaces it knew)."""
        self.model_version = 0
        self.novel_run = 0
        self.reference = None
        self.calibrator.reset()
        if self.border is not None:
            self.border.reset()
        if self.memory is not None:
            self.memory.reset()

    def state_dict(self) -> dict:
        """Everything the source has learned (a checkpoint): of the surface it shows (`surface_state`), and the
        surfaces it keeps (`shelf`: each one's state and its memory's typical distance)."""
        return {**self.surface_state(), "shelf": [{"state": s.state, "typical": s.typical} for s in self.shelf]}

    def surface_state(self) -> dict:
        """What the source has learned of the surface it shows: weights, optimizer, memory, calibration, border; copies,
        which later frames leave as they are (the optimizer's own state_dict holds its live moments)."""
        return {"weights": self.fitter.state_dict(), "optimizer": copy.deepcopy(self.fitter.optimizer.state_dict()),
                "generator": self.fitter.generator.get_state(),
                "memory": self.memory.state_dict() if self.memory is not None else None,
                "calibration": self.calibrator.state_dict(), "model_version": self.model_version,
                "border": self.border.state_dict() if self.border is not None else None}

    def restore(self, state: dict) -> None:
        """Continue from a `state_dict()` (or a `surface_state()`, or U-Net weights alone): the next frame gets a
        warm start; the kept surfaces are the state's if it has them (a checkpoint from before them keeps none). A
        state that does not fit this config (another model size, a memory of another width) raises, and the source
        starts afresh (`reset`), not half restored."""
        full = "weights" in state
        try:
            if full and "shelf" in state:
                self._restore_shelf(state["shelf"])
            self.fitter.load_state_dict(state["weights"] if full else state)
            if full:
                self.fitter.optimizer.load_state_dict(state["optimizer"])
                self.fitter.generator.set_state(state["generator"])
                self.calibrator.load_state_dict(state["calibration"])
                if self.memory is not None and state["memory"] is not None:
                    self.memory.load_state_dict(state["memory"])
                if self.border is not None and state.get("border") is not None:  # older checkpoints have none
                    self.border.load_state_dict(state["border"])
        except Exception:
            self.reset()
            raise
        self._push_weights()
        self.reference = None  # the scene it showed last was another surface's
        version = int(state.get("model_version", 1)) if full else 1
        self.model_version = max(self.model_version, version, 1)

    def _restore_shelf(self, kept: list[dict]) -> None:
        """The kept surfaces of a checkpoint, their banks on the memory's device (the last `recall_surfaces`)."""
        shelf = []
        for s in kept[max(0, len(kept) - self.shelf.maxlen):]:
            memory = s["state"].get("memory")
            if self.memory is None or memory is None or memory["bank"].shape[-1] != self.memory.dim:
                raise ValueError("a kept surface's memory does not fit this config")
            check_features(memory, self.cfg.memory)  # recalled later: refused now, not mid-frame
            memory = {**memory, "bank": memory["bank"].to(self.memory.bank.device)}  # the state given stays as it is
            shelf.append(Surface({**s["state"], "memory": memory}, float(s["typical"])))
        self.shelf.clear()
        self.shelf.extend(shelf)

    @property
    def device(self) -> torch.device:
        return self.fitter.device

    @property
    def kept_surfaces(self) -> int:
        """Surfaces it keeps beside the one it shows (`shelf`), each a state of its own: weights and a memory."""
        return len(self.shelf)

    def score(self, x: torch.Tensor, height: int, width: int) -> tuple[np.ndarray, float]:
        """Anomaly map (cropped to height x width) and image score for a padded image tensor. An exported scorer
        that fails (its engine does not build, or fails its parity gate) is replaced by the torch scorer of the
        same model, for good: each frame after scores, none rebuilds it."""
        try:
            amap, score = self.backend.score(x, (height, width))
        except BackendError as e:
            if self.backend.name == "torch":
                raise
            log.error("the %s scorer failed (%s): this camera scores with torch from now on", self.backend.name, e)
            self.backend, self._fell_back = make_scorer(self.cfg, self.scorer, self.device, backend="torch"), True
            if self.memory is not None:
                self.backend.use_memory(self.memory)
            amap, score = self.backend.score(x, (height, width))
        amap, score = amap[0, 0, :height, :width].float(), score[0].float()
        if not (torch.isfinite(amap).all() and torch.isfinite(score)):
            # the weights produce inf/NaN even in fp32: report the frame as its worst finite value (never
            # silently normal) and start this source's model over with a cold fit on the next frame
            self.nonfinite_maps += 1
            self.model_version = 0
            log.warning("non-finite anomaly map (%d so far): scored as its worst finite value; the model "
                        "restarts with a cold fit", self.nonfinite_maps)
            finite = amap[torch.isfinite(amap)]
            top = float(finite.max()) if finite.numel() else 0.0
            amap, score = torch.nan_to_num(amap, nan=top, posinf=top, neginf=top), torch.tensor(top)
        return amap.cpu().numpy(), float(score)

    def _score_map(self, amap: np.ndarray, height: int, width: int, border: BorderProfile) -> np.ndarray | None:
        """The border-corrected map the image score reads (`score_source`): the scorer's own score map, or the
        corrected anomaly map `amap`; None when the score is the scorer's as is."""
        source = score_source(self.cfg)
        if source == MEMORY_OUTPUTS[2]:
            return border.apply(self.backend.score_map[0, 0, :height, :width].cpu().numpy())
        return amap if source == OUTPUT_NAMES[0] else None

    def _novel_share(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor | None:
        """The share of the last scored frame's cells beyond `novel_ratio` x the camera's typical memory distance,
        a float32 scalar (None before the memory has a typical distance)."""
        if self.memory is None or self.backend.features is None or self.memory.typical[1] <= 0:
            return None
        own, dist = self.backend.memory_maps[0]
        cells = dist[frame_cells(own, x, height, width)]
        return novel_share(cells, self.memory.typical[1], self.cfg.memory.novel_ratio)

    def _surface_moved(self, novel: torch.Tensor | None) -> bool:
        """Whether `memory.move_frames` frames in a row, this one last, were `memory.move_novel` or more novel
        against a ready memory: the camera sees another surface (a product changeover), which the calibration's
        rule sees ~25 frames later."""
        share = self.cfg.memory.move_novel
        counts = share is not None and novel is not None and bool(novel >= share) and self.memory.ready
        self.novel_run = self.novel_run + 1 if counts else 0
        return self.novel_run >= self.cfg.memory.move_frames

    def _shelve(self, calibration: dict | None = None) -> None:
        """Keep the camera's surface for `_recall`, if its memory is ready (a half-learnt one would admit little);
        with `calibration`, the calibrator's state from before a move emptied it, less its recent sides (they were
        the frames of the surface that moved it)."""
        if self.shelf.maxlen and self.memory is not None and self.memory.ready:
            state = copy.deepcopy(self.surface_state())
            if calibration is not None:
                state["calibration"] = {**calibration, "recent": []}
            self.shelf.append(Surface(state, self.memory.typical[1]))

    def _recall(self, x: torch.Tensor, height: int, width: int, novel: torch.Tensor | None) -> bool:
        """Whether the last scored frame, one the camera's memory cannot vouch for (`move_novel` novel to it, or
        not ready yet: the camera has just moved), shows a surface the camera knew (at most `recall_novel` of its
        cells novel to that surface's memory). Then the camera resumes the surface that finds the fewest novel
        cells and keeps its own in its place (if ready)."""
        mcfg = self.cfg.memory
        novel_now = novel is not None and mcfg.move_novel is not None and bool(novel >= mcfg.move_novel)
        if not self.shelf or self.backend.features is None or (self.memory.ready and not novel_now):
            return False
        # every other cell of every other row: a quarter of the search, and the shares still 1/256 apart at 256 px
        feats = self.backend.features[:1, :, ::2, ::2]
        valid = frame_cells(self.backend.memory_maps[0, 0], x, height, width)[::2, ::2]
        shares = []
        for surface in self.shelf:
            bank = surface.state["memory"]["bank"]  # on the memory's device: a copy of its own state
            dist, _ = memory_distance(feats, bank, torch.tensor(len(bank)), mcfg.k)
            shares.append(float(novel_share(dist[0, 0][valid], surface.typical, mcfg.novel_ratio)))
        best = int(np.argmin(shares))
        if shares[best] > mcfg.recall_novel:
            return False
        surface = self.shelf[best]
        del self.shelf[best]
        self._shelve()
        self.restore(surface.state)
        self.novel_run = 0
        return True

    def _remember(self, x: torch.Tensor, height: int, width: int, calibrated: float, calibrating: bool,
                  novel: torch.Tensor | None) -> int:
        """Add the last scored frame's normal cells to the memory if the frame itself looks normal (judged once
        the camera is calibrated): its calibrated score is below `admit_z`, and, if it is above the camera's
        median, it has no large novel region (`FeatureMemory.novel_bound`: a big defect is novel as a whole; a camera
        whose normal appearance drifts still learns it from the half of its frames below the median, once
        the calibration has followed). A cell is normal when its memory distance is within
        `admit_cell_ratio` of the camera's typical one and its self-similarity is not an outlier of the frame
        (`admit_own_mad`: a crack too thin for the memory's cells; before the camera has a typical distance: the
        latter alone, at `admit_cell_mad`). `novel`: the frame's `_novel_share`."""
        if self.memory is None or self.backend.features is None:
            return 0
        if not calibrating and not calibrated < self.cfg.memory.admit_z:
            return 0
        feats, (own, dist) = self.backend.features[:1], self.backend.memory_maps[0]
        valid = frame_cells(own, x, height, width)
        own_v, dist_v = own[valid].float(), dist[valid].float()
        typical, mcfg = self.memory.typical[1], self.cfg.memory
        if novel is not None:
            if calibrated > 0 and novel > self.memory.novel_bound:
                return 0  # a large novel region in a frame above the camera's median: a big defect
            self.memory.observe_novel(float(novel))
            normal = dist <= mcfg.admit_cell_ratio * typical
            if mcfg.admit_own_mad is not None:
                normal &= not_outlying(own, own_v, mcfg.admit_own_mad)
        else:
            normal = not_outlying(own, own_v, mcfg.admit_cell_mad)
        self.memory.observe_levels((float(own_v.mean()), robust_std(own_v)),  # before its cells go in
                                   (float(dist_v.mean()), robust_std(dist_v)))
        return self.memory.add(feats, valid & normal, dist, frame_cells=int(valid.sum()))  # not the padding's

    def _keep_history(self, x: torch.Tensor, height: int, width: int) -> None:
        """Give the memory's history `history_cells` of the last scored frame's self-similarity cells (not the
        padding's), whatever the frame's score."""
        cells = self.backend.knn_cells
        if self.memory is None or cells is None:
            return
        self.memory.add_history(cells[:1, :-1], cells[0, -1], frame_cells(cells[0, -1], x, height, width))

    def fit(self, x: torch.Tensor) -> FitStats:
        """Cold fit on a source's first frame, else a warm fit of the steps the scheduler plans (no
        step at all when no scored map uses the U-Net)."""
        cold = self.model_version == 0
        if not self.cfg.score.uses_unet:
            self.model_version += 1
            return FitStats(0, 0.0, float("nan"))
        if cold:
            self.fitter.reset()
            steps = self.cfg.fit.steps
        else:
            steps = self.scheduler.plan().steps
        before = None if cold else self.fitter.state_dict()
        stats = self.fitter.fit(x, steps)
        self.diverged = not math.isfinite(stats.loss) or not all(
            torch.isfinite(p).all() for p in self.fitter.model.parameters())
        if self.diverged:  # a NaN/inf fit: keep scoring with the last good weights
            self.diverged_fits += 1
            if before is None:
                self.fitter.reset()
            else:
                self.fitter.load_state_dict(before)
        self.scheduler.observe_fit(stats.steps, stats.seconds * 1000)
        self._push_weights()
        self.model_version += 1
        return stats

    def _push_weights(self) -> None:
        """Hand the Fitter's current weights to an exported scorer (no re-export, no rebuild)."""
        if self.backend.name != "torch":
            self.backend.update_weights(self.fitter.model.state_dict())

    def process(self, image: np.ndarray, *, recall: bool = True) -> Detection:
        """Fit on and score one uint8 HxWx3 RGB frame of any size from MIN_SIDE up (edge.frames: FrameError
        below, scaled down above `max_pixels`); `fit.budget_ms` bounds the warm fit, `fit.frame_budget_ms`
        the whole call (both through the scheduler, which only ever shortens the warm fit). A frame that shows a
        surface the camera knew (`_recall`) is processed once more, as that surface's (`recall` False). A blank frame
        (a lens cap, the light off: `edge.frames.value_span`) is scored and teaches nothing: no fit, calibration,
        border profile or memory takes it (a camera that started with the light off took ~0 for its normal). Nor does
        a still frame, one that changed less than `still_change` from the last frame the camera learnt from
        (`edge.frames.change`): a stopped line shows one product over and over, and learning it as the camera's whole
        normal raised false events, on the stopped line and after it started again (docs/ablations.md section 76).
        A still frame of a camera still calibrating (one that started on a stopped line) is judged by what changed
        since: against the larger of the prior's guess and the score of the frame it learnt from last (a product that
        scored high against the prior was reported then, once, not on every frame while the line stands: section 77)."""
        start = time.perf_counter()
        frame = check_frame(image)
        frame_h, frame_w = frame.shape[:2]
        image = to_working_size(frame, self.cfg.max_pixels)
        h, w = image.shape[:2]
        x = image_to_tensor(image, self.device, self.fitter.multiple)
        first = self.model_version == 0
        blank = value_span(frame) <= BLANK_SPAN
        view, limit = grey(image), self.cfg.still_change
        still = (limit is not None and not first and self.reference is not None
                 and change(view, self.reference[0]) < limit)
        quiet = blank or still  # it teaches nothing
        before = (self.cfg.fit.score_before_warm_fit and not first) or quiet  # a blank first frame: no cold fit either
        stats = None if before else self.fit(x)
        t0 = time.perf_counter()
        nonfinite = self.nonfinite_maps
        amap, score = self.score(x, h, w)
        own_map = amap  # before the border correction: what the border profile learns from
        border = self.border if self.nonfinite_maps == nonfinite else None  # a non-finite map stays as reported
        inset = 0
        if border is not None:
            amap = border.apply(amap)
            score_map = self._score_map(amap, h, w, border)
            if score_map is not None:
                score = top_mean(border.scored(score_map), self.cfg.score.image_score_quantile)
                inset = border.inset(h, w)
        score_ms = (time.perf_counter() - t0) * 1000
        weight = self.memory.blend[1] if self.memory is not None else 0.0  # the memory's weight in this score
        calibrating, calibration = self.calibrator.calibrating, self.calibrator.stats(weight)
        if still and calibrating:  # a camera that started on a stopped line knows no normal but the prior's guess and
            # the product it learnt from: judged by what changed since, against that product's score if higher
            calibration = (max(calibration[0], self.reference[1]), calibration[1])  # (it was reported then, once)
        calibrated = (score - calibration[0]) / calibration[1]
        # a frame far above the camera's normal teaches nothing (no warm fit, no memory), so neither does its
        # defect; while calibrating the prior is too rough a guess to hold learning back on
        suspect = quiet or (not calibrating and calibrated >= self.cfg.fit.max_fit_z)
        novel = self._novel_share(x, h, w)
        # a frame of a surface the camera knew is judged against it, not the one it left
        if recall and not quiet and self._recall(x, h, w, novel):
            return replace(self.process(frame, recall=False), normal_recalled=True)
        if stats is None:
            stats = FitStats(0, 0.0, float("nan")) if suspect else self.fit(x)
        # a blank or still frame moves no camera: a lens cap is no changeover (two of them started a camera afresh)
        kept = self.calibrator.state_dict()  # the calibration of the surface a move leaves (the move empties it)
        moved = not quiet and (self.calibrator.observe(score, weight) | self._surface_moved(novel))
        if border is not None and not suspect:
            border.observe(own_map)
        added = 0 if quiet else self._remember(x, h, w, calibrated, calibrating, novel)
        if self.nonfinite_maps == nonfinite and not quiet:
            self._keep_history(x, h, w)
        if not suspect:  # a frame it learnt from: a new product's first frames, far above normal, are not
            self.reference = view, score  # (still after them, a stopped line's frames of it would never move it)
        if moved:  # a product changeover, new lighting: start afresh, as a new camera would (its memory, border
            self._shelve(kept)  # profile and weights learnt the old normal: docs/ablations.md sections 47,
            self._start_afresh()  # 51), keeping what it knew of the surface it left (section 52)
        total_ms = (time.perf_counter() - start) * 1000
        self.scheduler.observe_frame(total_ms, stats.seconds * 1000, score_ms, warm=not first)
        met = first or self.scheduler.last_plan is None or self.scheduler.last_plan.met
        amap = to_frame_size(amap, frame_h, frame_w)
        detection = Detection(amap, score, stats.steps, stats.seconds * 1000, score_ms, self.model_version, met,
                         self.diverged, calibrated, calibrating, calibration,
                         self.memory.count if self.memory else 0, added, normal_moved=moved,
                         scorer_fallback=self._fell_back, score_inset=round(inset * frame_h / h), still=still)
        self._fell_back = False
        return detection
