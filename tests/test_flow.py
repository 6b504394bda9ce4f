"""Credit-based flow control (pipeline/flow.py): a recorded source is paced by the node instead of queueing."""
from __future__ import annotations

import threading
import time
import types

import pytest

from pipeline import flow
from pipeline.config import FolderSourceConfig, SyntheticSourceConfig, VideoSourceConfig
from pipeline.flow import CREDIT_COUNTER, CreditGate, Credits, decode_grant, encode_grant
from pipeline.stats import stage_latencies
from test_pipeline_node import FastDetector, collect, line, results, subscriber


def grants(credits: Credits) -> list[tuple[str, int]]:
    return [decode_grant(b) for _, b in credits.outgoing()]


def test_grants_round_trip_and_garbage_is_ignored():
    assert decode_grant(encode_grant("cam0", 7, "node")) == ("cam0", 7)
    for junk in (b"", b"\x01frame/", b"\x02ssdnet-credit", b"\x02ssdnet-credit\xc1",
                 b"\x02ssdnet-credit\x93\x01\x02\x03",
                 encode_grant("bad name!", 1, "n"), encode_grant("cam0", -5, "n"), b"\x02ssdnet-credit" + b"x" * 600):
        assert decode_grant(junk) is None
    gate = CreditGate("cam0")
    assert not gate.on_upstream(encode_grant("cam1", 3, "n")) and gate.upto == -1
    assert gate.on_upstream(encode_grant("cam0", 3, "n")) and gate.upto == 3
    gate.on_upstream(encode_grant("cam0", 1, "n2"))  # grants are absolute: a smaller one changes nothing
    assert gate.upto == 3
    halt = threading.Event()
    assert gate.wait(3, halt)
    halt.set()
    assert not gate.wait(4, halt)


def test_credits_in_turn_within_budget_resent_when_lost_and_freed_by_dead_cameras():
    c = Credits("node", budget=2, stale_s=0.2, resend_s=0.0)
    for cam in ("a", "b", "c"):
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("a", 0), ("b", 0)]  # two outstanding at most
    c.heartbeat("x", 5, {})  # a live camera (no credit counter) is not flow-controlled
    c.received("a", 0)
    c.done("a", 0)
    assert grants(c) == [("c", 0)]
    c.done("b", 0)
    assert grants(c) == [("a", 1)]
    c.heartbeat("a", 0, {CREDIT_COUNTER: 0})  # a's camera never got upto 1: sent again
    assert grants(c) == [("a", 1)]
    c.heartbeat("c", 3, {CREDIT_COUNTER: 3})  # c sent frames 0..3 (an earlier node's credit) that never arrived
    c.ended("a")
    assert ("b", 1) in grants(c)


def test_a_camera_s_last_frame_holds_the_budget_until_scored_though_its_end_of_stream_came_first():
    """The receiver hears a camera's end of stream while the worker still scores its last frame: freeing the budget
    then granted the other cameras at once (the demo's three last frames were sent together, the last scored 2 s
    after its capture against 0.4 s for the others)."""
    c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
    for cam in ("a", "b"):
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("a", 0)]
    c.received("a", 0)
    c.ended("a")  # its last frame: still being scored
    assert grants(c) == []
    c.done("a", 0)
    assert grants(c) == [("b", 0)]
    c.received("b", 0)
    c.done("b", 0)
    assert grants(c) == [("b", 1)]  # "a" is gone: no grant for a camera that ended
    c.heartbeat("a", -1, {CREDIT_COUNTER: -1})  # its next stream (a new run) asks again and waits its turn
    c.received("b", 1)
    c.done("b", 1)
    assert grants(c) == [("a", 0)]
    c.ended("a")  # it ends before it sends: a grant never used holds nothing
    assert grants(c) == [("b", 2)]



@pytest.fixture
def clock(monkeypatch):
    """pipeline.flow's monotonic clock, moved by hand: `clock.t += 5`."""
    fake = types.SimpleNamespace(t=1000.0)
    fake.monotonic = lambda: fake.t
    monkeypatch.setattr(flow, "time", fake)
    return fake


def test_an_inflated_credit_claim_is_counted_and_does_not_starve_other_cameras(clock):
    c = Credits("node", budget=2, stale_s=5.0, resend_s=0.0)
    c.heartbeat("liar", -1, {CREDIT_COUNTER: 10**12})  # claims credit this node never granted, sends nothing
    assert c.inflated_claims == 1
    c.heartbeat("good", -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("liar", 0), ("good", 0)]  # the liar waits for its turn like any new camera
    for seq in range(10):
        c.received("good", seq)
        c.done("good", seq)
        c.heartbeat("liar", -1, {CREDIT_COUNTER: 10**12})
        assert grants(c) == [("good", seq + 1)]
    assert c.inflated_claims == 11


def test_a_grant_no_frame_comes_for_stops_holding_the_budget_after_stale_s(clock):
    c = Credits("node", budget=1, stale_s=5.0, resend_s=1.0)
    c.heartbeat("idle", -1, {CREDIT_COUNTER: -1})
    c.heartbeat("good", -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("idle", 0)]
    clock.t += 4.0
    c.heartbeat("idle", -1, {CREDIT_COUNTER: 0})  # holds its grant, sends nothing
    c.heartbeat("good", -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [] and c.expired_grants == 0
    clock.t += 2.0
    c.heartbeat("idle", -1, {CREDIT_COUNTER: 0})
    assert grants(c) == [("good", 0)] and c.expired_grants == 1
    for seq in range(3):  # the idle camera gets nothing more while it sends nothing, even claiming a lost grant
        c.received("good", seq)  # at once
        clock.t += 2.0
        c.heartbeat("idle", -1, {CREDIT_COUNTER: -1 if seq == 1 else 0})
        c.heartbeat("good", seq, {CREDIT_COUNTER: seq})
        c.done("good", seq)
        assert [g for g in grants(c) if g != ("idle", 0)] == [("good", seq + 1)]
    assert c.expired_grants == 1  # counted once per grant
    c.received("idle", 0)  # it sends its frame at last: it holds the budget again until that frame is done
    c.done("good", 3, 5.0 - flow.HOLD_ALLOWANCE_S)  # as much node time as idle was charged for holding its grant
    assert grants(c) == []
    c.done("idle", 0)
    assert grants(c) == [("idle", 1)]  # back in turn: it has waited longest
    c.received("idle", 1)
    c.done("idle", 1)
    assert grants(c) == [("good", 4)]


def stream(c: Credits, cost: dict[str, float], n: int, clock: types.SimpleNamespace | None = None) -> list[str]:
    """Budget 1: `n` grants, each camera sending its frame at once and the node spending `cost[camera]` s on it
    (with `clock`: 0.5 s per frame, the camera granted heartbeating); the cameras granted, in order."""
    order = []
    for _ in range(n):
        (source, seq), = grants(c)
        order.append(source)
        if clock is not None:
            clock.t += 0.5
            c.heartbeat(source, seq - 1, {CREDIT_COUNTER: seq})
        c.received(source, seq)
        c.done(source, seq, cost[source])
    return order


def fair(order: list[str], cost: dict[str, float]) -> bool:
    """At every point of `order` the cameras have used the same node time, give or take the largest frame's."""
    used = dict.fromkeys(cost, 0.0)
    for cam in order:
        used[cam] += cost[cam]
        if max(used.values()) - min(used.values()) > max(cost.values()):
            return False
    return True


def test_credit_goes_to_the_camera_that_used_the_least_node_time_so_large_frames_take_no_more_of_it(clock):
    """The audit's two folder cameras: a 448 px frame costs 0.26 s, a 96 px one 0.022 s. Granted in turn they were
    scored 1:1 and the large one took 92 % of the node; by node time each takes half, ~12 small frames per large."""
    cost = {"big": 0.26, "small": 0.022}
    c = Credits("node", budget=1)
    for cam in cost:
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    order = stream(c, cost, 130)
    assert order.count("small") >= 10 * order.count("big") and fair(order, cost)


def test_a_camera_that_holds_its_grants_is_charged_the_time_it_holds_them_and_starves_no_one(clock):
    """An audit's slow credit camera waited 10 s after each grant before sending a 32 px frame: charged only the
    scoring time, it had the least node time and took every other grant, and an honest camera got 1 frame in 60 s.
    The time it holds the budget is the node's time too."""
    c = Credits("node", budget=1)
    for cam in ("honest", "slow"):
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    start, frames, last = clock.t, {"honest": 0, "slow": 0}, {"honest": -1, "slow": -1}
    while clock.t - start < 60:
        (source, seq), = grants(c)
        clock.t += 10.0 if source == "slow" else 0.001  # the slow camera sits on its grant; the honest one sends
        c.received(source, seq)
        clock.t += 0.1  # scoring either frame
        c.done(source, seq, 0.1)
        frames[source], last[source] = frames[source] + 1, seq
        for cam, sent in last.items():  # both heartbeat: alive
            c.heartbeat(cam, sent, {CREDIT_COUNTER: sent})
    # each has used about half the node: ~4 slow frames of 10 s held, ~200 honest ones of 0.1 s (before: 6 and 6)
    assert frames["slow"] <= 4 and frames["honest"] >= 200


def test_only_a_grant_sent_moments_ago_is_awaited(clock):
    """The node waits briefly for a credit frame on its way (pipeline/pending.py); a camera killed with a grant out,
    or one that sits on its grants, was waited for before every live frame, for good."""
    c = Credits("node", budget=1)
    c.heartbeat("cred", -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("cred", 0)] and c.awaited(0.05) == {"cred"}
    clock.t += 0.2
    assert c.awaited(0.05) == set()
    c.received("cred", 0)
    c.done("cred", 0, 0.1)  # the next grant goes out: awaited again, until its frame comes
    assert grants(c) == [("cred", 1)] and c.awaited(0.05) == {"cred"}
    c.received("cred", 1)
    assert c.awaited(0.05) == set()


def test_a_camera_that_joins_late_starts_level_and_gets_its_share_not_a_burst(clock):
    cost = {"big": 0.5, "small": 0.125}
    c = Credits("node", budget=1)
    for cam in cost:
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    stream(c, cost, 40)  # 5 s of node time used before the third camera comes
    c.heartbeat("late", -1, {CREDIT_COUNTER: -1})
    cost["late"] = 0.125
    order = stream(c, cost, 36)
    assert order.count("big") == 4 and fair(order, cost)  # a third of the node each, 4 small frames per big one


@pytest.mark.parametrize("how", ["end_of_stream", "new_run"])
def test_a_camera_that_starts_again_after_each_frame_keeps_the_node_time_it_used(clock, how):
    """A camera that ended its stream (or restarted its process) after every frame came back level with the camera
    granted last, itself: its frames cost it nothing and it took every turn, the other camera none."""
    cost = {"again": 0.25, "steady": 0.25}
    c = Credits("node", budget=1)
    for cam in cost:
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    order = []
    for _ in range(20):
        (source, seq), = grants(c)
        order.append(source)
        c.received(source, seq)
        c.done(source, seq, cost[source])
        if source == "again":
            if how == "end_of_stream":
                c.ended("again")
                c.heartbeat("again", -1, {CREDIT_COUNTER: -1})
            else:
                c.heartbeat("again", -1, {CREDIT_COUNTER: -1}, restarted=True)
    assert fair(order, cost), order


def test_a_camera_back_after_an_unused_grant_or_a_silence_banks_no_node_time(clock):
    cost = {"a": 0.25, "b": 0.125}
    c = Credits("node", budget=1, stale_s=5.0, resend_s=1.0)
    c.heartbeat("a", -1, {CREDIT_COUNTER: -1})
    c.heartbeat("b", -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("a", 0)]
    while c.expired_grants == 0:  # a holds its grant and sends nothing
        clock.t += 0.5
        c.heartbeat("a", -1, {CREDIT_COUNTER: 0})
        c.heartbeat("b", -1, {CREDIT_COUNTER: -1})
    assert stream(c, {"b": 0.125}, 60) == ["b"] * 60
    c.received("a", 0)  # its frame at last, 7.5 s of b's node time on: more than a's hold (4.5 s), charged
    c.done("a", 0, cost["a"])
    order = stream(c, cost, 12)
    assert fair(order, cost)
    first = stream(c, {"a": 4.0, "b": 0.125}, 4)  # a's next frame is large: b may use 4 s more
    assert first.count("a") == 1
    assert stream(c, {"b": 0.125}, 60, clock=clock) == ["b"] * 60  # a falls silent past stale_s meanwhile
    last = order.count("a") + first.count("a")
    c.heartbeat("a", last, {CREDIT_COUNTER: last})  # back, with 3.5 s of b's time it did not ask for
    assert fair(stream(c, cost, 12), cost)


def test_a_camera_back_after_a_silence_with_a_grant_out_is_not_charged_its_hold_again(clock):
    """A camera that falls silent holding a grant is charged that grant's hold when the node sees it expire, on its
    return at the latest; charged after it was set level, it would owe its hold again after the others had the
    node to themselves (25 s of b's node time here)."""
    cost = {"a": 0.25, "b": 0.125}
    c = Credits("node", budget=1, stale_s=5.0, resend_s=1.0)
    c.heartbeat("a", -1, {CREDIT_COUNTER: -1})
    c.heartbeat("b", -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("a", 0)]
    while not grants(c):  # a falls silent holding its grant: b gets the budget after stale_s
        clock.t += 0.5
        c.heartbeat("b", -1, {CREDIT_COUNTER: -1})
    assert c.expired_grants == 0  # a's grant expired unseen: a was no longer live
    c.received("b", 0)
    c.done("b", 0, cost["b"])
    assert stream(c, {"b": 0.125}, 200, clock=clock) == ["b"] * 200
    c.heartbeat("a", -1, {CREDIT_COUNTER: 0})  # back, and sends
    c.received("a", 0)
    c.done("a", 0, cost["a"])
    assert c.expired_grants == 1 and fair(stream(c, cost, 12), cost)


def test_source_flow_defaults():
    assert FolderSourceConfig(kind="folder", name="f", path=".").credit_flow
    assert VideoSourceConfig(kind="video", name="v", uri="clip.mp4").credit_flow
    for uri in (0, "/dev/video0", "rtsp://cam/1", "v4l2src ! appsink"):
        assert not VideoSourceConfig(kind="video", name="v", uri=uri).credit_flow
    assert not SyntheticSourceConfig(kind="synthetic", name="s").credit_flow
    assert SyntheticSourceConfig(kind="synthetic", name="s", flow="credit").credit_flow
    assert not FolderSourceConfig(kind="folder", name="f", path=".", pattern="push").credit_flow


@pytest.mark.parametrize("flow", ["credit", "none"])
def test_a_slow_node_paces_a_credit_camera_every_frame_scored_no_queue(tmp_path, flow):
    """A camera 10x faster than the node: with credit every frame is scored and none waits in a queue
    (latency = what an operator sees); without, the node keeps the newest frame (conflation)."""
    delay = 0.05
    with line(tmp_path, cameras=(("cam0", 64), ("cam1", 64)), frames=12, fps=200, flow=flow,
              factory=lambda s: FastDetector(delay=delay)) as ln:
        sub = subscriber(ln, (b"anomaly/", b"eos/"))
        msgs = collect(sub, ("cam0", "cam1"), timeout=30)
        for cam in ("cam0", "cam1"):
            c = ln.node.counters.source(cam)
            if flow == "credit":
                assert [m.header.seq for m in results(msgs, cam)] == list(range(12))
                assert (c["received"], c["scored"], c["conflated"], c["lost"]) == (12, 12, 0, 0)
            else:
                assert c["conflated"] > 0 and c["scored"] < 12
        if flow == "credit":
            queue = sorted(stage_latencies(m.header, 0)["queue"] for m in msgs if m.kind == "anomaly")
            assert queue[len(queue) // 2] < 2.5 * delay * 1e3  # waits at most for the other camera's frame
        sub.close()


class SlowFirstFrame(FastDetector):
    """A camera whose model takes `first_s` to make on its first frame (a new model, a checkpoint restored)."""

    def __init__(self, source: str, first_s: float):
        super().__init__(source, delay=0.01)
        self.first_s = first_s

    def process(self, image):
        if self.calls == 0:
            time.sleep(self.first_s)
        return super().process(image)


def test_a_camera_s_first_frame_making_its_model_does_not_hold_its_next_frames_back(tmp_path):
    """Charged to its share of the node, the first frame's second of model making let the cheaper camera take every
    grant until it had used as much: a 64 px credit camera waited 13 s while the other sent its 40 frames."""
    with line(tmp_path, cameras=(("cam0", 64), ("cam1", 64)), frames=12, fps=200, flow="credit",
              factory=lambda s: SlowFirstFrame(s, 1.0 if s == "cam0" else 0.0)) as ln:
        sub = subscriber(ln, (b"anomaly/", b"eos/"))
        order = [(m.source, m.header.seq) for m in collect(sub, ("cam0", "cam1"), timeout=30) if m.kind == "anomaly"]
        sub.close()
    between = order[order.index(("cam0", 0)) + 1:order.index(("cam0", 1))]
    assert len(between) <= 2, order  # before: all of cam1's frames after cam0's first


def test_a_grant_that_expired_unnoticed_is_not_charged_its_whole_wait(clock):
    """A grant expires after its patience (stale_s here), but the node only sees that when it next looks (a heartbeat,
    a frame done): a camera heartbeating rarely (heartbeat_s up to 60 s) whose frame came 20 s after its grant, with
    no look in between, was charged 19.5 s of node time, and the other camera took 157 turns before its next. Past
    its expiry a grant holds nothing: it is charged the 14.5 s up to it."""
    cost = {"a": 0.125, "b": 0.125}
    c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
    for cam in cost:
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("a", 0)]
    clock.t += 10.0  # both heartbeat before the grant's expiry (15 s), then not again
    c.heartbeat("a", -1, {CREDIT_COUNTER: 0})
    c.heartbeat("b", -1, {CREDIT_COUNTER: -1})
    clock.t += 10.0
    c.received("a", 0)  # 20 s after its grant
    c.done("a", 0, cost["a"])
    held = 15.0 - flow.HOLD_ALLOWANCE_S
    assert stream(c, cost, 200).index("a") == (held + cost["a"]) / cost["b"]  # b's turns until it has used as much


def test_a_camera_that_leaves_its_grants_unused_holds_the_budget_shorter_each_time_even_across_restarts(clock):
    c = Credits("node", budget=1, stale_s=8.0, resend_s=1.0)
    held = []
    for _ in range(5):  # asks for credit, never sends, ends its stream and asks again
        c.heartbeat("idle", -1, {CREDIT_COUNTER: -1})
        assert grants(c) == [("idle", 0)]
        start, expired = clock.t, c.expired_grants
        while c.expired_grants == expired:
            clock.t += 0.5
            c.heartbeat("idle", -1, {CREDIT_COUNTER: 0})
        held.append(clock.t - start)
        c.ended("idle")
    assert held == [8.5, 4.5, 2.5, 1.5, 1.5]
    c.heartbeat("idle", -1, {CREDIT_COUNTER: -1})
    clock.t += 3.0
    c.received("idle", 0)  # a frame at last, 3 s after its grant: its patience is whole again (4 x 3 s > stale_s)
    c.done("idle", 0)
    assert grants(c) == [("idle", 0), ("idle", 1)]
    start = clock.t
    while c.expired_grants == 5:
        clock.t += 0.5
        c.heartbeat("idle", 0, {CREDIT_COUNTER: 1})
    assert clock.t - start == 8.5


def test_a_camera_that_sent_promptly_holds_an_unused_grant_for_a_few_of_its_waits_not_stale_s(clock):
    """Patience follows the camera's own pace: PATIENCE x its typical wait for a frame (at least 2 x resend_s), so
    a camera that sent every frame within 0.1 s of its grant and then holds one holds the budget 2 s, not 15 s; a
    camera that takes 3 s per frame keeps 12 s (each seen at the next 0.5 s tick)."""
    for wait, held in ((0.1, 2.5), (3.0, 12.5)):
        c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
        c.heartbeat("cam", -1, {CREDIT_COUNTER: -1})
        for seq in range(10):
            assert grants(c) == [("cam", seq)]
            clock.t += wait
            c.heartbeat("cam", seq - 1, {CREDIT_COUNTER: seq})  # alive, holding its grant
            c.received("cam", seq)
            c.done("cam", seq)
        assert grants(c) == [("cam", 10)] and c.expired_grants == 0
        start = clock.t
        while c.expired_grants == 0:  # frame 10 never comes
            clock.t += 0.5
            c.heartbeat("cam", 9, {CREDIT_COUNTER: 10})
        assert clock.t - start == pytest.approx(held)


def test_a_new_camera_that_never_sends_holds_the_budget_for_the_slowest_camera_s_pace_not_stale_s(clock):
    """A camera that has not sent on this node's grants has no pace of its own: it gets the slowest camera's
    typical wait (PATIENCE x 0.5 s = 2 s here, seen at the next 0.5 s tick), so a peer that announces a camera and
    never sends holds the other cameras up for 2.5 s, not for stale_s (15 s)."""
    c = Credits("node", budget=1, stale_s=15.0, resend_s=0.5)
    c.heartbeat("good", -1, {CREDIT_COUNTER: -1})
    for seq in range(5):  # a camera that sends 0.5 s after each grant
        assert grants(c) == [("good", seq)]
        clock.t += 0.5
        c.received("good", seq)
        if seq == 4:
            c.heartbeat("ghost", -1, {CREDIT_COUNTER: -1})  # new, waits for its turn
        c.done("good", seq)
    assert grants(c) == [("ghost", 0)]
    start = clock.t
    while c.expired_grants == 0:  # the ghost never sends
        clock.t += 0.5
        c.heartbeat("ghost", -1, {CREDIT_COUNTER: 0})
        c.heartbeat("good", 4, {CREDIT_COUNTER: 4})
    assert clock.t - start == pytest.approx(2.5)
    assert grants(c) == [("good", 5)]


def honest_frames_beside_a_sitter(clock: types.SimpleNamespace, late: bool, seconds: float = 120.0,
                                  lacks: bool = False, loses: bool = False) -> int:
    """Frames an honest camera (sends at once, 0.1 s to score) gets in `seconds` beside a camera that sits on each grant
    (both heartbeating every 0.5 s while it does; with `lacks`, its heartbeats say it lacks the grant, so the node
    sends it again) and sends its frame (with `loses`, says in a heartbeat that it sent it and it was lost) just after
    the node saw the grant expire (`late`) or 14 s after the grant, just before its expiry (patience: stale_s, 15 s,
    once it has sent a few)."""
    c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
    for cam in ("honest", "sitter"):
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    held: dict[str, tuple[int, float, int]] = {}  # camera: (frame granted, when, expired grants then)
    sent, frames, start = {"honest": -1, "sitter": -1}, 0, clock.t
    while clock.t - start < seconds:
        for cam, seq in grants(c):  # a grant sent again is the one held
            held.setdefault(cam, (seq, clock.t, c.expired_grants))
        ready = [cam for cam, (_, at, expired) in held.items()
                 if cam == "honest" or (c.expired_grants > expired if late else clock.t - at >= 14.0)]
        if not ready:  # the sitter holds the budget: time passes, both heartbeat
            clock.t += 0.5
            for cam, last in sent.items():
                claim = held[cam][0] if cam in held and not (lacks and cam == "sitter") else last
                c.heartbeat(cam, last, {CREDIT_COUNTER: claim})
            continue
        seq = held.pop(cam := ready[0])[0]
        sent[cam] = seq
        if loses and cam == "sitter" and seq >= 3:  # once it has sent a few
            c.heartbeat(cam, seq, {CREDIT_COUNTER: seq})
            continue
        c.received(cam, seq)
        clock.t += 0.1
        c.done(cam, seq, 0.1)
        frames += cam == "honest"
    return frames


def test_a_camera_that_sends_just_after_its_grant_expired_is_charged_its_hold_and_starves_no_one(clock):
    """A grant the node saw expire was charged nothing and its camera came back level: a camera that sat on every
    grant up to its expiry (15 s) and sent just after took every other turn, 9 honest frames in 120 s, where one
    sending just before the expiry, charged its hold, left the honest camera half the node (~600). The hold up to
    the expiry is node time it used either way."""
    early = honest_frames_beside_a_sitter(clock, late=False)
    late = honest_frames_beside_a_sitter(clock, late=True)
    assert early >= 500 and late >= 0.85 * early, (early, late)


def test_a_camera_that_claims_each_grant_lost_is_charged_its_hold_all_the_same(clock):
    """A grant the camera's heartbeat says it lacks is sent again (once a resend_s), and a hold was charged from the
    grant's last sending: a camera that sat 14 s on each grant saying it lacked it was charged under 1 s a grant and
    took every other turn. A lost grant's clock starts at its sending again, but no later than 2 x resend_s after its
    first sending (an honest camera's heartbeats bring that sending within it): the liar gains 2 s a grant at most."""
    early = honest_frames_beside_a_sitter(clock, late=False)
    lying = honest_frames_beside_a_sitter(clock, late=False, lacks=True)
    assert lying >= 0.85 * early, (early, lying)


def test_a_camera_whose_grant_was_lost_is_not_charged_the_time_before_it_was_sent_again(clock):
    cost = {"a": 0.125, "b": 0.125}
    c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
    for cam in cost:
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("a", 0)]  # lost on its way
    for _ in range(2):  # a heartbeats every second, lacking it: sent again at the second heartbeat, 1.9 s on
        clock.t += 0.95
        c.heartbeat("a", -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("a", 0)]
    clock.t += 0.4  # a's frame comes 0.4 s after the grant reached it: within HOLD_ALLOWANCE_S, nothing charged
    c.received("a", 0)
    c.done("a", 0, cost["a"])
    assert stream(c, cost, 8) == ["b", "a"] * 4


def test_a_camera_that_says_the_frame_of_its_expired_grant_was_lost_starts_level_and_gets_no_burst(clock):
    """A camera back after leaving its grant unused starts level when its frame comes; one that instead said in its
    heartbeat that the frame was sent and lost (its `seq` past the last frame received) was back in line where it
    left: here 20 s of the honest camera's node time behind, it took 165 grants in a row."""
    cost = {"liar": 0.125, "honest": 0.125}
    c = Credits("node", budget=1, stale_s=5.0, resend_s=1.0)
    for cam in cost:
        c.heartbeat(cam, -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("liar", 0)]
    while c.expired_grants == 0:  # the liar holds its grant, sends nothing
        clock.t += 0.5
        c.heartbeat("liar", -1, {CREDIT_COUNTER: 0})
        c.heartbeat("honest", -1, {CREDIT_COUNTER: -1})
    assert stream(c, {"honest": 0.125}, 200) == ["honest"] * 200  # 25 s of node time; the liar's hold was 4.5 s
    c.heartbeat("liar", 0, {CREDIT_COUNTER: 0})  # "frame 0 was sent": lost, so done
    order = stream(c, cost, 24)
    assert order.count("honest") >= 11 and fair(order, cost), order


def test_a_camera_that_says_each_frame_was_lost_is_charged_its_hold_all_the_same(clock):
    """A heartbeat whose `seq` is past the last frame received says the frame was lost: it counts as done. That
    skipped the hold its arrival is charged: a camera that sat 14 s on each grant and then said its frame was lost
    (once it had sent a few: patience 15 s) left the honest camera 390 frames in 120 s, against 611 beside one that
    sent them. The node waited for the frame until it heard, so that is the hold, as for a frame."""
    early = honest_frames_beside_a_sitter(clock, late=False)
    losing = honest_frames_beside_a_sitter(clock, late=False, loses=True)
    assert losing >= 0.85 * early, (early, losing)
