"""``--ray``: the same per-image work as the local path, spread over a Ray cluster with Ray Data.

The work list (one JSON-encoded :class:`~raysearch.predict.inference.InputItem` per row) becomes a
Ray Dataset; ``map_batches`` sends batches to a pool of model actors (:class:`PredictActor`, a
callable class that loads the checkpoint once per actor, a fixed-size
``ActorPoolStrategy``). Each actor
reads its images itself (decoding is spread too), runs
:func:`raysearch.predict.inference.predict_items` -- the very function the local path runs -- and
returns plain columns: the CSV row as JSON, the error text, and the mask and overlay as PNG bytes.
The driver gathers them and writes every file with :func:`raysearch.predict.outputs.write_outputs`,
so ``predictions.csv`` equals the local path's.

Actors are pure readers of the input paths: on a multi-node cluster the input files must be
visible at the same path on every node (a shared filesystem), like any Ray Data file input.

Resources: with a GPU device each actor requests one GPU; otherwise ``num_cpus`` (default 1,
0.5 is fine on a small box) and the pool defaults to one actor per two logical CPUs so that Ray
Data keeps CPU for its own operators (a pipeline with no CPU left stalls silently, see
``shared/docs/ray-notes.md``). A pipeline that produces nothing for ``timeout_s`` seconds fails
with :class:`RayPredictTimeout` instead of waiting forever.
"""

from __future__ import annotations

import json
import math
import queue
import sys
import threading
from dataclasses import asdict

import numpy as np

from raysearch.predict.inference import ImageResult, InputItem, Predictor, PredictOptions, predict_items


class RayPredictTimeout(RuntimeError):
    """The Ray Data pipeline produced no result for longer than the timeout."""


class PredictActor:
    """Ray Data ``map_batches`` callable: loads the checkpoint once, predicts a batch of items.

    Constructor kwargs are plain values (they travel to the actor): ``checkpoint`` (path of the
    ``best.pt``), ``device``, ``tta``, ``batch_size``, ``options`` (``PredictOptions`` as a dict),
    ``threads`` (torch intra-op threads, 0 = leave torch's default).
    """

    def __init__(self, checkpoint: str, device: str, tta: bool, batch_size: int, options: dict,
                 threads: int = 0) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(int(threads))
        self.predictor = Predictor(checkpoint, device=device, tta=tta)
        self.options = PredictOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
        self.batch_size = int(batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch["item"]``: JSON InputItems -> columns ``index, error, row_json, mask_png, overlay_png``."""
        items = [InputItem.from_json(str(t)) for t in batch["item"]]
        results = predict_items(self.predictor, items, self.options, self.batch_size)
        return results_to_columns(results)


def results_to_columns(results: list[ImageResult]) -> dict[str, np.ndarray]:
    """Pack results into Ray Data columns (NaN-safe JSON for the row, raw bytes for the PNGs)."""
    return {
        "index": np.array([r.index for r in results], dtype=np.int64),
        "id": np.array([r.id for r in results], dtype=object),
        "file": np.array([r.file for r in results], dtype=object),
        "error": np.array([r.error for r in results], dtype=object),
        "row_json": np.array([json.dumps(r.row) if r.ok else "" for r in results], dtype=object),
        "mask_png": np.array([r.mask_png for r in results], dtype=object),
        "overlay_png": np.array([r.overlay_png for r in results], dtype=object),
    }


def columns_to_results(batch: dict[str, np.ndarray]) -> list[ImageResult]:
    """Inverse of :func:`results_to_columns` (JSON keeps floats exactly, NaN included)."""
    out = []
    for i in range(len(batch["index"])):
        text = str(batch["row_json"][i])
        out.append(ImageResult(index=int(batch["index"][i]), id=str(batch["id"][i]), file=str(batch["file"][i]),
                               row=json.loads(text) if text else {}, error=str(batch["error"][i] or ""),
                               mask_png=bytes(batch["mask_png"][i] or b""),
                               overlay_png=bytes(batch["overlay_png"][i] or b"")))
    return out


def predict_with_ray(checkpoint: str, items: list[InputItem], options: PredictOptions, *,
                     device: str = "cpu", tta: bool = False, batch_size: int = 8, actors: int = 0,
                     num_cpus: float = 1.0, timeout_s: float = 600.0, show_progress: bool = True) -> list[ImageResult]:
    """Predict ``items`` with a Ray Data actor pool; return the results in input order.

    Uses the running Ray (or starts a local one, and shuts it down afterwards). ``actors``:
    pool size (0 = one per GPU for a CUDA device, else one per two logical CPUs, at most one per
    batch). ``num_cpus``: CPUs each actor requests. ``timeout_s``: longest wait for the next
    result (actor start-up included) before :class:`RayPredictTimeout`.
    """
    import ray
    from tqdm import tqdm

    started = False
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.wait_for_min_actors_s = int(max(1, math.ceil(timeout_s)))
        resources = ray.cluster_resources()
        use_gpu = device.startswith("cuda") or (device == "auto" and resources.get("GPU", 0) > 0)
        n_batches = max(1, math.ceil(len(items) / max(1, batch_size)))
        if actors <= 0:
            actors = int(resources.get("GPU", 0)) if use_gpu else int(resources.get("CPU", 1) // 2)
        actors = max(1, min(int(actors), n_batches))
        request = {"num_gpus": 1} if use_gpu else {"num_cpus": float(num_cpus)}
        threads = 0 if use_gpu else max(1, int(num_cpus))
        ds = ray.data.from_items([{"item": it.to_json()} for it in items],
                                 override_num_blocks=n_batches)
        ds = ds.map_batches(
            PredictActor,
            fn_constructor_kwargs={"checkpoint": str(checkpoint), "device": "cuda" if use_gpu else "cpu",
                                   "tta": tta, "batch_size": batch_size,
                                   "options": {k: list(v) if isinstance(v, tuple) else v
                                               for k, v in asdict(options).items()},
                                   "threads": threads},
            batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), **request)
        results: list[ImageResult] = []
        with tqdm(total=len(items), desc=f"predict (ray, {actors} actor(s))", unit="img", file=sys.stderr,
                  disable=not show_progress) as bar:
            for batch in _iterate_with_timeout(ds, timeout_s):
                got = columns_to_results(batch)
                results.extend(got)
                bar.update(len(got))
        results.sort(key=lambda r: r.index)
        if [r.index for r in results] != [it.index for it in items]:
            raise RuntimeError(f"Ray pipeline returned {len(results)} results for {len(items)} inputs")
        return results
    finally:
        if started:
            ray.shutdown()


_DONE = object()


def _iterate_with_timeout(ds, timeout_s: float):
    """Yield ``ds.iter_batches`` batches from a background thread; raise RayPredictTimeout when the
    next batch takes longer than ``timeout_s``, and re-raise the pipeline's own error."""
    q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    def produce() -> None:
        try:
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                if stop.is_set():
                    return
                q.put(("batch", b))
            q.put(("done", _DONE))
        except BaseException as exc:  # handed to the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="raysearch-predict-ray", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, value = q.get(timeout=timeout_s)
            except queue.Empty:
                raise RayPredictTimeout(
                    f"Ray Data produced no prediction for {timeout_s:g} s: actors could not start or are stuck "
                    "(not enough free CPUs/GPUs in the cluster for the actor pool? see `ray status`); "
                    "try fewer --ray-actors, a smaller --ray-cpus, or a larger --ray-timeout") from None
            if kind == "batch":
                yield value
            elif kind == "done":
                return
            else:
                raise value
    finally:
        stop.set()


__all__ = ["PredictActor", "RayPredictTimeout", "columns_to_results", "predict_with_ray", "results_to_columns"]
