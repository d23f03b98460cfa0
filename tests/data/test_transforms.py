"""Joint transforms keep image, mask and landmarks on the same anatomy; the augmentation stream is
reproducible and honours its probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from raysearch.config import AugmentConfig
from raysearch.data.phantom import generate_phantom
from raysearch.data.transforms import (
    adjust_intensity,
    augment,
    draw_augment_params,
    flip_horizontal,
    resize_sample,
    rotate,
    sample_rng,
)
from raysearch.geometry import resize_points


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(11, 256, index=0)[0]


def _blob_sample(h, w, centre, sigma=3.0):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2)).astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    return {"id": "blob", "image": img, "mask": mask, "landmarks": np.array([centre, [np.nan, np.nan]], float)}


def _centroid(img):
    cy, cx = ndimage.center_of_mass(img)
    return np.array([cx, cy])


def _label_above(mask, point, up=(0.0, -1.0), dist=1.5):
    x, y = np.asarray(point) + dist * np.asarray(up)
    return mask[int(round(y)), int(round(x))]


# -- flip --------------------------------------------------------------------------------------

def test_flip_twice_is_identity(phantom):
    twice = flip_horizontal(flip_horizontal(phantom))
    np.testing.assert_array_equal(twice["image"], phantom["image"])
    np.testing.assert_array_equal(twice["mask"], phantom["mask"])
    np.testing.assert_array_equal(twice["landmarks"], phantom["landmarks"])
    assert twice["id"] == phantom["id"]


def test_flip_mirrors_and_swaps_identities(phantom):
    f = flip_horizontal(phantom)
    w = phantom["image"].shape[1]
    np.testing.assert_array_equal(f["image"], phantom["image"][:, ::-1])
    # labels swapped: the new right lung (1) is the mirrored old left lung (2)
    np.testing.assert_array_equal(f["mask"] == 1, (phantom["mask"] == 2)[:, ::-1])
    np.testing.assert_array_equal(f["mask"] == 2, (phantom["mask"] == 1)[:, ::-1])
    old_r, old_l = phantom["landmarks"]
    np.testing.assert_allclose(f["landmarks"][0], [w - 1 - old_l[0], old_l[1]])
    np.testing.assert_allclose(f["landmarks"][1], [w - 1 - old_r[0], old_r[1]])


def test_after_flip_each_dome_point_still_lies_under_its_own_lung(phantom):
    for s in (phantom, flip_horizontal(phantom)):
        assert _label_above(s["mask"], s["landmarks"][0]) == 1
        assert _label_above(s["mask"], s["landmarks"][1]) == 2
        # radiological convention preserved: right lung and right point on the image left
        assert s["landmarks"][0, 0] < s["landmarks"][1, 0]


def test_flip_keeps_nan_rows():
    s = _blob_sample(20, 30, (4.0, 5.0))
    f = flip_horizontal(s)
    assert np.isnan(f["landmarks"][0]).all()
    np.testing.assert_allclose(f["landmarks"][1], [25.0, 5.0])


# -- rotation -------------------------------------------------------------------------------------

def test_rotate_90_matches_numpy_rot90():
    rng = np.random.default_rng(0)
    img = rng.random((33, 33)).astype(np.float32)
    mask = rng.integers(0, 3, (33, 33)).astype(np.uint8)
    s = {"id": "r", "image": img, "mask": mask, "landmarks": np.array([[3.0, 7.0], [20.5, 11.25]])}
    r = rotate(s, 90.0)
    # counter-clockwise as displayed: np.rot90 with k=1; a point (x, y) goes to (y, W-1-x)
    np.testing.assert_allclose(r["image"][1:-1, 1:-1], np.rot90(img)[1:-1, 1:-1], atol=1e-5)
    np.testing.assert_array_equal(r["mask"][1:-1, 1:-1], np.rot90(mask)[1:-1, 1:-1])
    np.testing.assert_allclose(r["landmarks"], [[7.0, 29.0], [11.25, 32 - 20.5]], atol=1e-9)


def test_rotated_landmark_follows_rotated_image_content():
    centre = (70.3, 41.7)
    s = _blob_sample(128, 160, centre)
    r = rotate(s, 23.0)
    np.testing.assert_allclose(_centroid(r["image"]), r["landmarks"][0], atol=0.05)
    # independent closed form about ((W-1)/2, (H-1)/2), counter-clockwise on screen (y down)
    cx, cy, t = 79.5, 63.5, np.deg2rad(23.0)
    dx, dy = centre[0] - cx, centre[1] - cy
    expected = [cx + np.cos(t) * dx + np.sin(t) * dy, cy - np.sin(t) * dx + np.cos(t) * dy]
    np.testing.assert_allclose(r["landmarks"][0], expected, atol=1e-9)
    assert np.isnan(r["landmarks"][1]).all()


def test_rotation_keeps_dome_points_on_their_lungs_lower_border(phantom):
    deg = 17.0
    r = rotate(phantom, deg)
    t = np.deg2rad(deg)
    up = np.array([-np.sin(t), -np.cos(t)])  # the patient's "up" after the rotation
    for row, label in ((0, 1), (1, 2)):
        p = r["landmarks"][row]
        assert _label_above(r["mask"], p, up, 1.5) == label
        assert _label_above(r["mask"], p, up, -1.5) != label
        # the border of the rotated mask passes within ~1.5 px of the rotated point
        lung = r["mask"] == label
        border = lung & ~ndimage.binary_erosion(lung)
        by, bx = np.nonzero(border)
        assert np.min(np.hypot(bx - p[0], by - p[1])) <= 1.5


def test_rotation_out_of_image_keeps_coordinates():
    s = _blob_sample(50, 50, (1.0, 1.0))
    r = rotate(s, 45.0)
    # the top-left corner turns counter-clockwise to beyond the left edge: kept, not clipped
    np.testing.assert_allclose(r["landmarks"][0], [24.5 - 23.5 * np.sqrt(2), 24.5], atol=1e-9)


# -- resize ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw,size", [((256, 256), 64), ((200, 160), 96), ((64, 80), 200)])
def test_resize_maps_points_exactly(hw, size):
    centre = (hw[1] * 0.37 + 0.3, hw[0] * 0.61 - 0.2)
    s = _blob_sample(*hw, centre, sigma=max(hw) / 40)
    r = resize_sample(s, size)
    assert r["image"].shape == (size, size) and r["image"].dtype == np.float32
    expected = resize_points(np.array([centre]), hw, (size, size))[0]
    np.testing.assert_allclose(r["landmarks"][0], expected)
    np.testing.assert_allclose(_centroid(r["image"]), expected, atol=0.05)
    assert np.isnan(r["landmarks"][1]).all()


def test_resize_mask_is_nearest_and_centred():
    mask = np.zeros((100, 100), np.uint8)
    mask[20:40, 60:80] = 2  # pixel centres 20..39 -> region centre (69.5, 29.5)
    s = {"id": "m", "image": mask.astype(np.float32), "mask": mask, "landmarks": np.full((2, 2), np.nan)}
    r = resize_sample(s, 50)
    assert set(np.unique(r["mask"])) == {0, 2}
    expected = resize_points(np.array([[69.5, 29.5]]), (100, 100), (50, 50))[0]
    np.testing.assert_allclose(_centroid(r["mask"] == 2), expected, atol=1e-9)


# -- intensity -------------------------------------------------------------------------------------

def test_adjust_intensity_formula():
    img = np.array([[0.2, 0.4], [0.6, 0.8]], np.float32)  # mean 0.5
    s = {"id": "i", "image": img, "mask": np.zeros((2, 2), np.uint8), "landmarks": np.zeros((2, 2))}
    out = adjust_intensity(s, 1.5)["image"]
    # 1.5 * (0.5 + 1.5 * (x - 0.5)), clipped
    np.testing.assert_allclose(out, [[0.075, 0.525], [0.975, 1.0]], atol=1e-6)
    np.testing.assert_allclose(adjust_intensity(s, 1.0)["image"], img)
    dark = adjust_intensity(s, 0.5)["image"]
    np.testing.assert_allclose(dark, [[0.175, 0.225], [0.275, 0.325]], atol=1e-6)  # 0.5 * (0.5 + 0.5 * (x - 0.5))
    with pytest.raises(ValueError, match="> 0"):
        adjust_intensity(s, 0.0)


# -- augmentation ------------------------------------------------------------------------------------

def test_augment_stream_is_reproducible(phantom):
    cfg = AugmentConfig(p_intensity=1.0, p_rotate=1.0, p_flip=0.5)
    a = augment(phantom, sample_rng(3, 2, 7), cfg)
    b = augment(phantom, sample_rng(3, 2, 7), cfg)
    for k in ("image", "mask", "landmarks"):
        np.testing.assert_array_equal(a[k], b[k])
    c = augment(phantom, sample_rng(3, 2, 8), cfg)
    assert not np.array_equal(a["image"], c["image"])
    params = [draw_augment_params(sample_rng(3, 2, i), cfg)["rotate"] for i in range(5)]
    assert len(set(params)) == 5
    params_epoch = [draw_augment_params(sample_rng(3, e, 7), cfg)["rotate"] for e in range(5)]
    assert len(set(params_epoch)) == 5


def test_same_number_of_draws_whatever_is_applied():
    on = AugmentConfig(p_intensity=1.0, p_rotate=1.0, p_flip=1.0)
    off = AugmentConfig(p_intensity=0.0, p_rotate=0.0, p_flip=0.0)
    disabled = AugmentConfig(enabled=False)
    s = _blob_sample(16, 16, (5.0, 6.0))
    nxt = []
    for cfg in (on, off, disabled):
        rng = sample_rng(0, 0, 0)
        augment(s, rng, cfg)
        nxt.append(rng.random())
    assert nxt[0] == nxt[1] == nxt[2]
    ref = sample_rng(0, 0, 0)
    ref.random(5)
    assert ref.random() == nxt[0]


def test_augment_does_not_mutate_its_input(phantom):
    before = {k: np.copy(phantom[k]) for k in ("image", "mask", "landmarks")}
    cfg = AugmentConfig(p_intensity=1.0, p_rotate=1.0, p_flip=1.0)
    out = augment(phantom, sample_rng(1, 1, 1), cfg)
    for k, v in before.items():
        np.testing.assert_array_equal(phantom[k], v)
    assert out["image"] is not phantom["image"]


def test_augment_keeps_geometry_consistent_on_a_phantom(phantom):
    cfg = AugmentConfig(p_intensity=1.0, p_rotate=1.0, p_flip=1.0, rotation_deg=(-10.0, 10.0))
    for i in range(4):
        rng = sample_rng(5, 0, i)
        params = draw_augment_params(sample_rng(5, 0, i), cfg)
        out = augment(phantom, rng, cfg)
        t = np.deg2rad(params["rotate"])
        up = np.array([-np.sin(t), -np.cos(t)])
        assert _label_above(out["mask"], out["landmarks"][0], up, 1.5) == 1
        assert _label_above(out["mask"], out["landmarks"][1], up, 1.5) == 2


def test_probabilities_are_honoured():
    cfg = AugmentConfig(p_intensity=0.5, intensity_range=(0.5, 1.5), p_rotate=0.3,
                        rotation_deg=(-30.0, 3.0), p_flip=0.25)
    draws = [draw_augment_params(sample_rng(0, 0, i), cfg) for i in range(2000)]
    f_int = np.mean([d["intensity"] is not None for d in draws])
    f_rot = np.mean([d["rotate"] is not None for d in draws])
    f_flip = np.mean([d["flip"] for d in draws])
    # 4.5 binomial standard deviations at n = 2000
    assert abs(f_int - 0.5) < 0.05 and abs(f_rot - 0.3) < 0.05 and abs(f_flip - 0.25) < 0.045
    factors = np.array([d["intensity"] for d in draws if d["intensity"] is not None])
    angles = np.array([d["rotate"] for d in draws if d["rotate"] is not None])
    assert factors.min() >= 0.5 and factors.max() <= 1.5 and abs(factors.mean() - 1.0) < 0.05
    assert angles.min() >= -30.0 and angles.max() <= 3.0 and abs(angles.mean() + 13.5) < 1.5
