"""End-of-line statistics: per-stage latency percentiles, fps, drops and the pooled pixel AUROC."""
from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from . import protocol as P

STAGES = ("transport", "queue", "fit", "score", "publish", "end_to_end")
CHANGEOVER_COUNTERS = ("normal_moved", "normal_recalled", "product_changes")
DROP_COUNTERS = ("conflated", "lost", "rejected", "failed")
SOURCE_COUNTERS = (*DROP_COUNTERS, "downscaled", *CHANGEOVER_COUNTERS)  # the node's, in the summary per camera
# the cameras' own, in the summary (summed and per camera) once one counted any: frames sent while no node subscribed
# (ZeroMQ dropped them), files a folder camera skipped as unreadable and frames skipped as below the minimum size
# (never sent)
CAMERA_COUNTERS = ("unheard", "unreadable", "too_small", "refused_peers")
MAX_RUNS = 64  # runs of a camera counted apart (its last heard); an older one's counts are kept as they were
MAX_RUNS_GONE = 1024  # of a camera's runs folded into the sum, the ids remembered: a late message of one counts no more


def stage_latencies(h: P.AnomalyHeader, delivered: float) -> dict[str, float]:
    """Milliseconds per stage of one result: transport (capture -> node), queue (waiting in the node),
    fit and score (the detector's timings), publish (scored -> sent), end_to_end (capture -> `delivered`)."""
    s = h.stamps
    capture = s.get("capture", h.t_capture)
    out = {"fit": h.fit_ms, "score": h.score_ms, "end_to_end": (delivered - capture) * 1e3}
    if "received" in s:
        out["transport"] = (s["received"] - capture) * 1e3
        if "fitted" in s:
            out["queue"] = (s["fitted"] - h.fit_ms / 1e3 - s["received"]) * 1e3
    if "scored" in s and "published" in s:
        out["publish"] = (s["published"] - s["scored"]) * 1e3
    return out


class CameraClocks:
    """Stage latencies with each camera's clock offset taken out, as far as one-way stamps show it. A camera whose
    clock runs D seconds ahead of the node's stamps its frames D s late, so its transport (and end to end) read D s
    short, negative once D passes the real transport. The smallest transport of a camera's last `window` messages
    that read negative is how far ahead its clock runs at least, and is added back: transport then reads from the
    camera's fastest frame of the window, a few ms short of the truth where a clock is off. A clock behind the
    node's looks like a slow link, and is left as it is; one set right is seen `window` messages later."""

    def __init__(self, window: int = 256):
        self.window = window
        self._transport: dict[str, deque[float]] = {}
        self.ahead_s: dict[str, float] = {}  # cameras seen ahead: the most their clock ran ahead of the node's

    def observe(self, h: P.Header) -> float:
        """Milliseconds the camera's clock runs ahead of the node's, as far as `h` and its window show it."""
        recent = self._transport.setdefault(h.source, deque(maxlen=self.window))
        if "received" in h.stamps:
            recent.append((h.stamps["received"] - h.stamps.get("capture", h.t_capture)) * 1e3)
        ahead = max(0.0, -min(recent, default=0.0))
        if ahead > 0:
            self.ahead_s[h.source] = max(self.ahead_s.get(h.source, 0.0), round(ahead / 1e3, 3))
        return ahead

    def latencies(self, h: P.AnomalyHeader, delivered: float) -> dict[str, float]:
        """`stage_latencies` of a result, its camera's clock offset (so far) taken out of transport and end to end."""
        out, ahead = stage_latencies(h, delivered), self.observe(h)
        for stage in ("transport", "end_to_end"):
            if stage in out:
                out[stage] += ahead
        return out


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p95, p99 = np.percentile(values, (50, 95, 99))
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}


class Reservoir(list):
    """A uniform random sample of at most `capacity` of the items added (Algorithm R): statistics of
    a line that runs for months in bounded memory."""

    def __init__(self, capacity: int, rng: np.random.Generator):
        super().__init__()
        self.capacity, self.rng, self.seen = capacity, rng, 0

    def add(self, item) -> None:
        self.seen += 1
        if len(self) < self.capacity:
            self.append(item)
        elif (j := int(self.rng.integers(self.seen))) < self.capacity:
            self[j] = item


class StreamStats:
    """Collects anomaly results, events and ends of stream as they arrive; `summary()` reports them.

    For the stream AUROC, up to `pixels_per_frame` pixels per frame (sampled uniformly) of every
    result that carries a ground-truth mask are pooled; the same over each camera's first and last
    half of frames shows whether the cameras got better as they streamed (memory, calibration), pooled
    over the cameras and per camera.
    Memory is bounded however long the run: latencies keep a uniform sample of `max_latencies` per
    stage, ground-truth frames one of `max_frames` frames (the exact statistics while runs are shorter).
    So is the summary's time: each accuracy pools at most `max_pixels` pixels, a uniform sample of its frames'
    pixels where they hold more, and a line of one camera reports its pooled accuracy as that camera's. A summary of
    three cameras makes 12 accuracies: at 4 M pixels each it took 10-17 s (most of a line's wait after a Ctrl-C or a
    SIGTERM, past `docker stop`'s 10 s), at 1 M 3-4 s, moving them by up to 0.002 AUROC and 0.01 AUPRC
    (docs/performance.md, "A line's summary").
    """

    def __init__(self, pixels_per_frame: int = 65536, max_frames: int = 512, max_latencies: int = 100_000,
                 seed: int = 0, max_pixels: int = 2**20):
        self.pixels_per_frame, self.max_pixels, self.seed = pixels_per_frame, max_pixels, seed
        self.rng = np.random.default_rng(seed)
        self.latency: dict[str, Reservoir] = {stage: Reservoir(max_latencies, self.rng) for stage in STAGES}
        self.clocks = CameraClocks()
        self.frames: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.products: dict[str, dict[str, Counter[str]]] = {}  # camera -> product -> frames and events (`product`)
        # each camera's frames sent and CAMERA_COUNTERS per run of its process (the run id its messages carry, `run`):
        # the most each reached in that run, from its ends of stream, heartbeats and results (`_camera`), for its
        # MAX_RUNS last heard runs; the sum of its runs before them
        self._runs: dict[str, dict[str, Counter[str]]] = {}
        self._runs_before: dict[str, Counter[str]] = {}
        self._runs_gone: dict[str, deque[str]] = {}  # the ids of the runs folded into `_runs_before`, the latest
        # a camera whose messages carry no run id (an older camera, a third party's), its restarts guessed from its
        # counters (`_camera_counts`): frames sent from its end of stream, and from its latest heartbeat (a run
        # stopped before the end); the counts of its present run, and of its runs before a restart; its present
        # run's `sent` counter as last reported
        self.sent: dict[str, int] = {}
        self.sent_so_far: dict[str, int] = {}
        self._camera_run: dict[str, Counter[str]] = {name: Counter() for name in ("sent", *CAMERA_COUNTERS)}
        self._camera_before: dict[str, Counter[str]] = {name: Counter() for name in ("sent", *CAMERA_COUNTERS)}
        self._sent_count: Counter[str] = Counter()
        # fps's span on the monotonic clock, so that a step of the system clock (NTP; a board that boots in 1970,
        # then syncs) or a camera's clock off by up to node.max_clock_skew_s moves neither end: from each camera's first
        # result's delivery less its time since the node received it (never before these stats began) to the last one
        self._began = time.monotonic()
        self._first_mono: float | None = None
        self._last_mono: float | None = None
        # (pixel scores, pixel truth, image score, defective, camera, position in the camera's stream)
        self._truth_frames = Reservoir(max_frames, self.rng)

    def add(self, msg: P.Message, delivered: float) -> None:
        h = msg.header
        if h.kind in ("anomaly", "event") and h.product is not None:
            counts = self.products.setdefault(h.source, {}).setdefault(h.product, Counter({"frames": 0, "events": 0}))
            counts["frames" if h.kind == "anomaly" else "events"] += 1
        if h.kind == "event":
            self.events[h.source] += 1
        elif h.kind == "eos":
            self._camera(h.source, h.run, h.counters, h.frames, ended=True)
        elif h.kind == "heartbeat" and h.role == "source" and isinstance(h.counters.get("sent"), int):
            self._camera(h.source, h.run, h.counters, h.counters["sent"])
        elif h.kind == "anomaly":
            self.frames[h.source] += 1
            self._camera(h.source, h.run, {}, h.seq + 1)  # frames 0..seq of its run were sent
            for stage, ms in self.clocks.latencies(h, delivered).items():
                self.latency[stage].add(ms)
            self._last_mono = time.monotonic()
            if self.frames[h.source] == 1:  # the camera's first: its latency, on the clocks of one moment, dates it
                received = h.stamps.get("received", h.stamps.get("capture", h.t_capture))
                began = max(self._began, self._last_mono - max(0.0, delivered - received))
                self._first_mono = began if self._first_mono is None else min(self._first_mono, began)
            if "mask" in msg.arrays:
                scores, truth = P.anomaly_map(msg).ravel(), msg.arrays["mask"].ravel() > 0
                if scores.size > self.pixels_per_frame:
                    keep = self.rng.choice(scores.size, self.pixels_per_frame, replace=False)
                    scores, truth = scores[keep], truth[keep]
                self._truth_frames.add((scores, truth, h.score, bool(msg.arrays["mask"].any()), h.source,
                                        self.frames[h.source] - 1))

    def _pooled(self, frames: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
        """The frames' pixel scores and truth, concatenated: all of them, or past `max_pixels` the same share of
        each frame's, drawn uniformly (the same draw at every call)."""
        share, rng = min(1.0, self.max_pixels / sum(f[0].size for f in frames)), np.random.default_rng(self.seed)
        picks = [slice(None) if share == 1 else rng.choice(f[0].size, int(share * f[0].size), replace=False)
                 for f in frames]
        scores, truth = zip(*((f[0][pick], f[1][pick]) for f, pick in zip(frames, picks, strict=True)), strict=True)
        return np.concatenate(scores), np.concatenate(truth)

    def _accuracy(self, frames: list[tuple]) -> dict:
        """Pixel AUROC/AUPRC of the pooled pixels and image AUROC of the image scores against "the mask is
        not empty" (None where a class is missing)."""
        scores, truth = self._pooled(frames)
        _, _, image_scores, defective, *_ = zip(*frames, strict=True)
        image_scores, defective = np.array(image_scores), np.array(defective)
        pixels_both, images_both = 0 < truth.sum() < truth.size, 0 < defective.sum() < defective.size
        return {"pixel_auroc": round(float(roc_auc_score(truth, scores)), 4) if pixels_both else None,
                "pixel_auprc": round(float(average_precision_score(truth, scores)), 4) if pixels_both else None,
                "image_auroc": round(float(roc_auc_score(defective, image_scores)), 4) if images_both else None,
                "frames": len(frames), "defective_frames": int(defective.sum()), "pixels": int(truth.size)}

    def _with_halves(self, frames: list[tuple]) -> dict:
        """Accuracy over `frames`, and over those in each camera's first and in its last half."""
        out = self._accuracy(frames)
        half = {src: n / 2 for src, n in self.frames.items()}
        first = [f for f in frames if f[5] < half[f[4]]]
        last = [f for f in frames if f[5] >= half[f[4]]]
        if first and last:
            out["first_half"], out["last_half"] = self._accuracy(first), self._accuracy(last)
        return out

    def stream_metrics(self) -> dict | None:
        """Accuracy over all frames with ground truth and over each camera's first and last half of them, pooled
        (the cameras' maps in their calibrated units) and per camera (`cameras`)."""
        if not self._truth_frames:
            return None
        frames = list(self._truth_frames)
        pooled, cameras = self._with_halves(frames), sorted({f[4] for f in frames})
        out = {**pooled, "frames": self._truth_frames.seen, "frames_sampled": len(frames)}
        out["cameras"] = {src: pooled if len(cameras) == 1 else self._with_halves([f for f in frames if f[4] == src])
                          for src in cameras}
        return out

    def camera_stopped(self, source: str, report: dict[str, int | str]) -> None:
        """A camera's own final report, from its stage (`Camera.run`): its counters and run id (`run`; none from an
        older camera). Its CAMERA_COUNTERS and, when the line stopped it before its end of stream came through
        (Ctrl-C, the timeout), what it sent (`sent` and `send_dropped`: its frames numbered, as its end of stream's
        `frames`), not its last heartbeat's count; for its run only."""
        counters = {name: n for name, n in report.items() if isinstance(n, int)}
        frames = counters["sent"] + counters["send_dropped"]
        if isinstance(run := report.get("run"), str):
            self._camera(source, run, counters, frames)
        else:
            self.sent.setdefault(source, self._camera_counts(source, counters, frames))

    def _camera(self, source: str, run: str | None, counters: dict[str, int], frames: int, ended: bool = False) -> None:
        """Take a camera's own counters (older cameras report some or none) and the frames its run has sent so far
        (`ended`: all of them, from its end of stream). A run named by its id keeps the most each count reached in it,
        whatever the order its messages come in: the node forwards heartbeats at once, results and ends of stream once
        the frames before them are scored, so an old run's last results and end of stream may come after a new run's
        first heartbeats."""
        if run is None:
            sent = self._camera_counts(source, counters, frames)
            if ended:
                self.sent[source] = sent
            else:
                self.sent_so_far[source] = max(self.sent_so_far.get(source, 0), sent)
            return
        runs, gone = self._runs.setdefault(source, {}), self._runs_gone.setdefault(source, deque(maxlen=MAX_RUNS_GONE))
        if run in gone:  # its counts are in the sum already (a late message would count the run again)
            return
        counts = runs[run] = runs.pop(run, None) or Counter()  # the last heard last
        if len(runs) > MAX_RUNS:  # bounded memory: a camera restarted for months, or one naming a new run each time
            oldest = next(iter(runs))
            self._runs_before.setdefault(source, Counter()).update(runs.pop(oldest))
            gone.append(oldest)
        for name in CAMERA_COUNTERS:
            if isinstance(n := counters.get(name), int):
                counts[name] = max(counts[name], n)
        counts["sent"] = max(counts["sent"], frames)

    def _runs_of(self, source: str) -> list[Counter[str]]:
        """The counts of each run of `source` that named one (of those before its MAX_RUNS last heard, together)."""
        return [self._runs_before.get(source, Counter()), *self._runs.get(source, {}).values()]

    def _camera_counts(self, source: str, counters: dict[str, int], frames: int = 0) -> int:
        """`_camera` for a camera that names no run: take its counters and its present run's frames sent so far;
        returns its frames sent over all its runs. A counter that went down (its `sent` or one of CAMERA_COUNTERS) is
        a camera whose process started afresh (a crash, a restart): its runs before count too, not only the last. A
        guess, wrong where two runs' messages interleave (what run ids settle)."""
        run, before = self._camera_run, self._camera_before
        counts = {name: n for name in CAMERA_COUNTERS if isinstance(n := counters.get(name), int)}
        sent = counters.get("sent")
        if (isinstance(sent, int) and sent < self._sent_count[source]) or any(
                n < run[name][source] for name, n in counts.items()):
            for name in run:
                before[name][source] += run[name][source]
                run[name][source] = 0
            self.sent.pop(source, None)  # the end of stream of a run before it
        if isinstance(sent, int):
            self._sent_count[source] = sent
        for name, n in counts.items():
            run[name][source] = n
        run["sent"][source] = max(run["sent"][source], frames)
        return before["sent"][source] + run["sent"][source]

    def camera_counts(self, name: str) -> dict[str, int]:
        """One of CAMERA_COUNTERS per camera, over all its runs, for the cameras that counted any."""
        run, before = self._camera_run[name], self._camera_before[name]
        return {s: n for s in sorted({*run, *self._runs})
                if (n := before[s] + run[s] + sum(c[name] for c in self._runs_of(s)))}

    def fps(self, now: float | None = None) -> float | None:
        """Frames scored per second from the first frame's arrival to `now` (monotonic; default: the last result);
        None before a span."""
        if self._first_mono is None:
            return None
        span = (self._last_mono if now is None else now) - self._first_mono
        return sum(self.frames.values()) / span if span > 0 else None

    def summary(self, node: dict | None = None, cameras: Iterable[str] = ()) -> dict:
        """The run's summary; `node` is the node's final counter snapshot when available; `cameras`, the configured
        ones, each listed in `sources` (one never heard from with `sent` null)."""
        frames = sum(self.frames.values())
        sent_by = {**self.sent_so_far, **self.sent}  # cameras that name no run, then those that do: each run's sum
        for source in self._runs:
            sent_by[source] = sent_by.get(source, 0) + sum(c["sent"] for c in self._runs_of(source))
        sent = sum(sent_by.values()) if sent_by else None
        out: dict = {
            "frames": frames,
            "sent": sent,
            "fps": round(fps, 3) if (fps := self.fps()) is not None else None,
            "dropped": max(0, sent - frames) if sent is not None else None,
            "events": sum(self.events.values()),
            "latency_ms": {stage: percentiles(v) for stage, v in self.latency.items()},
            "clock_ahead_s": dict(sorted(self.clocks.ahead_s.items())),
            "sources": {s: {"frames": self.frames[s], "events": self.events[s], "sent": sent_by.get(s)}
                        for s in sorted(set(self.frames) | set(sent_by))},
        }
        for source, products in self.products.items():  # per product its frames name: frames scored, events
            out["sources"].setdefault(source, {})["products"] = {name: dict(c) for name, c in sorted(products.items())}
        for name in cameras:
            out["sources"].setdefault(name, {"frames": 0, "events": 0, "sent": None})
        for name in CAMERA_COUNTERS:  # the cameras' counts, there once any
            if counts := self.camera_counts(name):
                out[name] = sum(counts.values())
                for source, n in counts.items():
                    out["sources"].setdefault(source, {})[name] = n
        if node is not None:
            out["drops"] = {name: sum(c[name] for c in node["sources"].values()) for name in DROP_COUNTERS}
            out["drops"]["bad_messages"] = node["bad_messages"]
            for source, counts in node["sources"].items():  # drops by cause, frames scored downscaled, changeovers
                entry = out["sources"].setdefault(source, {})
                entry.update({k: counts[k] for k in SOURCE_COUNTERS})
                if entry.get("sent") is not None:  # in flight when the line stopped, or results lost on the way
                    causes = sum(counts[k] for k in DROP_COUNTERS)
                    entry["unaccounted"] = max(0, entry["sent"] - self.frames[source] - causes)
            out["drops"]["unaccounted"] = sum(e.get("unaccounted", 0) for e in out["sources"].values())
            out["scorer"] = node["scorer"]  # the node's scorer backend, provider and why (null: a custom detector)
            # refused messages by reason, refused connections by reason, each camera's state (pipeline.admission)
            for key in ("rejected", "refused_connections", "cameras"):
                if key in node:
                    out[key] = node[key]
        if (stream := self.stream_metrics()) is not None:
            out["stream"] = stream
        return out
