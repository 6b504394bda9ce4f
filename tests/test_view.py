"""The live view (pipeline/view.py): its HTTP endpoints, their access rules and bad input, and the page in a real
browser (Debian's headless Chromium driven by selenium): it loads, a camera's overlay appears, an event appears
after a defective frame, and a reconnect resumes (catching up with what came meanwhile). Screenshots are saved
under the test's temporary directory."""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge.config import SSDNetConfig
from pipeline import http_bounds
from pipeline import view as view_module
from pipeline.sink_config import ViewConfig
from pipeline.view import ViewSink
from test_pipeline_node import wait_until
from view_helpers import chromium, heartbeat, result

ROOT = Path(__file__).resolve().parents[1]
FAST = {"score": {"pixel_weight": 0.0, "perceptual_weight": 0.0}}  # configs/self-similarity.yaml


@pytest.fixture
def view():
    sink = ViewSink(ViewConfig(port=0), "line-1")
    yield sink
    sink.close()


def feed(sink: ViewSink, source: str, seq: int, anomalous: bool, log_seq: int | None = None,
         product: str | None = None) -> None:
    res, event = result(source, seq, anomalous, product=product)
    sink.handle(res, time.time())
    if event is not None:
        sink.handle(event, time.time(), log_seq)


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_the_page_keeps_the_cameras_heard_from_last_and_counts_those_it_forgot(monkeypatch):
    """Every camera name ever heard stayed in the page's state (its last frame and map each): a view following a node
    restarted with cameras that name themselves anew each run grew without end, and so did every snapshot."""
    monkeypatch.setattr(view_module, "MAX_CAMERAS", 4)
    state = view_module.LiveState(ViewConfig())
    for i in range(4):
        state.update(result(f"cam{i}", 0, False, size=32)[0], time.time())
    state.update(heartbeat("cam0"), time.time())  # heard again: the most recent now
    for i in range(4, 7):
        state.update(result(f"cam{i}", 0, False, size=32)[0], time.time())
    snap = state.snapshot()
    assert sorted(snap["cameras"]) == ["cam0", "cam4", "cam5", "cam6"] and snap["cameras_forgotten"] == 3
    assert state.frame_png("cam1") is None and state.frame_png("cam6") is not None


def test_endpoints_serve_the_page_its_files_state_and_frames(view):
    feed(view, "cam0", 0, False)
    feed(view, "cam0", 1, True, log_seq=1)
    status, body, headers = get(view.url)
    assert status == 200 and b"static/view.js" in body and "default-src 'none'" in headers["Content-Security-Policy"]
    assert not re.findall(rb"https?://", body)  # nothing from elsewhere: no CDN
    for name in ("view.js", "view.css"):
        status, body, _ = get(view.url + "static/" + name)
        assert status == 200 and set(re.findall(rb"https?://[^\s\"']+", body)) <= {b"http://www.w3.org/2000/svg"}
    state = json.loads(get(view.url + "api/state")[1])
    cam = state["cameras"]["cam0"]
    assert cam["result"]["seq"] == 1 and cam["result"]["label"] == "anomalous" and cam["events"][0]["log_seq"] == 1
    assert [h[0] for h in cam["history"]] == [0, 1] and cam["latency_ms"]["end_to_end"] > 0
    status, png, headers = get(view.url + "api/frame/cam0")
    assert status == 200 and png.startswith(b"\x89PNG") and headers["Content-Type"] == "image/png"


@pytest.mark.parametrize("path, code", [("/nope", 404), ("/api/frame/unknown", 404), ("/api/frame/..%2F..%2Fetc", 400),
                                        ("/static/../view.py", 404), ("/static/index.html%00", 404),
                                        ("/api/state?" + "&".join(f"a{i}=1" for i in range(50)), 400)])
def test_garbage_paths_get_a_clear_status(view, path, code):
    assert get(view.url.rstrip("/") + path)[0] == code


def test_garbage_requests_methods_and_hosts_cost_only_themselves(view):
    host, port = "127.0.0.1", view.server.port
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),
                 b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                 b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",
                 b"\r\n\r\n", b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"):  # the last one never finishes
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(junk)
            s.settimeout(0.5)
            try:
                s.recv(1024)
            except TimeoutError:
                pass
    for method in ("POST", "PUT", "DELETE"):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request(method, "/api/state", body=b"{}")
        assert conn.getresponse().status == 405
        conn.close()
    assert get(view.url, {"Host": "evil.example:80"})[0] == 403  # DNS rebinding onto the loopback page
    feed(view, "cam0", 0, True, log_seq=1)
    assert get(view.url + "api/state")[0] == 200 and view.server.refused >= 4


def test_a_client_resetting_mid_request_is_counted_not_a_traceback_on_stderr(view, capfd):
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", view.server.port), timeout=10)
        s.sendall(b"GET / HT")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends a reset
        s.close()
    wait_until(lambda: view.server.bad_requests == 3)
    assert "Traceback" not in capfd.readouterr().err
    assert get(view.url + "api/state")[0] == 200


def _closed(s: socket.socket, timeout: float) -> bool:
    """The server closed `s` within `timeout` s (end of file or a reset), whatever it is sent meanwhile."""
    deadline = time.monotonic() + timeout
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            s.sendall(b"a")  # a slow client trickles its request on
            if s.recv(1024) == b"":
                return True
        except TimeoutError:
            pass
        except OSError:
            return True
    return False


def test_a_client_trickling_its_request_is_dropped_after_the_request_time(monkeypatch):
    """The 10 s are for the whole request head, not for each read: a client sending a byte every 0.2 s (a slow loris)
    held a thread for ever, and 6000 of them made the page unreachable and the process spin."""
    monkeypatch.setattr(http_bounds, "REQUEST_S", 1.0)
    sink = ViewSink(ViewConfig(port=0))
    try:
        with socket.create_connection(("127.0.0.1", sink.server.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
            assert _closed(s, timeout=5)
        assert get(sink.url + "api/state")[0] == 200
    finally:
        sink.close()


def test_connections_are_bounded_and_a_slow_one_gives_way_to_a_new_one(monkeypatch):
    """At most view.max_clients + OTHER_CONNECTIONS connections at once (a thread each; before, any number): a new
    one closes the one waiting longest for its request, or is closed at once when none is waiting."""
    monkeypatch.setattr(view_module, "OTHER_CONNECTIONS", 2)
    sink = ViewSink(ViewConfig(port=0, max_clients=1))
    port = sink.server.port
    try:
        held = []
        for _ in range(3):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            held[-1].sendall(b"GET / HTTP/1.1\r\n")  # never finished
            wait_until(lambda: sink.server.connections == len(held))
        assert get(sink.url + "api/state")[0] == 200  # it took the place of the first held one
        assert _closed(held[0], timeout=3) and not _closed(held[2], timeout=0.5)
        for s in held:
            s.close()
        wait_until(lambda: sink.server.connections == 0)
    finally:
        sink.close()
    monkeypatch.setattr(view_module, "OTHER_CONNECTIONS", 0)
    sink = ViewSink(ViewConfig(port=0, max_clients=1))
    try:
        stream = http.client.HTTPConnection("127.0.0.1", sink.server.port, timeout=10)
        stream.request("GET", "/api/stream")
        assert stream.getresponse().readline().startswith(b"retry:")  # a live stream: not waiting for a request
        with socket.create_connection(("127.0.0.1", sink.server.port), timeout=10) as extra:
            assert _closed(extra, timeout=3) and sink.server.refused == 1
        stream.close()
    finally:
        sink.close()


def test_a_client_that_sends_requests_ahead_and_reads_no_answer_gives_its_connection_up(monkeypatch):
    """A client pipelining 3000 requests and reading none held its connection for 10 s an answer (each answer's write
    timed out, and the next request was already in: never waiting, never closable), so max_clients + 32 of them
    shut every browser out (an outside audit). Now a write that times out closes its connection."""
    monkeypatch.setattr(view_module, "OTHER_CONNECTIONS", 0)
    monkeypatch.setattr(view_module._Handler, "timeout", 1)
    sink = ViewSink(ViewConfig(port=0, max_clients=1))
    try:
        hog = socket.socket()
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(("127.0.0.1", sink.server.port))
        hog.sendall(b"GET /static/view.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 3000)
        wait_until(lambda: sink.server.connections == 1)
        wait_until(lambda: sink.server.connections == 0, timeout=10)  # before: held for 3000 answers' timeouts
        assert get(sink.url + "healthz")[0] == 200
        hog.close()
    finally:
        sink.close()


def test_a_cookie_is_read_in_one_pass_and_head_takes_no_live_stream():
    """The cookie header went to http.cookies, whose parser takes quadratic time on backslashes on Pythons before
    3.11.10 / 3.12.6 (CVE-2024-7592: 24,000 of them cost 2.4 s of the view's CPU per request, before the token is
    checked). HEAD /api/stream sent the stream's body and held a live view's place."""
    sink = ViewSink(ViewConfig(host="0.0.0.0", port=0, allow=("127.0.0.0/8",)), "l")
    try:
        base = f"http://127.0.0.1:{sink.server.port}/"
        cookie = f"a=1; ssdnet_view={sink.server.token}; b=2"
        assert get(base + "api/state", {"Cookie": cookie})[0] == 200
        t0 = time.process_time()
        assert get(base + "api/state", {"Cookie": 'ssdnet_view="' + "\\" * 60_000 + '"'})[0] == 401
        assert time.process_time() - t0 < 1.0  # before: tens of seconds of CPU
        conn = http.client.HTTPConnection("127.0.0.1", sink.server.port, timeout=10)
        conn.request("HEAD", "/api/stream", headers={"Cookie": cookie})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"" and sink.state.clients == 0
        conn.close()
    finally:
        sink.close()


def _binds_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _binds_ipv6_loopback(), reason="this machine cannot bind the IPv6 loopback ::1")
def test_the_view_listens_on_an_ipv6_address():
    """`host: "::1"` failed to start ("Address family for hostname not supported"): the server was IPv4 only."""
    sink = ViewSink(ViewConfig(host="::1", port=0))
    try:
        assert sink.url.startswith("http://[::1]:")
        assert get(sink.url + "healthz")[0] == 200
    finally:
        sink.close()


def test_a_page_on_the_network_needs_its_token_then_a_cookie():
    sink = ViewSink(ViewConfig(host="0.0.0.0", port=0, allow=("127.0.0.0/8",)), "l")
    try:
        token = sink.server.token
        assert token and sink.url.endswith(f"?token={token}")
        base = f"http://127.0.0.1:{sink.server.port}/"
        assert get(base)[0] == 401 and get(base + "api/state")[0] == 401 and get(base + "?token=wrong")[0] == 401
        status, _, headers = get(sink.url)
        assert status == 200 and "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert get(base + "api/state", {"Cookie": cookie})[0] == 200
        assert get(base + "api/state", {"Cookie": "ssdnet_view=nope"})[0] == 401
        assert get(base + "api/state", {"Cookie": "\x00\x01;;=="})[0] == 401
    finally:
        sink.close()
    denied = ViewSink(ViewConfig(host="0.0.0.0", port=0, token="a-long-enough-token-123", allow=("10.9.0.0/16",)))
    try:
        assert get(f"http://127.0.0.1:{denied.server.port}/?token=a-long-enough-token-123")[0] == 403
    finally:
        denied.close()


def test_too_many_live_streams_are_refused_and_a_closed_one_frees_its_place():
    sink = ViewSink(ViewConfig(port=0, max_clients=1))
    try:
        first = http.client.HTTPConnection("127.0.0.1", sink.server.port, timeout=10)
        first.request("GET", "/api/stream")
        resp = first.getresponse()
        assert resp.status == 200 and resp.readline().startswith(b"retry:")
        assert get(sink.url + "api/stream")[0] == 503
        resp.close()
        first.close()
        wait_until(lambda: sink.state.clients == 0, timeout=5)
        assert get(sink.url + "api/state")[0] == 200
    finally:
        sink.close()


# ---------------------------------------------------------------- in a real browser


def _text(driver, css: str) -> list[str]:
    """The rendered text of every element matching `css`, read in one script (the page re-renders live: element
    handles found one call earlier can be stale by the next)."""
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])].map(e => e.innerText.trim())",
                                 css)


def _overlay_loaded(driver, camera: str) -> bool:
    return driver.execute_script(
        "const i = document.querySelector(`section[data-camera='${arguments[0]}'] img.overlay`);"
        "return !!i && i.complete && i.naturalWidth > 0 && i.dataset.seq;", camera)


@pytest.mark.slow
def test_the_page_in_chromium_overlay_event_and_reconnect(view, tmp_path):
    driver = chromium(tmp_path)
    try:
        driver.get(view.url)
        wait_until(lambda: _text(driver, "#status") == ["live"], timeout=20)
        assert "Waiting for the first result" in driver.page_source
        feed(view, "cam0", 0, False)
        view.handle(heartbeat("cam0", sent=1), time.time())
        wait_until(lambda: _overlay_loaded(driver, "cam0") == "0", timeout=20)  # a camera's overlay appears
        assert _text(driver, "section[data-camera='cam0'] .verdict") == ["OK"]
        assert _text(driver, "section[data-camera='cam0'] ul.events li") == []
        feed(view, "cam0", 1, True, log_seq=1, product="tile-7")  # a defective frame: its event appears
        wait_until(lambda: len(_text(driver, "section[data-camera='cam0'] ul.events li")) == 1, timeout=20)
        assert "#1 (tile-7)" in _text(driver, "section[data-camera='cam0'] ul.events li")[0]  # with its product
        wait_until(lambda: _overlay_loaded(driver, "cam0") == "1", timeout=20)
        assert _text(driver, "section[data-camera='cam0'] .verdict") == ["ANOMALY"]
        assert any("product tile-7" in t for t in _text(driver, "section[data-camera='cam0'] span.small"))
        driver.save_screenshot(str(tmp_path / "live-view-1.png"))

        view.state.drop_clients()  # the stream breaks; the browser reconnects by itself ...
        feed(view, "cam1", 0, True, log_seq=1)  # ... and catches up with what came meanwhile
        feed(view, "cam0", 2, True, log_seq=2)
        wait_until(lambda: len(_text(driver, "section[data-camera='cam0'] ul.events li")) == 2, timeout=20)
        wait_until(lambda: _overlay_loaded(driver, "cam1") == "0", timeout=20)
        wait_until(lambda: _text(driver, "#status") == ["live"], timeout=20)
        feed(view, "cam0", 3, True, log_seq=3)  # and the live stream resumes
        wait_until(lambda: len(_text(driver, "section[data-camera='cam0'] ul.events li")) == 3, timeout=20)
        log_seqs = driver.execute_script("return [...document.querySelectorAll("
                                         "\"section[data-camera='cam0'] ul.events li\")].map(l => l.dataset.logSeq)")
        assert log_seqs == ["3", "2", "1"]  # newest first, each once
        driver.save_screenshot(str(tmp_path / "live-view-2.png"))
        assert (tmp_path / "live-view-2.png").stat().st_size > 10_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def live_view_screenshot(tmp_path, png, real: bool = False, frames: int = 4) -> dict:
    """The live view of a running line, in Chromium, saved as `png`: the demo's cameras (FastDetector, or with
    `real` the SSDnet detector with configs/self-similarity.yaml's scoring). Writes docs/img/live-view.png:
        SSDNET_SCREENSHOT=docs/img/live-view.png SSDNET_SCREENSHOT_REAL=1 python -m pytest tests/test_view.py -k line
    Returns the run's summary."""
    from pipeline.config import load_line_config
    from pipeline.launcher import run_line, with_view
    from test_pipeline_node import FastDetector

    cfg = with_view(load_line_config(ROOT / "configs" / "demo.yaml"))
    cfg = cfg.model_copy(update={"sinks": cfg.sinks.model_copy(update={"view": ViewConfig(port=0), "console": False}),
                                 "node": cfg.node.model_copy(update={"ssdnet": SSDNetConfig(**FAST)})})
    if not real:
        cfg = cfg.model_copy(update={"sources": tuple(s.model_copy(update={"size": 96}) for s in cfg.sources),
                                     "node": cfg.node.model_copy(update={"threshold": 3.0})})
    views: list = []
    done: dict = {}
    runner = threading.Thread(target=lambda: done.update(run_line(
        cfg, tmp_path / "run", frames=frames, detector_factory=None if real else FastDetector, views=views)))
    runner.start()
    driver = None
    try:
        wait_until(lambda: views, timeout=30)
        driver = chromium(tmp_path)
        driver.get(views[0].url)
        names = [s.name for s in cfg.sources]
        wait_until(lambda: all(_overlay_loaded(driver, n) for n in names), timeout=300 if real else 60)
        runner.join(timeout=600 if real else 120)
        assert done, "the line did not end"
        wait_until(lambda: all(_overlay_loaded(driver, n) == str(frames - 1) for n in names), timeout=30)
        node = driver.find_element("id", "node").text  # the node's heartbeat after the last end of stream
        assert f"scored {frames * len(names)} " in node and "busy" not in node, node
        driver.set_window_size(1280, 1000)
        wait_until(lambda: driver.execute_script("return window.outerWidth") == 1280, timeout=10)
        driver.save_screenshot(str(png))
        return done
    finally:
        if driver is not None:
            driver.quit()
        runner.join(timeout=120)
        for v in views:
            v.close()


@pytest.mark.slow
def test_the_live_view_of_a_running_line(tmp_path):
    """`ssdnet run configs/demo.yaml --view` (run_line with the page on): every camera's overlay and the events
    show in the browser; the screenshot is saved (and, with SSDNET_SCREENSHOT, copied there for the README)."""
    png = tmp_path / "live-view.png"
    summary = live_view_screenshot(tmp_path, png, real=bool(os.environ.get("SSDNET_SCREENSHOT_REAL")))
    assert summary["frames"] == summary["sent"] == 12 and png.stat().st_size > 20_000
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert len(events) == summary["events"]
    if target := os.environ.get("SSDNET_SCREENSHOT"):
        shutil.copyfile(png, target)


def test_ssdnet_view_follows_a_running_node(tmp_path):
    """`ssdnet view ENDPOINT --replay ENDPOINT`: the page of a node running elsewhere, events from its log."""
    from pipeline.view import follow
    from test_pipeline_node import line

    urls: list[str] = []
    stop = threading.Event()  # the test ends the view; timeout_s only bounds a hung run
    with line(tmp_path, frames=10, fps=50, flow="credit", attach_image="always", threshold=2.5,
              event_log=tmp_path / "e.db") as ln:
        t = threading.Thread(target=follow, args=(ln.endpoint, ln.node.replay_endpoint, ViewConfig(port=0), "far"),
                             kwargs={"timeout_s": 120, "on_url": urls.append, "stop": stop}, daemon=True)
        t.start()
        wait_until(lambda: urls, timeout=10)

        def state() -> dict:
            return json.loads(get(urls[0] + "api/state")[1])

        wait_until(lambda: state()["cameras"].get("cam0", {}).get("camera", {}).get("state") == "ended", timeout=20)
        wait_until(lambda: ln.node.counters.source("cam0")["scored"] == 10, timeout=20)  # its last frame is scored
        node_events = ln.node.counters.source("cam0")["events"]  # counted before its frame is counted as scored
        wait_until(lambda: state()["cameras"]["cam0"]["counters"]["events"] == node_events, timeout=10)
        cam = state()["cameras"]["cam0"]
        assert state()["line"] == "far" and cam["counters"]["events"] == ln.node.counters.source("cam0")["events"]
        assert sorted(e["log_seq"] for e in cam["events"]) == list(range(1, cam["counters"]["events"] + 1))
        assert get(urls[0] + "api/frame/cam0")[0] == 200
    stop.set()
    t.join(timeout=20)
    assert not t.is_alive()


def test_a_live_stream_on_a_descriptor_past_1023_still_tells_an_open_browser_from_a_gone_one():
    """The stream checked its browser with select(), which raises ValueError for a descriptor past 1023 (a process
    with many connections open; `ssdnet run` raises its open file limit): the stream's thread ended."""
    code = r'''
import os, resource, socket
from pipeline.view import _Handler
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
a, b = socket.socketpair()
handler = object.__new__(_Handler)
handler.connection = socket.socket(fileno=os.dup2(a.fileno(), 2000))
print(handler._gone())
b.close()
print(handler._gone())
'''
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.split() == ["False", "True"], proc.stderr[-400:]
