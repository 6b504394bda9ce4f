"""A camera's model on disk: where the node saves it, when, and how a camera resumes from it.

With `node.checkpoint_dir` a camera's model is `<camera>.pt` there (`<camera>@<product>.pt` for a product its frames
name), saved atomically every `checkpoint_every` model versions (at most once per `checkpoint_interval_s`: a
checkpoint is ~8-25 MB, and flash wears) and kept (`keep`) at a changeover, its end of stream
and the node's stop: a restarted node resumes each camera from it (a warm start). Without it, a model kept at a
changeover or an end of stream goes to a scratch folder of the run (deleted at the node's stop, held to
`node.scratch_checkpoint_mb`): a camera back on a product, or back after its end of stream, resumes it within the run.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import psutil
import torch

from edge.config import ConfigError
from pipeline.transport import ThrottledLog

log = logging.getLogger(__name__)

# frames a model must have scored since it was saved or loaded to be saved at a changeover, its camera's end of stream
# or the node's stop: a peer that flips products or ends its stream every frame causes no checkpoint write per frame
# (its models lose what the last few frames taught them)
SAVE_AFTER_FRAMES = 5
SCRATCH_PREFIX = "ssdnet-models-"  # + the node's process id: a scratch folder of a node no longer running is deleted


def _check_writable(folder: Path) -> None:
    """Create `folder` if need be and write a file there: a node.checkpoint_dir it cannot use fails its start (a
    ConfigError naming it), not every save."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"node.checkpoint_dir {folder}: cannot create it or write there: {e}") from None


class Saveable(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def restore(self, state: dict[str, Any]) -> None: ...


class Checkpoints:
    """The node's checkpoints: `folder` (node.checkpoint_dir, or None), a save every `every` model versions and at
    most every `interval_s` seconds, the scratch folder held to `scratch_mb`."""

    def __init__(self, folder: Path | None, every: int, scratch_mb: float, interval_s: float = 0.0):
        if folder is not None:
            _check_writable(folder)
        self.folder, self.every, self.scratch_mb, self.interval_s = folder, every, scratch_mb, interval_s
        self.scored: dict[str, int] = {}  # camera -> frames its model scored since saved or loaded
        self._saved_at: dict[str, float] = {}  # camera -> monotonic time of its last save
        self.failures = 0  # saves that failed (a full disk; heartbeat `checkpoint_failed`)
        self._scratch: tempfile.TemporaryDirectory | None = None  # models kept for this run without a folder
        self._log = ThrottledLog(log)
        self._load_logs: dict[str, ThrottledLog] = {}  # camera -> its ignored checkpoints (a peer flipping products)

    def path(self, source: str, product: str | None, scratch: bool = False) -> Path | None:
        """Where the camera's model for `product` is saved: in `folder`; without it and with `scratch`, in the
        scratch folder once a model was kept there; else None."""
        folder = self.folder
        if folder is None and scratch and self._scratch is not None:
            folder = Path(self._scratch.name)
        if folder is None:
            return None
        return folder / (f"{source}.pt" if product is None else f"{source}@{product}.pt")

    def load(self, source: str, product: str | None, model: Saveable) -> None:
        """Resume a new model from the camera's last saved weights for `product`, if there are any."""
        path = self.path(source, product, scratch=True)
        if path is None or not path.is_file():
            if self.folder is not None:
                log.info("%s: no checkpoint %s: starts afresh", source, path)
            return
        try:
            model.restore(torch.load(path, map_location="cpu", weights_only=True))
            self.scored[source] = 0
            log.info("%s: resumed from checkpoint %s", source, path)
        except Exception as e:  # a stale or corrupt checkpoint (other model size): start from scratch
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]  # torch: a line per tensor
            why = " ".join(lines[:2]) + (f" (+{len(lines) - 2} more)" if len(lines) > 2 else "")
            self._load_logs.setdefault(source, ThrottledLog(log)).warning(
                f"{source}: ignored checkpoint {path} ({type(e).__name__}: {why}): it does not fit this config or is "
                "damaged; the camera starts afresh and its next save replaces it")

    def scored_one(self, source: str, product: str | None, model: Saveable, version: int) -> None:
        """The camera's model scored a frame and is now at `version`: saved when that is a multiple of `every` and
        `interval_s` passed since its last save."""
        self.scored[source] = self.scored.get(source, 0) + 1
        if version % self.every == 0 and time.monotonic() - self._saved_at.get(source, -math.inf) >= self.interval_s:
            self.save(source, product, model)

    def keep(self, source: str, product: str | None, model: Saveable, scratch: bool = True) -> None:
        """Save the camera's model once it scored SAVE_AFTER_FRAMES frames since it was saved or loaded: at a
        changeover and its end of stream (to `folder`, else to the scratch folder), and at the node's stop (`scratch`
        False: to `folder` only), so the camera back on a product, or a restarted node, resumes it as it was."""
        if self.scored.get(source, 0) >= SAVE_AFTER_FRAMES:
            self.save(source, product, model, scratch)

    def save(self, source: str, product: str | None, model: Saveable, scratch: bool = False) -> None:
        """Write the model's weights now (atomically: a crash mid-write leaves the previous checkpoint)."""
        if scratch and self.folder is None and self._scratch is None:
            _sweep_scratch()
            self._scratch = tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-",
                                                        ignore_cleanup_errors=True)
        path = self.path(source, product, scratch)
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, path)
            self.scored[source] = 0
            self._saved_at[source] = time.monotonic()
        except (OSError, RuntimeError) as e:  # torch.save's zip writer raises RuntimeError on a full disk
            self.failures += 1
            with contextlib.suppress(OSError):  # a partial file would hold the disk the event log needs
                tmp.unlink(missing_ok=True)
            self._log.warning(f"{source}: could not write checkpoint {path}: {e}")
            return
        if self.folder is None:
            self._bound_scratch(path)

    def forget(self, source: str) -> None:
        """The camera's model was freed: its next one counts its frames afresh."""
        self.scored.pop(source, None)

    def close(self) -> None:
        """Delete the scratch folder (the node stops)."""
        if self._scratch is not None:
            self._scratch.cleanup()

    def _bound_scratch(self, kept: Path) -> None:
        """Hold the scratch folder's checkpoints to `scratch_mb`: of the camera holding the most bytes there, the least
        recently saved go first (never `kept`, the one just saved), so a camera naming product after product drops its
        own models, not another camera's."""
        files = sorted(kept.parent.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        sizes = {p: p.stat().st_size for p in files}
        held: dict[str, int] = {}  # camera -> bytes of its checkpoints there
        for p, size in sizes.items():
            held[_camera(p)] = held.get(_camera(p), 0) + size
        total = sum(sizes.values())
        droppable = [p for p in files if p != kept]
        while droppable and total > self.scratch_mb * 2**20:
            camera = max(dict.fromkeys(_camera(p) for p in droppable), key=held.__getitem__)
            old = next(p for p in droppable if _camera(p) == camera)
            droppable.remove(old)
            total -= sizes[old]
            held[camera] -= sizes[old]
            old.unlink(missing_ok=True)
            self._log.warning(f"scratch checkpoints over node.scratch_checkpoint_mb ({self.scratch_mb:g}): dropped "
                              f"{old.name} (that camera and product start afresh when back)")


def _sweep_scratch() -> None:
    """Delete the scratch folders of nodes that ended without deleting theirs (SIGKILL, the OOM killer): each holds up
    to node.scratch_checkpoint_mb, in RAM where the temp folder is a tmpfs. A folder names its node's process id."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            log.info("deleted %s, the scratch checkpoints of a node that did not stop (killed?)", folder)


def _camera(path: Path) -> str:
    """The camera a checkpoint file is of (`<camera>.pt`, `<camera>@<product>.pt`)."""
    return path.stem.split("@", 1)[0]
