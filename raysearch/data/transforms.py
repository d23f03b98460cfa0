"""Joint transforms of a sample: image, lung label mask and hemidiaphragm landmarks move together.

A sample is the dict of ``docs/interfaces.md``: ``image`` float32 ``(H, W)`` in [0, 1], ``mask``
uint8 ``(H, W)`` labels (0 background, 1 patient's right lung = image left, 2 patient's left
lung), ``landmarks`` float64 ``(2, 2)`` rows [right, left], columns [x, y] in pixels of the
image (a NaN row = not annotated). Other keys (``id``) are passed through.

Coordinates follow :mod:`raysearch.geometry`: pixel centres at integer coordinates. Every
function returns a new sample and never modifies its input. Images are interpolated bilinearly
(area-averaged when shrinking), masks by nearest neighbour, landmarks by exact coordinate maths
with the same map. Pure numpy/OpenCV: no torch, no Ray.
"""

from __future__ import annotations

import cv2
import numpy as np

from raysearch.config import AugmentConfig
from raysearch.geometry import resize_points


def _new(sample: dict, image: np.ndarray, mask: np.ndarray | None, landmarks: np.ndarray) -> dict:
    out = dict(sample)
    out["image"] = np.ascontiguousarray(image, dtype=np.float32)
    out["mask"] = None if mask is None else np.ascontiguousarray(mask, dtype=np.uint8)
    out["landmarks"] = np.asarray(landmarks, dtype=np.float64).copy()
    return out


def resize_sample(sample: dict, size: int) -> dict:
    """Resize a sample to a square ``size`` x ``size`` (the network input).

    Image: ``cv2.INTER_AREA`` when neither side grows, else ``cv2.INTER_LINEAR``. Mask:
    ``cv2.INTER_NEAREST_EXACT`` (centre-aligned nearest, the same pixel-centre map as the image).
    Landmarks: :func:`raysearch.geometry.resize_points` (``x -> (x + 0.5) * size / W - 0.5``).
    Returns a new sample; landmarks in pixels of the resized image.
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"resize size must be a positive number of pixels, got {size}")
    img = sample["image"]
    h, w = img.shape
    shrink = size <= h and size <= w
    image = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    mask = sample.get("mask")
    if mask is not None:
        mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    landmarks = resize_points(sample["landmarks"], (h, w), (size, size))
    return _new(sample, image, mask, landmarks)


def adjust_intensity(sample: dict, factor: float) -> dict:
    """Brightness and contrast change by one ``factor`` (the paper's single factor in [0.5, 1.5]).

    ``out = clip(factor * (mean + factor * (image - mean)), 0, 1)`` with ``mean`` the image mean:
    contrast about the mean by ``factor``, then brightness (multiplication) by ``factor``.
    ``factor = 1`` is the identity. Image only; mask and landmarks are copied unchanged.
    """
    if not factor > 0:
        raise ValueError(f"intensity factor must be > 0, got {factor}")
    img = sample["image"].astype(np.float32)
    mean = float(img.mean())
    out = np.clip(factor * (mean + factor * (img - mean)), 0.0, 1.0)
    mask = sample.get("mask")
    return _new(sample, out, None if mask is None else mask.copy(), sample["landmarks"])


def rotation_matrix(hw: tuple[int, int], degrees: float) -> np.ndarray:
    """2x3 float64 matrix rotating by ``degrees`` about the image centre ``((W-1)/2, (H-1)/2)``.

    Positive angles turn the picture counter-clockwise as displayed (OpenCV's convention).
    Maps source pixel coordinates to destination pixel coordinates.
    """
    h, w = hw
    return cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(degrees), 1.0)


def rotate(sample: dict, degrees: float) -> dict:
    """Rotate a sample by ``degrees`` (counter-clockwise as displayed) about the image centre.

    Same size out. Image: bilinear, corners uncovered by the rotated picture are filled with 0
    (black, like an unexposed border). Mask: nearest, filled with 0 (background). Landmarks: the
    same matrix applied exactly; a landmark rotated out of the image keeps its (outside)
    coordinates, NaN rows stay NaN. Returns a new sample.
    """
    img = sample["image"]
    h, w = img.shape
    m = rotation_matrix((h, w), degrees)
    image = cv2.warpAffine(img.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    mask = sample.get("mask")
    if mask is not None:
        mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    pts = np.asarray(sample["landmarks"], dtype=np.float64)
    landmarks = pts @ m[:, :2].T + m[:, 2]
    return _new(sample, image, mask, landmarks)


def flip_horizontal(sample: dict) -> dict:
    """Mirror left-right AND swap the right/left identities.

    Pixels: ``x -> W - 1 - x``. After mirroring, the lung on the image left is the former patient's
    left lung, so labels 1 and 2 are exchanged and the landmark rows [right, left] are swapped:
    the result is a valid sample in the radiological convention. Returns a new sample.
    """
    img = sample["image"]
    w = img.shape[1]
    image = img[:, ::-1]
    mask = sample.get("mask")
    if mask is not None:
        flipped = mask[:, ::-1]
        mask = flipped.copy()
        mask[flipped == 1] = 2
        mask[flipped == 2] = 1
    pts = np.asarray(sample["landmarks"], dtype=np.float64)
    landmarks = pts[::-1].copy()
    landmarks[:, 0] = (w - 1) - landmarks[:, 0]
    return _new(sample, image, mask, landmarks)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Return the augmentation generator of one sample in one epoch:
    ``np.random.default_rng([seed, epoch, index])`` (independent of loader order and workers)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Return the shuffled sample order of an epoch, (n,) int (deterministic in ``seed`` and ``epoch``)."""
    return np.random.default_rng([int(seed), 7919, int(epoch)]).permutation(n)


def draw_augment_params(rng: np.random.Generator, cfg: AugmentConfig) -> dict:
    """Draw the parameters of one augmentation: always five draws, in this order: intensity
    coin, intensity factor, rotation coin, angle (degrees), flip coin.

    Returns ``{"intensity": factor | None, "rotate": degrees | None, "flip": bool}`` (``None`` /
    ``False`` = not applied; everything off when ``cfg.enabled`` is false).
    """
    u_int = rng.random()
    factor = rng.uniform(*cfg.intensity_range)
    u_rot = rng.random()
    angle = rng.uniform(*cfg.rotation_deg)
    u_flip = rng.random()
    on = cfg.enabled
    return {
        "intensity": float(factor) if on and u_int < cfg.p_intensity else None,
        "rotate": float(angle) if on and u_rot < cfg.p_rotate else None,
        "flip": bool(on and u_flip < cfg.p_flip),
    }


def augment(sample: dict, rng: np.random.Generator, cfg: AugmentConfig) -> dict:
    """The paper's joint augmentation: brightness/contrast with probability ``p_intensity``
    (factor ~ U(``intensity_range``), image only), rotation with probability ``p_rotate``
    (angle ~ U(``rotation_deg``) degrees, about the centre), horizontal flip with probability
    ``p_flip`` (swapping right/left). Applied in that order.

    All parameters are drawn up front by :func:`draw_augment_params` (the same number of draws per
    sample whether or not a transform applies), so the stream from :func:`sample_rng` is
    reproducible. Returns a new sample; the input is not modified.
    """
    params = draw_augment_params(rng, cfg)
    out = _new(sample, sample["image"].copy(), None if sample.get("mask") is None else sample["mask"].copy(),
               sample["landmarks"])
    if params["intensity"] is not None:
        out = adjust_intensity(out, params["intensity"])
    if params["rotate"] is not None:
        out = rotate(out, params["rotate"])
    if params["flip"]:
        out = flip_horizontal(out)
    return out


__all__ = [
    "adjust_intensity",
    "augment",
    "draw_augment_params",
    "flip_horizontal",
    "resize_sample",
    "rotate",
    "rotation_matrix",
    "sample_rng",
]
