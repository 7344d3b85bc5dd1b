"""Loader benchmark: storage format, image codec, and loader frames/s against the model's consumption.

    python bench/loader.py [--size 256] [--frames 480] [--out runs/bench]

All figures come from one run on one machine, so they can be compared with each other (ratios),
not with other machines. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

from farm.config import load_config
from farm.data.augment import scaled_block
from farm.data.dataset import FrameDataset
from farm.data.store import IMAGES_DIR, DatasetMeta, DatasetWriter, FrameStore, encode_image
from farm.data.synth import SynthSpec, generate
from farm.models import build_model


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def recode(src: FrameStore, out: Path, codec: str) -> FrameStore:
    """The same frames stored with another codec."""
    if not (out / "dataset.json").exists():
        meta = DatasetMeta(**{**src.meta.__dict__, "codec": codec, "num_frames": 0, "data_hash": ""})
        w = DatasetWriter(out, meta)
        labels = src.labels()
        subj, task = src.manifest.column("subject").to_pylist(), src.manifest.column("task").to_pylist()
        frames = src.manifest.column("frame").to_numpy()
        for i in range(len(src)):
            blobs = {m: [encode_image(src.image(i, m), codec)] for m in meta.modality_names}
            w.add_encoded(subj[i], task[i], frames[i : i + 1], labels[i : i + 1], blobs)
        w.close()
    return FrameStore(out)


def storage_formats(store: FrameStore, out: Path, n: int) -> dict[str, float]:
    """Random access (a shuffled epoch) to the encoded bytes, copied out: Arrow IPC memory map vs Parquet
    (zstd, 256-row groups; a map-style dataset reads the row group holding each frame)."""
    pq_path = out / "frames.parquet"
    if not pq_path.exists():
        tables = [
            pa.ipc.open_file(pa.memory_map(str(p))).read_all()
            for p in sorted((store.root / IMAGES_DIR).glob("*.arrow"))
        ]
        pq.write_table(pa.concat_tables(tables), pq_path, row_group_size=256, compression="zstd")
    order = np.random.default_rng(0).permutation(len(store))[:n]
    mod = store.meta.modality_names[0]

    def ipc() -> None:
        s = FrameStore(store.root)
        for i in order:
            bytes(s.blob(int(i), mod))

    def parquet() -> None:
        f = pq.ParquetFile(pq_path)
        rg = f.metadata.row_group(0).num_rows
        for i in order:
            t = f.read_row_group(int(i) // rg, columns=[mod])
            t.column(0)[int(i) % rg].as_py()

    return {"arrow_ipc_mmap": n / timed(ipc, 2), "parquet_row_group": n / timed(parquet, 2)}


def decode_rates(stores: dict[str, FrameStore], n: int) -> dict[str, dict[str, float]]:
    out = {}
    for codec, s in stores.items():
        idx = list(range(min(n, len(s))))
        mods = s.meta.modality_names

        def run(s=s, idx=idx, mods=mods) -> None:
            for i in idx:
                for m in mods:
                    s.image(i, m)

        nbytes = sum(p.stat().st_size for p in (s.root / IMAGES_DIR).glob("*.arrow")) / len(s)
        out[codec] = {"frames_per_s": len(idx) / timed(run, 2), "kb_per_frame": nbytes / 1024}
    return out


def loader_rate(store: FrameStore, crop: int, workers: int, batches: int, batch: int) -> float:
    ds = FrameDataset(store, sorted(set(store.subjects)), store.meta.modality_names, store.meta.aus, crop, train=True,
                      cut_switch_block=scaled_block(50, crop))  # fmt: skip
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    it = iter(dl)
    next(it)  # start the workers
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(dl)
            x, _ = next(it)
        n += len(next(iter(x.values())))
    return n / (time.perf_counter() - t0)


def model_rate(store: FrameStore, crop: int, fusion: str, k: int, batch: int, steps: int) -> float:
    cfg = load_config(None, {"model.fusion": fusion, "amf.num_samples": k})
    chans = {m.name: m.channels for m in store.meta.modalities}
    model = build_model(cfg, chans, len(cfg.data.aus))
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = {m: torch.randn(batch, c, crop, crop) for m, c in chans.items()}
    y = torch.randint(0, 2, (batch, len(cfg.data.aus))).float()

    def step() -> None:
        out = model(x)
        loss, _ = model.loss(out, y, torch.ones_like(y))
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=60, help="frames per sequence (4 subjects x 2 tasks)")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--model-steps", type=int, default=3)
    args = ap.parse_args()
    out = Path(args.out)
    cores = len(os.sched_getaffinity(0))
    print(f"# machine: {cores} cores, torch {torch.__version__}, {torch.get_num_threads()} torch threads", flush=True)
    raw = generate(SynthSpec(subjects=4, tasks=2, frames=args.frames, size=args.size, modalities=("visual", "depth")),
                   out / f"synth{args.size}", progress=False)  # fmt: skip
    base = FrameStore(out / f"synth{args.size}")
    stores = {"raw": base, **{c: recode(base, out / f"synth{args.size}_{c}", c) for c in ("png", "jpeg")}}
    print(f"# {raw.num_frames} frames of visual (3 ch) + depth (1 ch) at {args.size}x{args.size}", flush=True)
    crop = round(args.size * 224 / 256)

    fmt = storage_formats(stores["jpeg"], out, min(400, raw.num_frames))
    print("storage (random access to one modality's bytes, one process, frames/s):")
    for k, v in fmt.items():
        print(f"  {k:20s} {v:10.0f}")
    print("codec (decode visual+depth, one process):")
    for codec, d in decode_rates(stores, 200).items():
        print(f"  {codec:5s} {d['frames_per_s']:8.0f} frames/s  {d['kb_per_frame']:7.1f} KiB/frame")
    print(f"loader (train transforms: crop {crop}, flip, cut-switch, normalise; batch 32):", flush=True)
    rates = {}
    for codec in ("raw", "jpeg"):
        for workers in (0, 1):
            rates[(codec, workers)] = loader_rate(stores[codec], crop, workers, batches=12, batch=32)
            print(f"  {codec:5s} num_workers={workers}: {rates[(codec, workers)]:8.0f} frames/s", flush=True)
    print(f"model (train step, ResNet-18 per modality, crop {crop}, batch 16, {torch.get_num_threads()} threads):")
    for fusion, k in (("amf", 100), ("late", 1)):
        r = model_rate(base, crop, fusion, k, 16, args.model_steps)
        print(
            f"  {fusion:5s} K={k:<3d} {r:8.1f} frames/s  -> jpeg loader with 1 worker is {rates[('jpeg', 1)] / r:.0f}x faster"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
