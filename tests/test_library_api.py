"""edge/ used as a library, from its docstrings (not through the CLI): the frames a Python program hands
`Detector.process`, its checkpoints, and VGG19 weight files that are not what they should be. Each must score or
say what is wrong, without a warning for nothing."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.fitter import image_to_tensor
from edge.frames import FrameError
from edge.sizes import VGG_BLOCKS
from edge.synthetic import texture
from edge.vgg import VGG19Features, VGGWeightsError


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return texture("grass", 64, np.random.default_rng(0))


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(SSDNetConfig(still_change=None), "cpu")


def test_a_one_cell_grid_is_refused_without_a_degrees_of_freedom_warning(frame):
    """A frame whose self-similarity grid is one cell (knn_cell 64 over a 64 px frame) is refused as too small;
    before, the local statistics' z-score warned `std(): degrees of freedom is <= 0` first, for nothing."""
    det = Detector(SSDNetConfig.model_validate({"score": {"knn_cell": 64}}), "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="too small"):
            det.process(frame)


def test_a_read_only_frame_is_scored_without_a_warning_and_left_as_it_was(frame, detector, monkeypatch):
    """A read-only frame (a memory-mapped file, a frame of a shared buffer) made torch warn that writing to it would
    be undefined behaviour (torch.from_numpy of a non-writable array; torch warns once a process, so the array handed
    to it is checked too)."""
    ro = frame.copy()
    ro.flags.writeable = False
    handed, from_numpy = [], torch.from_numpy
    monkeypatch.setattr(torch, "from_numpy", lambda a: handed.append(a.flags.writeable) or from_numpy(a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = image_to_tensor(ro, torch.device("cpu"), 64)
        detector.reset()
        d = detector.process(ro)
    assert x.shape == (1, 3, 64, 64) and np.isfinite(d.score) and handed and all(handed)
    assert np.array_equal(ro, frame)


def test_a_frame_that_is_no_numpy_array_is_refused_naming_its_type(frame, detector):
    """A torch tensor was refused with "expected a uint8 image, got torch.uint8": uint8 refused for being uint8."""
    with pytest.raises(FrameError, match=r"numpy array, got a torch\.Tensor"):
        detector.process(torch.from_numpy(frame))
    with pytest.raises(FrameError, match="numpy array, got a list"):
        detector.process(frame.tolist())
    with pytest.raises(FrameError, match="uint16.*to_uint8"):
        detector.process(frame.astype(np.uint16) * 257)


@pytest.mark.parametrize("change", [{"layers": ["relu2_2", "relu3_1"]}, {"aggregate": 1}, {"cell": 16},
                                    {"max_cells": 64}], ids=lambda c: next(iter(c)))
def test_restore_refuses_a_memory_made_otherwise_at_the_same_width(frame, change):
    """A checkpoint whose memory rows were made from other VGG19 layers, averaging or cells (`memory.layers`,
    `aggregate`, `cell`, `max_cells`), at the same width (`memory.dims`), was restored without a word and searched
    as if its rows were this config's features."""
    det = Detector(SSDNetConfig(still_change=None), "cpu")
    det.process(frame)
    state = det.state_dict()
    assert state["memory"]["bank"].shape[0] > 0
    name = next(iter(change))
    other = Detector(SSDNetConfig.model_validate({"still_change": None, "memory": change}), "cpu")
    with pytest.raises(ValueError, match=f"memory.{name}"):
        other.restore(state)
    with pytest.raises(ValueError, match=f"memory.{name}"):  # a kept surface's, refused with the checkpoint
        other.restore({**other.state_dict(), "shelf": [{"state": det.surface_state(), "typical": 1.0}]})
    old = {**state, "memory": {k: v for k, v in state["memory"].items() if k != name}}
    Detector(SSDNetConfig(still_change=None), "cpu").restore(old)  # a checkpoint from before the field was saved
    other.restore(other.state_dict())  # its own memory is restored


def _torchvision_vgg19(**change) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's vgg19 key names and shapes (zeros), entries replaced or removed (None)."""
    state, i = {}, 0
    for block in VGG_BLOCKS:
        for c_in, c_out in zip(block[:-1], block[1:], strict=False):
            state[f"features.{i}.weight"] = torch.zeros(c_out, c_in, 3, 3)
            state[f"features.{i}.bias"] = torch.zeros(c_out)
            i += 2
        i += 1  # the max-pool
    state.update(change)
    return {k: v for k, v in state.items() if v is not None}


@pytest.mark.parametrize(("content", "says"), [
    (torch.zeros(3), "not a state dict"),
    ([1, 2], "not a state dict"),
    ({"features.0.weight": torch.zeros(64, 3, 3, 3)}, "has no conv bias features.0.bias"),
    ("no bias", "has no conv bias features.0.bias"),
    ("short bias", r"conv bias of shape \(32,\), expected \(64,\)"),
])
def test_a_vgg_file_that_is_no_vgg19_state_dict_says_what_it_is(tmp_path, content, says):
    """A checkpoint that is a tensor or a list, or lacks a bias, raised AttributeError or KeyError; one with a bias
    of the wrong shape, torch's RuntimeError of a failed copy."""
    if content == "no bias":
        content = _torchvision_vgg19(**{"features.0.bias": None})
    elif content == "short bias":
        content = _torchvision_vgg19(**{"features.0.bias": torch.zeros(32)})
    path = tmp_path / "vgg19.pth"
    torch.save(content, path)
    with pytest.raises(VGGWeightsError, match=says) as e:
        VGG19Features(path)
    assert str(path) in str(e.value)


def test_a_state_dict_kept_in_memory_stays_the_checkpoint_it_was():
    """`state_dict()` handed out the optimizer's live moments: a checkpoint kept in memory (not saved) changed with
    every later fit step, and restoring it gave a warm fit from moments the weights beside them never had."""
    det = Detector(SSDNetConfig(), "cpu")

    def step() -> None:  # a fit step's optimizer update, without the fit (seconds on a busy CPU)
        for p in det.fitter.model.parameters():
            p.grad = torch.ones_like(p)
        det.fitter.optimizer.step()

    step()
    state = det.state_dict()
    moments = [v.clone() for s in state["optimizer"]["state"].values() for v in s.values()]
    step()
    assert moments and all(torch.equal(a, b) for a, b in zip(
        moments, [v for s in state["optimizer"]["state"].values() for v in s.values()], strict=True))
