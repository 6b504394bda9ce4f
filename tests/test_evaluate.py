"""`ssdnet eval` and `ssdnet score` end to end on a tiny MVTec-style folder built from real textures."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from edge.config import load_config
from edge.synthetic import draw_defect, texture
from tools.cli import main
from tools.eval.dataset import Sample
from tools.eval.evaluate import by_defect_type, evaluate
from tools.eval.metrics import pixel_auroc

TINY_YAML = """
model: {base_channels: 8}
fit: {steps: 4, warm_steps: 2, scales: [2, 4]}
loss: {vgg_layers: [relu1_2]}
score: {perceptual_weight: 1.0, vgg_layers: [relu1_2]}
"""
KEYS = {"pixel_auroc", "pixel_auprc", "aupro", "pixel_f1_max", "image_auroc", "seconds_per_image"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvtec")
    rng = np.random.default_rng(0)
    for cat in ("brick", "gravel"):
        good, bad, gt = (root / cat / "test" / "good", root / cat / "test" / "hole",
                         root / cat / "ground_truth" / "hole")
        for d in (good, bad, gt):
            d.mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(good / f"{i:03d}.png"), texture(cat, 64, rng)[:, :, ::-1])
            image, mask = draw_defect(texture(cat, 64, rng), rng, "hole")
            cv2.imwrite(str(bad / f"{i:03d}.png"), image[:, :, ::-1])
            cv2.imwrite(str(gt / f"{i:03d}_mask.png"), mask.astype(np.uint8) * 255)
    (root / "tiny.yaml").write_text(TINY_YAML)
    return root


KNOWN_YAML = """
model: {base_channels: 8}
fit: {steps: 2, warm_steps: 1}
"""


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """Two categories whose answer is known: `strong`, grass with a saturated white square drawn in (any detector
    worth the name finds it), and `noise`, uniform noise whose masks mark nothing (no method can beat chance)."""
    root = tmp_path_factory.mktemp("known")
    rng = np.random.default_rng(0)

    def write(cat, kind, i, image, mask=None):
        folder = root / cat / "test" / kind
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:03d}.png"), image[:, :, ::-1])
        if mask is not None:
            gt = root / cat / "ground_truth" / kind
            gt.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(gt / f"{i:03d}_mask.png"), mask.astype(np.uint8) * 255)

    for i in range(3):
        image, mask = texture("grass", 64, rng).copy(), np.zeros((64, 64), bool)
        y, x = rng.integers(8, 40, 2)
        mask[y:y + 14, x:x + 14] = True
        image[mask] = 255
        write("strong", "square", i, image, mask)
        noise, marked = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), np.zeros((64, 64), bool)
        y, x = rng.integers(4, 44, 2)
        marked[y:y + 16, x:x + 16] = True
        write("noise", "invisible", i, noise, marked)
    write("strong", "good", 0, texture("grass", 64, rng))
    write("noise", "good", 0, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (root / "known.yaml").write_text(KNOWN_YAML)
    return root


def test_eval_finds_a_strong_defect_and_nothing_in_noise(known, tmp_path):
    out = tmp_path / "known.json"
    assert main(["eval", str(known), "--json", str(out), "--mode", "stream", "--config", str(known / "known.yaml"),
                 "--baselines", "blur_residual,local_stats"]) == 0
    result = json.loads(out.read_text())
    strong, noise = result["categories"]["strong"], result["categories"]["noise"]
    assert strong["pixel_auroc"] > 0.95 and strong["aupro"] > 0.9 and strong["image_auroc"] == 1.0
    assert abs(noise["pixel_auroc"] - 0.5) < 0.15  # nothing to find: chance
    for name in ("blur_residual", "local_stats"):
        base = result["baselines"][name]["categories"]
        assert base["strong"]["pixel_auroc"] > 0.9
        assert abs(base["noise"]["pixel_auroc"] - 0.5) < 0.1, name
    by_type = result["mean_by_defect_type"]  # one type per category here: the category's numbers
    assert set(by_type) == {"square", "invisible"} and set(strong["defect_types"]) == {"square"}
    assert by_type["square"]["pixel_auroc"] == pytest.approx(strong["pixel_auroc"])
    assert by_type["invisible"]["pixel_auroc"] == pytest.approx(noise["pixel_auroc"])


def test_each_defect_type_is_scored_with_the_good_images_alone():
    """A category whose `found` defects the maps mark exactly and whose `missed` ones they mark inverted: the pooled
    category lies between, each type gets its own numbers."""
    rng = np.random.default_rng(0)
    samples, maps, scores = [], [], []
    for i, kind in enumerate(["good", "good", "found", "found", "missed", "missed"]):
        mask = np.zeros((16, 16), bool)
        if kind != "good":
            y, x = rng.integers(0, 12, 2)
            mask[y:y + 4, x:x + 4] = True
        noise = 0.1 * rng.random((16, 16))
        maps.append(noise + (mask if kind != "missed" else ~mask))
        scores.append({"good": 0.1, "found": 0.9, "missed": 0.0}[kind] + i / 100)
        samples.append(Sample(None, "cat", kind, np.zeros((16, 16, 3), np.uint8), mask, int(kind != "good")))
    out = by_defect_type(maps, samples, scores)
    assert set(out) == {"found", "missed"}
    assert out["found"]["pixel_auroc"] == 1.0 and out["found"]["pixel_auprc"] == 1.0
    assert out["found"]["image_auroc"] == 1.0 and out["missed"]["image_auroc"] == 0.0
    assert out["missed"]["pixel_auroc"] < 0.3
    assert out["missed"]["pixel_auroc"] < pixel_auroc(maps, [s.mask for s in samples]) < out["found"]["pixel_auroc"]


@pytest.mark.parametrize("mode", ["cold", "warm", "stream"])
def test_eval_writes_the_documented_json(dataset, tmp_path, mode, capsys):
    out = tmp_path / "eval.json"
    rc = main(["eval", str(dataset), "--categories", "brick,gravel", "--json", str(out), "--mode", mode,
               "--config", str(dataset / "tiny.yaml"), "--baselines", "blur_residual,local_stats"])
    assert rc == 0
    result = json.loads(out.read_text())
    assert set(result["categories"]) == {"brick", "gravel"}
    for block in [result["mean"], *result["categories"].values(), result["baselines"]["local_stats"]["mean"]]:
        assert KEYS <= set(block)
        assert all(0.0 <= block[k] <= 1.0 for k in KEYS - {"seconds_per_image"})
        assert block["seconds_per_image"] > 0
    assert len(result["images"]) == 8 and {i["label"] for i in result["images"]} == {0, 1}
    assert "mean" in capsys.readouterr().out


def test_eval_robustness_options_change_the_inputs(dataset, tmp_path):
    out = tmp_path / "noisy.json"
    assert main(["eval", str(dataset), "--categories", "brick", "--json", str(out), "--config",
                 str(dataset / "tiny.yaml"),
                 "--baselines", "none", "--input-noise", "10", "--dead-pixels", "0.01"]) == 0
    result = json.loads(out.read_text())
    assert (result["input_noise_sigma"], result["dead_pixel_fraction"]) == (10.0, 0.01)
    assert np.isfinite(result["mean"]["pixel_auroc"])


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_eval_limit_sees_both_labels_and_undefined_metrics_are_said_and_null(dataset, tmp_path, capsys):
    """`--limit 2` took the first two images in name order (two good ones: every metric NaN, a mean over nothing, and
    bare NaN in the JSON file). It takes them in turn from each defect type; what stays undefined is said and
    written as null."""
    args = ["eval", str(dataset), "--categories", "brick", "--config", str(dataset / "tiny.yaml"), "--baselines",
            "none", "--mode", "stream"]
    assert main([*args, "--limit", "2", "--json", str(tmp_path / "two.json")]) == 0
    two = strict_json((tmp_path / "two.json").read_text())
    assert sorted(i["label"] for i in two["images"]) == [0, 1] and two["mean"]["pixel_auroc"] > 0
    capsys.readouterr()
    assert main([*args, "--limit", "1", "--json", str(tmp_path / "one.json")]) == 0  # one good image: nothing defined
    one = strict_json((tmp_path / "one.json").read_text())
    assert one["categories"]["brick"]["pixel_auroc"] is None and one["mean"]["image_auroc"] is None
    assert "brick: pixel_auroc, pixel_auprc" in capsys.readouterr().out


def test_eval_refuses_a_json_path_it_cannot_write_before_it_evaluates(dataset, tmp_path, capsys):
    (tmp_path / "a_folder").mkdir()
    assert main(["eval", str(dataset), "--categories", "brick", "--baselines", "none", "--json",
                 str(tmp_path / "a_folder")]) != 0
    captured = capsys.readouterr()
    assert "a_folder" in captured.err and "mean" not in captured.out  # no evaluation thrown away


def test_eval_reports_a_missing_dataset_clearly(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_score_writes_maps_overlays_and_json_lines(dataset, tmp_path):
    images = sorted((dataset / "brick" / "test" / "hole").glob("*.png"))
    assert main(["score", *map(str, images), "--out", str(tmp_path), "--config", str(dataset / "tiny.yaml")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(np.isfinite(x["score"]) for x in lines)
    amap = np.load(tmp_path / "000_map.npy")
    assert amap.shape == (64, 64) and amap.dtype == np.float32
    overlay = cv2.imread(str(tmp_path / "000_overlay.png"))  # the frame, then the verdict, score and colour scale
    assert overlay.shape[0] > 64 and overlay.shape[1] >= 64 and overlay.shape[2] == 3
    assert all(x["label"] in ("normal", "anomalous") and x["threshold"] == 3.0 for x in lines)


@pytest.mark.slow
def test_eval_jobs_split_categories_over_processes_with_the_same_result(dataset):
    cfg = load_config(dataset / "tiny.yaml")
    args = dict(categories=["gravel", "brick"], baselines=("local_stats",), noise_sigma=5.0)
    one, two = evaluate(dataset, cfg, **args), evaluate(dataset, cfg, jobs=2, **args)
    assert list(two["categories"]) == ["gravel", "brick"] and len(two["images"]) == len(one["images"]) == 8
    # the noisy inputs and so the baseline are identical however the categories are split
    assert two["baselines"]["local_stats"]["categories"]["brick"]["pixel_auroc"] == \
        one["baselines"]["local_stats"]["categories"]["brick"]["pixel_auroc"]
    for cat in ("gravel", "brick"):
        assert two["categories"][cat]["pixel_auroc"] == pytest.approx(one["categories"][cat]["pixel_auroc"], abs=0.03)
    assert set(two["beats_baseline"]) == {"local_stats"} and "mean" in two["baselines"]["local_stats"]


WARM_YAML = """
score: {pixel_weight: 0, perceptual_weight: 0}
memory: {min_frames: 4, fill_frames: 4}  # the memory has its full weight from its first use
calibration: {min_frames: 4}
"""


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A brick camera whose defect is a large uniform patch (similar to itself, so a single image misses it),
    and 8 unlabelled normal frames of it in `stream/brick/`. 128 px frames, a multiple of 64, are not padded: at 96 px
    the patch's mirror image in the padding was what hid it from the frame alone (docs/ablations.md section 30)."""
    root = tmp_path_factory.mktemp("warm")
    rng = np.random.default_rng(0)
    folders = {k: root / "data" / "brick" / p for k, p in
               (("good", "test/good"), ("bad", "test/patch"), ("gt", "ground_truth/patch"))}
    for d in (*folders.values(), root / "stream" / "brick"):
        d.mkdir(parents=True)
    for i in range(8):
        cv2.imwrite(str(root / "stream" / "brick" / f"{i:03d}.png"), texture("brick", 128, rng)[:, :, ::-1])
    for i in range(3):
        cv2.imwrite(str(folders["good"] / f"{i:03d}.png"), texture("brick", 128, rng)[:, :, ::-1])
        image, mask = texture("brick", 128, rng).copy(), np.zeros((128, 128), bool)
        y, x = rng.integers(10, 54, 2)
        mask[y:y + 64, x:x + 64] = True
        image[mask] = int(image.mean())
        cv2.imwrite(str(folders["bad"] / f"{i:03d}.png"), image[:, :, ::-1])
        cv2.imwrite(str(folders["gt"] / f"{i:03d}_mask.png"), mask.astype(np.uint8) * 255)
    (root / "warm.yaml").write_text(WARM_YAML)
    return root


@pytest.mark.slow
def test_warmup_frames_raise_the_accuracy_of_a_stream(warm, tmp_path):
    common = [str(warm / "data"), "--mode", "stream", "--config", str(warm / "warm.yaml"), "--baselines", "none"]
    cold, warmed, few = tmp_path / "cold.json", tmp_path / "warm.json", tmp_path / "few.json"
    assert main(["eval", *common, "--json", str(cold)]) == 0
    assert main(["eval", *common, "--json", str(warmed), "--warmup", str(warm / "stream")]) == 0
    assert main(["eval", *common, "--json", str(few), "--warmup", str(warm / "stream"), "--warmup-frames", "3"]) == 0
    cold, warmed, few = (json.loads(p.read_text()) for p in (cold, warmed, few))
    assert (cold["warmup_frames"], warmed["warmup_frames"], few["warmup_frames"]) == (0, 8, 3)
    assert warmed["categories"]["brick"]["warmup_frames"] == 8
    assert warmed["warmup_dir"] == str(warm / "stream") and cold["warmup_dir"] is None
    # 0.88 -> 0.93 at docs/ablations.md section 38's self-similarity (8 px cells: a camera's first frames find more)
    assert warmed["mean"]["pixel_auroc"] > cold["mean"]["pixel_auroc"] + 0.03, (warmed["mean"], cold["mean"])


def test_warmup_needs_stream_mode_and_an_existing_folder(warm, tmp_path, capsys):
    common = [str(warm / "data"), "--config", str(warm / "warm.yaml"), "--baselines", "none"]
    assert main(["eval", *common, "--mode", "cold", "--warmup", str(warm / "stream")]) == 2
    assert "--mode stream" in capsys.readouterr().err
    assert main(["eval", *common, "--mode", "stream", "--warmup", str(tmp_path / "none")]) == 2
    assert "none" in capsys.readouterr().err
    assert main(["eval", str(warm / "data"), "--baselines", "vgg_knn,bogus"]) == 2  # refused before it starts
    assert "--baselines: unknown bogus; choose from" in capsys.readouterr().err
    for name, data in (("small.png", None), ("junk.png", b"not an image")):  # failed mid-run, exit 1, unnamed
        frames = tmp_path / name.split(".")[0]
        frames.mkdir()
        shutil.copy(warm / "stream" / "brick" / "000.png", frames / "000.png")
        if data is None:
            cv2.imwrite(str(frames / name), np.zeros((20, 20, 3), np.uint8))
        else:
            (frames / name).write_bytes(data)
        assert main(["eval", *common, "--mode", "stream", "--warmup", str(frames)]) == 2
        assert str(frames / name) in capsys.readouterr().err


def test_eval_threads_sets_torch_threads_in_the_process_that_scores(dataset, tmp_path, monkeypatch):
    """`--threads 1` (a busy machine: oversubscribed threads cost 10x and more) reaches torch before scoring."""
    import torch

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    assert main(["eval", str(dataset), "--categories", "brick", "--config", str(dataset / "tiny.yaml"), "--baselines",
                 "none", "--limit", "2", "--threads", "1", "--json", str(tmp_path / "t.json")]) == 0
    assert seen == [1]


def test_a_category_named_twice_is_evaluated_once_and_a_json_folder_is_refused(dataset, tmp_path, capsys):
    """`--categories brick,brick --jobs 2` evaluated brick twice (8 images in the JSON, not 4); `--json DIR` failed
    with an IsADirectoryError line and exit 1."""
    out = tmp_path / "e.json"
    common = [str(dataset), "--config", str(dataset / "tiny.yaml"), "--baselines", "none", "--threads", "1"]
    assert main(["eval", *common, "--categories", "brick,brick", "--jobs", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["categories"]) == ["brick"] and len(result["images"]) == 4
    assert main(["eval", *common, "--categories", "brick", "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path} is a folder: give the file to write" in capsys.readouterr().err
