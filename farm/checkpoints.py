"""Checkpoints: the self-describing files a trained fold leaves behind, and how they are read back.

Plain PyTorch/NumPy/PyArrow. The engine writes them, inference and the farm read them; nothing
else knows their layout.

- `last.pt` (resumable state: model, optimizer, epoch, history, best so far, RNG) and `best.pt`
  (the best-validation epoch: model, config, input spec, epoch, val F1), written atomically
  (a temporary name, then a rename), read with `torch.load(weights_only=True)`, so a checkpoint
  is data, never code.
- `test_predictions.parquet` beside them: one row per test frame (`predictions_table`), which the
  subject-level bootstrap of `farm promote` reads back as `Predictions`.
- A fold-model directory (`save_fold_models` / `read_fold_models`): `model.json` (input spec,
  config, folds, test subjects) and one `<fold>.pt` state dict per fold: the registered model's
  artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from farm.files import atomic_path

LAST_FILE = "last.pt"
BEST_FILE = "best.pt"
PREDICTIONS_FILE = "test_predictions.parquet"
PREDICTIONS_DIR = "predictions"
"""Artifact folder of a fold run holding its PREDICTIONS_FILE."""
SPEC_FILE = "model.json"

LAST_KEYS = ("model", "optimizer", "epoch", "history", "best_f1", "best_epoch", "best_val", "rng")
BEST_KEYS = ("model", "config", "input", "epoch")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, foreign or incomplete; the message names the file."""


# ---------------------------------------------------------------------------------------------
# checkpoint files


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """torch.save to a temporary name in the same folder, then rename: a crash leaves the old file whole."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", keys: Iterable[str] = ()) -> dict:
    """A checkpoint as a dict (tensors on `device`), loaded with weights_only=True; `keys` must be present.

    Raises FileNotFoundError (no such file) or CheckpointError (empty, corrupt, not a torch file,
    holding pickled code, or not the expected kind), naming the path and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, expected a farm checkpoint written by torch.save")
    try:
        with warnings.catch_warnings():  # torch warns (with its own advice to unpickle anyway) before failing
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a farm checkpoint: it holds pickled objects other than tensors and plain "
                              "containers, refused (loading them could run code)") from None  # fmt: skip
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file: say which
        raise CheckpointError(f"{path}: not a farm checkpoint (expected a file written by torch.save; "
                              f"{type(e).__name__}: {str(e).strip()[:120]})") from None  # fmt: skip
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a farm checkpoint of this kind (missing {', '.join(missing)})")
    return state


def predictions_table(
    subjects: np.ndarray, tasks: np.ndarray, frames: np.ndarray, probs: np.ndarray, labels: np.ndarray,
    aus: tuple[str, ...] | list[str], fold: str | np.ndarray, seed: int | np.ndarray | None = None,
    partition: int | np.ndarray | None = None,
) -> pa.Table:  # fmt: skip
    """One row per frame: subject, task, frame, fold (one name, or one per frame), [seed], [partition], p_<AU>,
    y_<AU> (1, 0, -1).

    `seed` (one value, or one per row): the training seed of the model that predicted the row; without it the
    table has no `seed` column, and reading it back gives seed 0. `partition` likewise: the subject partition
    (`data.partition`) the row's fold came from; without it, partition 0."""
    folds = np.broadcast_to(np.asarray(fold, dtype=object), (len(subjects),)).astype(str)
    cols = {"subject": pa.array(subjects.astype(str)), "task": pa.array(tasks.astype(str)),
            "frame": pa.array(frames.astype(np.int64)), "fold": pa.array(folds)}  # fmt: skip
    if seed is not None:
        cols["seed"] = pa.array(np.broadcast_to(np.asarray(seed, dtype=np.int64), (len(subjects),)))
    if partition is not None:
        cols["partition"] = pa.array(np.broadcast_to(np.asarray(partition, dtype=np.int64), (len(subjects),)))
    for j, au in enumerate(aus):
        cols[f"p_{au}"] = pa.array(probs[:, j].astype(np.float32))
    for j, au in enumerate(aus):
        cols[f"y_{au}"] = pa.array(labels[:, j].astype(np.int8))
    return pa.table(cols)


@dataclass
class Predictions:
    """Per-frame test predictions of one or more folds (see `predictions_table`)."""

    subject: np.ndarray  # (N,) str
    task: np.ndarray  # (N,) str
    frame: np.ndarray  # (N,) int
    fold: np.ndarray  # (N,) str
    probs: np.ndarray  # (N, A) float
    labels: np.ndarray  # (N, A) int8
    aus: tuple[str, ...]
    seed: np.ndarray | None = None
    """(N,) int: the training seed of the model that predicted each row (several seeds: the same frames once per
    seed); None (and a file without the column) = 0 for every row."""
    partition: np.ndarray | None = None
    """(N,) int: the subject partition (`data.partition`) of the row's fold (several partitions: the same frames
    once per partition, and per seed); None (and a file without the column) = 0 for every row."""

    def __post_init__(self) -> None:
        if self.seed is None:
            self.seed = np.zeros(len(self.subject), dtype=np.int64)
        if self.partition is None:
            self.partition = np.zeros(len(self.subject), dtype=np.int64)

    @classmethod
    def from_table(cls, table: pa.Table, where: str = "predictions") -> Predictions:
        names = table.column_names
        aus = tuple(n[2:] for n in names if n.startswith("p_"))
        missing = [c for c in ("subject", "task", "frame", "fold", *(f"y_{a}" for a in aus)) if c not in names]
        if missing or not aus:
            raise ValueError(f"{where}: not a predictions table (missing columns {missing or ['p_<AU>']})")
        col = lambda c: table.column(c).to_numpy(zero_copy_only=False)  # noqa: E731
        seed = table.column("seed").fill_null(0).to_numpy().astype(np.int64) if "seed" in names else None
        part = table.column("partition").fill_null(0).to_numpy().astype(np.int64) if "partition" in names else None
        return cls(np.asarray(col("subject"), dtype=object), np.asarray(col("task"), dtype=object), col("frame"),
                   np.asarray(col("fold"), dtype=object), np.stack([col(f"p_{a}") for a in aus], 1),
                   np.stack([col(f"y_{a}") for a in aus], 1).astype(np.int8), aus, seed, part)  # fmt: skip

    @classmethod
    def read(cls, paths: Iterable[str | Path]) -> Predictions:
        paths = list(paths)
        tables = []
        for p in paths:
            try:
                tables.append(pq.read_table(p))
            except (OSError, pa.ArrowException) as e:
                raise ValueError(f"{p}: cannot read predictions ({e})") from None
        if not tables:
            raise ValueError("no prediction files given")
        try:
            table = pa.concat_tables(tables, promote_options="default")  # a file without `partition`: null -> 0
        except pa.ArrowException as e:
            raise ValueError(f"predictions {', '.join(map(str, paths))} do not share one schema ({e})") from None
        return cls.from_table(table, ", ".join(map(str, paths)))

    def keys(self) -> np.ndarray:
        """'subject/task/frame' per row: the identity of a frame across models."""
        return np.array([f"{s}/{t}/{f}" for s, t, f in zip(self.subject, self.task, self.frame)], dtype=object)

    def select(self, rows: np.ndarray) -> Predictions:
        return dataclasses.replace(self, subject=self.subject[rows], task=self.task[rows], frame=self.frame[rows],
                                   fold=self.fold[rows], probs=self.probs[rows], labels=self.labels[rows],
                                   seed=self.seed[rows], partition=self.partition[rows])  # fmt: skip

    def to_table(self) -> pa.Table:
        return predictions_table(self.subject, self.task, self.frame, self.probs, self.labels, self.aus, self.fold,
                                 self.seed, self.partition if self.partition.any() else None)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# models


@dataclass(frozen=True)
class InputSpec:
    """What a fold model reads: modalities in order, channels, the stored image size, the crop, the AUs."""

    modalities: tuple[str, ...]
    channels: dict[str, int]
    height: int
    width: int
    crop: int
    aus: tuple[str, ...]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "modalities": list(self.modalities), "aus": list(self.aus)}

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        return cls(tuple(d["modalities"]), {k: int(v) for k, v in d["channels"].items()}, int(d["height"]),
                   int(d["width"]), int(d["crop"]), tuple(d["aus"]))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# fold-model directories (the registered model's artifacts)


def save_fold_models(out: str | Path, states: dict[str, dict[str, torch.Tensor]], spec: InputSpec, config: dict,
                     test_subjects: dict[str, tuple[str, ...]] | None = None, extra: dict | None = None) -> Path:  # fmt: skip
    """<out>/model.json and <out>/<fold>.pt (state dicts only, on the CPU)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for fold, state in states.items():
        save_checkpoint({k: v.cpu() for k, v in state.items()}, out / f"{fold}.pt")
    (out / SPEC_FILE).write_text(json.dumps({"input": spec.to_dict(), "config": config, "folds": list(states),
                                             "test_subjects": dict(test_subjects or {}), **(extra or {})},
                                            indent=2))  # fmt: skip
    return out


def read_fold_models(root: str | Path, device: torch.device | str = "cpu") -> tuple[dict, dict[str, dict]]:
    """-> (the model.json description, {fold: state dict}) of a directory written by `save_fold_models`."""
    root = Path(root)
    try:
        info = json.loads((root / SPEC_FILE).read_text())
        folds = list(info["folds"])
        InputSpec.from_dict(info["input"])
        info["config"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{root / SPEC_FILE}: cannot read the model description ({type(e).__name__}: {e})"
        ) from None
    return info, {fold: load_checkpoint(root / f"{fold}.pt", device) for fold in folds}
