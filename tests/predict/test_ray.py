"""--ray runs the same per-image work on Ray Data actors: the same tables and files as the local path."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from raysearch.data.phantom import generate_phantom
from raysearch.predict.__main__ import main

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def test_ray_gives_the_same_outputs_as_local(ray_session, tmp_path, untrained_checkpoint):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        sample, _ = generate_phantom(seed=3, size=96 + 8 * i, index=i)
        cv2.imwrite(str(src / f"p{i}.png"), np.round(sample["image"] * 255).astype(np.uint8))
    (src / "zbroken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    common = ["--checkpoint", str(untrained_checkpoint), "--input", str(src), "--device", "cpu",
              "--batch-size", "2", "--spacing", "0.6", "--tta"]
    assert main(common + ["--out", str(tmp_path / "local")]) == 1
    assert main(common + ["--out", str(tmp_path / "ray"), "--ray", "--ray-actors", "2", "--ray-cpus", "0.5",
                          "--ray-timeout", "180"]) == 1
    local = pd.read_csv(tmp_path / "local" / "predictions.csv")
    ray_df = pd.read_csv(tmp_path / "ray" / "predictions.csv")
    assert len(local) == 5
    pd.testing.assert_frame_equal(local, ray_df, check_exact=False, rtol=0, atol=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "local" / "errors.csv"),
                                  pd.read_csv(tmp_path / "ray" / "errors.csv"))
    for i in range(5):
        a = cv2.imread(str(tmp_path / "local" / "masks" / f"p{i}.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "ray" / "masks" / f"p{i}.png"), cv2.IMREAD_UNCHANGED)
        assert a.shape == b.shape and (a != b).mean() < 1e-3
