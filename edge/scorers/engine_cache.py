"""The TensorRT engine cache on disk: ``<key>.engine`` plus ``<key>.json`` of what the key was made of.

`$SSDNET_ENGINE_CACHE`, default ``~/.cache/ssdnet/engines``. The key covers everything that makes an
engine unusable elsewhere: the graph (without the values of its refittable weights), the input
shape, the precision, the TensorRT version, the GPU and the weight strategy.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

ENGINE_CACHE_ENV = "SSDNET_ENGINE_CACHE"


def engine_cache_key(model_hash: str, input_shape: Sequence[int], precision: str, trt_version: str,
                     gpu_name: str, strategy: str = "refit") -> str:
    """Key of a cached engine: any change of graph, shape, precision, TensorRT, GPU or strategy -> new key."""
    parts = {"model": model_hash, "shape": [int(s) for s in input_shape], "precision": precision,
             "tensorrt": trt_version, "gpu": gpu_name, "strategy": strategy, "v": 1}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def default_engine_cache() -> Path:
    env = os.environ.get(ENGINE_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "ssdnet" / "engines"


class EngineCache:
    """Serialized engines on disk, ``<key>.engine`` with a ``<key>.json`` of what the key was made of."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_engine_cache()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.engine"

    def load(self, key: str) -> bytes | None:
        p = self.path(key)
        return p.read_bytes() if p.is_file() else None

    def store(self, key: str, plan: bytes, meta: dict) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        p = self.path(key)
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(plan)
        os.replace(tmp, p)
        p.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        return p

    def evict(self, key: str) -> None:
        for p in (self.path(key), self.path(key).with_suffix(".json")):
            p.unlink(missing_ok=True)


