from pathlib import Path

import cv2
import numpy as np
import pytest

from tools.eval.dataset import DatasetError, Sample, list_categories, load_category


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Two categories: `tile` (colour, good + crack) and `felt` (grayscale files, good only)."""
    rng = np.random.default_rng(0)
    tile = tmp_path / "tile"
    bgr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    _write(tile / "test" / "good" / "000.png", bgr)
    _write(tile / "test" / "crack" / "000.png", bgr)
    _write(tile / "test" / "crack" / "001.png", bgr)
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:8, 4:8] = 255
    _write(tile / "ground_truth" / "crack" / "000_mask.png", mask)
    _write(tile / "ground_truth" / "crack" / "001_mask.png", mask)
    _write(tile / "train" / "good" / "000.png", bgr)  # ignored
    _write(tmp_path / "felt" / "test" / "good" / "000.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
    (tmp_path / "notes").mkdir()  # not a category: no test/ folder
    return tmp_path


def test_list_categories(root):
    assert list_categories(root) == ["felt", "tile"]


def test_load_category(root):
    samples = load_category(root, "tile")
    assert [(s.defect_type, s.path.name, s.label) for s in samples] == [
        ("crack", "000.png", 1), ("crack", "001.png", 1), ("good", "000.png", 0)]
    crack, good = samples[0], samples[2]
    assert isinstance(crack, Sample) and crack.category == "tile"
    assert crack.image.shape == (16, 16, 3) and crack.image.dtype == np.uint8
    bgr = cv2.imread(str(crack.path))
    np.testing.assert_array_equal(crack.image, bgr[:, :, ::-1])  # RGB order
    assert crack.mask.dtype == bool and crack.mask.sum() == 16 and crack.mask[4:8, 4:8].all()
    assert good.mask.shape == (16, 16) and not good.mask.any()


def test_grayscale_becomes_three_channels(root):
    (felt,) = load_category(root, "felt")
    assert felt.image.shape == (16, 16, 3)
    assert (felt.image[:, :, 0] == felt.image[:, :, 2]).all()


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        list_categories(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no categories"):
        list_categories(tmp_path)


def test_missing_category(root):
    """A mistyped `--categories` name says which categories there are (it named the folder alone)."""
    with pytest.raises(DatasetError) as e:
        load_category(root, "carpet")
    assert str(e.value) == f"category folder not found: {root / 'carpet'} (the categories there: felt, tile)"
    with pytest.raises(DatasetError, match="no test folder"):
        load_category(root, "notes")


def test_category_without_images(root):
    (root / "empty" / "test" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no test images"):
        load_category(root, "empty")


def test_defect_without_mask(root):
    (root / "tile" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match="has no mask"):
        load_category(root, "tile")


def test_mask_size_mismatch(root):
    _write(root / "tile" / "ground_truth" / "crack" / "001_mask.png", np.zeros((8, 16), dtype=np.uint8))
    with pytest.raises(DatasetError, match="16x8 but its image is 16x16"):
        load_category(root, "tile")


def test_unreadable_image(root):
    (root / "tile" / "test" / "good" / "001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot read image"):
        load_category(root, "tile")


def test_a_16_bit_mask_marks_its_defect_and_an_empty_mask_is_said(root, caplog):
    """A 16-bit mask of 0/1 or 0/255 was read shifted down to 8 bits: no defect pixel, the category's pixel metrics
    undefined or, beside other masks, the defect silently lost."""
    mask = np.zeros((16, 16), dtype=np.uint16)
    mask[2:5, 2:5] = 1
    _write(root / "tile" / "ground_truth" / "crack" / "000_mask.png", mask)
    _write(root / "tile" / "ground_truth" / "crack" / "001_mask.png", np.zeros((16, 16), dtype=np.uint16))
    with caplog.at_level("WARNING"):
        crack0, crack1, _ = load_category(root, "tile")
    assert crack0.mask.sum() == 9 and crack0.mask[2:5, 2:5].all()
    assert not crack1.mask.any() and "001_mask.png is empty" in caplog.text


def test_a_hidden_file_beside_the_images_is_left_out(root):
    """macOS's `._000.png` metadata beside a copied image stopped the whole eval as an unreadable image."""
    (root / "tile" / "test" / "good" / "._000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert [(s.defect_type, s.path.name) for s in load_category(root, "tile")] == [
        ("crack", "000.png"), ("crack", "001.png"), ("good", "000.png")]


def test_a_mask_that_is_not_binary_is_said_once_per_category(root, caplog):
    """A grey (anti-aliased) or 0/128/255 mask was read without a word: every nonzero pixel a defect, its faint edges
    too. A 0/1 or 0/255 mask is binary: read as before, nothing said."""
    masks = root / "tile" / "ground_truth" / "crack"
    grey = np.zeros((16, 16), dtype=np.uint8)
    grey[4:8, 4:8], grey[3, 4:8], grey[8, 4:8] = 255, 128, 40
    _write(masks / "000_mask.png", grey)
    _write(masks / "001_mask.png", grey)
    with caplog.at_level("WARNING"):
        crack0, _, _ = load_category(root, "tile")
    said = [r.getMessage() for r in caplog.records if "not binary" in r.getMessage()]
    assert said == [f"tile: 2 of 2 masks not binary, the first {masks / '000_mask.png'} with values 0, 40, 128, 255: "
                    "every nonzero pixel counts as a defect (grey edges and levels included); save masks of 0 and 255 "
                    "only"]
    assert crack0.mask.sum() == 24  # as before: nonzero is a defect
    caplog.clear()
    _write(masks / "000_mask.png", (grey == 255).astype(np.uint8))  # 0/1
    _write(masks / "001_mask.png", (grey == 255).astype(np.uint8) * 255)
    with caplog.at_level("WARNING"):
        crack0, crack1, _ = load_category(root, "tile")
    assert "not binary" not in caplog.text
    assert crack0.mask.sum() == crack1.mask.sum() == 16 and crack0.mask[4:8, 4:8].all()
