"""Turn a dataset folder and a split seed into network-ready arrays held in memory.

Images are decoded once, resized to the square network input (``data.input_size``) and kept as
float32 arrays with their label masks and landmarks in network pixels. Augmentation is applied
per training step on these arrays (rotation and flips at network resolution are exact for the
landmarks and cheap), so an epoch never decodes a file again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raysearch.config import DataConfig, RunConfig
from raysearch.data.dataset import Dataset, Record, load_dataset, load_sample
from raysearch.data.splits import Splits, make_splits
from raysearch.data.transforms import resize_sample

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SPLIT_SEEDS = (0, 1, 2, 3, 4)


@dataclass
class PreparedSplit:
    """One split's images at network resolution.

    ``images`` (N, S, S) float32 in [0, 1]; ``masks`` (N, S, S) uint8 labels {0, 1, 2};
    ``landmarks`` (N, 2, 2) float64 network px (rows right, left; NaN = not annotated);
    ``stored_hw`` (N, 2) stored-image height/width; ``records`` the manifest rows.
    """

    name: str
    records: list[Record]
    images: np.ndarray
    masks: np.ndarray
    landmarks: np.ndarray
    stored_hw: np.ndarray

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class PreparedData:
    """The three splits of one split seed, with the dataset and splits they came from."""

    dataset: Dataset
    splits: Splits
    split_seed: int
    input_size: int
    train: PreparedSplit
    val: PreparedSplit
    test: PreparedSplit
    extra: dict = field(default_factory=dict)

    def split(self, name: str) -> PreparedSplit:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def resolve_dataset_root(data: DataConfig) -> Path:
    """Return the local dataset folder of a config: ``data.root`` (a cloud URI is copied once into the cache),
    or the cached built-in phantom set when empty."""
    if data.root:
        from raysearch.data.remote import local_dataset_path

        return local_dataset_path(data.root)
    from raysearch.data.phantom import default_phantom_dataset

    return Path(default_phantom_dataset(n=data.phantom_n, size=data.phantom_size, seed=data.phantom_seed))


def default_splits(dataset: Dataset, data: DataConfig, seeds=DEFAULT_SPLIT_SEEDS) -> Splits:
    """Return the paper's five 60/20/20 holdouts (or ``seeds``) of a dataset, grouped by patient."""
    seeds = tuple(sorted(set(seeds) | {data.split_seed}))
    return make_splits(dataset.ids, seeds=seeds, ratios=tuple(data.split_ratios), groups=dataset.groups)


def prepare_split(name: str, records: list[Record], input_size: int) -> PreparedSplit:
    """Decode and resize ``records`` to ``input_size`` (see :class:`PreparedSplit` for units)."""
    n = len(records)
    images = np.empty((n, input_size, input_size), np.float32)
    masks = np.empty((n, input_size, input_size), np.uint8)
    landmarks = np.empty((n, 2, 2), np.float64)
    stored_hw = np.empty((n, 2), np.int64)
    for i, rec in enumerate(records):
        sample = load_sample(rec)
        stored_hw[i] = sample["image"].shape[:2]
        small = resize_sample(sample, input_size)
        images[i] = small["image"]
        masks[i] = small["mask"]
        landmarks[i] = small["landmarks"]
    return PreparedSplit(name, list(records), images, masks, landmarks, stored_hw)


def prepare_data(cfg: RunConfig, dataset: Dataset | None = None, splits: Splits | None = None,
                 include_train: bool = True) -> PreparedData:
    """Load (and validate) the dataset of ``cfg``, take split ``cfg.data.split_seed`` and prepare all three splits.

    ``splits`` must be given by a sweep so that every trial sees identical splits; when omitted the
    paper's five holdouts are made here. A split seed missing from ``splits`` raises (never a
    silent fallback). ``include_train=False`` keeps only the training records (no decoded arrays):
    the Ray path streams the training split through Ray Data instead.
    """
    if dataset is None:
        dataset = load_dataset(resolve_dataset_root(cfg.data))
    if splits is None:
        splits = default_splits(dataset, cfg.data)
    parts = splits.for_seed(cfg.data.split_seed)
    by_id = dataset.by_id
    prepared = {}
    for name in SPLIT_NAMES:
        records = [by_id[i] for i in parts[name]]
        if name == "train" and not include_train:
            prepared[name] = prepare_split(name, [], cfg.data.input_size)
            prepared[name].records = records
        else:
            prepared[name] = prepare_split(name, records, cfg.data.input_size)
    return PreparedData(dataset=dataset, splits=splits, split_seed=cfg.data.split_seed,
                        input_size=cfg.data.input_size, **prepared)
