"""A line that changes products and says so (the frame header's `product`): the node keeps a model per camera and
product, through node.checkpoint_dir; a camera names its product from its config or a file its controller writes."""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from adversary import control_parts, frame_parts, node_line, until_eos
from pipeline import protocol as P
from pipeline.config import LineConfig, SyntheticSourceConfig
from pipeline.sources import Camera, Capture, ProductName
from pipeline.stats import StreamStats
from test_pipeline_node import wait_until
from view_helpers import result


def scored(msgs, source: str) -> list[tuple[str | None, int]]:
    return [(m.header.product, m.header.model_version) for m in msgs if m.kind == "anomaly" and m.source == source]


@pytest.mark.parametrize("checkpoints", [True, False])
def test_a_changeover_resumes_the_products_model(tmp_path, checkpoints, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.node")
    ckpt = {"checkpoint_dir": tmp_path / "ckpt"} if checkpoints else {}
    with node_line(tmp_path, frames=5, connect_cameras={0: ["line"]}, max_products=2, **ckpt) as ln:
        # brick's 2 frames are too few to be saved at a changeover (checkpoints.SAVE_AFTER_FRAMES): no flip-flop writes
        products = ["gravel"] * 5 + ["brick"] * 2 + ["gravel"] * 2 + ["brick"] + [None] + ["grass", "bad/name"]
        for seq, product in enumerate(products):
            ln.intruders[0].send(frame_parts("line", seq=seq, product=product))
        wait_until(lambda: ln.node.counters.source("line")["received"] == 11
                   and ln.node.counters.rejected["product_limit"] == 1 and ln.node.counters.bad_messages == 1)
        msgs = until_eos(ln.sub)  # cam0's end
        wait_until(lambda: ln.node.counters.source("line")["scored"] == 11)
        deadline = time.monotonic() + 10  # under load the last results can come after cam0's end (2026-12-07)
        while len(scored(msgs, "line")) < 11 and time.monotonic() < deadline:
            if (msg := ln.sub.recv(20)) is not None:
                msgs.append(msg)
        got = scored(msgs, "line")
        # the model version is the fake detector's frame count: a resumed model goes on counting, with or without
        # checkpoint_dir (then from the node's scratch folder)
        assert got == [*(("gravel", v) for v in range(1, 6)), ("brick", 1), ("brick", 2),
                       ("gravel", 6), ("gravel", 7), ("brick", 1), (None, 1)]
        c = ln.node.counters.source("line")
        assert c["product_changes"] == 4 and c["rejected"] == 1  # grass: a third product over max_products 2
    lines = [r.getMessage() for r in caplog.records if "product" in r.getMessage() and "->" in r.getMessage()]
    back = next(line for line in lines if "product brick -> gravel" in line)
    folder = Path(re.search(r"resumes from (\S+)line@gravel\.pt", back).group(1))
    assert all(("node.checkpoint_dir unset" in line) != checkpoints for line in lines), lines
    if checkpoints:  # cam0: its 5 frames, saved at its end of stream; the unnamed product's 1 frame: too few
        assert folder == tmp_path / "ckpt"
        assert sorted(p.name for p in folder.iterdir()) == ["cam0.pt", "line@gravel.pt"]
    else:  # the scratch folder lived as long as the node
        assert folder.name.startswith("ssdnet-models-") and not folder.exists()


def test_the_node_saves_each_model_at_a_cameras_end_and_at_its_stop(tmp_path):
    ckpt = tmp_path / "ckpt"
    with node_line(tmp_path, frames=7, connect_cameras={0: ["line"]}, checkpoint_dir=ckpt, checkpoint_every=50) as ln:
        for seq in range(6):
            ln.intruders[0].send(frame_parts("line", seq=seq, product="tile"))
        until_eos(ln.sub)
        wait_until(lambda: ln.node.counters.source("line")["scored"] == 6)
        assert (ckpt / "cam0.pt").is_file() and not (ckpt / "line@tile.pt").exists()  # cam0 ended, line streams on
    # the node stopped: line's model saved as it was (6 frames), not only at checkpoint_every
    assert int(torch.load(ckpt / "line@tile.pt", weights_only=True)["calls"][0]) == 6
    assert int(torch.load(ckpt / "cam0.pt", weights_only=True)["calls"][0]) == 7


def test_without_checkpoint_dir_a_camera_back_after_its_end_resumes_within_the_run(tmp_path):
    with node_line(tmp_path, frames=5, connect_cameras={0: ["line"]}) as ln:
        for seq in range(6):
            ln.intruders[0].send(frame_parts("line", seq=seq))
        ln.intruders[0].send(control_parts("eos", "line", seq=5, frames=6))
        until_eos(ln.sub, ("cam0", "line"))
        for seq in range(6, 8):  # the same camera streams again
            ln.intruders[0].send(frame_parts("line", seq=seq))
        wait_until(lambda: ln.node.counters.source("line")["scored"] == 8)
        assert ln.node.detectors["line"].calls == 8  # its 6 frames before its end of stream, then 2
        folder = ln.node.checkpoints.path("line", None, scratch=True).parent
        assert sorted(p.name for p in folder.iterdir()) == ["cam0.pt", "line.pt"]
    assert not folder.exists()  # the node's stop deleted it


def test_without_checkpoint_dir_the_scratch_checkpoints_stay_within_their_bound(tmp_path, caplog):
    """A camera naming product after product (a peer may name 64) fills the temporary folder a checkpoint each: held
    to node.scratch_checkpoint_mb, the least recently saved of the camera holding the most go first, the one just saved
    never; another camera's model stays (before, cam0's, the oldest, was dropped: it started afresh when back)."""
    size = len(_checkpoint_bytes())
    with node_line(tmp_path, frames=5, connect_cameras={0: ["line"]}, scratch_checkpoint_mb=3.5 * size / 2**20) as ln:
        until_eos(ln.sub)  # cam0's checkpoint first: the oldest
        seq = 0
        for product in ("a", "b", "c", "d", "e"):
            for _ in range(6):  # enough frames to be saved at the changeover
                ln.intruders[0].send(frame_parts("line", seq=seq, product=product))
                seq += 1
            wait_until(lambda n=seq: ln.node.counters.source("line")["scored"] == n)
        ln.intruders[0].send(frame_parts("line", seq=seq, product="a"))  # back: "e" saved, "a" long dropped
        wait_until(lambda: ln.node.counters.source("line")["scored"] == seq + 1)
        folder = ln.node.checkpoints.path("line", None, scratch=True).parent
        kept = sorted(p.name for p in folder.glob("line@*.pt"))
        assert kept == ["line@d.pt", "line@e.pt"]
        assert sorted(p.name for p in folder.iterdir()) == ["cam0.pt", *kept]
        assert "over node.scratch_checkpoint_mb" in caplog.text


def _checkpoint_bytes() -> bytes:
    """What the tests' fast detector's checkpoint weighs on disk."""
    import io

    from test_pipeline_node import FastDetector
    buf = io.BytesIO()
    torch.save(FastDetector().state_dict(), buf)
    return buf.getvalue()


def test_a_product_name_is_checked_like_a_camera_name():
    image = np.zeros((32, 32, 3), np.uint8)
    header = dict(kind="frame", source="cam0", seq=0, t_capture=1.0, payloads=(P.describe("image", image),))
    assert P.FrameHeader(**header, product="tile-7:A").product == "tile-7:A"
    for bad in ("", "a b", "x" * 65, "../etc"):
        with pytest.raises(ValueError):
            P.FrameHeader(**header, product=bad)


def test_a_product_file_is_read_again_when_the_controller_rewrites_it(tmp_path, caplog):
    path = tmp_path / "product"
    cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", product="tile", product_file=path)
    name = ProductName(cfg)
    assert name() == "tile"  # no file yet: the configured product, with a warning
    assert "the product stays 'tile'" in caplog.text
    for product in ("brick", "grass"):  # the same size: told apart by the file, not its length
        tmp = tmp_path / "product.tmp"
        tmp.write_text(product + "\n")
        os.replace(tmp, path)
        assert name() == product
    path.write_text("not a/name")
    assert name() == "grass" and "not a product name" in caplog.text
    path.write_text("gravel")
    assert name() == "gravel"


def test_a_product_file_that_is_no_regular_file_keeps_the_product_and_blocks_nothing(tmp_path, caplog):
    """A FIFO as `product_file` (a controller's pipe): opening it blocked the camera's reader until something wrote
    to it, its heartbeats still saying `streaming` (an outside audit)."""
    path = tmp_path / "product"
    os.mkfifo(path)
    name = ProductName(SyntheticSourceConfig(kind="synthetic", name="cam0", product="tile", product_file=path))
    got: list[str | None] = []
    reader = threading.Thread(target=lambda: got.append(name()), daemon=True)
    reader.start()
    reader.join(5)
    assert got == ["tile"] and "not a regular file; the product stays 'tile'" in caplog.text


def test_a_cameras_frames_carry_its_product():
    cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=32, product="tile-7")
    camera = Camera(cfg)
    cap = Capture(np.zeros((32, 32, 3), np.uint8), None, 1.0, camera.product())
    assert camera._frame(0, cap).header.product == "tile-7"
    assert Camera(SyntheticSourceConfig(kind="synthetic", name="cam1")).product() is None


def test_the_summary_counts_each_products_frames_and_events():
    stats = StreamStats()
    for seq, product in enumerate(["gravel", "gravel", "brick", "brick", "brick"]):
        for msg in result("cam0", seq, anomalous=seq in (1, 3), product=product):
            if msg is not None:
                stats.add(msg, time.time())
    stats.add(result("cam1", 0, anomalous=True)[0], time.time())  # a camera that names no product
    sources = stats.summary()["sources"]
    assert sources["cam0"]["products"] == {"brick": {"frames": 3, "events": 1}, "gravel": {"frames": 2, "events": 1}}
    assert sources["cam0"]["frames"] == 5 and "products" not in sources["cam1"]


def test_the_readme_changeover_example_is_a_valid_line_config():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"\*\*Product changeovers\.\*\*.*?```yaml\n(.*?)```", text, re.S).group(1)
    cfg = LineConfig.model_validate(yaml.safe_load(block))
    assert cfg.sources[0].product_file == Path("/run/line/product") and cfg.node.checkpoint_dir is not None
