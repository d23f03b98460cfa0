"""Repeated random holdout splits (the paper: 60/20/20, five different random splits).

A split is a pure function of (the set of ids, the groups, the ratios, the seed): ids and groups
are sorted before shuffling, so the input order never matters. Groups (patient ids) are split
as units, so no patient appears in two of train/val/test. Splits are saved as JSON together with
their SHA-256, and loading verifies it, so an experiment can prove which images it tested on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


class SplitError(ValueError):
    """Splits that cannot be made, a seed that was not made, or a split file that fails its hash."""


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _sha256(obj: object) -> str:
    return hashlib.sha256(_canonical(obj).encode("ascii")).hexdigest()


def _target_counts(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Largest-remainder rounding of ``n * ratios`` (sums to ``n``; ties go to the earlier split)."""
    raw = [n * r for r in ratios]
    counts = [int(np.floor(x)) for x in raw]
    order = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass(frozen=True)
class Splits:
    """Train/val/test id lists for each split seed.

    ``by_seed[seed] = {"train": [...], "val": [...], "test": [...]}``, each list sorted.
    """

    seeds: tuple[int, ...]
    ratios: tuple[float, float, float]
    by_seed: dict[int, dict[str, list[str]]] = field(repr=False)

    def for_seed(self, seed: int) -> dict[str, list[str]]:
        """Return ``{"train": [ids], "val": [ids], "test": [ids]}`` (copies) for ``seed``.

        A seed that was not made raises :class:`SplitError` naming the available seeds; there is
        no fallback to another split.
        """
        if seed not in self.by_seed:
            raise SplitError(
                f"no split for seed {seed!r}; available seeds: {list(self.seeds)}. "
                "Make the splits with that seed included (make_splits(ids, seeds=[...]))."
            )
        return {k: list(v) for k, v in self.by_seed[seed].items()}

    def to_dict(self) -> dict:
        """Plain JSON-able content (seeds as strings in the mapping, as JSON requires)."""
        return {
            "seeds": list(self.seeds),
            "ratios": list(self.ratios),
            "splits": {str(s): {k: list(self.by_seed[s][k]) for k in SPLIT_NAMES} for s in self.seeds},
        }

    @property
    def hash(self) -> str:
        """SHA-256 hex digest of the canonical JSON of :meth:`to_dict`."""
        return _sha256(self.to_dict())

    def seed_hash(self, seed: int) -> str:
        """SHA-256 hex digest of one seed's ``{"train", "val", "test"}`` lists (canonical JSON)."""
        return _sha256(self.for_seed(seed))

    def save(self, path: str | Path) -> Path:
        """Write JSON (content + ``sha256``) atomically (temp file + ``os.replace``). Returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = dict(self.to_dict(), sha256=self.hash)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Splits":
        """Read a file written by :meth:`save`; a missing/garbled file or a hash mismatch raises
        :class:`SplitError` naming the file."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            raise SplitError(f"{path}: split file does not exist") from None
        except (OSError, ValueError) as exc:
            raise SplitError(f"{path}: cannot be read as JSON ({exc})") from None
        try:
            stored = payload.pop("sha256")
            seeds = tuple(int(s) for s in payload["seeds"])
            ratios = tuple(float(r) for r in payload["ratios"])
            by_seed = {int(s): {k: [str(i) for i in v[k]] for k in SPLIT_NAMES}
                       for s, v in payload["splits"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SplitError(f"{path}: not a split file (missing or malformed field: {exc})") from None
        splits = cls(seeds=seeds, ratios=ratios, by_seed=by_seed)  # type: ignore[arg-type]
        if set(by_seed) != set(seeds):
            raise SplitError(f"{path}: seeds {list(seeds)} do not match the stored splits {sorted(by_seed)}")
        if splits.hash != stored:
            raise SplitError(
                f"{path}: content does not match its sha256 (stored {stored}, computed {splits.hash}); "
                "the file was edited or corrupted -- regenerate it with make_splits"
            )
        return splits


def make_splits(
    ids: Iterable[str],
    seeds: int | Sequence[int],
    ratios: Sequence[float] = (0.6, 0.2, 0.2),
    groups: Sequence[str] | None = None,
) -> Splits:
    """Make one random train/val/test holdout per seed.

    ``ids``: sample ids (unique). ``groups``: optional group (patient id) per id, same order; all
    ids of a group land in the same split. The unique groups are sorted, shuffled with
    ``np.random.default_rng(seed)`` and cut where the running id count comes closest to the
    targets (``len(ids) * ratios``, largest-remainder rounding): with one id per group the sizes
    are exact, otherwise each split is within one group's size of its target.

    Returns :class:`Splits`. Raises :class:`SplitError` for ratios that are not three positive
    numbers summing to 1, duplicate ids, a groups list of the wrong length, or a split that would
    be empty.
    """
    ids = [str(i) for i in ids]
    seeds_t = (int(seeds),) if isinstance(seeds, (int, np.integer)) else tuple(int(s) for s in seeds)
    ratios_t = tuple(float(r) for r in ratios)
    if len(ratios_t) != 3 or min(ratios_t) <= 0 or abs(sum(ratios_t) - 1.0) > 1e-6:
        raise SplitError(
            f"ratios must be three positive fractions (train, val, test) summing to 1, got {list(ratios_t)}"
        )
    if not seeds_t:
        raise SplitError("seeds is empty; give at least one split seed, e.g. seeds=[0, 1, 2, 3, 4]")
    if len(set(seeds_t)) != len(seeds_t):
        raise SplitError(f"seeds contain duplicates: {list(seeds_t)}")
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise SplitError(f"ids must be unique; duplicated: {dup[:10]}")
    if groups is None:
        group_of = {i: i for i in ids}
    else:
        groups = [str(g) for g in groups]
        if len(groups) != len(ids):
            raise SplitError(f"groups has {len(groups)} entries but ids has {len(ids)}; give one group per id")
        group_of = dict(zip(ids, groups))
    members: dict[str, list[str]] = {}
    for i in sorted(ids):
        members.setdefault(group_of[i], []).append(i)
    unique = sorted(members)
    counts = _target_counts(len(ids), ratios_t)  # type: ignore[arg-type]
    if min(counts) == 0 or len(unique) < 3:
        raise SplitError(
            f"ratios {list(ratios_t)} over {len(ids)} ids in {len(unique)} groups give split sizes "
            f"train={counts[0]}, val={counts[1]}, test={counts[2]}; every split needs at least one "
            "(use more images or other ratios)"
        )
    by_seed: dict[int, dict[str, list[str]]] = {}
    for seed in seeds_t:
        order = np.random.default_rng(seed).permutation(len(unique))
        shuffled = [unique[k] for k in order]
        cum = np.concatenate([[0], np.cumsum([len(members[g]) for g in shuffled])])
        g = len(shuffled)
        c1 = 1 + int(np.argmin(np.abs(cum[1:g - 1] - counts[0])))
        c2 = c1 + 1 + int(np.argmin(np.abs(cum[c1 + 1:g] - (counts[0] + counts[1]))))
        cuts = [0, c1, c2, g]
        by_seed[seed] = {
            name: sorted(i for g in shuffled[cuts[j]:cuts[j + 1]] for i in members[g])
            for j, name in enumerate(SPLIT_NAMES)
        }
    return Splits(seeds=seeds_t, ratios=ratios_t, by_seed=by_seed)  # type: ignore[arg-type]


__all__ = ["SPLIT_NAMES", "SplitError", "Splits", "make_splits"]
