"""Reading radiographs and lung masks from disk into the arrays of the sample contract.

Images (:func:`read_image`) become float32 ``(H, W)`` arrays in ``[0, 1]``:

* PNG, JPEG, TIFF (8- or 16-bit unsigned, grayscale): divided by the maximum of the stored type
  (255 or 65535). A 12-bit image stored in 16 bits therefore lands in ``[0, 0.0625]``; the values
  are not stretched, so the same file always gives the same numbers.
* DICOM (pydicom): the modality LUT (RescaleSlope/RescaleIntercept or a LUT sequence) is applied,
  MONOCHROME1 is inverted so that bright = dense as in MONOCHROME2, and the result is min-max
  scaled to ``[0, 1]``. The VOI LUT / window is *not* applied. The pixel spacing comes from
  PixelSpacing, or ImagerPixelSpacing when PixelSpacing is absent (row and column spacing must
  agree within 1 %; anisotropic pixels are rejected rather than silently averaged).
* RGB(A) files whose colour channels are identical (a gray image saved as colour) are accepted;
  real colour images are rejected, as are images with a transparency channel that is not opaque.
* A constant image (every pixel the same value, e.g. an all-black failed export) is rejected: it
  carries no anatomy, and min-max scaling of it is undefined.

Masks (:func:`read_mask`) become uint8 ``(H, W)`` label images: 0 background, 1 the patient's
RIGHT lung (image LEFT), 2 the patient's LEFT lung (image RIGHT). Accepted on disk:

* a label image with values in {0, 1, 2} that contains label 2 (a mask with only the values 0 and
  1 is read as a binary mask, see below);
* a binary mask, 0/255 or 0/1: its two largest 8-connected regions are the lungs; the one whose
  centroid has the smaller x (image left) becomes label 1 (patient's right), the other label 2.
  Smaller regions are dropped (set to 0). A binary mask with a single region is rejected,
  because its side cannot be told.

Every failure raises :class:`~raysearch.data.errors.ImageError` whose message starts with the file.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from raysearch.data.errors import ImageError

DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
IMAGE_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES
"""File name endings :func:`read_image` understands (DICOM is also recognised by its 'DICM' magic)."""
MASK_SUFFIXES = (".png", ".tif", ".tiff")
"""Lossless formats for masks (JPEG would change the label values)."""

_SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class ImageData:
    """A decoded radiograph.

    ``pixels``: float32 ``(H, W)`` in ``[0, 1]``, stored-image pixels.
    ``pixel_spacing_mm``: mm per stored pixel from the file (DICOM only), else ``None``.
    ``meta``: what was read, e.g. ``{"format": "png", "dtype": "uint16", "gray_rgb": False}``.
    """

    pixels: np.ndarray
    pixel_spacing_mm: float | None
    meta: dict = field(default_factory=dict)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own stderr logging while decoding: we raise a clearer error ourselves."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def _read_bytes(path: Path, data: bytes | None, name: str) -> bytes:
    if data is not None:
        return data
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder, expected an image file") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot be opened ({exc.strerror or exc})") from None


def is_dicom(path: Path, data: bytes) -> bool:
    """Return True when the file is DICOM: a ``.dcm``/``.dicom`` name or the 'DICM' magic at byte 128."""
    return path.suffix.lower() in DICOM_SUFFIXES or data[128:132] == b"DICM"


def _to_gray(arr: np.ndarray, name: str) -> tuple[np.ndarray, bool]:
    """Return a 2-D array from a gray or gray-looking colour array, and whether it was colour on disk."""
    if arr.ndim == 2:
        return arr, False
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"{name}: unexpected array shape {arr.shape}; expected (H, W) gray or (H, W, 3|4) colour")
    if arr.shape[2] == 4:
        alpha = arr[..., 3]
        opaque = np.iinfo(arr.dtype).max if np.issubdtype(arr.dtype, np.integer) else 1.0
        if np.any(alpha != opaque):
            raise ImageError(
                f"{name}: has a transparency (alpha) channel that is not fully opaque; "
                "expected a grayscale image without transparency"
            )
    colour = arr[..., :3]
    first = colour[..., 0]
    if not (np.array_equal(first, colour[..., 1]) and np.array_equal(first, colour[..., 2])):
        differing = np.mean(np.any(colour != first[..., None], axis=2))
        raise ImageError(
            f"{name}: is a colour image ({100 * differing:.1f}% of pixels have R, G, B not all equal); "
            "expected grayscale (a gray image saved as RGB with R = G = B is accepted)"
        )
    return np.ascontiguousarray(first), True


def _check_not_empty(arr: np.ndarray, name: str) -> None:
    if arr.size == 0:
        raise ImageError(f"{name}: image has 0 pixels (shape {arr.shape})")


def _check_not_constant(values: np.ndarray, name: str) -> None:
    lo, hi = values.min(), values.max()
    if lo == hi:
        raise ImageError(
            f"{name}: image is constant (every pixel = {lo}), a blank or failed export; expected a radiograph"
        )


def _decode_raster(data: bytes, name: str) -> np.ndarray:
    """Decode PNG/JPEG/TIFF bytes with OpenCV, keeping depth and channels; raises on damage."""
    if len(data) == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    with _quiet_opencv():
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageError(f"{name}: cannot be read (truncated or not an image)")
    # libjpeg pads a truncated JPEG with gray and only warns; a complete JPEG ends with EOI (FF D9).
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9", max(0, len(data) - 1024)) < 0:
        raise ImageError(f"{name}: cannot be read (truncated JPEG: no end-of-image marker)")
    _check_not_empty(arr, name)
    return arr


def _read_raster(data: bytes, name: str, suffix: str) -> ImageData:
    arr = _decode_raster(data, name)
    gray, was_rgb = _to_gray(arr, name)
    if gray.dtype == np.uint8:
        scale = 255.0
    elif gray.dtype == np.uint16:
        scale = 65535.0
    else:
        raise ImageError(
            f"{name}: pixel type {gray.dtype} is not supported; expected 8- or 16-bit unsigned grayscale"
        )
    _check_not_constant(gray, name)
    pixels = gray.astype(np.float32) / np.float32(scale)
    fmt = {".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff"}.get(suffix, suffix.lstrip(".") or "raster")
    return ImageData(pixels, None, {"format": fmt, "dtype": str(gray.dtype), "gray_rgb": was_rgb})


def _apply_modality_lut(arr: np.ndarray, ds: object) -> np.ndarray:
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)


def _dicom_spacing(ds: object, name: str) -> tuple[float | None, str | None]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(ds, keyword, None)
        if value is None or len(value) == 0:
            continue
        try:
            row, col = (float(value[0]), float(value[1])) if len(value) >= 2 else (float(value[0]),) * 2
        except (TypeError, ValueError):
            raise ImageError(f"{name}: {keyword} is not numeric: {value!r}") from None
        if not (row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col)):
            raise ImageError(f"{name}: {keyword} must be positive, got {list(value)}")
        if abs(row - col) > _SPACING_TOLERANCE * max(row, col):
            raise ImageError(
                f"{name}: anisotropic pixels ({keyword} row {row} mm, column {col} mm) are not supported; "
                "resample to square pixels first"
            )
        return (row + col) / 2.0, keyword
    return None, None


def _read_dicom(data: bytes, name: str) -> ImageData:
    if len(data) == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types on damaged files
        raise ImageError(f"{name}: cannot be read as DICOM ({type(exc).__name__}: {exc})") from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageError(f"{name}: DICOM file has no pixel data (no PixelData element); expected an image")
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise ImageError(
            f"{name}: DICOM pixel data cannot be decoded ({type(exc).__name__}: {exc}); "
            "truncated, or a compressed transfer syntax without its decoder installed"
        ) from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        raise ImageError(f"{name}: multi-frame DICOM ({frames} frames) is not supported; expected one image")
    _check_not_empty(arr, name)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if samples > 1:
        arr, _ = _to_gray(arr, name)
        values = arr.astype(np.float64)
    else:
        values = _apply_modality_lut(arr, ds)
    if values.ndim != 2:
        raise ImageError(f"{name}: DICOM pixel array has shape {values.shape}; expected (rows, columns)")
    _check_not_constant(values, name)
    lo, hi = float(values.min()), float(values.max())
    if photometric == "MONOCHROME1":
        values = (hi + lo) - values  # low values are bright in MONOCHROME1
    pixels = ((values - lo) / (hi - lo)).astype(np.float32)
    spacing, source = _dicom_spacing(ds, name)
    meta = {
        "format": "dicom",
        "photometric": photometric,
        "spacing_source": source,
        "modality_range": (lo, hi),
        "gray_rgb": samples > 1,
    }
    return ImageData(pixels, spacing, meta)


def read_image(path: str | Path, data: bytes | None = None, name: str | None = None) -> ImageData:
    """Read a radiograph into float32 ``(H, W)`` pixels in ``[0, 1]`` (stored-image pixels).

    ``data``: the file's bytes when already read (the dataset loader reads each file once to hash
    it too); ``name``: how to name the file in errors (default: the path).
    Returns :class:`ImageData`; ``pixel_spacing_mm`` is mm per stored pixel from DICOM, else ``None``.
    Raises :class:`ImageError` (missing, empty, truncated, colour, unsupported depth, constant,
    DICOM without pixel data) with the file's name first.
    """
    path = Path(path)
    name = str(path) if name is None else name
    raw = _read_bytes(path, data, name)
    if is_dicom(path, raw):
        return _read_dicom(raw, name)
    return _read_raster(raw, name, path.suffix.lower())


def _label_binary(fg: np.ndarray, name: str) -> np.ndarray:
    """Assign the two largest 8-connected regions of a binary mask to right (1) and left (2)."""
    n, comp, stats, centroids = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n - 1 < 2:
        raise ImageError(
            f"{name}: binary mask has a single connected lung region, so its side cannot be told; "
            "expected two regions (right and left lung), or a label image (1 = patient's right, 2 = left)"
        )
    areas = stats[1:, cv2.CC_STAT_AREA]
    two = 1 + np.argsort(-areas, kind="stable")[:2]
    image_left, image_right = sorted(two, key=lambda c: centroids[c, 0])
    labels = np.zeros(fg.shape, dtype=np.uint8)
    labels[comp == image_left] = 1  # image left = patient's right
    labels[comp == image_right] = 2
    return labels


def decode_mask(
    path: str | Path, expected_hw: tuple[int, int] | None = None, data: bytes | None = None, name: str | None = None
) -> tuple[np.ndarray, str]:
    """Like :func:`read_mask`, also returning how the file was read: ``"labels"`` or ``"binary"``."""
    path = Path(path)
    name = str(path) if name is None else name
    raw = _read_bytes(path, data, name)
    arr = _decode_raster(raw, name)
    arr, _ = _to_gray(arr, name)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ImageError(f"{name}: mask pixel type {arr.dtype} is not supported; expected 8- or 16-bit integers")
    if expected_hw is not None and tuple(arr.shape) != tuple(expected_hw):
        raise ImageError(
            f"{name}: mask is {arr.shape[0]}x{arr.shape[1]} (HxW) but its image is "
            f"{expected_hw[0]}x{expected_hw[1]}; they must have the same size"
        )
    if arr.dtype == np.uint8:
        counts = np.bincount(arr.ravel(), minlength=256)
        values = set(np.flatnonzero(counts).tolist())
    else:
        values = set(np.unique(arr).tolist())
    if values <= {0}:
        raise ImageError(f"{name}: mask has no lung (every pixel is 0)")
    if values <= {0, 1, 2} and 2 in values:
        return arr.astype(np.uint8, copy=False), "labels"
    if values <= {0, 255} or values <= {0, 1}:
        return _label_binary(arr > 0, name), "binary"
    shown = sorted(values)
    more = f" ... ({len(shown)} distinct)" if len(shown) > 10 else ""
    hint = "; JPEG compression changes mask values, save masks as PNG" if path.suffix.lower() in (".jpg", ".jpeg") else ""
    raise ImageError(
        f"{name}: mask has values other than allowed: found {shown[:10]}{more}; expected a label image "
        f"(0 background, 1 patient's right lung, 2 patient's left lung) or a binary mask (0/255 or 0/1){hint}"
    )


def read_mask(
    path: str | Path, expected_hw: tuple[int, int] | None = None, data: bytes | None = None, name: str | None = None
) -> np.ndarray:
    """Read a lung mask into uint8 ``(H, W)`` labels: 0 background, 1 patient's right, 2 patient's left lung.

    ``expected_hw``: the image's ``(H, W)``; a mask of another size raises. ``data``/``name`` as in
    :func:`read_image`. Binary masks are split into right/left by position (see module docstring).
    Raises :class:`ImageError` naming the file.
    """
    return decode_mask(path, expected_hw, data, name)[0]
