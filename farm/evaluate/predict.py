"""Inputs and outputs of `farm predict` (plain NumPy/PyArrow/Pillow; the model is any callable).

Two kinds of input, both yielding batches of uint8 images per modality plus the modalities that
are missing for the batch (filled by the model as zeros after normalisation, as the robustness
study does):
- a prepared dataset (`farm data synth` / `farm data prepare`): every frame, or some subjects;
  a modality the model reads but the dataset lacks is missing for every frame;
- an image tree `TREE/<modality>/**/<name>.(jpg|png)`: frames are matched across modalities by
  their path below the modality folder; a modality folder that is absent is missing for every
  frame, a frame absent from one modality folder is missing that modality for that frame only.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from farm.checkpoints import InputSpec
from farm.files import atomic_path
from farm.metrics import au_counts, summarize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class Batch:
    keys: dict[str, list]
    """Identity columns: subject, task, frame (dataset) or path (tree)."""
    images: dict[str, np.ndarray]
    """uint8 (N, H, W, C) for every modality of the model (zeros where missing)."""
    missing: tuple[str, ...]
    labels: np.ndarray | None = None


def _zeros(spec: InputSpec, m: str, n: int) -> np.ndarray:
    return np.zeros((n, spec.height, spec.width, spec.channels[m]), np.uint8)


def dataset_batches(root: str | Path, spec: InputSpec, subjects: list[str] | None = None,
                    batch_size: int = 128) -> tuple[int, list[str], Iterator[Batch]]:  # fmt: skip
    """-> (frame count, missing modalities, batches) over a prepared dataset."""
    from farm.data.store import FrameStore

    store = FrameStore(root)
    have = store.meta.modality_names
    missing = tuple(m for m in spec.modalities if m not in have)
    if len(missing) == len(spec.modalities):
        raise ValueError(f"{root} holds {list(have)}; the model reads {list(spec.modalities)}: nothing to predict from")
    idx = np.arange(len(store))
    if subjects:
        unknown = sorted(set(subjects) - set(store.subjects))
        if unknown:
            raise ValueError(f"{root}: no subject {', '.join(unknown)}")
        idx = idx[np.isin(store.subjects, subjects)]
    aus_known = all(a in store.meta.aus for a in spec.aus)
    labels = store.labels(spec.aus)[idx] if aus_known else None
    col = store.frame_ids(idx)

    def batches() -> Iterator[Batch]:
        for i in range(0, len(idx), batch_size):
            rows = idx[i : i + batch_size]
            images = {m: (np.stack([store.image(int(r), m) for r in rows]) if m not in missing else _zeros(spec, m, len(rows)))
                      for m in spec.modalities}  # fmt: skip
            keys = {c: list(v[i : i + batch_size]) for c, v in col.items()}
            yield Batch(keys, images, missing, None if labels is None else labels[i : i + batch_size])

    return len(idx), list(missing), batches()


def read_image(path: Path, spec: InputSpec, modality: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if spec.channels[modality] == 3 else "L")
            if im.size != (spec.width, spec.height):
                im = im.resize((spec.width, spec.height), Image.BILINEAR)
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None
    return arr[..., None] if arr.ndim == 2 else arr


def tree_batches(root: str | Path, spec: InputSpec, batch_size: int = 128) -> tuple[int, list[str], Iterator[Batch]]:
    """-> (frame count, modalities missing for every frame, batches) over an image tree."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    files: dict[str, dict[str, Path]] = {}
    for m in spec.modalities:
        if (root / m).is_dir():
            files[m] = {str(p.relative_to(root / m).with_suffix("")): p for p in sorted((root / m).rglob("*"))
                        if p.suffix.lower() in IMAGE_SUFFIXES}  # fmt: skip
    if not any(files.values()):
        raise ValueError(f"{root}: no images under {', '.join(f'{m}/' for m in spec.modalities)} "
                         f"(expected {root}/<modality>/**/<frame>.jpg)")  # fmt: skip
    keys = sorted(set().union(*(f.keys() for f in files.values())))
    absent = [m for m in spec.modalities if not files.get(m)]
    # frames grouped by which modalities they lack, so each batch has one `missing` set
    groups: dict[tuple[str, ...], list[str]] = {}
    for k in keys:
        groups.setdefault(tuple(m for m in spec.modalities if k not in files.get(m, {})), []).append(k)

    def batches() -> Iterator[Batch]:
        for missing, group in groups.items():
            for i in range(0, len(group), batch_size):
                chunk = group[i : i + batch_size]
                images = {m: (np.stack([read_image(files[m][k], spec, m) for k in chunk]) if m not in missing
                              else _zeros(spec, m, len(chunk))) for m in spec.modalities}  # fmt: skip
                yield Batch({"path": chunk}, images, missing)

    return len(keys), absent, batches()


def run(predict: Callable[[dict[str, np.ndarray], tuple[str, ...]], np.ndarray], batches: Iterator[Batch],
        spec: InputSpec, out: str | Path, threshold: float = 0.5,
        progress: Callable[[int], None] | None = None) -> dict:  # fmt: skip
    """Predict every batch, write one CSV row per frame; returns counts (and F1 when labels are known)."""
    out = Path(out)
    n, per_missing, counts = 0, {}, None
    with atomic_path(out) as tmp, tmp.open("w", newline="") as f:  # a failed run leaves a previous --out whole
        w = None
        for b in batches:
            probs = np.asarray(predict(b.images, b.missing), dtype=np.float64)
            if w is None:
                w = csv.writer(f)
                w.writerow([*b.keys, "missing", *(f"p_{a}" for a in spec.aus), *spec.aus])
            miss = "+".join(b.missing)
            decisions = (probs >= threshold).astype(int)
            for i in range(len(probs)):
                w.writerow([*(v[i] for v in b.keys.values()), miss, *(f"{p:.5f}" for p in probs[i]), *decisions[i]])
            n += len(probs)
            per_missing[miss] = per_missing.get(miss, 0) + len(probs)
            if b.labels is not None:
                c = au_counts(probs, b.labels, threshold)
                counts = c if counts is None else counts + c
            if progress:
                progress(len(probs))
    result = {"frames": n, "missing": per_missing, "out": str(out)}
    if counts is not None:
        result["f1"] = summarize(counts, spec.aus)
    return result
