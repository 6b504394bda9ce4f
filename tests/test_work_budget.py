"""The node's memory estimate (pipeline.admission.WorkBudget) counts the graphs an exported scorer holds (one per
frame size a camera holds, onnxruntime/tensorrt), not on the torch scorer: in `memory_estimate_mb`, the room left for
waiting frames, and the pixels left for a frame's scoring, whose size may need a graph of its own. Small stand-in
constants; the node without sockets and the tests' fast fake detector."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from edge.config import SSDNetConfig
from edge.detector import Detector as SSDNetDetector
from edge.sizes import footprint_mb, knn_dim
from pipeline import admission
from pipeline import protocol as P
from pipeline.admission import Rejected, WorkBudget
from pipeline.config import NodeConfig
from pipeline.node import EdgeNode
from test_pipeline_node import FastDetector

MB = 2**20


@pytest.fixture(autouse=True)
def small_costs(monkeypatch):
    """A model costs nothing; scoring 100 bytes a pixel; a graph 1 MB + 100 bytes a pixel."""
    for name, value in (("MODEL_MB", 0.0), ("WORK_FIXED_MB", 0.0), ("WORK_BYTES_PER_PIXEL", 100.0),
                        ("GRAPH_FIXED_MB", 1.0), ("GRAPH_BYTES_PER_PIXEL", 100.0)):
        monkeypatch.setattr(admission, name, value)


def node(graph_per_size: bool, budget_mb: float | None = None, **cfg) -> EdgeNode:
    n = EdgeNode(NodeConfig(memory_budget_mb=budget_mb, min_model_rebuild_s=0, queue_depth=8,
                            ssdnet={"memory": {"size_mb": 0}}, **cfg), (), FastDetector)
    n._graph_per_size = graph_per_size  # what the node sets from an exported scorer (FastDetector has none)
    return n


def frame(height: int, width: int, source: str = "cam0", seq: int = 0) -> P.Message:
    image = np.zeros((height, width, 3), np.uint8)
    return P.Message(P.FrameHeader(v=1, kind="frame", source=source, seq=seq, t_capture=1.0,
                                   payloads=(P.describe("image", image),)), {"image": image})


def graph_mb(height: int, width: int) -> float:
    return 1.0 + height * width * 100 / MB


def test_work_budget_counts_the_graphs_held_and_a_new_size_s_graph():
    budget = WorkBudget(100, model_mb=10, bytes_per_pixel=100, fixed_mb=2)
    graphs = budget.graph_bytes([(256, 256), (128, 128)])
    assert graphs == (graph_mb(256, 256) + graph_mb(128, 128)) * MB
    assert budget.estimate(1, 5 * MB, graphs=graphs) == 15 * MB + graphs
    assert budget.queue_room(1, graphs) == 88 * MB - graphs
    assert budget.pixels_for(1, 0, graphs) == (88 * MB - graphs) / 100
    assert budget.pixels_for(1, 0, graphs, new_graph=True) == (87 * MB - graphs) / 200  # its graph: 1 MB + 100 B/px


@pytest.mark.parametrize("graph_per_size", [True, False])
def test_the_estimate_grows_with_each_graph_held_on_an_exported_scorer_only(graph_per_size):
    n = node(graph_per_size)
    sides = (256, 512, 1024, 128, 64)  # the fifth size lets go of the first's graph (MAX_GRAPHS 4)
    estimates = []
    for side in sides:
        n._detector("cam0", (side, side, 3))
        estimates.append(n.state()["memory_estimate_mb"])
    n._detector("cam1", (256, 256, 3))  # another camera's graphs count too
    estimates.append(n.state()["memory_estimate_mb"])
    if graph_per_size:
        held = [sum(graph_mb(s, s) for s in sides[max(0, i - 3):i + 1]) for i in range(len(sides))]
        assert estimates == [round(mb) for mb in (*held, held[-1] + graph_mb(256, 256))]
    else:
        assert estimates == [0] * (len(sides) + 1)  # torch: no graphs, and the models cost nothing here


@pytest.mark.parametrize("graph_per_size", [True, False])
def test_a_frame_whose_new_graph_does_not_fit_is_downscaled_or_refused(graph_per_size):
    n = node(graph_per_size, budget_mb=40)
    n._detector("cam0", (256, 256, 3))  # cam0 holds a 256x256 graph (7.25 MB)
    # 512x512: 25 MB of scoring fits in 40 MB, but not with its own graph (26 MB) next to the one held
    square, square_why = n._work_image(frame(512, 512))
    wide, wide_why = n._work_image(frame(384, 512))
    same, same_why = n._work_image(frame(256, 256))
    assert same.shape[:2] == (256, 256) and same_why is None  # its graph is held: 6.25 MB of scoring
    if not graph_per_size:  # torch: scored as they are
        assert square.shape[:2] == (512, 512) and wide.shape[:2] == (384, 512) and square_why is wide_why is None
        return
    assert square.shape[:2] == (256, 256) and square_why[0] == "memory_budget"  # at the size whose graph it holds
    assert wide_why[0] == "memory_budget" and "7 MB of scorer graphs" in wide_why[1]
    h, w = wide.shape[:2]
    assert abs(w / h - 512 / 384) < 0.01 and graph_mb(256, 256) + graph_mb(h, w) + h * w * 100 / MB <= 40
    with pytest.raises(Rejected) as refused:
        node(graph_per_size, budget_mb=40, oversize="reject")._work_image(frame(512, 512))
    assert refused.value.reason == "memory_budget"


@pytest.mark.parametrize("graph_per_size", [True, False])
def test_the_graphs_held_leave_less_room_for_waiting_frames(graph_per_size):
    n = node(graph_per_size, budget_mb=8)
    n._detector("cam0", (256, 256, 3))  # a 7.25 MB graph
    for seq in range(3):  # 3 x 1.5 MB waiting: room for all of them next to the model, not next to the graph
        n.pending.put(frame(512, 1024, "cam1", seq))
    n._fit_queue_budget()
    assert n.pending.waiting()["cam1"] == (1 if graph_per_size else 3)
    assert n.counters.rejected["memory_budget"] == (2 if graph_per_size else 0)


class KeepingDetector(FastDetector):
    """The fast fake detector, keeping `kept_surfaces` surfaces as edge.detector.Detector reports them."""

    kept_surfaces = 0


def test_a_camera_s_kept_surfaces_count_once_kept():
    """A camera whose normal moved keeps up to `memory.recall_surfaces` states (weights and memory) beside its own
    (edge.detector, section 52): each counts as one more model once kept, none is reserved before."""
    own = footprint_mb(SSDNetConfig().memory, knn_dim(SSDNetConfig().score))  # MODEL_MB is 0 here
    n = EdgeNode(NodeConfig(queue_depth=8), ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2"), KeepingDetector,
                 input_names=("cam0", "cam1"))
    assert n.budget.model == pytest.approx(own * MB)
    assert n.state()["memory_estimate_mb"] == round(2 * own)  # the configured cameras' models, no kept surface
    n._detector("cam0", (64, 64, 3)).kept_surfaces = 2
    assert n.state()["memory_estimate_mb"] == round(4 * own)
    n._drop("cam0")  # its kept surfaces go with its model; its model stays reserved
    assert n.state()["memory_estimate_mb"] == round(2 * own)


def test_the_ssdnet_detector_reports_the_surfaces_it_keeps():
    detector = object.__new__(SSDNetDetector)  # its shelf alone: no model built
    detector.shelf = deque([None, None], maxlen=2)
    assert detector.kept_surfaces == 2


@pytest.mark.parametrize("new_graph", [True, False])
def test_needed_mb_is_the_budget_where_a_frame_s_pixels_fit(new_graph):
    budget = WorkBudget(100, model_mb=10, bytes_per_pixel=100, fixed_mb=2)
    graphs = budget.graph_bytes([(128, 128)])
    need = budget.needed_mb(3, 4 * MB, 256 * 256, graphs, new_graph)
    assert need == pytest.approx(3 * 10 + 4 + graph_mb(128, 128) + 2 + 6.25 + (graph_mb(256, 256) if new_graph else 0))
    fitting = WorkBudget(need, model_mb=10, bytes_per_pixel=100, fixed_mb=2)
    assert fitting.pixels_for(3, 4 * MB, graphs, new_graph) == pytest.approx(256 * 256)


def test_the_start_up_warning_says_what_the_configured_cameras_need(monkeypatch, caplog):
    monkeypatch.setattr(admission, "MODEL_MB", 10.0)
    inputs = [f"tcp://127.0.0.1:{port}" for port in range(1, 7)]
    EdgeNode(NodeConfig(memory_budget_mb=50, ssdnet={"memory": {"size_mb": 0}}), inputs, FastDetector,
             input_names=[f"cam{i}" for i in range(6)])
    need = 6 * 10 + 32 * 32 * 100 / MB  # 6 models and the scoring of node.min_side^2 pixels
    assert f"6 configured cameras and one frame's scoring: frames will be refused (memory_budget); they need at " \
           f"least {need:.0f} MB" in caplog.text


def test_a_frame_downscaled_by_the_budget_says_what_it_needs_and_the_report_counts_it_per_reason():
    n = EdgeNode(NodeConfig(memory_budget_mb=4, ssdnet={"memory": {"size_mb": 0}}), ("tcp://127.0.0.1:1",),
                 FastDetector, input_names=("cam0",))
    work, (reason, note) = n._work_image(frame(256, 256))
    assert reason == "memory_budget" and work.shape[0] * work.shape[1] * 100 <= 4 * MB
    assert note.endswith(f"65536 pixels need {65536 * 100 / MB:.0f} MB; node.oversize: downscale), its map scaled back")
    n._process(frame(256, 256))
    report = n.report()
    assert report["sources"]["cam0"]["downscaled"] == 1
    assert report["cameras"]["cam0"]["downscaled_by"] == {"memory_budget": 1}


def test_the_estimate_counts_the_models_reserved_for_the_configured_cameras(monkeypatch):
    """The heartbeat's estimate is the one the budget enforces: every configured camera's model, built or not."""
    monkeypatch.setattr(admission, "MODEL_MB", 10.0)
    n = EdgeNode(NodeConfig(queue_depth=8, ssdnet={"memory": {"size_mb": 0}}),
                 ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2"), FastDetector, input_names=("cam0", "cam1"))
    assert n.state()["memory_estimate_mb"] == 20 and not n.detectors
    n._detector("cam0", (64, 64, 3))
    assert n.state()["memory_estimate_mb"] == 20
