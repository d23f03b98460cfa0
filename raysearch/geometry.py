"""Coordinate frames and the exact maps between them.

Convention: a point ``(x, y)`` is in pixel units with the **centre** of the top-left pixel at
``(0, 0)``, x to the right and y down (OpenCV's and NumPy's convention for sampling). Resizing an
image of width ``W`` to ``W'`` maps ``x -> (x + 0.5) * W'/W - 0.5`` (this is what ``cv2.resize``
does to pixel centres), so points moved with these functions stay on the same anatomy as the
resized pixels.

Frames:

* *stored* pixels: the image file as it lies in the dataset folder;
* *original* pixels: the acquisition before any downscaling; ``stored = original * orig_scale``;
* *network* pixels: the square network input of side ``input_size``;
* *reference* pixels: the stored image scaled isotropically to a width of 512 px (the paper's
  R = 100 px frame). Distances, not points, are usually expressed in it.
"""

from __future__ import annotations

import numpy as np

REFERENCE_WIDTH = 512.0


def resize_points(points: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Map ``(..., 2)`` xy points from an image of size ``from_hw`` to one of size ``to_hw``.

    Returns float64 points in pixels of the target image (NaN stays NaN).
    """
    pts = np.asarray(points, dtype=np.float64)
    sx = to_hw[1] / from_hw[1]
    sy = to_hw[0] / from_hw[0]
    out = np.empty_like(pts)
    out[..., 0] = (pts[..., 0] + 0.5) * sx - 0.5
    out[..., 1] = (pts[..., 1] + 0.5) * sy - 0.5
    return out


def stored_to_original(points: np.ndarray, orig_scale: float) -> np.ndarray:
    """Map stored-image xy points to pixels of the original acquisition (``stored = original * orig_scale``)."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts + 0.5) / float(orig_scale) - 0.5


def reference_px_per_stored_px(stored_width: int) -> float:
    """Return how many 512-px reference pixels one stored pixel spans (isotropic)."""
    return REFERENCE_WIDTH / float(stored_width)


def reference_to_network_px(distance_ref: float, input_width: int) -> float:
    """Convert a distance in reference pixels (512-px-wide frame) to pixels of a network input.

    Example: beta = 125 reference px is 31.25 px at a 128-px input, 62.5 at 256 and 125 at 512.
    """
    return float(distance_ref) * float(input_width) / REFERENCE_WIDTH
