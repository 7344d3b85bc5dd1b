"""On-disk dataset format shared by the synthetic generator and the BP4D / BP4D+ adapters.

A prepared dataset directory holds

    dataset.json            DatasetMeta: modalities (channels, size), AU list, codec, subjects,
                            how it was made, data hash. Written LAST: its presence marks a
                            complete dataset.
    manifest.parquet        one row per frame: subject, task, frame, AU1..AUn (int8: 1, 0, -1 =
                            unknown), shard, row (where the frame's images are)
    images/part-NNNNN.arrow uncompressed Arrow IPC shards, one binary column per modality (raw
                            uint8 HxWxC bytes, or PNG/JPEG bytes); memory-mapped by readers so
                            several training processes on one node share the page cache.
    skips.parquet           (prepare only) one row per frame left out and per image converted
                            to its modality's format or size: subject, task, frame, modality,
                            reason ("converted: ..." for the kept, converted ones), path, detail

Shards are written to a temporary name and renamed, so an interrupted writer never leaves a
shard that a later reader trusts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
META_FILE = "dataset.json"
MANIFEST_FILE = "manifest.parquet"
IMAGES_DIR = "images"
SKIPS_FILE = "skips.parquet"
CONVERTED = "converted: "
"""Prefix of the skips.parquet reasons of kept frames whose file did not match its modality and was converted
(e.g. "converted: grayscale to RGB"); every other reason is a frame left out of the dataset."""
SHARD_BYTES = 1 << 30  # a shard column must stay below Arrow's 2 GiB binary offsets
CODECS = ("raw", "png", "jpeg")


class DatasetError(ValueError):
    """A dataset directory is missing, incomplete or inconsistent; the message names the file."""


@dataclass(frozen=True)
class ModalitySpec:
    name: str
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class DatasetMeta:
    name: str
    """Dataset family: synthetic, bp4d or bp4dplus (selects the fold definition)."""
    modalities: tuple[ModalitySpec, ...]
    aus: tuple[str, ...]
    codec: str = "raw"
    subjects: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-subject attributes, e.g. {"F001": {"sex": "F"}}."""
    source: dict[str, Any] = field(default_factory=dict)
    """How the dataset was made (generator arguments, raw root, preprocessing)."""
    num_frames: int = 0
    data_hash: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise DatasetError(f"dataset has no modality {name!r}; it holds {', '.join(self.modality_names)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DatasetMeta:
        d = json.loads(text)
        d["modalities"] = tuple(ModalitySpec(**m) for m in d["modalities"])
        d["aus"] = tuple(d["aus"])
        return cls(**d)


def read_meta(root: str | Path) -> DatasetMeta:
    path = Path(root) / META_FILE
    if not path.exists():
        raise DatasetError(
            f"{path} not found: {root} is not a prepared dataset (or its preparation did not finish); "
            "create one with `farm data synth` or `farm data prepare`"
        )
    try:
        meta = DatasetMeta.from_json(path.read_text())
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise DatasetError(f"{path}: not a valid dataset description ({e})") from None
    if meta.schema_version != SCHEMA_VERSION:
        raise DatasetError(f"{path}: schema version {meta.schema_version}, this farm reads {SCHEMA_VERSION}")
    return meta


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def encode_image(img: np.ndarray, codec: str) -> bytes:
    """(H, W, C) uint8 -> bytes in `codec`."""
    if codec == "raw":
        return np.ascontiguousarray(img, dtype=np.uint8).tobytes()
    from PIL import Image

    arr = img[..., 0] if img.shape[-1] == 1 else img
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG" if codec == "png" else "JPEG", quality=95)
    return buf.getvalue()


def decode_image(data: bytes | memoryview, spec: ModalitySpec, codec: str) -> np.ndarray:
    """bytes -> (H, W, C) uint8, checked against the modality's declared shape."""
    if codec == "raw":
        arr = np.frombuffer(data, dtype=np.uint8)
        expected = spec.height * spec.width * spec.channels
        if arr.size != expected:
            raise DatasetError(f"{spec.name}: raw image has {arr.size} bytes, expected {expected}")
        return arr.reshape(spec.height, spec.width, spec.channels)
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB" if spec.channels == 3 else "L"))
    if img.ndim == 2:
        img = img[..., None]
    if img.shape != (spec.height, spec.width, spec.channels):
        raise DatasetError(
            f"{spec.name}: image of shape {img.shape}, expected {(spec.height, spec.width, spec.channels)}"
        )
    return img


def claim_output(out: str | Path, source: dict[str, Any], what: str) -> DatasetMeta | None:
    """Make `out` ready for a dataset made from `source`.

    Returns the existing dataset's description when `out` already holds the same one (reuse),
    refuses a different dataset or a folder of unrelated files, and clears the leftovers of an
    interrupted run (no dataset.json means nothing in there is trusted).
    """
    out = Path(out)
    if (out / META_FILE).exists():
        meta = read_meta(out)
        if meta.source == source:
            return meta
        keys = list(source) + [k for k in meta.source if k not in source]
        diffs = ", ".join(
            f"{k}: {meta.source.get(k)} != {source.get(k)}" for k in keys if meta.source.get(k) != source.get(k)
        )
        raise DatasetError(f"{out} holds a different {what} dataset ({diffs}); choose another --out or delete it")
    check_writable_dir(out, what)
    if out.exists():
        ours = {IMAGES_DIR, MANIFEST_FILE, SKIPS_FILE}
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith("."))
        if foreign:
            raise DatasetError(f"{out} is not empty and holds no dataset ({', '.join(foreign[:5])} ...); "
                               "choose an empty or new --out")  # fmt: skip
        shutil.rmtree(out / IMAGES_DIR, ignore_errors=True)  # an interrupted run: start over
        for name in (MANIFEST_FILE, SKIPS_FILE):
            (out / name).unlink(missing_ok=True)
        for tmp in out.glob(".*.tmp-*"):
            tmp.unlink()
    return None


def check_writable_dir(out: Path, what: str) -> None:
    """Create `out` and write a probe file in it: fail at once, naming the folder, not on a file that never existed."""
    probe = out / f".write-probe-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DatasetError(f"--out {out}: cannot write the {what} dataset there ({e.strerror}); "
                           "choose a writable folder") from None  # fmt: skip


class DatasetWriter:
    """Append frames, then `close()` to write the manifest and `dataset.json`.

    >>> w = DatasetWriter(out, meta)            # meta without num_frames / data_hash
    >>> w.add(subject, task, frames, labels, images)   # one sequence at a time
    >>> meta = w.close()
    """

    def __init__(self, root: str | Path, meta: DatasetMeta, shard_frames: int = 4096) -> None:
        if meta.codec not in CODECS:
            raise DatasetError(f"codec must be one of {CODECS}, got {meta.codec!r}")
        self.root = Path(root)
        self.meta = meta
        self.shard_frames = shard_frames
        (self.root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list] = {"subject": [], "task": [], "frame": [], "shard": [], "row": []}
        self._labels: list[np.ndarray] = []
        self._pending: dict[str, list[bytes]] = {m.name: [] for m in meta.modalities}
        self._shard = 0
        self._pending_bytes = 0
        self._hash = hashlib.sha256()

    def add(
        self,
        subject: str,
        task: str,
        frames: np.ndarray,
        labels: np.ndarray,
        images: dict[str, np.ndarray],
    ) -> None:
        """frames (N,), labels (N, A) in {1, 0, -1}, images {modality: (N, H, W, C) uint8}."""
        n = len(frames)
        if labels.shape != (n, len(self.meta.aus)):
            raise DatasetError(f"{subject}/{task}: labels of shape {labels.shape}, expected {(n, len(self.meta.aus))}")
        if not np.isin(labels, (-1, 0, 1)).all():
            raise DatasetError(f"{subject}/{task}: labels must be 1, 0 or -1 (unknown)")
        for spec in self.meta.modalities:
            imgs = images[spec.name]
            if imgs.shape != (n, spec.height, spec.width, spec.channels) or imgs.dtype != np.uint8:
                raise DatasetError(
                    f"{subject}/{task}: {spec.name} images {imgs.shape} {imgs.dtype}, "
                    f"expected {(n, spec.height, spec.width, spec.channels)} uint8"
                )
        blobs = {
            spec.name: [encode_image(img, self.meta.codec) for img in images[spec.name]]
            for spec in self.meta.modalities
        }
        self.add_encoded(subject, task, frames, labels, blobs)

    def add_encoded(
        self, subject: str, task: str, frames: np.ndarray, labels: np.ndarray, blobs: dict[str, list[bytes]]
    ) -> None:
        """Like `add`, with images already encoded in the dataset's codec (by worker processes)."""
        n = len(frames)
        if labels.shape != (n, len(self.meta.aus)) or any(len(blobs[m.name]) != n for m in self.meta.modalities):
            raise DatasetError(f"{subject}/{task}: {n} frames but labels {labels.shape} and "
                               f"{ {m: len(b) for m, b in blobs.items()} } images")  # fmt: skip
        self._labels.append(labels.astype(np.int8))
        self._hash.update(f"{subject}/{task}".encode())
        self._hash.update(np.asarray(frames, dtype=np.int64).tobytes())
        self._hash.update(labels.astype(np.int8).tobytes())
        for i in range(n):
            self._rows["subject"].append(subject)
            self._rows["task"].append(task)
            self._rows["frame"].append(int(frames[i]))
            self._rows["shard"].append(self._shard)
            self._rows["row"].append(len(self._pending[self.meta.modalities[0].name]))
            for spec in self.meta.modalities:
                data = blobs[spec.name][i]
                self._hash.update(data)
                self._pending[spec.name].append(data)
                self._pending_bytes += len(data)
            if (
                len(self._pending[self.meta.modalities[0].name]) >= self.shard_frames
                or self._pending_bytes > SHARD_BYTES
            ):
                self._flush()

    def _flush(self) -> None:
        first = self.meta.modalities[0].name
        if not self._pending[first]:
            return
        table = pa.table({name: pa.array(blobs, type=pa.binary()) for name, blobs in self._pending.items()})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        _atomic_write_bytes(self.root / IMAGES_DIR / f"part-{self._shard:05d}.arrow", sink.getvalue().to_pybytes())
        self._pending = {name: [] for name in self._pending}
        self._pending_bytes = 0
        self._shard += 1

    def close(self) -> DatasetMeta:
        self._flush()
        labels = np.concatenate(self._labels) if self._labels else np.zeros((0, len(self.meta.aus)), np.int8)
        cols: dict[str, Any] = {
            "subject": pa.array(self._rows["subject"], pa.string()),
            "task": pa.array(self._rows["task"], pa.string()),
            "frame": pa.array(self._rows["frame"], pa.int32()),
        }
        for j, au in enumerate(self.meta.aus):
            cols[au] = pa.array(labels[:, j], pa.int8())
        cols["shard"] = pa.array(self._rows["shard"], pa.int32())
        cols["row"] = pa.array(self._rows["row"], pa.int32())
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(cols), sink)
        _atomic_write_bytes(self.root / MANIFEST_FILE, sink.getvalue().to_pybytes())
        meta = DatasetMeta(
            **{
                **asdict(self.meta),
                "modalities": self.meta.modalities,
                "aus": self.meta.aus,
                "num_frames": len(labels),
                "data_hash": self._hash.hexdigest()[:16],
            }
        )
        _atomic_write_bytes(self.root / META_FILE, meta.to_json().encode())
        return meta


def read_skips(root: str | Path) -> pa.Table | None:
    """The frames `farm data prepare` left out or converted (skips.parquet), or None for a dataset without one."""
    path = Path(root) / SKIPS_FILE
    return pq.read_table(path) if path.exists() else None


def is_conversion(reason: str) -> bool:
    """Whether a skips.parquet row is a kept frame whose image was converted, rather than a frame left out."""
    return reason.startswith(CONVERTED)


class FrameStore:
    """Read-only access to a prepared dataset: the manifest in memory, images memory-mapped.

    Shards are opened lazily in each process (after DataLoader workers fork), so every process
    maps the same files and the OS shares their pages.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        path = self.root / MANIFEST_FILE
        try:
            self.manifest = pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            raise DatasetError(f"{path}: cannot read the manifest ({e})") from None
        missing = [
            c
            for c in ("subject", "task", "frame", "shard", "row", *self.meta.aus)
            if c not in self.manifest.column_names
        ]
        if missing:
            raise DatasetError(f"{path}: missing columns {missing}")
        self.subjects = np.asarray(self.manifest.column("subject").to_pylist(), dtype=object)
        self._shard = self.manifest.column("shard").to_numpy()
        self._row = self.manifest.column("row").to_numpy()
        self._maps: dict[int, dict[str, tuple[np.ndarray, memoryview]]] = {}

    def __len__(self) -> int:
        return self.manifest.num_rows

    def frame_ids(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """{"subject", "task", "frame"}: the identity of the given manifest rows."""
        return {
            c: self.manifest.column(c).to_numpy(zero_copy_only=False)[indices] for c in ("subject", "task", "frame")
        }

    def labels(self, aus: tuple[str, ...] | None = None) -> np.ndarray:
        """(N, A) int8 in {1, 0, -1}."""
        aus = aus or self.meta.aus
        missing = [a for a in aus if a not in self.manifest.column_names]
        if missing:
            raise DatasetError(f"{self.root}: dataset has no label column for {missing}; it has {list(self.meta.aus)}")
        return np.stack([self.manifest.column(a).to_numpy() for a in aus], axis=1).astype(np.int8)

    def _open_shard(self, shard: int) -> dict[str, tuple[np.ndarray, memoryview]]:
        """Zero-copy views of a shard's columns: offsets and data point into the memory-mapped file."""
        path = self.root / IMAGES_DIR / f"part-{shard:05d}.arrow"
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
            if reader.num_record_batches != 1:
                raise DatasetError(f"{path}: {reader.num_record_batches} record batches, expected 1")
            batch = reader.get_batch(0)
        except (OSError, pa.ArrowException) as e:
            raise DatasetError(f"{path}: cannot read image shard ({e})") from None
        cols = {}
        for name, arr in zip(batch.schema.names, batch.columns):
            offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
            cols[name] = (offsets, memoryview(arr.buffers()[2]))
        return cols

    def blob(self, index: int, modality: str) -> memoryview:
        """The stored (encoded) bytes of frame `index` in `modality`: a zero-copy view of the mapped shard."""
        self.meta.modality(modality)  # a clear error for a modality the dataset lacks
        return self._blob(index, modality)

    def _blob(self, index: int, modality: str) -> memoryview:
        shard, row = int(self._shard[index]), int(self._row[index])
        if shard not in self._maps:
            self._maps[shard] = self._open_shard(shard)
        offsets, data = self._maps[shard][modality]
        return data[offsets[row] : offsets[row + 1]]

    def image(self, index: int, modality: str) -> np.ndarray:
        """(H, W, C) uint8 image of frame `index` (manifest row) in `modality`."""
        spec = self.meta.modality(modality)  # a clear error for a modality the dataset lacks
        return decode_image(self._blob(index, modality), spec, self.meta.codec)

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps do not pickle; each process re-opens them.
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state
