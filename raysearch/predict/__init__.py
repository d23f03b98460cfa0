"""Inference and diaphragm measurement: ``python -m raysearch.predict`` (see ``docs/predict.md``).

Modules: :mod:`~raysearch.predict.inference` (checkpoint, preprocessing, batched prediction, TTA,
mapping back to original pixels), :mod:`~raysearch.predict.measure` (pure numpy: height
difference, lung areas and heights, flags), :mod:`~raysearch.predict.outputs` (CSV, masks,
overlays, per-patient table) and :mod:`~raysearch.predict.ray_inference` (Ray Data actor pool).
"""

from __future__ import annotations

import sys
from pathlib import Path

from raysearch.predict.inference import (
    PredictInputError,
    PredictOptions,
    Predictor,
    build_items,
    collect_files,
    predict_local,
    resolve_checkpoint,
)
from raysearch.predict.measure import DEFAULT_NORMAL_RANGE_MM, DEFAULT_NORMAL_RANGE_NORM
from raysearch.predict.outputs import write_outputs


def run_prediction(checkpoint: str | Path, inputs: list[str | Path], out: str | Path, *,
                   spacing_mm: float | None = None, manifest: str | Path | None = None, tta: bool = False,
                   use_ray: bool = False, batch_size: int = 8, device: str = "auto",
                   normal_range_mm: tuple[float, float] = DEFAULT_NORMAL_RANGE_MM,
                   normal_range_norm: tuple[float, float] = DEFAULT_NORMAL_RANGE_NORM,
                   overlays: bool = True, ray_actors: int = 0, ray_cpus: float = 1.0,
                   ray_timeout_s: float = 600.0, threads: int = 0, show_progress: bool = True, log=None) -> dict:
    """Predict every input image and write the output folder (see :mod:`raysearch.predict.outputs`).

    ``threads``: torch intra-op threads for the local path (0 = torch's default; 1 is often faster
    on a busy small machine). Returns the counts of :func:`raysearch.predict.outputs.write_outputs` plus ``checkpoint``
    (the file used) and ``chosen`` (a sentence saying which checkpoint/trial was picked).
    Bad arguments raise :class:`PredictInputError` (or ``CheckpointError``); unreadable images do
    not raise, they are listed in ``errors.csv``.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if batch_size < 1:
        raise PredictInputError(f"--batch-size must be >= 1, got {batch_size}")
    if spacing_mm is not None and not spacing_mm > 0:
        raise PredictInputError(f"--spacing is mm per pixel and must be > 0, got {spacing_mm}")
    for name, (lo, hi) in (("--normal-range", normal_range_mm), ("--normal-range-norm", normal_range_norm)):
        if not lo < hi:
            raise PredictInputError(f"{name} must be LOW HIGH with LOW < HIGH, got {lo} {hi}")
    ckpt, chosen = resolve_checkpoint(checkpoint)
    log(chosen)
    items = build_items(collect_files(list(inputs)), manifest, spacing_mm)
    options = PredictOptions(tuple(normal_range_mm), tuple(normal_range_norm), True, overlays)
    if use_ray:
        from raysearch.predict.ray_inference import predict_with_ray

        Predictor(ckpt, device="cpu")  # fail fast on a bad checkpoint, before starting actors
        results = predict_with_ray(str(ckpt), items, options, device=device, tta=tta, batch_size=batch_size,
                                   actors=ray_actors, num_cpus=ray_cpus, timeout_s=ray_timeout_s,
                                   show_progress=show_progress)
    else:
        if threads > 0:
            import torch

            torch.set_num_threads(int(threads))
        predictor = Predictor(ckpt, device=device, tta=tta)
        results = predict_local(predictor, items, options, batch_size, show_progress)
    info = {"checkpoint": str(ckpt), "chosen": chosen, "tta": tta, "ray": use_ray, "device": device,
            "normal_range_mm": list(normal_range_mm), "normal_range_norm": list(normal_range_norm),
            "inputs": [str(i) for i in inputs], "manifest": None if manifest is None else str(manifest)}
    counts = write_outputs(out, results, info)
    return {**counts, "checkpoint": str(ckpt), "chosen": chosen}


__all__ = ["run_prediction"]
