"""Credit flow (pipeline/flow.py) across a camera restart without an end of stream (a crash): a new camera, not a
lost grant; a lost grant and a restarted node are served as before."""
from __future__ import annotations

import types

import pytest

from pipeline import flow
from pipeline.flow import CREDIT_COUNTER, Credits
from test_flow import grants


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """pipeline.flow's monotonic clock, moved by hand: `clock.t += 5`."""
    fake = types.SimpleNamespace(t=1000.0)
    fake.monotonic = lambda: fake.t
    monkeypatch.setattr(flow, "time", fake)
    return fake


def stream(c: Credits, source: str, frames: int) -> None:
    """`source` sends and the node finishes frames 0..frames-1, each on its grant."""
    for seq in range(frames):
        assert grants(c) == [(source, seq)]
        c.heartbeat(source, seq - 1, {CREDIT_COUNTER: seq})
        c.received(source, seq)
        c.done(source, seq)


def test_a_camera_restarted_without_end_of_stream_gets_a_fresh_grant_not_its_predecessor_s(clock):
    c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
    c.heartbeat("cam", -1, {CREDIT_COUNTER: -1})
    stream(c, "cam", 113)
    assert grants(c) == [("cam", 113)]  # then the camera is killed: no end of stream
    clock.t += 3.0
    c.heartbeat("cam", -1, {CREDIT_COUNTER: -1})  # its successor: nothing sent, no credit
    assert grants(c) == [("cam", 0)]  # frame 0 only, not 0..113 at once
    clock.t += 2.0
    c.heartbeat("cam", -1, {CREDIT_COUNTER: -1})  # that grant got lost: sent again, still from its own numbering
    assert grants(c) == [("cam", 0)]
    c.received("cam", 0)
    c.done("cam", 0)
    assert grants(c) == [("cam", 1)]
    assert c.inflated_claims == 0


def test_the_predecessor_s_last_frame_finished_after_the_restart_grants_nothing(clock):
    c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
    c.heartbeat("cam", -1, {CREDIT_COUNTER: -1})
    stream(c, "cam", 112)
    assert grants(c) == [("cam", 112)]
    c.received("cam", 112)  # being scored when the camera is killed and restarts
    clock.t += 1.5
    c.heartbeat("cam", -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("cam", 0)]
    c.done("cam", 112)
    assert grants(c) == []  # not upto 113
    c.received("cam", 0)
    c.done("cam", 0)
    assert grants(c) == [("cam", 1)]


def test_a_restarted_camera_frees_the_budget_its_predecessor_held(clock):
    c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
    c.heartbeat("a", -1, {CREDIT_COUNTER: -1})
    stream(c, "a", 5)
    c.heartbeat("b", -1, {CREDIT_COUNTER: -1})  # waits: a holds the budget with its grant of frame 5
    assert grants(c) == [("a", 5)]
    clock.t += 0.5
    c.heartbeat("a", -1, {CREDIT_COUNTER: -1})  # a restarted, long before its old grant would expire
    [(first, upto)] = grants(c)  # the budget is free: a new camera like b, one of them gets frame 0
    assert first in ("a", "b") and upto == 0
    c.received(first, 0)
    c.done(first, 0)
    assert grants(c) == [("b" if first == "a" else "a", 0)]
    assert c.expired_grants == 0


def test_a_running_camera_s_lost_grant_is_still_sent_again(clock):
    c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
    c.heartbeat("cam", -1, {CREDIT_COUNTER: -1})
    stream(c, "cam", 10)
    assert grants(c) == [("cam", 10)]
    clock.t += 1.5
    c.heartbeat("cam", 9, {CREDIT_COUNTER: 9})  # same camera: its seq is the last frame received, its credit behind
    assert grants(c) == [("cam", 10)]
    clock.t += 1.5
    c.heartbeat("cam", 9, {CREDIT_COUNTER: -1})  # or none at all
    assert grants(c) == [("cam", 10)]


def test_a_restarted_node_gives_a_running_camera_its_turn(clock):
    c = Credits("node2", budget=1, stale_s=15.0, resend_s=1.0)
    c.heartbeat("cam", 49, {CREDIT_COUNTER: 50})  # holds the old node's credit for frame 50
    assert grants(c) == [("cam", 50)] and c.inflated_claims == 1
    c.received("cam", 50)
    c.done("cam", 50)
    assert grants(c) == [("cam", 51)]
    clock.t += 1.5
    c.heartbeat("cam", 50, {CREDIT_COUNTER: 50})  # lost: sent again
    assert grants(c) == [("cam", 51)]


def test_a_camera_restarted_before_its_granted_frame_came_is_told_by_its_new_run(clock):
    """Killed before the frame of its grant came: its successor's heartbeat (seq -1) is not behind the last frame the
    node received (none), so it was taken for the same camera and its predecessor's grant held the budget. Named as a
    new run (the header's `run`) it is a new camera: level, nothing outstanding."""
    c = Credits("node", budget=1, stale_s=15.0, resend_s=1.0)
    c.heartbeat("a", -1, {CREDIT_COUNTER: -1})
    assert grants(c) == [("a", 0)]
    c.heartbeat("b", -1, {CREDIT_COUNTER: -1})  # waits: a holds the budget with its grant of frame 0
    assert grants(c) == []
    clock.t += 0.5
    c.heartbeat("a", -1, {CREDIT_COUNTER: -1}, restarted=True)  # a started again, long before its grant would expire
    [(first, upto)] = grants(c)
    assert first in ("a", "b") and upto == 0 and c.expired_grants == 0
