"""Ray Data stream of the augmented training split.

Design (why it never deadlocks on a 2-core laptop):

* One Ray Dataset per trial holds **every epoch** of the training split: one row per (epoch,
  position), in the plain loop's order (:func:`raysearch.data.transforms.epoch_order`). It is
  executed once, streaming, instead of once per epoch, so Data's start-up cost is paid once.
* ``map_batches`` decodes each image from its file, resizes it to the network input and applies
  the data layer's joint augmentation with the per-sample RNG ``sample_rng(seed, epoch, index)``:
  the Ray path produces exactly the batches of the plain loop (tested).
* Data tasks request **0 logical CPUs** and Data's resource budget is set explicitly. Trials and
  Train workers may then reserve every logical CPU (as Tune packs them) without starving Data:
  the Ray notes record a silent deadlock when a worker reserved all CPUs and Data tasks needed
  0.25 CPU each. The work is light (decode + augment); the OS shares the cores. The number of
  concurrent tasks per trial is capped (:data:`DATA_TASKS`): 0-CPU tasks are otherwise unbounded
  and each would start a worker process.
* The consumer reads through a watchdog: if no batch arrives within ``timeout_s`` it raises
  :class:`DataStarvationError` explaining what to check, instead of hanging.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

import numpy as np

from raysearch.config import RunConfig
from raysearch.data.dataset import Record
from raysearch.data.remote import is_uri, local_dataset_path
from raysearch.data.transforms import epoch_order

DEFAULT_TIMEOUT_S = 600.0
DATA_TASKS = 2
"""Concurrent decode+augment tasks per trial (each ~200 img/s at the cpu preset: far above what training uses)."""


class DataStarvationError(RuntimeError):
    """The Ray Data pipeline produced no batch within the timeout."""


def stream_rows(records: list[Record], cfg: RunConfig, start_epoch: int = 0, rank: int = 0,
                world: int = 1) -> list[dict[str, Any]]:
    """Return one row per (epoch, position) from ``start_epoch`` on: file paths, landmarks, epoch, index.

    ``rank``/``world``: the shard of one of ``world`` data-parallel workers -- every ``world``-th position
    of each epoch from ``rank`` on, ``len(records) // world`` rows per epoch for every worker (DDP steps
    in lockstep). The shards are disjoint and, merged, follow the plain loop's order.
    """
    rows = []
    n = len(records)
    quota = n // world
    for epoch in range(start_epoch, cfg.train.epochs):
        for index in epoch_order(n, cfg.train.seed, epoch)[rank::world][:quota]:
            rec = records[int(index)]
            rows.append({"epoch": epoch, "index": int(index), "image_path": str(rec.image_path),
                         "mask_path": str(rec.mask_path), "landmarks": rec.landmarks.reshape(4).astype(np.float64)})
    return rows


def decode_and_augment(batch: dict[str, np.ndarray], config: dict) -> dict[str, np.ndarray]:
    """``map_batches`` function: decode, resize to the network input and augment a batch of rows.

    Returns columns ``image`` (B,S,S) float32, ``mask`` (B,S,S) uint8, ``landmarks`` (B,2,2) network
    px, ``epoch``, ``index``.
    """
    from raysearch.data.imageio import read_image, read_mask
    from raysearch.data.transforms import augment, resize_sample, sample_rng

    cfg = RunConfig.from_dict(config)
    if is_uri(cfg.data.root):  # this task may run on a node that has not fetched the dataset yet
        local_dataset_path(cfg.data.root)
    size = cfg.data.input_size
    n = len(batch["epoch"])
    images = np.empty((n, size, size), np.float32)
    masks = np.empty((n, size, size), np.uint8)
    landmarks = np.empty((n, 2, 2), np.float64)
    for j in range(n):
        image = read_image(str(batch["image_path"][j])).pixels
        mask = read_mask(str(batch["mask_path"][j]), expected_hw=image.shape)
        sample = {"id": "", "image": image, "mask": mask,
                  "landmarks": np.asarray(batch["landmarks"][j], np.float64).reshape(2, 2)}
        sample = resize_sample(sample, size)
        if cfg.augment.enabled:
            rng = sample_rng(cfg.train.seed, int(batch["epoch"][j]), int(batch["index"][j]))
            sample = augment(sample, rng, cfg.augment)
        images[j], masks[j], landmarks[j] = sample["image"], sample["mask"], sample["landmarks"]
    return {"image": images, "mask": masks, "landmarks": landmarks,
            "epoch": np.asarray(batch["epoch"]), "index": np.asarray(batch["index"])}


def build_train_dataset(records: list[Record], cfg: RunConfig, start_epoch: int = 0, rank: int = 0, world: int = 1):
    """Return the lazy Ray Dataset streaming every epoch of the augmented training split (or of one
    data-parallel worker's shard of it: see :func:`stream_rows`)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the same stream for the same seed
    ctx.enable_progress_bars = False
    rows = stream_rows(records, cfg, start_epoch, rank, world)
    blocks = max(1, min(len(rows) // max(cfg.optim.batch_size, 1), 4 * max(cfg.train.epochs - start_epoch, 1)))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    # 0 logical CPUs (never starved by trials' reservations), but at most DATA_TASKS tasks at a time:
    # unbounded 0-CPU tasks would each get a worker process (dozens per trial on a laptop)
    return ds.map_batches(decode_and_augment, fn_kwargs={"config": cfg.to_dict()}, batch_format="numpy",
                          batch_size=cfg.optim.batch_size * 4, num_cpus=0, zero_copy_batch=False,
                          compute=ray.data.TaskPoolStrategy(size=DATA_TASKS))


def data_execution_options():
    """Return Ray Data execution options for the Train datasets: ordered, with an explicit CPU budget."""
    import ray
    from ray.data import ExecutionOptions, ExecutionResources

    opts = ExecutionOptions()
    opts.preserve_order = True
    cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1.0)))
    opts.resource_limits = ExecutionResources(cpu=cpus)
    return opts


class EpochBatches:
    """Cut a row stream (all epochs, in order) into per-epoch batches for :func:`raysearch.training.loop.fit`.

    ``shard_iter`` yields numpy dict batches (any size) with an ``epoch`` column. ``rank``/``world``
    keep every ``world``-th row for data-parallel workers so that each gets the same number of
    rows per epoch (trials stream each worker its own shard instead and use ``world = 1``). Call the object with an epoch number: it yields ``(images, masks, landmarks)``
    batches of ``batch_size`` rows of that epoch (the last one may be smaller). Rows of earlier
    epochs (after a resume) are skipped.
    """

    def __init__(self, shard_iter: Iterator[dict[str, np.ndarray]], batch_size: int, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, rank: int = 0, world: int = 1, rows_per_epoch: int | None = None):
        self._rows = _watchdog(_explode(shard_iter), timeout_s)
        self._pending: tuple | None = None
        self.batch_size = batch_size
        self.rank, self.world = rank, world
        self.rows_per_epoch = rows_per_epoch

    def __call__(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        buf: list[tuple] = []
        position = 0
        kept = 0
        quota = None if self.rows_per_epoch is None else self.rows_per_epoch // self.world
        while True:
            row = self._pending if self._pending is not None else next(self._rows, None)
            self._pending = None
            if row is None:
                break
            row_epoch = row[3]
            if row_epoch < epoch:
                continue
            if row_epoch > epoch:
                self._pending = row
                break
            mine = position % self.world == self.rank
            position += 1
            if not mine or (quota is not None and kept >= quota):
                continue
            kept += 1
            buf.append(row)
            if len(buf) == self.batch_size:
                yield _stack(buf)
                buf = []
        if buf:
            yield _stack(buf)


def _stack(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows]))


def _explode(batches: Iterator[dict[str, np.ndarray]]) -> Iterator[tuple]:
    for b in batches:
        for j in range(len(b["epoch"])):
            yield (b["image"][j], b["mask"][j], np.asarray(b["landmarks"][j]).reshape(2, 2), int(b["epoch"][j]))


_END = object()


def _watchdog(it: Iterator, timeout_s: float) -> Iterator:
    """Iterate ``it`` in a background thread, started now (so the pipeline warms up while the caller
    prepares); the returned iterator raises DataStarvationError if an item takes longer than ``timeout_s``."""
    q: queue.Queue = queue.Queue(maxsize=64)

    def pump() -> None:
        try:
            for item in it:
                q.put(item)
            q.put(_END)
        except BaseException as exc:  # surfaced in the consumer
            q.put(exc)

    threading.Thread(target=pump, daemon=True, name="raysearch-data-pump").start()
    return _drain(q, timeout_s)


def _drain(q: queue.Queue, timeout_s: float) -> Iterator:
    while True:
        try:
            item = q.get(timeout=timeout_s)
        except queue.Empty:
            raise DataStarvationError(
                f"no training batch arrived from Ray Data within {timeout_s:.0f} s. The pipeline is starved or "
                f"stuck: check that the cluster has CPUs not reserved by trials/workers (ray status), lower "
                f"--cpus-per-trial or --max-concurrent, or raise --data-timeout for very slow storage."
            ) from None
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
