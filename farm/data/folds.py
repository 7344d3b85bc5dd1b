"""Subject-exclusive folds, named by their TEST partition, and the validation carve-out.

BP4D uses the community's P1/P2/P3 partitions (DRML, JAA-Net, ME-GraphAU; DOMAIN.md section 3):
fold P3 trains on P1+P2 and tests on P3. ME-GraphAU numbers its folds the other way round (its
fold1 tests P3). The synthetic set gets three seeded, sex-balanced partitions of its subjects.
Early stopping uses validation subjects carved from the fold's TRAINING subjects, never the test
partition. Every split has a hash that results record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from farm.data.store import DatasetMeta

BP4D_PARTITIONS: dict[str, tuple[str, ...]] = {
    "P1": tuple("F001 F002 F008 F009 F010 F016 F018 F023 M001 M004 M007 M008 M012 M014".split()),
    "P2": tuple("F003 F005 F011 F013 F020 F022 M002 M005 M010 M011 M013 M016 M017 M018".split()),
    "P3": tuple("F004 F006 F007 F012 F014 F015 F017 F019 F021 M003 M006 M009 M015".split()),
}


class FoldError(ValueError):
    """A fold or partition definition is unusable; the message says which and why."""


@dataclass(frozen=True)
class Split:
    fold: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def hash(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {**asdict(self), "hash": self.hash}


def balanced_partitions(
    subjects: dict[str, dict], num_partitions: int = 3, seed: int = 0
) -> dict[str, tuple[str, ...]]:
    """Seeded, sex-balanced partitions P1..Pn: subjects of each sex shuffled and dealt round-robin."""
    rng = np.random.default_rng(seed)
    parts: list[list[str]] = [[] for _ in range(num_partitions)]
    offset = 0
    for sex in sorted({str(a.get("sex", "?")) for a in subjects.values()}):
        group = sorted(s for s, a in subjects.items() if str(a.get("sex", "?")) == sex)
        for i, s in enumerate(rng.permutation(group)):
            parts[(i + offset) % num_partitions].append(str(s))
        offset += len(group)  # keep the partition sizes even across sexes
    return {f"P{i + 1}": tuple(sorted(p)) for i, p in enumerate(parts)}


def dataset_partitions(meta: DatasetMeta) -> dict[str, tuple[str, ...]]:
    """The standard partitions for this dataset family."""
    if meta.name == "bp4d":
        return BP4D_PARTITIONS
    if meta.name == "synthetic":
        return balanced_partitions(meta.subjects, 3, seed=0)
    raise FoldError(f"no fold definition for dataset family {meta.name!r} (known: bp4d, synthetic)")


def check_partitions(parts: dict[str, tuple[str, ...]], present: set[str]) -> None:
    seen: dict[str, str] = {}
    for name, subjects in parts.items():
        if not subjects:
            raise FoldError(f"partition {name} is empty")
        for s in subjects:
            if s in seen:
                raise FoldError(f"subject {s} is in two partitions ({seen[s]} and {name})")
            seen[s] = name
    unknown = sorted(set(seen) - present)
    if unknown:
        raise FoldError(f"partitions name subjects absent from the dataset: {', '.join(unknown)}")


def make_split(parts: dict[str, tuple[str, ...]], fold: str, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Fold `fold` tests on partition `fold`; validation subjects are drawn from the rest."""
    if fold not in parts:
        raise FoldError(f"unknown fold {fold!r}; folds are named by their test partition: {', '.join(parts)}")
    test = tuple(sorted(parts[fold]))
    pool = sorted(s for name, subjects in parts.items() if name != fold for s in subjects)
    if len(pool) < 2:
        raise FoldError(f"fold {fold}: {len(pool)} training subject(s), need 2 to carve a validation subject")
    num_val = min(len(pool) - 1, max(1, round(val_fraction * len(pool))))
    rng = np.random.default_rng([seed, len(pool)])
    val = tuple(sorted(str(s) for s in rng.choice(pool, size=num_val, replace=False)))
    train = tuple(s for s in pool if s not in val)
    return Split(fold=fold, train=train, val=val, test=test)
