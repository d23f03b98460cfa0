"""Reading images and masks: formats, normalisation, DICOM handling and every rejection."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from raysearch.data.errors import ImageError
from raysearch.data.imageio import read_image, read_mask

from dicom_files import write_dicom  # tests/ is on sys.path (pytest rootdir conftest)


def gradient(h: int = 24, w: int = 32, maxval: int = 255, dtype=np.uint8) -> np.ndarray:
    """A non-constant image spanning 0..maxval."""
    ramp = np.linspace(0, maxval, h * w).reshape(h, w)
    return np.round(ramp).astype(dtype)


# ---------------------------------------------------------------- images


def test_png_8bit_divides_by_255(tmp_path):
    raw = gradient()
    cv2.imwrite(str(tmp_path / "a.png"), raw)
    img = read_image(tmp_path / "a.png")
    assert img.pixels.dtype == np.float32 and img.pixels.shape == raw.shape
    np.testing.assert_allclose(img.pixels, raw / 255.0, atol=1e-7)
    assert img.pixel_spacing_mm is None and img.meta["format"] == "png"


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_divides_by_65535(tmp_path, suffix):
    raw = gradient(maxval=4095, dtype=np.uint16)  # 12-bit data in 16-bit storage: not stretched
    cv2.imwrite(str(tmp_path / f"a{suffix}"), raw)
    img = read_image(tmp_path / f"a{suffix}")
    np.testing.assert_allclose(img.pixels, raw / 65535.0, atol=1e-7)
    assert img.pixels.max() == pytest.approx(4095 / 65535, abs=1e-7)


def test_tiff_8bit(tmp_path):
    raw = gradient()
    cv2.imwrite(str(tmp_path / "a.tiff"), raw)
    np.testing.assert_allclose(read_image(tmp_path / "a.tiff").pixels, raw / 255.0, atol=1e-7)


def test_jpeg_close_to_source(tmp_path):
    raw = gradient(64, 64)
    cv2.imwrite(str(tmp_path / "a.jpg"), raw, [cv2.IMWRITE_JPEG_QUALITY, 95])
    img = read_image(tmp_path / "a.jpg")
    assert img.meta["format"] == "jpeg"
    assert np.abs(img.pixels - raw / 255.0).max() < 0.03


def test_gray_rgb_accepted_and_equal_to_gray(tmp_path):
    raw = gradient()
    cv2.imwrite(str(tmp_path / "rgb.png"), cv2.merge([raw, raw, raw]))
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.merge([raw, raw, raw, np.full_like(raw, 255)]))
    for name in ("rgb.png", "rgba.png"):
        img = read_image(tmp_path / name)
        assert img.meta["gray_rgb"] is True
        np.testing.assert_allclose(img.pixels, raw / 255.0, atol=1e-7)


def test_colour_rejected(tmp_path):
    raw = gradient()
    cv2.imwrite(str(tmp_path / "colour.png"), cv2.merge([raw, raw[::-1], raw]))
    with pytest.raises(ImageError, match=r"colour\.png: is a colour image"):
        read_image(tmp_path / "colour.png")


def test_transparent_rejected(tmp_path):
    raw = gradient()
    alpha = np.full_like(raw, 255)
    alpha[0, 0] = 0
    cv2.imwrite(str(tmp_path / "t.png"), cv2.merge([raw, raw, raw, alpha]))
    with pytest.raises(ImageError, match=r"t\.png: has a transparency"):
        read_image(tmp_path / "t.png")


def test_dicom_monochrome1_modality_lut_and_spacing(tmp_path):
    raw = gradient(16, 20, maxval=4000, dtype=np.uint16)
    path = write_dicom(
        tmp_path / "x.dcm", raw, "MONOCHROME1", PixelSpacing=[0.25, 0.25], RescaleSlope=2, RescaleIntercept=-1000
    )
    img = read_image(path)
    hu = raw * 2.0 - 1000.0
    expected = (hu.max() - hu) / (hu.max() - hu.min())  # MONOCHROME1: low values bright
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)
    assert img.pixels[0, 0] == pytest.approx(1.0) and img.pixels[-1, -1] == pytest.approx(0.0)
    assert img.pixel_spacing_mm == pytest.approx(0.25)
    assert img.meta["spacing_source"] == "PixelSpacing"


def test_dicom_monochrome2_imager_spacing_and_no_suffix(tmp_path):
    raw = gradient(16, 20, maxval=4000, dtype=np.uint16)
    path = write_dicom(tmp_path / "IM0001", raw, "MONOCHROME2", ImagerPixelSpacing=[0.143, 0.143])
    img = read_image(path)  # found by the DICM magic, not the name
    np.testing.assert_allclose(img.pixels, (raw - 0.0) / 4000.0, atol=1e-6)
    assert img.pixel_spacing_mm == pytest.approx(0.143)
    assert img.meta["spacing_source"] == "ImagerPixelSpacing"


def test_dicom_anisotropic_rejected(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", gradient(8, 8, 100, np.uint16), PixelSpacing=[0.2, 0.3])
    with pytest.raises(ImageError, match=r"a\.dcm: anisotropic pixels"):
        read_image(path)


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "empty.dcm", gradient(8, 8, 100, np.uint16), with_pixels=False)
    with pytest.raises(ImageError, match=r"empty\.dcm: DICOM file has no pixel data"):
        read_image(path)


def test_truncated_png(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), gradient(64, 64))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"a\.png: cannot be read \(truncated or not an image\)"):
        read_image(tmp_path / "a.png")


def test_truncated_jpeg(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), gradient(64, 64))
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(ImageError, match=r"a\.jpg: cannot be read"):
        read_image(tmp_path / "a.jpg")


def test_empty_file_missing_file_not_an_image(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"zero\.png: empty file \(0 bytes\)"):
        read_image(tmp_path / "zero.png")
    with pytest.raises(ImageError, match=r"nothere\.png: file not found"):
        read_image(tmp_path / "nothere.png")
    (tmp_path / "text.png").write_text("hello, not an image")
    with pytest.raises(ImageError, match=r"text\.png: cannot be read"):
        read_image(tmp_path / "text.png")


def test_constant_image_rejected(tmp_path):
    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageError, match=r"black\.png: image is constant \(every pixel = 0\)"):
        read_image(tmp_path / "black.png")


def test_float_tiff_rejected(tmp_path):
    cv2.imwrite(str(tmp_path / "f.tif"), gradient().astype(np.float32) / 255)
    with pytest.raises(ImageError, match=r"f\.tif: pixel type float32 is not supported"):
        read_image(tmp_path / "f.tif")


# ---------------------------------------------------------------- masks


def two_blobs(h: int = 30, w: int = 40, value: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[5:25, 3:15] = value   # image left  -> patient's right (1)
    m[8:20, 22:37] = value  # image right -> patient's left (2)
    return m


def test_label_mask_kept(tmp_path):
    labels = two_blobs(value=1)
    labels[8:20, 22:37] = 2
    cv2.imwrite(str(tmp_path / "m.png"), labels)
    out = read_mask(tmp_path / "m.png", expected_hw=(30, 40))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("value", [255, 1])
def test_binary_mask_split_by_position(tmp_path, value):
    m = two_blobs(value=value)
    m[0:2, 0:2] = value  # a stray speck: dropped, only the two largest regions are lungs
    cv2.imwrite(str(tmp_path / "m.png"), m)
    out = read_mask(tmp_path / "m.png")
    expected = np.zeros_like(m)
    expected[5:25, 3:15] = 1
    expected[8:20, 22:37] = 2
    np.testing.assert_array_equal(out, expected)


def test_binary_mask_larger_lung_on_image_right(tmp_path):
    # The side comes from position, not size: the bigger region on the image right is still label 2.
    m = np.zeros((30, 40), np.uint8)
    m[10:14, 2:6] = 255
    m[2:28, 15:39] = 255
    cv2.imwrite(str(tmp_path / "m.png"), m)
    out = read_mask(tmp_path / "m.png")
    assert set(np.unique(out[10:14, 2:6])) == {1} and set(np.unique(out[2:28, 15:39])) == {2}


def test_mask_single_region_rejected(tmp_path):
    m = np.zeros((20, 20), np.uint8)
    m[2:18, 2:18] = 255
    cv2.imwrite(str(tmp_path / "one.png"), m)
    with pytest.raises(ImageError, match=r"one\.png: binary mask has a single connected lung region"):
        read_mask(tmp_path / "one.png")


def test_mask_bad_values_no_lung_wrong_size(tmp_path):
    m = two_blobs(value=1)
    m[0, 0] = 7
    cv2.imwrite(str(tmp_path / "bad.png"), m)
    with pytest.raises(ImageError, match=r"bad\.png: mask has values other than allowed: found \[0, 1, 7\]"):
        read_mask(tmp_path / "bad.png")
    cv2.imwrite(str(tmp_path / "zero.png"), np.zeros((5, 5), np.uint8))
    with pytest.raises(ImageError, match=r"zero\.png: mask has no lung"):
        read_mask(tmp_path / "zero.png")
    cv2.imwrite(str(tmp_path / "size.png"), two_blobs())
    with pytest.raises(ImageError, match=r"size\.png: mask is 30x40 \(HxW\) but its image is 30x41"):
        read_mask(tmp_path / "size.png", expected_hw=(30, 41))
