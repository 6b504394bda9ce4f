"""Image files: listed in name order, read at their own depth (a machine-vision camera's 16-bit files at the bits
their values fill, `edge.frames.to_uint8`) and written."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import cv2
import numpy as np

from .frames import to_uint8

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def image_files(folder) -> list[Path]:
    """A folder's image files (`IMAGE_SUFFIXES`, any case) in name order, hidden ones left out (macOS writes a
    `._NAME.png` of metadata beside each file it copies to a foreign disk); OSError when it cannot be listed."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())


def read_image(path) -> np.ndarray:
    """An image file as OpenCV decodes it, at its own depth: HxWx3 BGR, uint8 or uint16 (grey files as three
    equal channels); FileNotFoundError when there is no such file, ValueError when OpenCV cannot decode it (a damaged
    image file said apart from one that is none) or refuses it (as a header claiming over 2^30 pixels), it is empty,
    neither 8- nor 16-bit, or a JPEG cut short (OpenCV would fill its missing rows with grey)."""
    path, data = _file_bytes(path)  # read once: checked, then decoded (as cv2.imread would, EXIF orientation included)
    image = _decode(path, data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:  # a float TIFF is only read as it is: say what it holds
        image = _decode(path, data, cv2.IMREAD_UNCHANGED)
        if image is None or image.dtype in (np.uint8, np.uint16):
            raise _undecodable(path, data)
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path} is a {image.dtype} image: convert it to 8 or 16 bits")
    if path.suffix.lower() in (".tif", ".tiff") and (name := opencv_name(path.resolve())) is not None:
        try:
            _say_pages(name, path.stat().st_mtime_ns)
        except OSError:  # replaced or removed since it was read: the image read stands
            pass
    return image


def read_mask(path) -> np.ndarray:
    """A defect mask file as HxW uint8, 1 where it is nonzero (a defect); `read_image`'s errors."""
    return (read_mask_values(path) > 0).astype(np.uint8)


def read_mask_values(path) -> np.ndarray:
    """A defect mask file's grey values as HxW, at its own depth (uint8 or uint16); `read_image`'s errors."""
    path, data = _file_bytes(path)
    mask = _decode(path, data, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)  # a 16-bit 0/1 mask shifted down was 0
    if mask is None:
        raise _undecodable(path, data)
    return mask


def _file_bytes(path) -> tuple[Path, bytes]:
    """PATH and its bytes, unless there is no such file (FileNotFoundError), it is empty or a JPEG cut short."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path} is empty (0 bytes): still being written, or a failed copy")
    if _cut_short_jpeg(data):
        raise ValueError(f"{path} is a JPEG without its end-of-image marker: cut short, or still being written")
    return path, data


def _decode(path: Path, data: bytes, flags: int) -> np.ndarray | None:
    """A file's bytes decoded by OpenCV (None: it cannot), decoded from memory: OpenCV given a file name that is not
    UTF-8 (a name from another system's encoding) crashes the process."""
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:  # a header OpenCV distrusts (more pixels than it reads) is refused by raising, not None
        why = ("its header gives more pixels than OpenCV reads (2^30): save it smaller"
               if "CV_IO_MAX_IMAGE_PIXELS" in str(e) else "OpenCV refused it (a damaged file, or a kind it cannot "
                                                          "read)")
        raise ValueError(f"cannot decode {path}: {why}") from None


# how the files of the kinds most often met begin (their signatures, as OpenCV's decoders check them)
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF"}


def _undecodable(path: Path, data: bytes) -> ValueError:
    """The error for a file OpenCV could not decode: a damaged image where it begins as one kind of image file does
    (a PNG cut short by a failed copy was called no image file), else not an image file."""
    kind = next((k for sig, k in _SIGNATURES.items() if data.startswith(sig)), None)
    if kind is None:
        return ValueError(f"cannot decode {path}: not an image file OpenCV reads (PNG, JPEG, BMP, TIFF, ...)")
    return ValueError(f"cannot decode {path}: a damaged {kind} file (cut short or corrupt: still being written, or a "
                      "failed copy)")


def opencv_name(path) -> str | None:
    """PATH as a name OpenCV may be given, None when it is not UTF-8 (OpenCV would crash the process)."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return name


@functools.lru_cache(maxsize=256)  # once per file and version, not at every pass of a looping folder camera
def _say_pages(path: str, mtime_ns: int) -> None:  # noqa: ARG001 (the version is part of the cache key)
    """Warn that a multi-page TIFF (a camera's burst, an image stack) is read as its first page only."""
    if (pages := cv2.imcount(path)) > 1:
        log.warning("%s holds %d pages: only the first is read (save each image as a file of its own)", path, pages)


def _cut_short_jpeg(data: bytes) -> bool:
    """A JPEG (FF D8) without an end-of-image marker (FF D9) after its first scan: the segments before the scan are
    stepped over by their lengths (an EXIF thumbnail in one has markers of its own); bytes after the marker (a
    camera's trailer, a motion photo's video) do not matter. A layout it does not know is left to OpenCV."""
    if data[:2] != b"\xff\xd8":
        return False
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the coded image follows, with no FF D9 inside it
            return data.find(b"\xff\xd9", pos) < 0
        pos += 1 if marker == 0xFF else 2 + int.from_bytes(data[pos + 2:pos + 4], "big")  # fill byte, or a segment
    return pos + 4 > len(data)  # cut short before its first scan


def read_rgb(path, bits: int | None = None) -> np.ndarray:
    """Read an image file as uint8 HxWx3 RGB (`read_image`'s errors); a 16-bit file's `bits`-bit range onto
    0-255, by default the bits its values fill (`edge.frames.to_uint8`)."""
    return to_uint8(read_image(path), bits)[:, :, ::-1].copy()


def write_rgb(path, image: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG/JPEG by suffix); OSError when it cannot be. Encoded in memory and written by
    Python: OpenCV given a file name that is not UTF-8 crashes the process."""
    path = Path(path)
    try:
        ok, data = cv2.imencode(path.suffix, np.ascontiguousarray(image[:, :, ::-1]))
    except cv2.error:  # a suffix OpenCV does not write
        ok = False
    if not ok:
        raise OSError(f"could not write image {path}: OpenCV cannot encode it as {path.suffix or 'no suffix'}")
    with open(path, "wb") as f:
        f.write(data)
