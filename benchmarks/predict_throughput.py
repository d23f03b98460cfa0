"""Throughput of ``python -m raysearch.predict``: images per second, local vs ``--ray``, with and without TTA.

Usage: ``python benchmarks/predict_throughput.py [--n 16] [--sizes 256 512] [--ray-actors 2] [--threads 0]
[--accuracy-checkpoint RUN_OR_BEST_PT]``

A width-16 two-head U-Net with random (He) weights (throughput does not depend on the weights) is
saved as a checkpoint per input size; ``--n`` phantom radiographs of 512 px are written as PNG.
Each cell times the whole per-image path (read, resize, forward, decode, labels, measurements,
mask and overlay PNG encoding; writing the output folder is excluded) after one warm-up batch.
The Ray column uses a local Ray (``ray.init(num_cpus=<cores>)``) and includes the actor pool's
start-up (each actor loads torch and the checkpoint), as a user of ``--ray`` would see it.

``--accuracy-checkpoint``: also measure what TTA does to accuracy: mean dome error and mean
absolute height-difference error (px) of that (trained) checkpoint on ``--n`` unseen phantoms
(seed 1) at the checkpoint's ``data.phantom_size``, without and with TTA.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16, help="images per measurement")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ray-actors", type=int, default=2)
    ap.add_argument("--ray-cpus", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for the local path (0: default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--accuracy-checkpoint", help="trained checkpoint for the TTA accuracy table")
    args = ap.parse_args()
    if args.accuracy_checkpoint:
        tta_accuracy(args.accuracy_checkpoint, args.n, args.device)

    from raysearch.config import apply_overrides, scale_preset
    from raysearch.data.phantom import generate_phantom
    from raysearch.model import TwoHeadUNet
    from raysearch.predict.inference import PredictOptions, Predictor, build_items, collect_files, predict_items
    from raysearch.training.checkpoint import save_checkpoint

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="rs-bench-"))
    imgs = tmp / "images"
    imgs.mkdir()
    for i in range(args.n):
        sample, _ = generate_phantom(seed=5, size=512, index=i)
        cv2.imwrite(str(imgs / f"b{i:03d}.png"), np.round(sample["image"] * 255).astype(np.uint8))
    items = build_items(collect_files([imgs]))
    options = PredictOptions()
    ckpts = {}
    for size in args.sizes:
        cfg = apply_overrides(scale_preset("cpu"), {"data.input_size": size, "model.base_width": 16})
        torch.manual_seed(0)
        ckpts[size] = save_checkpoint(tmp / f"w16_{size}" / "best.pt", TwoHeadUNet(cfg.model, cfg.loss.task), cfg, 0, {})

    rows = []
    for size in args.sizes:
        for tta in (False, True):
            pred = Predictor(ckpts[size], device=args.device, tta=tta)
            predict_items(pred, items[: args.batch_size], options, args.batch_size)  # warm-up
            t = time.perf_counter()
            predict_items(pred, items, options, args.batch_size)
            local = args.n / (time.perf_counter() - t)
            rows.append([size, "on" if tta else "off", local, float("nan")])
            print(f"local  {size:4d} px  TTA {'on ' if tta else 'off'}  {local:7.2f} img/s", file=sys.stderr)

    if not args.no_ray:
        import ray

        from raysearch.predict.ray_inference import predict_with_ray

        os.environ.pop("RAY_ADDRESS", None)
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="rsb", dir="/tmp"))
        try:
            for row in rows:
                size, tta = row[0], row[1] == "on"
                t = time.perf_counter()
                predict_with_ray(str(ckpts[size]), items, options, device=args.device, tta=tta,
                                 batch_size=args.batch_size, actors=args.ray_actors, num_cpus=args.ray_cpus,
                                 timeout_s=600, show_progress=False)
                row[3] = args.n / (time.perf_counter() - t)
                print(f"ray    {size:4d} px  TTA {'on ' if tta else 'off'}  {row[3]:7.2f} img/s", file=sys.stderr)
        finally:
            ray.shutdown()

    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {os.cpu_count()} cores"
    print(f"\n{args.n} phantom images of 512 px, width-16 U-Net, batch {args.batch_size}, {dev}, "
          f"torch threads {torch.get_num_threads()}, Ray: {args.ray_actors} actor(s) x {args.ray_cpus:g} CPU\n")
    print("| input px | TTA | local img/s | --ray img/s |")
    print("|---:|:---:|---:|---:|")
    for size, tta, local, rayv in rows:
        print(f"| {size} | {tta} | {local:.2f} | {rayv:.2f} |")


def tta_accuracy(checkpoint: str, n: int, device: str) -> None:
    """Print dome and height-difference errors (px) without/with TTA on ``n`` unseen phantoms (seed 1)."""
    from raysearch.data.phantom import generate_phantom
    from raysearch.predict.inference import (PredictOptions, Predictor, build_items, collect_files, predict_items,
                                             resolve_checkpoint)

    path, _ = resolve_checkpoint(checkpoint)
    folder = Path(tempfile.mkdtemp(prefix="rs-acc-"))
    size = Predictor(path, device="cpu").config.data.phantom_size
    truth = []
    for i in range(n):
        sample, _ = generate_phantom(seed=1, size=size, index=i)
        cv2.imwrite(str(folder / f"u{i:03d}.png"), np.round(sample["image"] * 255).astype(np.uint8))
        truth.append(sample["landmarks"])
    truth = np.stack(truth)
    items = build_items(collect_files([folder]))
    print(f"\nTTA effect on accuracy: {n} unseen phantoms of {size} px, checkpoint {path}\n")
    print("| TTA | mean dome error px | mean abs height-difference error px |")
    print("|:---:|---:|---:|")
    for tta in (False, True):
        res = predict_items(Predictor(path, device=device, tta=tta), items, PredictOptions(overlays=False))
        pts = np.stack([[[r.row["right_x"], r.row["right_y"]], [r.row["left_x"], r.row["left_y"]]] for r in res])
        dome = np.linalg.norm(pts - truth, axis=2).mean()
        diff = np.abs((pts[:, 1, 1] - pts[:, 0, 1]) - (truth[:, 1, 1] - truth[:, 0, 1])).mean()
        print(f"| {'on' if tta else 'off'} | {dome:.2f} | {diff:.2f} |")


if __name__ == "__main__":
    main()
