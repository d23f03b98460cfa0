"""Repeated random holdout: sizes, determinism, groups kept whole, hashes, save/load, errors."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest

from raysearch.data.splits import SplitError, Splits, make_splits

IDS = [f"P{i:03d}" for i in range(100)]


def test_sizes_disjoint_and_complete():
    splits = make_splits(IDS, seeds=[0, 1, 2, 3, 4])
    assert splits.seeds == (0, 1, 2, 3, 4)
    for seed in splits.seeds:
        s = splits.for_seed(seed)
        assert [len(s["train"]), len(s["val"]), len(s["test"])] == [60, 20, 20]
        all_ids = s["train"] + s["val"] + s["test"]
        assert sorted(all_ids) == IDS
        assert len(set(all_ids)) == 100
        assert s["train"] == sorted(s["train"])


def test_uneven_counts_use_largest_remainder():
    s = make_splits([f"x{i}" for i in range(11)], seeds=0).for_seed(0)
    # 11 * (0.6, 0.2, 0.2) = (6.6, 2.2, 2.2) -> floors (6, 2, 2), the one left goes to train
    assert [len(s["train"]), len(s["val"]), len(s["test"])] == [7, 2, 2]


def test_deterministic_and_independent_of_input_order():
    a = make_splits(IDS, seeds=[0, 1])
    shuffled = IDS[:]
    random.Random(4).shuffle(shuffled)
    b = make_splits(shuffled, seeds=[0, 1])
    assert a.for_seed(0) == b.for_seed(0) and a.for_seed(1) == b.for_seed(1)
    assert a.hash == b.hash
    assert a.for_seed(0)["test"] != a.for_seed(1)["test"]
    # a split seed gives the same split whichever other seeds are made alongside it
    assert make_splits(IDS, seeds=[1]).for_seed(1) == a.for_seed(1)


def test_groups_are_never_separated():
    rng = np.random.default_rng(0)
    ids, groups = [], []
    for g in range(60):
        for k in range(int(rng.integers(1, 5))):
            ids.append(f"G{g:02d}_{k}")
            groups.append(f"patient{g:02d}")
    order = rng.permutation(len(ids))
    splits = make_splits([ids[i] for i in order], seeds=range(5), groups=[groups[i] for i in order])
    group_of = dict(zip(ids, groups))
    n = len(ids)
    targets = {"train": 0.6 * n, "val": 0.2 * n, "test": 0.2 * n}
    for seed in range(5):
        s = splits.for_seed(seed)
        where = {}
        for name, members in s.items():
            for i in members:
                where.setdefault(group_of[i], set()).add(name)
            assert abs(len(members) - targets[name]) <= 4 + 1  # within one group (max 4 ids) of the target
        assert all(len(v) == 1 for v in where.values())
        assert sorted(sum(s.values(), [])) == sorted(ids)
    # input order does not matter with groups either
    again = make_splits(ids, seeds=range(5), groups=groups)
    assert again.hash == splits.hash


def test_missing_seed_is_an_error_naming_seeds():
    splits = make_splits(IDS, seeds=[0, 1, 2])
    with pytest.raises(SplitError, match=r"seed 7.*available seeds: \[0, 1, 2\]"):
        splits.for_seed(7)


def test_for_seed_returns_copies():
    splits = make_splits(IDS, seeds=[0])
    s = splits.for_seed(0)
    s["train"].clear()
    assert len(splits.for_seed(0)["train"]) == 60


def test_hashes():
    splits = make_splits(IDS, seeds=[0, 1])
    content = splits.to_dict()
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    assert splits.hash == hashlib.sha256(canonical.encode()).hexdigest()
    one = json.dumps(splits.for_seed(1), sort_keys=True, separators=(",", ":"))
    assert splits.seed_hash(1) == hashlib.sha256(one.encode()).hexdigest()
    assert splits.seed_hash(0) != splits.seed_hash(1)
    assert make_splits(IDS[:-1], seeds=[0, 1]).hash != splits.hash
    assert make_splits(IDS, seeds=[0, 1], ratios=(0.7, 0.15, 0.15)).hash != splits.hash


def test_save_load_round_trip_and_tamper_detection(tmp_path):
    splits = make_splits(IDS, seeds=[0, 1, 2, 3, 4])
    path = splits.save(tmp_path / "sub" / "splits.json")
    assert [p.name for p in path.parent.iterdir()] == ["splits.json"]  # no temp file left
    loaded = Splits.load(path)
    assert loaded.hash == splits.hash
    assert loaded.seeds == splits.seeds and loaded.ratios == splits.ratios
    for seed in splits.seeds:
        assert loaded.for_seed(seed) == splits.for_seed(seed)
    payload = json.loads(path.read_text())
    assert payload["sha256"] == splits.hash
    moved = payload["splits"]["0"]["test"].pop()
    payload["splits"]["0"]["train"].append(moved)
    path.write_text(json.dumps(payload))
    with pytest.raises(SplitError, match=r"splits\.json.*does not match its sha256"):
        Splits.load(path)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(SplitError, match="nope.json.*does not exist"):
        Splits.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SplitError, match="bad.json.*JSON"):
        Splits.load(bad)
    bad.write_text(json.dumps({"seeds": [0]}))
    with pytest.raises(SplitError, match="bad.json.*not a split file"):
        Splits.load(bad)


@pytest.mark.parametrize("ratios", [(0.6, 0.2, 0.1), (0.6, 0.5, -0.1), (0.5, 0.5), (1.0, 0.0, 0.0)])
def test_bad_ratios_are_rejected(ratios):
    with pytest.raises(SplitError, match="ratios must be three positive fractions"):
        make_splits(IDS, seeds=0, ratios=ratios)


def test_empty_split_is_rejected_with_counts():
    with pytest.raises(SplitError, match=r"train=3, val=1, test=0"):
        make_splits(["a", "b", "c", "d"], seeds=0, ratios=(0.8, 0.15, 0.05))


def test_other_input_errors():
    with pytest.raises(SplitError, match="duplicated: \\['P000'\\]"):
        make_splits(IDS + ["P000"], seeds=0)
    with pytest.raises(SplitError, match="groups has 3 entries but ids has 100"):
        make_splits(IDS, seeds=0, groups=["a", "b", "c"])
    with pytest.raises(SplitError, match="seeds is empty"):
        make_splits(IDS, seeds=[])
