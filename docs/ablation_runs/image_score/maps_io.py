"""dump.py's maps on disk without pickle: `save` writes tensors, strings and numbers with torch.save (numpy arrays
as tensors), `load` reads them back with torch.load(weights_only=True), which runs no code from the file, and turns
the tensors into numpy arrays again."""
import numpy as np
import torch


def _to_torch(x):
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {k: _to_torch(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_torch(v) for v in x)
    return x


def _to_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.numpy()
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_numpy(v) for v in x)
    return x


def save(maps: dict, path: str) -> None:
    """Write {category: [row dict, ...]} to `path`."""
    torch.save(_to_torch(maps), path)


def load(paths: list[str]) -> dict:
    """The categories of every file in `paths`, merged, arrays as numpy."""
    out = {}
    for p in paths:
        out.update(_to_numpy(torch.load(p, weights_only=True)))
    return out
