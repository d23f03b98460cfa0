"""Built-in chest-radiograph phantoms with exact ground truth (the project's default dataset).

Each phantom is drawn from a small anatomical model in a *canonical frame* (pixels of a ``size``
square, the patient upright and centred), then every piece of geometry is moved by one random
similarity transform (rotation of a few degrees, scale, shift: the patient's pose in a portable
AP capture) and rendered directly in the final frame. Because the label mask is rasterised from
the *transformed* lung polygons and each dome point is computed from the *transformed* lower
border, the truth and the mask agree exactly (up to rasterisation, i.e. half a pixel).

Anatomy (image left = patient's right, radiological convention):

* two lung fields: rounded apex, convex lateral border ending in a sharp costophrenic angle (the
  lowest lateral point), a straight-ish mediastinal border, and a lower border that is a
  diaphragm dome between the costophrenic angle and the medial end. The landmark of each side is
  the dome apex: the point of the lower border farthest above the chord joining its two ends
  (the rule the JSRT/SCR developer set uses);
* the right dome usually higher than the left (by 1-9 % of the image height), level or inverted
  in about 12 % of images;
* a heart shadow over the medial lower left lung. As in the SCR masks, the left lung label stops
  at the heart border: its lower border ends where the dome meets the heart (cardiophrenic angle);
* posterior and anterior ribs, clavicles, spine, body outline with shoulders, bright abdomen
  below the domes, lung markings, occasional opacities (consolidations) and a gastric bubble;
* the look of portable AP captures: uneven exposure, blur, noise, gamma, a burnt-in marker.

Intensities follow radiographic convention: bright = dense. The image is quantised to 8 bits so a
phantom written to PNG and read back is bit-identical to the one generated.

Each image draws from its own generator ``np.random.default_rng([seed, index])``, so image ``i``
of a set does not depend on how many others are generated.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

GENERATOR_VERSION = 1
"""Bumped whenever the pictures a seed produces change; part of the cache folder name."""

FIELD_MM = 350.0
"""Width of the simulated detector field: pixel spacing is ``FIELD_MM / size`` mm."""

MANIFEST_COLUMNS = (
    "id", "image", "mask", "right_x", "right_y", "left_x", "left_y",
    "patient_id", "pixel_spacing_mm", "orig_scale", "view",
)

_N_CURVE = 160  # vertices per contour piece; dense enough that rasterisation, not sampling, limits accuracy


# -- geometry helpers -------------------------------------------------------------------------------

def _similarity(size: int, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """2x3 matrix: rotate by ``angle_deg`` (counter-clockwise on screen) and scale about the image
    centre ``((size-1)/2, (size-1)/2)``, then shift by ``shift`` px."""
    c = (size - 1) / 2.0
    m = cv2.getRotationMatrix2D((c, c), angle_deg, scale)
    m[:, 2] += shift
    return m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def dome_apex(border: np.ndarray) -> np.ndarray:
    """Return the point of a lower-border polyline farthest above the chord joining its two ends.

    ``border``: ``(N, 2)`` xy points from the costophrenic angle to the medial end (any pixel
    frame). "Above" is the side of the chord facing smaller y. Returns ``(2,)`` float64 xy.
    """
    border = np.asarray(border, np.float64)
    a, b = border[0], border[-1]
    d = b - a
    normal = np.array([d[1], -d[0]]) / np.hypot(*d)
    if normal[1] > 0:  # make the normal point up (towards negative y)
        normal = -normal
    height = (border - a) @ normal
    return border[int(np.argmax(height))].copy()


def _profile(s: np.ndarray, power: float) -> np.ndarray:
    """Rounded rise 0 -> 1 on s in [0, 1]: infinite slope at 0 (a rounded cap), flat at 1."""
    return (1.0 - (1.0 - s) ** power) ** (1.0 / power)


def _lung(rng: np.random.Generator, side: str, x_med: float, width: float, y_apex: float, y_dome: float,
          x_end: float | None = None) -> dict:
    """Canonical-frame contour of one lung (unit coordinates: 0..1 of the image side).

    The lower border is a dome from the costophrenic angle (lowest lateral point) to its visible
    medial end at ``x_end`` (default: the mediastinal border ``x_med``); its apex lies at fraction
    ``t0`` of that chord, ``h`` above it, at height ``y_dome``. When ``x_end`` is lateral of
    ``x_med`` the border continues straight and slightly down to ``x_med`` (the part the heart
    hides). Returns ``polygon`` (closed: apex -> lateral -> dome -> medial), ``dome``
    (costophrenic angle -> mediastinum) and named points (``x_end``, ``y_m`` = visible medial end).
    """
    sgn = -1.0 if side == "right" else 1.0  # lateral direction in x
    x_apex = x_med + sgn * width * rng.uniform(0.30, 0.45)
    x_cp = x_med + sgn * width
    x_end = x_med if x_end is None else x_end
    t0 = rng.uniform(0.38, 0.6)
    h = rng.uniform(0.025, 0.06)
    d = rng.uniform(0.0, 0.05)
    y_cp = y_dome + t0 * d + h
    y_m = y_cp - d
    t = np.linspace(0.0, 1.0, _N_CURVE)
    bump = h * np.sin(np.pi * t ** (np.log(0.5) / np.log(t0))) ** rng.uniform(0.7, 1.0)
    dome = np.stack([x_cp + t * (x_end - x_cp), y_cp + t * (y_m - y_cp) - bump], axis=1)
    if abs(x_end - x_med) > 1e-9:
        hidden = np.linspace(0.0, 1.0, _N_CURVE // 2)[1:, None]
        dome = np.concatenate([dome, dome[-1] + hidden * [x_med - x_end, -0.15 * abs(x_med - x_end)]])
    y_bottom = dome[-1, 1]

    s = np.linspace(0.0, 1.0, _N_CURVE)
    lat_x = (x_apex + (x_cp - x_apex) * _profile(s, rng.uniform(1.6, 2.6))
             + sgn * rng.uniform(0.0, 0.02) * np.sin(np.pi * s))
    lateral = np.stack([lat_x, y_apex + (y_cp - y_apex) * s], axis=1)

    cap = rng.uniform(0.18, 0.32)  # fraction of the height over which the apex rounds off medially
    bow = rng.uniform(0.0, 0.012)
    med_power = rng.uniform(1.6, 2.4)
    u = np.linspace(1.0, 0.0, _N_CURVE)[1:-1]
    med_x = x_apex + (x_med - x_apex) * _profile(np.clip(u / cap, 0, 1), med_power) + sgn * bow * np.sin(np.pi * u)
    medial = np.stack([med_x, y_apex + (y_bottom - y_apex) * u], axis=1)
    return {"polygon": np.concatenate([lateral, dome[1:], medial]), "dome": dome, "x_cp": x_cp,
            "y_cp": y_cp, "y_apex": y_apex, "x_med": x_med, "x_end": x_end, "y_m": y_m}


def _ellipse(c: np.ndarray, rx: float, ry: float, tilt: float, theta: np.ndarray) -> np.ndarray:
    ct, st = np.cos(tilt), np.sin(tilt)
    ex, ey = rx * np.cos(theta), ry * np.sin(theta)
    return np.stack([c[0] + ct * ex - st * ey, c[1] + st * ex + ct * ey], axis=1)


def _ellipse_level(c: np.ndarray, rx: float, ry: float, tilt: float, pts: np.ndarray) -> np.ndarray:
    """Implicit ellipse function: < 1 inside, 1 on the border."""
    d = pts - c
    ct, st = np.cos(tilt), np.sin(tilt)
    ex = ct * d[:, 0] + st * d[:, 1]
    ey = -st * d[:, 0] + ct * d[:, 1]
    return (ex / rx) ** 2 + (ey / ry) ** 2


def _cut_dome(dome: np.ndarray, heart: tuple) -> np.ndarray:
    """Lower border of a lung after the heart is removed from its label: the dome from the
    costophrenic end up to where it first enters the heart ellipse (crossing found by bisection)."""
    level = _ellipse_level(*heart, dome)
    inside = np.flatnonzero(level < 1.0)
    if inside.size == 0:
        return dome
    k = int(inside[0])
    if k < 8:
        raise _Reject("heart reaches the costophrenic angle")
    a, b = dome[k - 1], dome[k]
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _ellipse_level(*heart, (a + mid * (b - a))[None])[0] < 1.0:
            hi = mid
        else:
            lo = mid
    return np.concatenate([dome[:k], (a + lo * (b - a))[None]])


class _Reject(Exception):
    """An anatomy draw whose lung labels would not be one clean region each; draw again."""


def _anatomy(rng: np.random.Generator) -> dict:
    """Draw the canonical-frame anatomy (unit coordinates). Returns polygons and parameters."""
    level = bool(rng.random() < 0.12)
    dy = rng.uniform(-0.035, 0.005) if level else rng.uniform(0.012, 0.09)
    y_dome_r = rng.uniform(0.53, 0.62)
    y_apex = rng.uniform(0.07, 0.13)
    right = _lung(rng, "right", 0.5 - rng.uniform(0.035, 0.06), rng.uniform(0.30, 0.36),
                  y_apex + rng.uniform(-0.01, 0.01), y_dome_r)
    left = _lung(rng, "left", 0.5 + rng.uniform(0.03, 0.05), rng.uniform(0.29, 0.35),
                 y_apex + rng.uniform(-0.01, 0.01), y_dome_r + dy, x_end=0.5 + rng.uniform(0.16, 0.21))
    # Heart: an ellipse whose lower left border passes through the visible medial end of the left
    # dome (the cardiophrenic angle), mostly over the patient's left, its bottom hidden below the
    # diaphragm. Both lung labels stop at its border (SCR convention).
    rx, ry = rng.uniform(0.145, 0.18), rng.uniform(0.11, 0.14)
    tilt = np.deg2rad(rng.uniform(5.0, 20.0))
    theta1 = np.deg2rad(rng.uniform(15.0, 35.0))
    m_left = np.array([left["x_end"], left["y_m"]])
    centre = m_left - _ellipse(np.zeros(2), rx, ry, tilt, np.array([theta1]))[0]
    heart = (centre, rx, ry, tilt)
    return {
        "right": right, "left": left, "heart": heart, "dy": dy, "level": level,
        "right_border": _cut_dome(right["dome"], heart), "left_border": _cut_dome(left["dome"], heart),
        "heart_poly": _ellipse(*heart, np.linspace(0, 2 * np.pi, 2 * _N_CURVE, endpoint=False)),
    }


# -- rendering helpers ----------------------------------------------------------------------------

def _fixed(p: np.ndarray) -> np.ndarray:
    return np.round(p * 16).astype(np.int32)


def _fill(shape: tuple[int, int], polys: list[np.ndarray], value: int = 1) -> np.ndarray:
    """Rasterise polygons (pixel coords, centres at integers) with 1/16-px vertex precision."""
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [_fixed(p) for p in polys], value, cv2.LINE_8, shift=4)
    return out


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.3:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def _up(img: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def _polyline(canvas: np.ndarray, pts: np.ndarray, thickness: float, value: int) -> None:
    cv2.polylines(canvas, [_fixed(pts)], False, value, max(int(round(thickness)), 1), cv2.LINE_AA, shift=4)


def _one_region(labels: np.ndarray, value: int, max_crumb: int = 4) -> bool:
    """Keep only the largest 8-connected region of ``value`` (in place). Returns False when another
    region is larger than ``max_crumb`` px (a real second piece, not a rasterisation crumb in the
    tip of a thin angle)."""
    n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == value).astype(np.uint8), connectivity=8)
    if n == 2:
        return True
    if n < 2:
        return False
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + int(np.argmax(areas))
    if np.sort(areas)[-2] > max_crumb:
        return False
    labels[(comp != keep) & (comp > 0)] = 0
    return True


# -- the generator ----------------------------------------------------------------------------------

def generate_phantom(seed: int, size: int = 512, index: int = 0) -> tuple[dict, dict]:
    """Draw one phantom chest radiograph with its exact truth.

    The generator is ``np.random.default_rng([seed, index])``: the same ``(seed, size, index)``
    always gives bit-identical arrays.

    Returns ``(sample, info)``:

    * ``sample``: ``id`` (``"PH{index:04d}"``), ``image`` float32 ``(size, size)`` in [0, 1]
      (on 8-bit levels), ``mask`` uint8 ``(size, size)`` (0 background, 1 patient's right lung =
      image left, 2 patient's left lung), ``landmarks`` float64 ``(2, 2)`` rows [right, left],
      columns [x, y], pixels of this image: the dome apex of each hemidiaphragm, computed from the
      posed lower border of each lung label (the border the mask is rasterised from);
    * ``info``: ``dome_dy_px`` (left y - right y in px; positive = right dome higher),
      ``rotation_deg``, ``scale``, ``shift_px``, ``level_domes`` (drawn level or inverted),
      ``n_opacities``, ``gastric_bubble``, ``marker``, ``redraws``, ``seed``, ``index``, ``size``,
      ``generator_version``.
    """
    if int(size) < 64:
        raise ValueError(f"phantom size must be at least 64 px, got {size}")
    size = int(size)
    rng = np.random.default_rng([int(seed), int(index)])
    S = float(size)
    hw = (size, size)

    for redraws in range(50):
        try:
            anat = _anatomy(rng)
        except _Reject:
            continue
        # Pose of the patient (portable AP: a few degrees of rotation, off-centre, magnification).
        angle = float(rng.uniform(-6.0, 6.0))
        scale = float(rng.uniform(0.9, 1.04))
        shift = (float(rng.uniform(-0.035, 0.035) * S), float(rng.uniform(-0.03, 0.03) * S))
        m = _similarity(size, angle, scale, shift)

        def pose(pts: np.ndarray) -> np.ndarray:
            return _apply(m, np.asarray(pts, np.float64) * S)

        right_poly, left_poly, heart_poly = pose(anat["right"]["polygon"]), pose(anat["left"]["polygon"]), \
            pose(anat["heart_poly"])
        mask = _fill(hw, [right_poly], 1)
        cv2.fillPoly(mask, [_fixed(left_poly)], 2, cv2.LINE_8, shift=4)
        cv2.fillPoly(mask, [_fixed(heart_poly)], 0, cv2.LINE_8, shift=4)
        if _one_region(mask, 1) and _one_region(mask, 2):
            break
    else:  # pragma: no cover - the parameter ranges make this practically impossible
        raise RuntimeError(f"phantom seed={seed} index={index}: no valid anatomy after 50 draws")

    # Truth: dome apex of the posed lower borders (a similarity maps the apex to the apex).
    landmarks = np.stack([dome_apex(pose(anat["right_border"])), dome_apex(pose(anat["left_border"]))])

    # Smooth fields are computed on a quarter-resolution grid and upsampled (they have no edges
    # sharper than a few pixels), which keeps a 512-px phantom at a few tens of milliseconds.
    low = max(size // 4, 16)
    f = S / low
    m_inv = cv2.invertAffineTransform(m).astype(np.float32)
    lx, ly = np.meshgrid((np.arange(low, dtype=np.float32) + 0.5) * f - 0.5,
                         (np.arange(low, dtype=np.float32) + 0.5) * f - 0.5)
    u = (m_inv[0, 0] * lx + m_inv[0, 1] * ly + m_inv[0, 2]) / S
    v = (m_inv[1, 0] * lx + m_inv[1, 1] * ly + m_inv[1, 2]) / S

    # Body: a torso whose half-width grows from the neck to the shoulders, thicker in the middle.
    right, left = anat["right"], anat["left"]
    lung_half = max(0.5 - right["x_cp"], left["x_cp"] - 0.5)
    half = lung_half + rng.uniform(0.04, 0.08)
    neck = rng.uniform(0.10, 0.14)
    shoulder_v = rng.uniform(0.02, 0.08)
    shoulder = half + rng.uniform(0.03, 0.12)
    t_sh = np.clip(v / shoulder_v, 0, 1)
    rb = np.where(v < shoulder_v, neck + (shoulder - neck) * np.sin(0.5 * np.pi * t_sh) ** 0.5,
                  shoulder + (half - shoulder) * np.clip((v - shoulder_v) / 0.3, 0, 1) ** 0.7)
    xr = np.abs(u - 0.5) / rb
    inside = np.clip((1.0 - xr) / 0.04, 0.0, 1.0)  # soft skin edge
    body = inside * (0.3 + 0.7 * np.sqrt(np.clip(1.0 - xr**2, 0.0, 1.0)))
    smooth = 0.10 + rng.uniform(0.58, 0.66) * body
    # Spine (with vertebral bodies) and the upper mediastinum (great vessels).
    spine = np.exp(-(((u - 0.5) / rng.uniform(0.035, 0.045)) ** 4))
    period = rng.uniform(0.045, 0.055)
    vert = 0.8 + 0.2 * np.cos(2 * np.pi * (v - rng.uniform(0, period)) / period)
    smooth += rng.uniform(0.06, 0.10) * spine * vert * inside
    trachea = np.exp(-(((u - 0.5) / 0.012) ** 2)) * np.clip((0.33 - v) / 0.05, 0, 1)
    smooth -= 0.06 * trachea * inside
    hila_y = rng.uniform(0.38, 0.45)
    hila = np.exp(-((np.abs(u - 0.5) - 0.11) ** 2 / 0.004 + (v - hila_y) ** 2 / 0.01))
    smooth += rng.uniform(0.05, 0.10) * hila
    # Gastric bubble under the left dome (dark) and opacities (hazy consolidations) in the lungs.
    bubble = bool(rng.random() < 0.5)
    bub_c = (left["x_cp"] - rng.uniform(0.08, 0.14), left["y_cp"] + rng.uniform(0.03, 0.06))
    bub_r = rng.uniform(0.025, 0.045)
    if bubble:
        smooth -= 0.15 * np.exp(-((((u - bub_c[0]) ** 2 + ((v - bub_c[1]) * 1.6) ** 2) / bub_r**2) ** 2))
    n_op = int(rng.choice([0, 0, 0, 1, 2, 3]))
    opac = np.zeros_like(u)
    for j in range(3):  # always three draws, so later draws do not depend on n_op
        lung = right if rng.integers(2) == 0 else left
        oc = (lung["x_cp"] + (lung["x_med"] - lung["x_cp"]) * rng.uniform(0.15, 0.7),
              lung["y_apex"] + rng.uniform(0.3, 0.9) * (lung["y_cp"] - lung["y_apex"]))
        orad, amp = rng.uniform(0.04, 0.10), rng.uniform(0.12, 0.25)
        if j < n_op:
            opac += amp * np.exp(-((u - oc[0]) ** 2 + (v - oc[1]) ** 2) / orad**2)
    # Uneven exposure: a linear ramp in the final image frame.
    g = rng.uniform(-0.25, 0.25, size=2)
    ramp = 1.0 + g[0] * (lx / S - 0.5) + g[1] * (ly / S - 0.5)
    smooth_full = _up(cv2.GaussianBlur(smooth.astype(np.float32), (0, 0), 0.8), size)
    opac_full = _up(opac.astype(np.float32), size)
    ramp_full = _up(ramp.astype(np.float32), size)

    # Lungs: air lowers the density; sharp at the diaphragm, thinning towards the walls. The air
    # region is the whole lung field (the heart is drawn over the left lung, not cut out of it).
    air = _fill(hw, [right_poly, left_poly]).astype(np.float32)
    wide = _up(cv2.GaussianBlur(cv2.resize(air, (low, low), interpolation=cv2.INTER_AREA), (0, 0),
                                0.03 * low), size)
    air_soft = 0.5 * _blur(air, 0.003 * S) + 0.5 * wide * air
    heart_fill = _fill(hw, [heart_poly]).astype(np.float32)
    heart_wide = _up(cv2.GaussianBlur(cv2.resize(heart_fill, (low, low), interpolation=cv2.INTER_AREA), (0, 0),
                                      0.015 * low), size)
    heart = 0.6 * _blur(heart_fill, 0.003 * S) + 0.4 * heart_wide * heart_fill
    # The heart is thick tissue displacing the air behind it: heart and mediastinum read as one
    # shadow, and below the diaphragm (no air) it is invisible, as on a real film.
    air_soft *= 1.0 - rng.uniform(0.8, 0.95) * heart
    density = smooth_full - rng.uniform(0.42, 0.50) * air_soft + opac_full * air_soft

    # Lines drawn on an 8-bit canvas: ribs, clavicles, vessels.
    lines = np.zeros(hw, np.uint8)
    rib_w = rng.uniform(0.02, 0.026) * S * scale
    spacing = rng.uniform(0.058, 0.066)
    y0 = rng.uniform(0.06, 0.09)
    s = np.linspace(0.0, 1.0, 32)
    reach = lung_half + 0.03
    for k in range(10):
        for sgn in (-1.0, 1.0):
            yk = y0 + k * spacing + rng.normal(0.0, 0.004)
            # Posterior rib: leaves the spine, rises a little, then arcs down to the chest wall,
            # more steeply for the lower ribs.
            xs = 0.5 + sgn * (0.03 + reach * s)
            ys = (yk - 0.025 * np.sin(np.pi * s) + (0.03 + 0.006 * k) * s**2
                  + 0.07 * np.clip((s - 0.8) / 0.2, 0, 1) ** 2)
            pts = pose(np.stack([xs, ys], axis=1))
            w_k = rib_w * rng.uniform(0.85, 1.15)
            _polyline(lines, pts, w_k, 110)
            _polyline(lines, pts, w_k * 0.5, 80)
            if 1 <= k <= 6:  # anterior rib: from the lateral wall down towards the sternum (fainter)
                xa = 0.5 + sgn * (0.12 + (reach - 0.05) * (1 - s))
                ya = yk + 0.05 + 0.12 * s - 0.04 * s**2
                _polyline(lines, pose(np.stack([xa, ya], axis=1)), rib_w * 0.7, 60)
    clav_y = rng.uniform(0.12, 0.17)
    clav_w = rng.uniform(0.024, 0.032) * S * scale
    for sgn in (-1.0, 1.0):
        xs = 0.5 + sgn * (0.05 + 0.33 * s)
        ys = clav_y - 0.07 * s + 0.012 * np.sin(2 * np.pi * s)
        _polyline(lines, pose(np.stack([xs, ys], axis=1)), clav_w, 170)
    bones = _blur(lines.astype(np.float32) / 255.0, 0.0015 * S)
    density += rng.uniform(0.08, 0.14) * bones * (0.5 + 0.5 * air_soft)

    # Vessels: branching lines from the hila, visible inside the lungs.
    vessels = np.zeros(hw, np.uint8)
    for sgn in (-1.0, 1.0):
        hx = 0.5 + sgn * rng.uniform(0.08, 0.12)
        for _ in range(14):
            ang = rng.uniform(-1.3, 1.3)
            length = rng.uniform(0.10, 0.30)
            steps = ang + np.cumsum(rng.normal(0.0, 0.18, 7))
            dx, dy_ = sgn * np.cos(steps) * length / 7, np.sin(steps) * length / 7
            pts = np.stack([hx + np.concatenate([[0], np.cumsum(dx)]),
                            hila_y + np.concatenate([[0], np.cumsum(dy_)])], axis=1)
            _polyline(vessels, pose(pts), 0.005 * S, 200)
            _polyline(vessels, pose(pts[3:] + [sgn * 0.03, rng.normal(0, 0.04)]), 0.003 * S, 150)
    density += rng.uniform(0.05, 0.09) * _blur(vessels.astype(np.float32) / 255.0, 0.002 * S) * air_soft

    # Acquisition: exposure gradient, gamma, blur, noise, quantisation.
    # Film-like response: compresses the dense end so heart + spine do not burn out.
    k = 2.0
    img = (1.0 - cv2.exp(-k * np.clip(density * ramp_full, 0.0, None))) / (1.0 - np.exp(-k * 1.25))
    img = cv2.pow(np.clip(img, 0.0, 1.0), rng.uniform(0.8, 1.25))
    img = rng.uniform(0.85, 1.0) * img + rng.uniform(0.0, 0.08)
    img = _blur(img.astype(np.float32), rng.uniform(0.3, 1.2) * S / 512.0)
    # Quantum noise: a triangular distribution (sum of two uniform bytes, sd ~1) is much faster
    # to draw than a Gaussian and looks the same.
    noise = np.frombuffer(rng.bytes(2 * size * size), np.uint8).reshape(2, size, size).astype(np.float32)
    img += rng.uniform(0.008, 0.03) * ((noise[0] + noise[1] - 255.0) / 104.5)

    marker = bool(rng.random() < 0.5)
    corner = int(rng.integers(4))
    mw, mh = int(rng.uniform(0.08, 0.16) * S), int(rng.uniform(0.04, 0.07) * S)
    tone = int(rng.uniform(215, 255))
    if marker:
        x0 = int(0.03 * S) if corner % 2 == 0 else size - int(0.03 * S) - mw
        y0 = int(0.03 * S) if corner < 2 else size - int(0.03 * S) - mh
        patch = np.full((mh, mw), tone, np.uint8)  # putText needs 8-bit
        cv2.putText(patch, "AP" if corner % 2 else "L", (mw // 6, int(mh * 0.8)),
                    cv2.FONT_HERSHEY_SIMPLEX, mh / 40.0, 30, max(1, size // 256), cv2.LINE_AA)
        img[y0:y0 + mh, x0:x0 + mw] = patch.astype(np.float32) / 255.0

    img = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0
    sample = {"id": f"PH{index:04d}", "image": img, "mask": mask, "landmarks": landmarks}
    info = {
        "dome_dy_px": float(landmarks[1, 1] - landmarks[0, 1]),
        "rotation_deg": angle, "scale": scale, "shift_px": shift,
        "level_domes": anat["level"], "n_opacities": n_op, "gastric_bubble": bubble,
        "marker": marker, "redraws": redraws, "seed": int(seed), "index": int(index), "size": size,
        "generator_version": GENERATOR_VERSION,
    }
    return sample, info


# -- folders ------------------------------------------------------------------------------------------

def _fmt(v: float) -> str:
    return f"{v:.4f}"


def write_phantom_dataset(out: str | Path, n: int = 120, size: int = 512, seed: int = 0,
                          overwrite: bool = False) -> Path:
    """Write ``n`` phantoms as a dataset folder (the format ``raysearch.data.load_dataset`` reads).

    Layout: ``images/PH0000.png`` (8-bit gray), ``masks/PH0000.png`` (labels 0/1/2),
    ``manifest.csv`` (landmarks in stored px, ``pixel_spacing_mm = 350 / size``, ``orig_scale`` 1,
    view ``AP``, ``patient_id`` = id) and ``README.md`` (what it is, seed, generator version).
    Image ``i`` is ``generate_phantom(seed, size, index=i)``.

    Refuses to write into a non-empty folder unless ``overwrite`` (which deletes it first).
    Returns the folder path.
    """
    out = Path(out)
    if n < 1:
        raise ValueError(f"n must be >= 1 phantoms, got {n}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} is not empty; pass overwrite=True to replace it or choose another folder"
            )
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    spacing = FIELD_MM / size
    rows = []
    dys = []
    for i in range(n):
        sample, info = generate_phantom(seed, size, index=i)
        pid = sample["id"]
        cv2.imwrite(str(out / "images" / f"{pid}.png"), np.round(sample["image"] * 255).astype(np.uint8))
        cv2.imwrite(str(out / "masks" / f"{pid}.png"), sample["mask"])
        (rx, ry), (lx, ly) = sample["landmarks"]
        rows.append([pid, f"images/{pid}.png", f"masks/{pid}.png", _fmt(rx), _fmt(ry), _fmt(lx), _fmt(ly),
                     pid, f"{spacing:.6g}", "1", "AP"])
        dys.append(info["dome_dy_px"])
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    dys_a = np.asarray(dys)
    (out / "README.md").write_text(
        f"# Built-in phantom chest radiographs ({n} images, {size} px)\n\n"
        "Synthetic portable-AP-like chest X-rays made by `raysearch.data.phantom` "
        f"(generator version {GENERATOR_VERSION}, seed {seed}; image i = `generate_phantom({seed}, {size}, index=i)`).\n"
        "Not real patients: a stand-in with exact truth so the pipeline runs and learns anywhere.\n\n"
        "* `images/<id>.png`: 8-bit gray, bright = dense.\n"
        "* `masks/<id>.png`: labels 0 background, 1 patient's right lung (image left), 2 patient's left lung\n"
        "  (image right); the left lung stops at the heart border (SCR convention).\n"
        "* `manifest.csv`: `right_x,right_y,left_x,left_y` = apex of each hemidiaphragm dome (the lower-border\n"
        "  point farthest above the chord from the costophrenic angle to the medial end), stored px,\n"
        "  computed from the same posed geometry the mask is rasterised from.\n"
        f"* pixel spacing {spacing:.6g} mm (a {FIELD_MM:.0f} mm field), orig_scale 1, view AP.\n\n"
        f"Right dome higher than left in {np.mean(dys_a > 0) * 100:.0f}% of images; "
        f"left y - right y: median {np.median(dys_a):.1f} px.\n"
    )
    return out


def cache_root() -> Path:
    """Folder for generated data: ``$RAYSEARCH_CACHE`` or ``~/.cache/raysearch``."""
    env = os.environ.get("RAYSEARCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "raysearch"


def default_phantom_dataset(n: int = 120, size: int = 512, seed: int = 0) -> Path:
    """Return the cached phantom dataset folder, generating it once if needed.

    Folder: ``<cache_root()>/phantoms_n{n}_s{size}_seed{seed}_v{GENERATOR_VERSION}``. It is written
    into a temporary sibling and moved into place with ``os.replace``, so a reader never sees a
    half-written folder; when two processes race, the first rename wins and the loser's copy
    (identical, the generator is deterministic) is discarded.
    """
    root = cache_root()
    final = root / f"phantoms_n{n}_s{size}_seed{seed}_v{GENERATOR_VERSION}"
    if (final / "manifest.csv").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        write_phantom_dataset(tmp, n=n, size=size, seed=seed, overwrite=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "manifest.csv").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# -- picture for the README -----------------------------------------------------------------------------

def phantom_gallery_png(path: str | Path, n: int = 4, size: int = 256, seed: int = 0) -> Path:
    """Save a horizontal strip of ``n`` phantoms (``size`` px each) with lung contours (right lung
    orange, left lung cyan) and the two dome points (right red, left green). Returns the path."""
    tiles = []
    for i in range(n):
        sample, _ = generate_phantom(seed, size, index=i)
        tile = cv2.cvtColor(np.round(sample["image"] * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        for label, colour in ((1, (0, 140, 255)), (2, (255, 200, 0))):
            contours, _ = cv2.findContours((sample["mask"] == label).astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(tile, contours, -1, colour, 1, cv2.LINE_AA)
        for (x, y), colour in zip(sample["landmarks"], ((0, 0, 255), (0, 220, 0))):
            cv2.circle(tile, (int(round(x * 16)), int(round(y * 16))), 4 * 16, colour, 2, cv2.LINE_AA, shift=4)
        tiles.append(tile)
    gap = np.full((size, 4, 3), 255, np.uint8)
    strip = np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), strip):
        raise OSError(f"could not write {path}")
    return path


__all__ = [
    "FIELD_MM",
    "GENERATOR_VERSION",
    "cache_root",
    "default_phantom_dataset",
    "dome_apex",
    "generate_phantom",
    "phantom_gallery_png",
    "write_phantom_dataset",
]
