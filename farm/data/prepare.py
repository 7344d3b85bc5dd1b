"""BP4D and BP4D+ adapters: a licensed copy -> the farm's dataset format (see store.py).

Two input layouts (DOMAIN.md sections 3-4; docs/data.md):

- a pre-processed tree (the common case): ROOT/<folder>/<subject>/<task>/<frame>.(jpg|png), one
  folder per modality, of aligned face crops; each image is centre-cropped to a square if needed
  and resized to `size`;
- the raw release: 2D frames under `Sequences(2D+3D)`, `BP4D-training` (FERA 2015) or `2D+3D`
  (BP4D+, unzipped), cropped from the released 2D landmarks (`2DFeatures/<subject>_<task>.*`)
  where present, else centre-cropped; per-frame 3D meshes (.obj / .wrl beside the 2D frames or
  under `3D/<subject>/<task>`) projected to depth maps (orthographic z-buffer of the face
  region, farm/data/mesh.py); BP4D+ thermal frames under `Thermal/<subject>/<task>`.

Labels always come from ROOT/AUCoding/AU_OCC/<subject>_<task>.csv. The label row of frame f uses
the images of frame f + frame_offset. Nothing is dropped or changed silently: every frame left out
is a row of `skips.parquet` with its reason, and so is every kept image that did not match its
modality and was converted (a grayscale file among RGB frames, a 64x40 crop among 32x32 ones;
reason "converted: ..."); `farm data check` summarises both.

Work is planned in the calling process (file listings, label files, the first image header of each
sequence) and the images are decoded, cropped and encoded in worker processes, a chunk of frames at
a time, in a deterministic order. On Linux the workers die with the preparing process, even when it
is killed with SIGKILL (prctl PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from farm.config import BP4D_AUS
from farm.data.aucoding import index_frames, read_au_occ
from farm.data.store import (
    CODECS,
    CONVERTED,
    SKIPS_FILE,
    DatasetError,
    DatasetMeta,
    DatasetWriter,
    ModalitySpec,
    _atomic_write_bytes,
    claim_output,
    encode_image,
    is_conversion,
)

VERSION = 1
CHANNELS = {"visual": 3, "depth": 1, "thermal": 1}
DEFAULT_MODALITIES = {"bp4d": ("visual", "depth"), "bp4dplus": ("visual", "depth", "thermal")}
DEFAULT_TASKS = {"bp4d": (), "bp4dplus": ("T1", "T6", "T7", "T8")}  # () = every task with a label file
RAW_2D_DIRS = ("Sequences(2D+3D)", "BP4D-training", "2D+3D")
LANDMARK_SUFFIXES = (".csv", ".txt", ".npy", ".npz", ".mat")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MESH_SUFFIXES = (".obj", ".wrl")
LABEL_DIR = Path("AUCoding") / "AU_OCC"
CHUNK_FRAMES = 64

# skip reasons (the `reason` column of skips.parquet)
MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"
MISSING_LANDMARKS = "missing landmarks"
LABELS_WITHOUT_FRAMES = "label row without frames"
FRAMES_WITHOUT_LABELS = "frame without labels"
REASONS = (MISSING_IMAGE, UNREADABLE_IMAGE, MISSING_LANDMARKS, LABELS_WITHOUT_FRAMES, FRAMES_WITHOUT_LABELS)
STORED_MODES = {3: "RGB", 1: "L"}  # PIL mode each channel count is stored in
MODE_NAMES = {"L": "grayscale", "LA": "grayscale+alpha", "P": "palette", "PA": "palette+alpha", "1": "1-bit",
              "I;16": "16-bit grayscale", "I": "32-bit grayscale", "F": "float grayscale"}  # fmt: skip
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class PrepareSpec:
    dataset: str
    """bp4d or bp4dplus (selects the default modalities, tasks and folds)."""
    root: str
    modalities: tuple[str, ...] = ()
    """Modality names, each optionally `name=folder` (tree layout); empty = the dataset's defaults."""
    layout: str = "auto"
    """tree (pre-processed crops), raw (the release) or auto (tree when the first modality folder exists)."""
    size: int = 256
    """Side of the stored square images (the paper aligns faces to 256 and crops 224)."""
    codec: str = "jpeg"
    """How images are stored: jpeg (quality 95, about 10x smaller than raw), png or raw; see docs/benchmarks.md."""
    frame_offset: int = 0
    """The label row of frame f uses image f + frame_offset (BP4D+ is disputed: 0 or -1; check on your copy)."""
    tasks: tuple[str, ...] | None = None
    """Tasks to keep; None = the dataset's default (BP4D+: T1 T6 T7 T8, its AU-coded tasks; BP4D: all)."""
    aus: tuple[str, ...] = BP4D_AUS
    face_margin: float = 1.4
    """Raw layout: crop side = margin x the landmarks' bounding box."""
    depth_range: float = 100.0
    """Raw layout: depth range (mesh units, mm) below the nose tip mapped to the grey scale."""

    def __post_init__(self) -> None:
        if self.dataset not in DEFAULT_MODALITIES:
            raise ValueError(f"dataset must be bp4d or bp4dplus, got {self.dataset!r}")
        if self.layout not in ("auto", "tree", "raw"):
            raise ValueError(f"layout must be auto, tree or raw, got {self.layout!r}")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")
        for name, _ in self.modality_folders:
            if name not in CHANNELS:
                raise ValueError(
                    f"unknown modality {name!r}: known {', '.join(CHANNELS)} (use name=folder to map folders)"
                )

    @property
    def modality_folders(self) -> tuple[tuple[str, str], ...]:
        items = self.modalities or DEFAULT_MODALITIES[self.dataset]
        return tuple((m.split("=", 1)[0].strip(), (m.split("=", 1)[1] if "=" in m else m).strip()) for m in items)

    @property
    def task_filter(self) -> tuple[str, ...]:
        return DEFAULT_TASKS[self.dataset] if self.tasks is None else self.tasks

    def source(self, layout: str) -> dict[str, Any]:
        d = asdict(self)
        d.update(root=str(Path(self.root).resolve()), layout=layout, modalities=[f"{n}={f}" for n, f in self.modality_folders],
                 tasks=list(self.task_filter), aus=list(self.aus), preparer="farm.data.prepare", version=VERSION)  # fmt: skip
        return d


@dataclass
class Skip:
    subject: str
    task: str
    frame: int
    modality: str
    reason: str
    path: str
    detail: str = ""


@dataclass
class Chunk:
    """Frames of one sequence for a worker: where each modality's source is, and how to crop it."""

    subject: str
    task: str
    frames: list[int]
    labels: np.ndarray
    sources: dict[str, list[str]]
    landmarks: list[np.ndarray | None] = field(default_factory=list)


@dataclass
class Plan:
    layout: str
    chunks: list[Chunk]
    skips: list[Skip]
    notes: list[str]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Tree layout: each modality's image size (width, height); a frame of another size is reported as converted."""


def detect_layout(spec: PrepareSpec) -> str:
    root = Path(spec.root)
    if not root.is_dir():
        raise DatasetError(f"raw data root {root} is not a directory")
    if not (root / LABEL_DIR).is_dir():
        raise DatasetError(
            f"{root / LABEL_DIR} not found: BP4D/BP4D+ labels live in AUCoding/AU_OCC/<subject>_<task>.csv"
        )
    if spec.layout != "auto":
        return spec.layout
    if (root / spec.modality_folders[0][1]).is_dir():
        return "tree"
    if any((root / d).is_dir() for d in RAW_2D_DIRS):
        return "raw"
    zips = sorted(root.glob("*.zip")) + sorted(root.glob("*/*.zip"))
    hint = f"; found zip archives ({zips[0]} ...): unzip them in place first" if zips else ""
    raise DatasetError(f"{root}: neither a pre-processed tree (no folder {spec.modality_folders[0][1]!r}) nor a raw "
                       f"release (none of {', '.join(RAW_2D_DIRS)}){hint}")  # fmt: skip


def _label_files(spec: PrepareSpec) -> tuple[dict[tuple[str, str], Path], list[str]]:
    files: dict[tuple[str, str], Path] = {}
    ignored: list[str] = []
    for path in sorted((Path(spec.root) / LABEL_DIR).glob("*.csv")):
        m = re.fullmatch(r"([A-Za-z]\d+)_(T\d+)", path.stem)
        if not m:
            ignored.append(path.name)
            continue
        if spec.task_filter and m.group(2) not in spec.task_filter:
            continue
        files[(m.group(1), m.group(2))] = path
    return files, ignored


def _sequence_dirs(root: Path, folder: str) -> dict[tuple[str, str], Path]:
    base = root / folder
    if not base.is_dir():
        return {}
    return {
        (s.name, t.name): t for s in sorted(base.iterdir()) if s.is_dir() for t in sorted(s.iterdir()) if t.is_dir()
    }


def _index(directory: Path | None, suffixes: tuple[str, ...]) -> dict[int, Path]:
    if directory is None or not directory.is_dir():
        return {}
    try:
        return index_frames(directory, suffixes=suffixes)
    except ValueError as e:
        raise DatasetError(str(e)) from None


def _raw_sources(root: Path, spec: PrepareSpec) -> dict[str, dict[tuple[str, str], Path]]:
    """modality -> {(subject, task): directory holding its per-frame files} for the raw release."""
    two_d: dict[tuple[str, str], Path] = {}
    for d in RAW_2D_DIRS:
        for key, path in _sequence_dirs(root, d).items():
            two_d.setdefault(key, path)
    three_d = _sequence_dirs(root, "3D")
    out: dict[str, dict[tuple[str, str], Path]] = {}
    for name, _ in spec.modality_folders:
        if name == "visual":
            out[name] = two_d
        elif name == "depth":
            out[name] = {**two_d, **three_d}  # meshes beside the 2D frames, or in a 3D/ tree
        else:
            out[name] = _sequence_dirs(root, "Thermal")
            videos = sorted(p for p in (root / "Thermal").glob("*/*") if p.is_file() and p.suffix.lower() in
                            (".mv", ".mp4", ".avi", ".mkv", ".wmv", ".mov"))  # fmt: skip
            if videos and not out[name]:
                v = videos[0]
                raise DatasetError(f"{v} is a video: extract its frames first, e.g. `mkdir -p {v.parent / v.stem} && "
                                   f"ffmpeg -i '{v}' -start_number 0 '{v.parent / v.stem}/%04d.png'`, for every "
                                   f"video under {root / 'Thermal'} (frame numbers must match the 2D frames)")  # fmt: skip
    return out


def _landmarks_for(root: Path, subject: str, task: str, frames_sorted: list[int]) -> dict[int, np.ndarray] | None:
    from farm.data.align import LandmarkError, read_landmarks

    for suffix in LANDMARK_SUFFIXES:
        path = root / "2DFeatures" / f"{subject}_{task}{suffix}"
        if path.exists():
            try:
                lm = read_landmarks(path)
            except LandmarkError as e:
                raise DatasetError(str(e)) from None
            if suffix in (".npy", ".npz", ".mat"):  # arrays are in image order, not frame numbers
                return {frames_sorted[i]: v for i, v in lm.items() if i < len(frames_sorted)}
            return lm
    return None


def plan(spec: PrepareSpec, layout: str | None = None) -> Plan:
    """List the frames to write and the ones to skip (cheap: file listings and label files only)."""
    layout = layout or detect_layout(spec)
    root = Path(spec.root)
    labels, ignored = _label_files(spec)
    notes = [f"ignored label files not named SUBJECT_TASK.csv: {', '.join(ignored)}"] if ignored else []
    mods = [name for name, _ in spec.modality_folders]
    if layout == "tree":
        dirs = {name: _sequence_dirs(root, folder) for name, folder in spec.modality_folders}
        for name, folder in spec.modality_folders:
            if not dirs[name]:
                raise DatasetError(f"{root / folder}: no <subject>/<task> folders for modality {name}")
    else:
        dirs = _raw_sources(root, spec)
    suffixes = {m: MESH_SUFFIXES if (layout == "raw" and m == "depth") else IMAGE_SUFFIXES for m in mods}
    image_keys = {k for m in mods for k in dirs[m] if not spec.task_filter or k[1] in spec.task_filter}
    skips: list[Skip] = []
    chunks: list[Chunk] = []
    excluded = sorted({k[1] for m in mods for k in dirs[m]} - set(spec.task_filter)) if spec.task_filter else []
    if excluded:
        notes.append(f"tasks left out by the task filter ({' '.join(spec.task_filter)}): {' '.join(excluded)}")
    for key in sorted(set(labels) | image_keys):
        subject, task = key
        index = {m: _index(dirs[m].get(key), suffixes[m]) for m in mods}
        if key not in labels:
            for m in mods:
                skips += [
                    Skip(subject, task, f, m, FRAMES_WITHOUT_LABELS, str(p), "no label file")
                    for f, p in index[m].items()
                ]
            continue
        occ = read_au_occ(labels[key])
        values = occ.select(spec.aus)
        labelled = {int(f) + spec.frame_offset for f in occ.frames}
        for m in mods:
            skips += [
                Skip(subject, task, f, m, FRAMES_WITHOUT_LABELS, str(p))
                for f, p in index[m].items()
                if f not in labelled
            ]
        lms = None
        if layout == "raw" and "visual" in mods:
            lms = _landmarks_for(root, subject, task, sorted(index["visual"]))
        keep: list[int] = []
        for row, f in enumerate(occ.frames):
            img = int(f) + spec.frame_offset
            have = [m for m in mods if img in index[m]]
            if not have:
                skips.append(Skip(subject, task, int(f), "", LABELS_WITHOUT_FRAMES, str(labels[key]),
                                  f"no image {img} in any modality"))  # fmt: skip
                continue
            missing = [m for m in mods if m not in have]
            for m in missing:
                where = dirs[m].get(key)
                skips.append(Skip(subject, task, int(f), m, MISSING_IMAGE, str(where or root / m),
                                  f"frame {img}" if where else "no folder for this sequence"))  # fmt: skip
            if missing:
                continue
            if lms is not None and img not in lms:
                skips.append(Skip(subject, task, int(f), "visual", MISSING_LANDMARKS, str(index["visual"][img])))
                continue
            keep.append(row)
        for start in range(0, len(keep), CHUNK_FRAMES):
            rows = keep[start : start + CHUNK_FRAMES]
            imgs = [int(occ.frames[r]) + spec.frame_offset for r in rows]
            chunks.append(Chunk(subject, task, [int(occ.frames[r]) for r in rows], values[rows],
                                {m: [str(index[m][i]) for i in imgs] for m in mods},
                                [lms[i] for i in imgs] if lms is not None else []))  # fmt: skip
    return Plan(layout, chunks, skips, notes, _modality_sizes(chunks) if layout == "tree" else {})


def _modality_sizes(chunks: list[Chunk]) -> dict[str, tuple[int, int]]:
    """The usual (width, height) of each modality: the most common among the first image of each sequence.

    Crops in a pre-processed tree share one size; reading one header per sequence is cheap, and a
    majority is not fooled by one odd file. Unreadable headers are left to the workers to report.
    """
    from PIL import Image

    seen: dict[str, Counter] = {}
    firsts = {}
    for c in chunks:
        firsts.setdefault((c.subject, c.task), c)
    for c in firsts.values():
        for m, paths in c.sources.items():
            try:
                with Image.open(paths[0]) as im:
                    seen.setdefault(m, Counter())[im.size] += 1
            except Exception:  # noqa: BLE001 - the worker decodes it again and reports why it fails
                continue
    return {m: counts.most_common(1)[0][0] for m, counts in seen.items()}


def _load_image(path: str, channels: int) -> tuple[np.ndarray, str, tuple[int, int]]:
    """(H, W, C) uint8 in the modality's channels, with the file's own PIL mode and (width, height)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decode now: truncated or corrupt files fail here
        arr = np.asarray(im.convert(STORED_MODES[channels]))
        mode, size = im.mode, im.size
    return (arr if arr.ndim == 3 else arr[..., None]), mode, size


def _conversions(chunk: Chunk, frame: int, m: str, path: str, mode: str, wh: tuple[int, int],
                 usual: tuple[int, int] | None, size: int) -> list[Skip]:  # fmt: skip
    """Report rows for an image that does not match its modality: another pixel format, another size."""
    out = []
    want = STORED_MODES[CHANNELS[m]]
    if mode != want:
        src, dst = MODE_NAMES.get(mode, mode), MODE_NAMES.get(want, want)
        n = CHANNELS[m]
        out.append(Skip(chunk.subject, chunk.task, frame, m, f"{CONVERTED}{src} to {dst}", path,
                        f"expected {dst} ({n} channel{'s' if n > 1 else ''}) for {m}, got {src}"
                        + (f" (mode {mode})" if src != mode else "")))  # fmt: skip
    if usual is not None and wh != usual:
        got, exp = f"{wh[0]}x{wh[1]}", f"{usual[0]}x{usual[1]}"
        out.append(Skip(chunk.subject, chunk.task, frame, m, f"{CONVERTED}resized {got} to {size}x{size}", path,
                        f"expected {exp} like the other {m} frames, got {got}"))  # fmt: skip
    return out


def _square_resize(img: np.ndarray, size: int) -> np.ndarray:
    from farm.data.align import align_crop

    h, w = img.shape[:2]
    if h == w == size:
        return img
    return align_crop(img, size, None)  # centre square, antialiased resize


def _encode_chunk(
    args: tuple[Chunk, PrepareSpec, str, dict[str, tuple[int, int]]],
) -> tuple[list[int], list[dict[str, bytes]], list[Skip]]:
    """Worker: decode, crop and encode the frames of one chunk; unreadable files become skips, and the
    images of kept frames that had to be converted to their modality's format or size become report rows."""
    from farm.data.align import align_crop
    from farm.data.mesh import depth_map, face_region, read_mesh

    chunk, spec, layout, sizes = args
    kept, blobs, skips = [], [], []
    for i, frame in enumerate(chunk.frames):
        out: dict[str, bytes] = {}
        converted: list[Skip] = []  # reported only if the frame is kept
        for m, paths in chunk.sources.items():
            path = paths[i]
            try:
                if layout == "raw" and m == "depth":
                    mesh = read_mesh(path)
                    img = depth_map(mesh, spec.size, face_region(mesh, z_range=spec.depth_range))[..., None]
                else:
                    img, mode, wh = _load_image(path, CHANNELS[m])
                    # `sizes` is empty for the raw layout: its frames are cropped around the face whatever their size
                    converted += _conversions(chunk, frame, m, path, mode, wh, sizes.get(m), spec.size)
                    if layout == "raw":
                        lm = chunk.landmarks[i] if (m == "visual" and chunk.landmarks) else None
                        img = align_crop(img, spec.size, lm, spec.face_margin)
                    else:
                        img = _square_resize(img, spec.size)
            except Exception as e:  # noqa: BLE001 - any decoder failure is a per-frame skip, reported with its cause
                skips.append(
                    Skip(chunk.subject, chunk.task, frame, m, UNREADABLE_IMAGE, path, f"{type(e).__name__}: {e}")
                )
                break
            out[m] = encode_image(img, spec.codec)
        else:
            kept.append(i)
            blobs.append(out)
            skips += converted
    return kept, blobs, skips


def _die_with_parent(parent: int) -> None:
    """Pool initializer (Linux): the kernel SIGKILLs this worker when its parent dies, even by SIGKILL.

    Without it, `kill -9` of `farm data prepare` leaves its workers decoding (then idle) for good.
    The parent may already have died between fork and prctl: then this process has been reparented
    and no signal will come, so it ends itself.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0),
               ctypes.c_ulong(0))  # fmt: skip
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _pool(workers: int) -> ProcessPoolExecutor | _Inline:
    """`workers` decoding processes (or this process for one). On Linux they are forked, so their parent
    is this process, and they die with it."""
    if workers <= 1:
        return _Inline()
    if not sys.platform.startswith("linux"):
        return ProcessPoolExecutor(workers)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))  # fmt: skip


def write_skips(out: Path, skips: list[Skip]) -> None:
    cols = {k: [getattr(s, k) for s in skips] for k in Skip.__dataclass_fields__}
    table = pa.table({k: pa.array(v, pa.int32() if k == "frame" else pa.string()) for k, v in cols.items()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    _atomic_write_bytes(out / SKIPS_FILE, sink.getvalue().to_pybytes())


class StrictError(DatasetError):
    """--strict and some frames would be skipped or converted."""


def _strict_message(s: Skip) -> str:
    if is_conversion(s.reason):
        return (f"--strict: {s.path} does not match its modality: {s.detail}; without --strict it would be kept "
                f"({s.reason}) and listed by `farm data check`")  # fmt: skip
    return f"--strict: {s.reason} {s.path} ({s.detail})"


def skip_summary(skips: list[Skip]) -> str:
    counts = Counter((s.reason, s.modality) for s in skips)
    return "; ".join(f"{n} x {reason}{f' ({m})' if m else ''}" for (reason, m), n in sorted(counts.items()))


def prepare(
    spec: PrepareSpec,
    out: str | Path,
    workers: int = 0,
    strict: bool = False,
    progress: Callable[[Iterator, int], Iterator] | None = None,
    log: Callable[[str], None] = print,
) -> DatasetMeta:
    """Build the dataset of `spec` in `out` (or reuse an identical one). Raises StrictError under `strict`."""
    out = Path(out)
    layout = detect_layout(spec)
    source = spec.source(layout)
    existing = claim_output(out, source, spec.dataset)
    if existing is not None:
        log(f"{out} already holds this dataset (same root and settings): reusing it")
        return existing
    p = plan(spec, layout)
    if strict and p.skips:
        raise StrictError(f"--strict: {len(p.skips)} frame(s) would be skipped ({skip_summary(p.skips)}); "
                          f"first: {p.skips[0].subject}/{p.skips[0].task} frame {p.skips[0].frame}: {p.skips[0].reason} "
                          f"{p.skips[0].path} {p.skips[0].detail}".rstrip())  # fmt: skip
    if not p.chunks:
        raise DatasetError(f"{spec.root}: no frame has both labels and every modality ({', '.join(m for m, _ in spec.modality_folders)}); "
                           f"{skip_summary(p.skips) or 'no label files'}")  # fmt: skip
    subjects = sorted({c.subject for c in p.chunks})
    meta = DatasetMeta(
        name=spec.dataset,
        modalities=tuple(ModalitySpec(m, CHANNELS[m], spec.size, spec.size) for m, _ in spec.modality_folders),
        aus=tuple(spec.aus),
        codec=spec.codec,
        subjects={s: {"sex": s[0] if s[0] in "FM" else "?"} for s in subjects},
        source=source,
    )
    for note in p.notes:
        log(note)
    out.mkdir(parents=True, exist_ok=True)
    writer = DatasetWriter(out, meta)
    skips = list(p.skips)
    workers = workers or os.cpu_count() or 1
    jobs = ((c, spec, p.layout, p.sizes) for c in p.chunks)
    with _pool(workers) as pool:
        try:
            results = pool.map(_encode_chunk, jobs)
            if progress:
                results = progress(results, len(p.chunks))
            for chunk, (kept, blobs, bad) in zip(p.chunks, results):
                skips += bad
                if strict and bad:
                    raise StrictError(_strict_message(bad[0]))
                if kept:
                    writer.add_encoded(chunk.subject, chunk.task, np.asarray(chunk.frames)[kept], chunk.labels[kept],
                                       {m: [b[m] for b in blobs] for m in chunk.sources})  # fmt: skip
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a --strict error or Ctrl-C: do not encode the other chunks first
            raise
    write_skips(out, skips)
    return writer.close()


class _Inline:
    """A stand-in for a process pool with one worker: runs in this process."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, fn, items):
        return map(fn, items)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass
