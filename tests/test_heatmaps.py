"""Heatmap targets tanh(pi d / beta) and decoding them back to points."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raysearch.geometry import reference_to_network_px
from raysearch.heatmaps import (
    beta_network_px,
    decode_landmarks,
    heatmap_confidence,
    heatmap_weights,
    heatmap_weights_torch,
    render_heatmap,
    render_heatmap_torch,
    split_column,
)

NAN = float("nan")
LM = np.array([[20.3, 33.7], [70.6, 30.2]])  # right (image left), left (image right)
HW = (64, 96)


# -- rendering: hand-computed values ----------------------------------------------------------

def test_value_on_landmark_is_zero_and_at_beta_over_4_is_tanh_pi_over_4():
    lm = np.array([[10.0, 12.0], [NAN, NAN]])
    hm = render_heatmap(lm, (32, 48), beta_px=8.0, channels="single")
    assert hm.shape == (1, 32, 48) and hm.dtype == np.float32
    assert hm[0, 12, 10] == 0.0
    # d = beta/4 = 2 px to the right of the landmark.
    assert hm[0, 12, 12] == pytest.approx(0.6557942, abs=1e-6)
    assert hm[0, 12, 12] == pytest.approx(math.tanh(math.pi / 4), abs=1e-6)


def test_three_four_five_triangle():
    lm = np.array([[5.0, 6.0], [NAN, NAN]])
    hm = render_heatmap(lm, (16, 16), beta_px=10.0)
    # pixel (x=8, y=10): dx=3, dy=4, d=5
    assert hm[0, 10, 8] == pytest.approx(math.tanh(math.pi * 5 / 10), abs=1e-6)


def test_single_is_min_over_sides_and_per_landmark_keeps_them_apart():
    beta = 12.0
    single = render_heatmap(LM, HW, beta, "single")
    per = render_heatmap(LM, HW, beta, "per_landmark")
    assert per.shape == (2, *HW)
    np.testing.assert_allclose(single[0], per.min(axis=0), atol=0)
    # spot-check one pixel by hand in each channel
    y, x = 40, 30
    d_r = math.hypot(x - 20.3, y - 33.7)
    d_l = math.hypot(x - 70.6, y - 30.2)
    assert per[0, y, x] == pytest.approx(math.tanh(math.pi * d_r / beta), abs=1e-6)
    assert per[1, y, x] == pytest.approx(math.tanh(math.pi * d_l / beta), abs=1e-6)


def test_unannotated_side_is_all_ones_and_weighted_zero():
    lm = np.array([[20.0, 30.0], [NAN, NAN]])
    per = render_heatmap(lm, HW, 10.0, "per_landmark")
    assert np.all(per[1] == 1.0)
    assert per[0].min() == 0.0
    np.testing.assert_array_equal(heatmap_weights(lm, "per_landmark"), [1.0, 0.0])
    np.testing.assert_array_equal(heatmap_weights(lm, "single"), [1.0])
    none = np.full((2, 2), NAN)
    assert np.all(render_heatmap(none, HW, 10.0, "single") == 1.0)
    np.testing.assert_array_equal(heatmap_weights(none, "single"), [0.0])
    np.testing.assert_array_equal(heatmap_weights(LM, "per_landmark"), [1.0, 1.0])
    assert heatmap_weights(LM, "single").dtype == np.float32


@pytest.mark.parametrize("width, expected", [(128, 31.25), (256, 62.5), (512, 125.0)])
def test_beta_reference_units_convert_to_network_px(width, expected):
    beta_net = reference_to_network_px(125.0, width)
    assert beta_net == pytest.approx(expected)
    assert beta_network_px(125.0, width) == pytest.approx(expected)
    # The rendered map uses it: the pixel beta_net/4 (and beta_net) right of the landmark holds
    # tanh(pi/4) (and tanh(pi)); the landmark sits off-grid so that those pixels exist.
    y = width // 2
    for frac, value in ((0.25, math.tanh(math.pi / 4)), (1.0, math.tanh(math.pi))):
        x_pix = width // 4 + int(beta_net)
        lm = np.array([[x_pix - frac * beta_net, y], [NAN, NAN]])
        hm = render_heatmap(lm, (width, width), beta_net)
        assert hm[0, y, x_pix] == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("channels", ["single", "per_landmark"])
def test_torch_render_matches_numpy(channels):
    batch = np.stack([LM, np.array([[10.5, 50.25], [NAN, NAN]]), np.full((2, 2), NAN)])
    t = render_heatmap_torch(torch.tensor(batch), HW, 7.5, channels)
    c = 1 if channels == "single" else 2
    assert t.shape == (3, c, *HW) and t.dtype == torch.float32
    for i in range(3):
        np.testing.assert_allclose(t[i].numpy(), render_heatmap(batch[i], HW, 7.5, channels), atol=2e-6)
        np.testing.assert_array_equal(
            heatmap_weights_torch(torch.tensor(batch), channels)[i].numpy(), heatmap_weights(batch[i], channels)
        )


def test_render_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        render_heatmap(np.zeros((3, 2)), HW, 5.0)
    with pytest.raises(ValueError, match="beta_px"):
        render_heatmap(LM, HW, 0.0)
    with pytest.raises(ValueError, match="channels"):
        render_heatmap(LM, HW, 5.0, "both")
    with pytest.raises(ValueError, match=r"\(B, 2, 2\)"):
        render_heatmap_torch(torch.zeros(2, 2), HW, 5.0)


# -- decoding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [5.0, 31.25, 125.0])
@pytest.mark.parametrize("channels", ["single", "per_landmark"])
def test_decode_recovers_subpixel_points(beta, channels):
    hm = render_heatmap(LM, HW, beta, channels)
    got = decode_landmarks(hm, channels)
    assert got.shape == (2, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got, LM, atol=1e-3)  # measured ~1e-8


def test_decode_without_refinement_gives_nearest_pixel():
    hm = render_heatmap(LM, HW, 31.25, "per_landmark")
    np.testing.assert_array_equal(decode_landmarks(hm, "per_landmark", refine_radius=0), np.round(LM))


def test_decode_near_the_border_and_with_noise():
    lm = np.array([[0.4, 62.6], [95.2, 1.3]])
    hm = render_heatmap(lm, HW, 31.25, "single")
    np.testing.assert_allclose(decode_landmarks(hm, "single"), lm, atol=0.05)
    # A network-like output: squashed into [0.05, 0.95] with noise. Still well inside 0.5 px.
    rng = np.random.default_rng(0)
    hm = render_heatmap(LM, HW, 31.25, "single")
    noisy = np.clip(0.05 + 0.9 * hm + rng.normal(0, 0.01, hm.shape), 0, 1)
    np.testing.assert_allclose(decode_landmarks(noisy, "single"), LM, atol=0.5)


def test_single_decoding_uses_the_lung_split_not_the_midline():
    # Patient shifted left: lungs in columns 2..30 (right lung) and 36..60 (left lung) of a 96-px
    # image, so the left hemidiaphragm (x=40.2) lies left of the midline (47.5).
    lm = np.array([[15.0, 40.0], [40.2, 42.7]])
    hm = render_heatmap(lm, HW, 20.0, "single")
    lung = np.zeros(HW, dtype=np.uint8)
    lung[10:45, 2:31] = 1
    lung[10:45, 36:61] = 2
    assert 30 < split_column(lung) < 36
    np.testing.assert_allclose(decode_landmarks(hm, "single", lung=lung), lm, atol=1e-3)
    # With the midline split both minima would be searched on the wrong sides.
    wrong = decode_landmarks(hm, "single")
    assert np.abs(wrong - lm).max() > 5
    # probability maps work the same way
    prob = (lung > 0).astype(np.float32) * 0.9
    np.testing.assert_allclose(decode_landmarks(hm, "single", lung=prob), lm, atol=1e-3)


def test_split_column_falls_back_to_midline():
    assert split_column(np.zeros(HW)) == pytest.approx((96 - 1) / 2)
    one_side = np.zeros(HW)
    one_side[:, 5:20] = 1
    assert split_column(one_side) == pytest.approx(47.5)
    # symmetric lungs: the centre of the empty gap
    lung = np.zeros(HW)
    lung[:, 10:40] = 1
    lung[:, 56:86] = 1
    assert split_column(lung) == pytest.approx(47.5)


def test_decode_rejects_wrong_channel_count_and_lung_shape():
    hm = render_heatmap(LM, HW, 5.0, "single")
    with pytest.raises(ValueError, match="2 channel"):
        decode_landmarks(hm, "per_landmark")
    with pytest.raises(ValueError, match="lung map"):
        decode_landmarks(hm, "single", lung=np.zeros((10, 10)))


def test_confidence_is_depth_of_minimum():
    hm = render_heatmap(LM, HW, 31.25, "single")
    conf = heatmap_confidence(hm, decode_landmarks(hm, "single"))
    np.testing.assert_allclose(conf, [1.0, 1.0], atol=1e-3)
    # a prediction whose minimum only reaches 0.4 has confidence ~0.6
    shallow = 0.4 + 0.6 * hm
    conf = heatmap_confidence(shallow, decode_landmarks(shallow, "single"))
    np.testing.assert_allclose(conf, [0.6, 0.6], atol=0.05)
    flat = np.ones((1, *HW), dtype=np.float32)
    np.testing.assert_allclose(heatmap_confidence(flat, LM), [0.0, 0.0])
    assert np.isnan(heatmap_confidence(hm, np.array([[1.0, 2.0], [NAN, NAN]]))[1])


@pytest.mark.jsrt
def test_lung_split_separates_the_real_jsrt_landmarks(jsrt_dir):
    """On every annotated JSRT image (masks and points resized to 128 px) the split column lies
    between the right and the left hemidiaphragm points, and decoding the rendered target with the
    lung map returns the points."""
    import cv2
    import pandas as pd

    from raysearch.geometry import resize_points

    manifest = pd.read_csv(jsrt_dir / "manifest.csv")
    checked = 0
    for row in manifest.itertuples():
        pts = np.array([[row.right_x, row.right_y], [row.left_x, row.left_y]], dtype=np.float64)
        if np.isnan(pts).any():
            continue
        mask = cv2.imread(str(jsrt_dir / row.mask), cv2.IMREAD_UNCHANGED)
        lung = cv2.resize(mask, (128, 128), interpolation=cv2.INTER_NEAREST)
        lm = resize_points(pts, mask.shape[:2], (128, 128))
        split = split_column(lung)
        assert lm[0, 0] < split < lm[1, 0], row.id
        hm = render_heatmap(lm, (128, 128), beta_network_px(125.0, 128), "single")
        np.testing.assert_allclose(decode_landmarks(hm, "single", lung=lung), lm, atol=1e-3, err_msg=row.id)
        checked += 1
    assert checked > 200
