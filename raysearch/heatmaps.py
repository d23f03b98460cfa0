"""Heatmap targets ``h = tanh(pi * d / beta)`` (paper's equation 2) and decoding them back to points.

All coordinates here are **network pixels**: pixels of the square network input, pixel centres at
integer coordinates, x right, y down (see :mod:`raysearch.geometry`). ``beta`` is configured in
512-px reference pixels (``LossConfig.beta``); convert it first with
:func:`raysearch.geometry.reference_to_network_px` (125 reference px is 31.25 network px at a 128-px
input) or with :func:`beta_network_px`.

The target is 0 on the landmark and rises towards 1 with the distance ``d``; the network predicts
it with a sigmoid, so a landmark is found as a *minimum*.

Channel modes (``ModelConfig.heatmap_channels``):

* ``single``: one channel, ``d = min(d_right, d_left)`` over the annotated sides (the paper's
  Figure 8: both hemidiaphragms in one map). Decoding splits the image between the two lungs and
  takes one minimum per part; the minimum in the image-LEFT part is the patient's RIGHT side.
* ``per_landmark``: two channels ``[right, left]``; decoding takes the minimum of each.

A side that is not annotated (a NaN row) gets an all-ones channel (``d = inf``) and weight 0 in
:func:`heatmap_weights`, so the loss ignores it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from raysearch.geometry import reference_to_network_px

CHANNEL_MODES = ("single", "per_landmark")

# Pixels with h this close to 1 are saturated: atanh of them is dominated by float rounding.
_SATURATION_MARGIN = 1e-5


def num_channels(channels: str) -> int:
    """Return the number of heatmap channels of a mode: 1 for ``single``, 2 for ``per_landmark``."""
    _check_mode(channels)
    return 1 if channels == "single" else 2


def beta_network_px(beta_ref: float, input_width: int) -> float:
    """Return the saturation distance in network pixels for ``beta_ref`` in 512-px reference pixels."""
    return reference_to_network_px(beta_ref, input_width)


# -- rendering ------------------------------------------------------------------------------------

def render_heatmap(
    landmarks: np.ndarray, hw: tuple[int, int], beta_px: float, channels: str = "single"
) -> np.ndarray:
    """Render the target heatmap of one image.

    Args:
        landmarks: ``(2, 2)`` xy in network pixels, rows ``[right, left]``; a NaN row = not annotated.
        hw: ``(H, W)`` of the network input.
        beta_px: saturation distance ``beta`` in **network** pixels (> 0).
        channels: ``single`` or ``per_landmark``.

    Returns:
        ``(C, H, W)`` float32 in ``[0, 1]``: ``tanh(pi * d / beta_px)`` with ``d`` the Euclidean
        distance in network pixels to the landmark (``single``: to the nearest annotated landmark).
        A channel without an annotated landmark is all ones.
    """
    pts = _check_landmarks(landmarks)
    h, w = _check_hw(hw)
    _check_beta(beta_px)
    _check_mode(channels)
    ys = np.arange(h, dtype=np.float64)[:, None]
    xs = np.arange(w, dtype=np.float64)[None, :]
    dists = []
    for x0, y0 in pts:
        if np.isnan(x0) or np.isnan(y0):
            dists.append(np.full((h, w), np.inf))
        else:
            dists.append(np.sqrt((xs - x0) ** 2 + (ys - y0) ** 2))
    d = np.stack(dists)  # (2, H, W)
    if channels == "single":
        d = d.min(axis=0, keepdims=True)
    return np.tanh(d * (math.pi / float(beta_px))).astype(np.float32)


def heatmap_weights(landmarks: np.ndarray, channels: str = "single") -> np.ndarray:
    """Return the per-channel loss weights of one image: ``(C,)`` float32 of 0/1.

    ``per_landmark``: 1 for each annotated side, 0 for a NaN side. ``single``: 1 if any side is
    annotated (the channel then holds a real target), else 0.
    """
    pts = _check_landmarks(landmarks)
    _check_mode(channels)
    valid = ~np.isnan(pts).any(axis=1)
    if channels == "single":
        return np.array([float(valid.any())], dtype=np.float32)
    return valid.astype(np.float32)


def render_heatmap_torch(
    landmarks: torch.Tensor, hw: tuple[int, int], beta_px: float, channels: str = "single"
) -> torch.Tensor:
    """Render a batch of target heatmaps on the landmarks' device (for on-the-fly targets).

    Args:
        landmarks: ``(B, 2, 2)`` tensor, xy network pixels, rows ``[right, left]``, NaN = not annotated.
        hw, beta_px, channels: as in :func:`render_heatmap`.

    Returns:
        ``(B, C, H, W)`` float32 tensor; the same values as :func:`render_heatmap` per image
        (computed in float32, so equal to within ~1e-6).
    """
    if not isinstance(landmarks, torch.Tensor) or landmarks.ndim != 3 or tuple(landmarks.shape[1:]) != (2, 2):
        got = tuple(landmarks.shape) if hasattr(landmarks, "shape") else type(landmarks).__name__
        raise ValueError(f"landmarks must be a (B, 2, 2) tensor of xy network pixels, got {got}")
    h, w = _check_hw(hw)
    _check_beta(beta_px)
    _check_mode(channels)
    pts = landmarks.to(torch.float32)
    ys = torch.arange(h, dtype=torch.float32, device=pts.device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=pts.device).view(1, 1, 1, w)
    px = pts[..., 0].view(-1, 2, 1, 1)
    py = pts[..., 1].view(-1, 2, 1, 1)
    d = torch.sqrt((xs - px) ** 2 + (ys - py) ** 2)  # (B, 2, H, W); NaN where not annotated
    d = torch.where(torch.isnan(d), torch.full_like(d, float("inf")), d)
    if channels == "single":
        d = d.amin(dim=1, keepdim=True)
    return torch.tanh(d * (math.pi / float(beta_px)))


def heatmap_weights_torch(landmarks: torch.Tensor, channels: str = "single") -> torch.Tensor:
    """Return ``(B, C)`` float32 0/1 loss weights for a ``(B, 2, 2)`` landmark tensor (see :func:`heatmap_weights`)."""
    if not isinstance(landmarks, torch.Tensor) or landmarks.ndim != 3 or tuple(landmarks.shape[1:]) != (2, 2):
        got = tuple(landmarks.shape) if hasattr(landmarks, "shape") else type(landmarks).__name__
        raise ValueError(f"landmarks must be a (B, 2, 2) tensor of xy network pixels, got {got}")
    _check_mode(channels)
    valid = ~torch.isnan(landmarks).any(dim=2)  # (B, 2)
    if channels == "single":
        valid = valid.any(dim=1, keepdim=True)
    return valid.to(torch.float32)


# -- decoding -------------------------------------------------------------------------------------

def decode_landmarks(
    heatmap: np.ndarray,
    channels: str = "single",
    lung: np.ndarray | None = None,
    refine_radius: int = 2,
) -> np.ndarray:
    """Find the two landmarks in a predicted (or target) heatmap.

    ``single``: the image is split between the two lung fields (:func:`split_column`; at the
    vertical midline ``(W-1)/2`` without ``lung``); the minimum of the image-LEFT part is the
    patient's RIGHT hemidiaphragm (row 0), the minimum of the image-RIGHT part the LEFT one (row 1).
    ``per_landmark``: the minimum of channel 0 (right) and of channel 1 (left).

    Each integer minimum is refined to sub-pixel precision by :func:`refine_minimum`, which is exact
    (to float precision) on a rendered target whatever ``beta``.

    Args:
        heatmap: ``(C, H, W)`` float array (C = 1 for ``single``, 2 for ``per_landmark``).
        channels: ``single`` or ``per_landmark``.
        lung: optional ``(H, W)`` lung map in the same network pixels: probabilities, a 0/1 mask or
            labels {0, 1, 2}; a pixel counts as lung when its value is > 0.5. Used by ``single`` only.
        refine_radius: half-size of the refinement window (0 = integer minimum only).

    Returns:
        ``(2, 2)`` float64 xy in network pixels, rows ``[right, left]``.
    """
    hm = _check_heatmap(heatmap, channels)
    _, h, w = hm.shape
    out = np.empty((2, 2), dtype=np.float64)
    if channels == "per_landmark":
        for side in range(2):
            out[side] = refine_minimum(hm[side], _argmin_yx(hm[side]), refine_radius)
        return out
    if lung is not None and np.shape(lung) != (h, w):
        raise ValueError(f"lung map must have the heatmap's (H, W) = {(h, w)}, got shape {np.shape(lung)}")
    split = split_column(lung, w) if lung is not None else (w - 1) / 2.0
    cols = np.arange(w)
    for side, part in enumerate((cols < split, cols > split)):
        if not part.any():
            raise ValueError(f"cannot decode: split column {split} leaves no image columns for side {side}")
        masked = np.where(part[None, :], hm[0], np.inf)
        out[side] = refine_minimum(hm[0], _argmin_yx(masked), refine_radius)
    return out


def split_column(lung: np.ndarray, width: int | None = None) -> float:
    """Return the x (network px) that separates the two lung fields, for ``single`` decoding.

    The lung mass per column (pixels > 0.5) is split into two groups by a 1-D two-means started at
    the midline; the split is the centre of the run of least-occupied columns between the two
    group centroids that lies nearest to their midpoint (the mediastinum). Falls back to the image
    midline ``(W-1)/2`` when the map is empty or one side of the image holds no lung.

    Returns:
        float x in network pixels (may be a half-integer); columns ``x < split`` are the image-left part.
    """
    m = np.asarray(lung)
    if m.ndim != 2:
        raise ValueError(f"lung map must be (H, W), got shape {m.shape}")
    w = m.shape[1] if width is None else int(width)
    midline = (w - 1) / 2.0
    profile = (m > 0.5).sum(axis=0).astype(np.float64)
    cols = np.arange(w, dtype=np.float64)
    split = midline
    c_left = c_right = None
    for _ in range(20):
        left, right = cols < split, cols > split
        m_left, m_right = profile[left].sum(), profile[right].sum()
        if m_left == 0 or m_right == 0:
            return midline
        c_left = float((profile[left] * cols[left]).sum() / m_left)
        c_right = float((profile[right] * cols[right]).sum() / m_right)
        new = (c_left + c_right) / 2.0
        if abs(new - split) < 1e-9:
            break
        split = new
    lo, hi = int(math.ceil(c_left)), int(math.floor(c_right))
    if hi < lo:
        return split
    between = profile[lo : hi + 1]
    low_cols = np.flatnonzero(between == between.min()) + lo
    centre = (c_left + c_right) / 2.0
    best = int(low_cols[np.argmin(np.abs(low_cols - centre))])
    # Extend to the whole run of equally empty columns and take its centre.
    a = b = best
    while a - 1 >= lo and profile[a - 1] == profile[best]:
        a -= 1
    while b + 1 <= hi and profile[b + 1] == profile[best]:
        b += 1
    return (a + b) / 2.0


def refine_minimum(channel: np.ndarray, yx: tuple[int, int], radius: int = 2) -> np.ndarray:
    """Refine an integer minimum ``(y, x)`` of one heatmap channel to sub-pixel precision.

    Method: inside a ``(2r+1)^2`` window around the minimum, ``g = atanh(h)^2`` is fitted by
    weighted least squares with a general quadric ``a x^2 + b y^2 + c xy + d x + e y + f``; the
    landmark is the quadric's vertex. For a rendered target ``atanh(h) = pi d / beta``, so ``g`` is
    exactly ``(pi/beta)^2 ((x-x0)^2 + (y-y0)^2)``: the vertex is the planted point whatever beta
    (no need to know it). Weights ``(1 - h^2)^2`` down-weight near-saturated pixels, where atanh
    amplifies noise; pixels with ``h >= 1 - 1e-5`` are left out. If fewer than 6 pixels remain,
    the quadric is not convex, or the vertex leaves the window, the integer minimum is returned.

    Returns:
        ``(2,)`` float64 ``[x, y]`` in network pixels.
    """
    y0, x0 = int(yx[0]), int(yx[1])
    fit = _fit_quadric(channel, y0, x0, radius)
    if fit is None:
        return np.array([x0, y0], dtype=np.float64)
    return np.array([x0 + fit[0], y0 + fit[1]], dtype=np.float64)


def heatmap_confidence(heatmap: np.ndarray, landmarks: np.ndarray, radius: int = 2) -> np.ndarray:
    """Return the depth of the heatmap's minimum at each landmark: ``(2,)`` float64 in [0, 1].

    Confidence = ``1 - h_min`` where ``h_min`` is the heatmap value at the vertex of the quadric
    that :func:`refine_minimum` fits around the pixel nearest the landmark
    (``tanh(sqrt(g_vertex))``, so a rendered target gives exactly 1 whatever beta); where no
    convex fit exists, ``h_min`` is the bilinear value at the landmark (a flat, all-saturated map
    gives ~0). Read from channel 0 for a 1-channel heatmap and from channel ``side`` for a 2-channel
    one. A NaN landmark gives NaN.
    """
    hm = np.asarray(heatmap, dtype=np.float64)
    if hm.ndim != 3 or hm.shape[0] not in (1, 2):
        raise ValueError(f"heatmap must be (C, H, W) with C in (1, 2), got shape {hm.shape}")
    pts = _check_landmarks(landmarks)
    _, h, w = hm.shape
    out = np.full(2, np.nan)
    for side in range(2):
        if np.isnan(pts[side]).any():
            continue
        ch = hm[0] if hm.shape[0] == 1 else hm[side]
        x0 = int(min(max(round(pts[side, 0]), 0), w - 1))
        y0 = int(min(max(round(pts[side, 1]), 0), h - 1))
        fit = _fit_quadric(ch, y0, x0, radius)
        if fit is None:
            value = _bilinear(ch, pts[side, 0], pts[side, 1])
        else:
            value = math.tanh(math.sqrt(max(fit[2], 0.0)))
        out[side] = 1.0 - value
    return np.clip(out, 0.0, 1.0)


def _fit_quadric(channel: np.ndarray, y0: int, x0: int, radius: int) -> tuple[float, float, float] | None:
    """Fit ``atanh(h)^2`` around ``(y0, x0)``; return ``(dx, dy, g_at_vertex)`` or None (see refine_minimum)."""
    if radius <= 0:
        return None
    h, w = channel.shape
    ya, yb = max(0, y0 - radius), min(h, y0 + radius + 1)
    xa, xb = max(0, x0 - radius), min(w, x0 + radius + 1)
    win = np.asarray(channel[ya:yb, xa:xb], dtype=np.float64)
    yy, xx = np.mgrid[ya:yb, xa:xb]
    # Coordinates centred on the integer minimum keep the fit well conditioned.
    dx, dy = (xx - x0).ravel().astype(np.float64), (yy - y0).ravel().astype(np.float64)
    v = np.clip(win.ravel(), 0.0, None)
    keep = np.isfinite(v) & (v < 1.0 - _SATURATION_MARGIN)
    if keep.sum() < 6:
        return None
    v, dx, dy = v[keep], dx[keep], dy[keep]
    g = np.arctanh(v) ** 2
    sqrt_w = 1.0 - v**2  # lstsq minimises sum((sqrt_w * residual)^2): weights (1 - h^2)^2
    design = np.stack([dx * dx, dy * dy, dx * dy, dx, dy, np.ones_like(dx)], axis=1)
    coef, *_ = np.linalg.lstsq(design * sqrt_w[:, None], g * sqrt_w, rcond=None)
    a, b, c, d, e, f = coef
    hess = np.array([[2 * a, c], [c, 2 * b]])
    if not np.all(np.isfinite(hess)) or hess[0, 0] <= 0 or np.linalg.det(hess) <= 0:
        return None
    off = np.linalg.solve(hess, -np.array([d, e]))
    if not np.all(np.isfinite(off)) or np.any(np.abs(off) > radius):
        return None
    g_vertex = f + 0.5 * (d * off[0] + e * off[1])
    return float(off[0]), float(off[1]), float(g_vertex)


# -- helpers --------------------------------------------------------------------------------------

def _bilinear(img: np.ndarray, x: float, y: float) -> float:
    h, w = img.shape
    x = min(max(float(x), 0.0), w - 1.0)
    y = min(max(float(y), 0.0), h - 1.0)
    x0, y0 = int(math.floor(x)), int(math.floor(y))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return float(top * (1 - fy) + bottom * fy)


def _argmin_yx(a: np.ndarray) -> tuple[int, int]:
    idx = int(np.argmin(a))
    return divmod(idx, a.shape[1])


def _check_mode(channels: str) -> None:
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {channels!r}")


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (2, 2):
        raise ValueError(f"landmarks must be (2, 2): rows [right, left], columns [x, y]; got shape {pts.shape}")
    return pts


def _check_hw(hw: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in hw)
    except (TypeError, ValueError):
        raise ValueError(f"hw must be (H, W) positive integers, got {hw!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"hw must be (H, W) positive integers, got {hw!r}")
    return h, w


def _check_beta(beta_px: float) -> None:
    try:
        ok = math.isfinite(float(beta_px)) and float(beta_px) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"beta_px is a distance in network pixels and must be a finite number > 0, got {beta_px!r}")


def _check_heatmap(heatmap: np.ndarray, channels: str) -> np.ndarray:
    _check_mode(channels)
    hm = np.asarray(heatmap)
    if hm.ndim != 3:
        raise ValueError(f"heatmap must be (C, H, W), got shape {hm.shape}")
    want = num_channels(channels)
    if hm.shape[0] != want:
        raise ValueError(f"channels={channels!r} needs a heatmap with {want} channel(s), got shape {hm.shape}")
    return hm


__all__ = [
    "CHANNEL_MODES",
    "beta_network_px",
    "decode_landmarks",
    "heatmap_confidence",
    "heatmap_weights",
    "heatmap_weights_torch",
    "num_channels",
    "refine_minimum",
    "render_heatmap",
    "render_heatmap_torch",
    "split_column",
]
