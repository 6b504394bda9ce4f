"""Messages for driving the live view without a line, and headless Chromium for the browser tests."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from edge.synthetic import sample
from pipeline import protocol as P
from services import require

CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900")


def result(source: str, seq: int, anomalous: bool, size: int = 96, threshold: float = 0.73,
           rng: np.random.Generator | None = None, product: str | None = None) -> tuple[P.Message, P.Message | None]:
    """An anomaly result (with its frame) and, when anomalous, its event: a texture with a drawn defect."""
    rng = rng or np.random.default_rng(seq)
    image, mask = sample("grass", size, rng, 1.0 if anomalous else 0.0)
    amap = (0.45 + 0.05 * rng.standard_normal((size, size))).astype(np.float32)
    if anomalous:
        amap[mask > 0] = 1.0
    score = 1.0 if anomalous else 0.5
    regions = ()
    if anomalous and mask.any():
        ys, xs = np.nonzero(mask)
        x, y = int(xs.min()), int(ys.min())
        regions = (P.Region(bbox=(x, y, int(xs.max()) - x + 1, int(ys.max()) - y + 1), area=int(mask.sum()),
                            peak=1.0),)
    now = time.time()
    stamps = {"capture": now - 0.3, "received": now - 0.29, "fitted": now - 0.1, "scored": now - 0.02,
              "published": now - 0.01}
    q, desc = P.quantize_map(amap, "float16")
    fields = dict(source=source, seq=seq, t_capture=now - 0.3, stamps=stamps, score=score, threshold=threshold,
                  regions=regions, model_version=seq + 1, product=product)
    res = P.Message(P.AnomalyHeader(kind="anomaly", payloads=(desc, P.describe("image", image)),
                                    label="anomalous" if anomalous else "normal", fit_steps=3, fit_ms=150.0,
                                    score_ms=80.0, **fields), {"map": q, "image": image})
    return res, (P.Message(P.EventHeader(kind="event", **fields)) if anomalous else None)


def heartbeat(source: str, role: str = "source", state: str = "streaming", **counters: int) -> P.Message:
    return P.Message(P.HeartbeatHeader(kind="heartbeat", source=source, seq=-1, t_capture=time.time(), role=role,
                                       state=state, last_frame_age=0.4, counters=counters))


def chromium(tmp_path: Path):
    """A selenium driver on Debian's chromium + chromedriver (no download: both paths given, offline)."""
    paths = require("chromium", "chromedriver")
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager look for drivers on the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = paths["chromium"]
    for flag in (*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(paths["chromedriver"]), options=opts)
    driver.set_page_load_timeout(30)
    return driver
