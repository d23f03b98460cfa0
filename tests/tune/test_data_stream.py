"""The Ray Data stream: identical batches to the plain loop, epoch cutting, and a loud failure when starved."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from raysearch.config import scale_preset
from raysearch.data.dataset import load_dataset
from raysearch.training.batches import iterate_train_batches
from raysearch.training.prepare import prepare_split
from raysearch.tune.data_stream import DataStarvationError, EpochBatches, build_train_dataset, stream_rows


def _cfg():
    return scale_preset("smoke").with_overrides({"train.epochs": 2, "optim.batch_size": 3, "data.input_size": 64})


def test_ray_data_stream_equals_the_plain_loop(ray_session, tiny_dataset):
    """Same seed -> the Ray Data pipeline yields exactly the plain loop's augmented batches, epoch by epoch."""
    cfg = _cfg()
    records = load_dataset(tiny_dataset).records[:7]
    ds = build_train_dataset(records, cfg)
    stream = EpochBatches(ds.iter_batches(batch_size=None, batch_format="numpy"), cfg.optim.batch_size,
                          timeout_s=120, rows_per_epoch=len(records))
    prepared = prepare_split("train", records, cfg.data.input_size)
    for epoch in range(cfg.train.epochs):
        ray_batches = list(stream(epoch))
        plain = list(iterate_train_batches(prepared.images, prepared.masks, prepared.landmarks, epoch, cfg))
        assert [len(b[0]) for b in ray_batches] == [3, 3, 1]
        assert len(ray_batches) == len(plain)
        for (ri, rm, rl), (pi, pm, pl) in zip(ray_batches, plain):
            np.testing.assert_allclose(ri, pi, atol=1e-6)
            np.testing.assert_array_equal(rm, pm)
            np.testing.assert_allclose(rl, pl, atol=1e-9, equal_nan=True)
    # epochs differ (augmentation stream and order depend on the epoch)
    assert list(stream(2)) == []


def _rows(epochs, n):
    for e in range(epochs):
        yield {"image": np.full((n, 2, 2), e, np.float32), "mask": np.zeros((n, 2, 2), np.uint8),
               "landmarks": np.zeros((n, 4)), "epoch": np.full(n, e)}


def test_epoch_batches_cut_epochs_and_shard_for_data_parallel_workers():
    stream = EpochBatches(_rows(3, 5), batch_size=2, timeout_s=5)
    sizes = [[len(b[0]) for b in stream(e)] for e in range(3)]
    assert sizes == [[2, 2, 1]] * 3
    # two data-parallel workers each keep every second row, the same count per epoch
    for rank in (0, 1):
        s = EpochBatches(_rows(2, 5), batch_size=2, timeout_s=5, rank=rank, world=2, rows_per_epoch=5)
        assert [sum(len(b[0]) for b in s(e)) for e in range(2)] == [2, 2]
    # resuming at epoch 2 skips the rows of earlier epochs
    s = EpochBatches(_rows(3, 4), batch_size=4, timeout_s=5)
    (images, _, _), = list(s(2))
    assert float(images.max()) == 2.0


def test_a_starved_stream_fails_loudly_instead_of_hanging():
    gate = threading.Event()

    def never():
        gate.wait(30)
        yield {}

    stream = EpochBatches(never(), batch_size=2, timeout_s=0.5)
    t0 = time.time()
    with pytest.raises(DataStarvationError, match="no training batch arrived from Ray Data within"):
        list(stream(0))
    assert time.time() - t0 < 10
    gate.set()


def test_a_resumed_stream_is_the_tail_of_the_full_stream(tiny_dataset):
    """After a resume the stream starts at the first epoch still to train, with the same rows as before."""
    records = load_dataset(tiny_dataset).records[:10]
    cfg = _cfg().with_overrides({"train.epochs": 4})
    full = stream_rows(records, cfg)
    tail = stream_rows(records, cfg, start_epoch=2)
    expected = [r for r in full if r["epoch"] >= 2]
    assert len(tail) == len(expected) == 2 * len(records)
    for a, b in zip(tail, expected):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_epoch_is_read_from_the_checkpoint_progress_file(tmp_path):
    import json

    import ray.train

    from raysearch.tune.trainable import resume_epoch_of

    assert resume_epoch_of(None) == 0
    (tmp_path / "progress.json").write_text(json.dumps({"epoch": 6, "step": 70}))
    assert resume_epoch_of(ray.train.Checkpoint.from_directory(str(tmp_path))) == 7
    (tmp_path / "progress.json").unlink()  # an older checkpoint: stream every epoch, the loop skips
    assert resume_epoch_of(ray.train.Checkpoint.from_directory(str(tmp_path))) == 0


def test_ddp_shards_are_disjoint_equal_and_follow_the_plain_order(tiny_dataset):
    """Each of 3 workers streams its own rows (no decoding of the others'), as many per epoch as the others,
    and these are exactly the rows the single stream's rank/world slicing would have kept."""
    records = load_dataset(tiny_dataset).records[:11]
    cfg = _cfg().with_overrides({"train.epochs": 2})
    full = stream_rows(records, cfg)
    shards = [stream_rows(records, cfg, rank=r, world=3) for r in range(3)]
    assert [len(s) for s in shards] == [2 * (11 // 3)] * 3
    for epoch in range(2):
        order = [row["index"] for row in full if row["epoch"] == epoch]
        for r, shard in enumerate(shards):
            mine = [row["index"] for row in shard if row["epoch"] == epoch]
            assert mine == order[r::3][:11 // 3]
        seen = [row["index"] for s in shards for row in s if row["epoch"] == epoch]
        assert len(seen) == len(set(seen)) == 3 * (11 // 3)  # disjoint


def test_a_restarted_worker_group_trial_streams_from_its_train_run_checkpoint(tmp_path):
    import json

    from raysearch.storage import ExperimentStore
    from raysearch.tune.trainable import train_run_resume_epoch

    store = ExperimentStore(tmp_path)
    assert train_run_resume_epoch(store, "abc_00001") == 0  # never ran
    run = tmp_path / "train_runs" / "train-abc_00001"
    (run / "checkpoint_2026-12-05_01-00-00.000001").mkdir(parents=True)
    (run / "checkpoint_2026-12-05_01-00-00.000001" / "progress.json").write_text(json.dumps({"epoch": 2}))
    (run / "checkpoint_2026-12-05_01-05-00.000001").mkdir()
    (run / "checkpoint_2026-12-05_01-05-00.000001" / "progress.json").write_text(json.dumps({"epoch": 5}))
    (run / "checkpoint_manager_snapshot.json").write_text("{}")
    assert train_run_resume_epoch(store, "abc_00001") == 6  # the newest checkpoint
    assert train_run_resume_epoch(store, "abc_00002") == 0
