"""Loader benchmark: storage format, image codec, and loader frames/s against the model's consumption.

    python bench/loader.py [--size 256] [--frames 480] [--out runs/bench]
    python bench/loader.py --sections augment_on [--repeats 5] [--augment-workers 0 2]
    python bench/loader.py --sections decode [--repeats 5] [--device cuda]

`augment_on` (issue 16): train-loader frames/s with `data.augment_on: worker` (float32 inputs from the workers)
and `device` (uint8 crops + decisions; flip, normalise and cut-switch per batch in the training process), each
batch passed through `farm.engine.to_device_inputs` as training does (on `--device`, the CPU by default), the
loaders built by `farm.engine.build_loaders` for the paper's settings (224 crop, flip, cut-switch 50, batch 50).
The runs are interleaved (each repeat runs every codec x workers x path once, in rotating order) and the
median over repeats is reported, with min and max.

`decode` (issue 16): on JPEG data, the CPU time per batch of 50 of the loader workers' items with `data.decode:
worker` (Pillow decodes, then crops) and `device` (the stored bytes copied out, no decoding), and the time of
`decode_crops` in the training process (torchvision's batched decode_jpeg, on `--device`: libjpeg-turbo on a CPU,
nvJPEG on a GPU): what moves out of the workers, and what it costs where it lands.

All figures come from one run on one machine, so they can be compared with each other (ratios),
not with other machines. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, RandomSampler, default_collate

from farm.config import load_config, unflatten
from farm.data.augment import scaled_block
from farm.data.dataset import FrameDataset, collate_encoded
from farm.data.device_augment import decode_crops
from farm.data.folds import Split
from farm.data.store import IMAGES_DIR, DatasetMeta, DatasetWriter, FrameStore, encode_image
from farm.data.synth import SynthSpec, generate
from farm.engine import build_loaders, resolve_device, to_device_inputs
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


def all_subjects_split(store: FrameStore) -> Split:
    """Every subject in every partition: the benchmarks time loaders, not generalisation."""
    subjects = tuple(sorted(set(store.subjects)))
    return Split(fold="bench", train=subjects, val=subjects, test=subjects)


def one_batch_sets(store: FrameStore, key: str, overrides: dict) -> tuple[dict, np.ndarray]:
    """The paper preset's train FrameDatasets with `key` set to worker and to device (in-process, 0 workers), and
    the indices of one batch drawn from them (seed 0): what the per-batch CPU timings make items of."""
    cfg = load_config("paper", {"data.path": str(store.root), "augment.crop_size": 224, "data.num_workers": 0,
                                **overrides})  # fmt: skip
    split = all_subjects_split(store)
    sets = {p: build_loaders(unflatten({key: p}, cfg), store, split, store.meta.modality_names)["train"].dataset
            for p in ("worker", "device")}  # fmt: skip
    return sets, np.random.default_rng(0).permutation(len(sets["worker"]))[: cfg.train.batch_size]


def augment_on_rate(store: FrameStore, augment_on: str, workers: int, batches: int, device: torch.device,
                    decode: str = "worker") -> float:  # fmt: skip
    """Train-loader frames/s at steady state, every batch made into the model's inputs on `device` as training
    does (`to_device_inputs`: with `device`, the flip, normalisation and cut-switch run there; with `decode`
    device, the JPEG decoding too)."""
    cfg = load_config("paper", {"data.path": str(store.root), "augment.crop_size": 224, "data.num_workers": workers,
                                "data.augment_on": augment_on, "data.decode": decode})  # fmt: skip
    modalities = store.meta.modality_names
    split = all_subjects_split(store)
    n = len(build_loaders(cfg, store, split, modalities)["train"].dataset)
    sampler = RandomSampler(range(n), replacement=True, num_samples=(batches + 1) * cfg.train.batch_size,
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
    it = iter(build_loaders(cfg, store, split, modalities, train_sampler=sampler)["train"])
    next(it)  # workers started, first batch made
    frames = 0
    t0 = time.perf_counter()
    for x, y, *aug in it:
        inputs = to_device_inputs(x, device, *aug)
        frames += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    del inputs
    return frames / (time.perf_counter() - t0)


def augment_on_cpu_ms(store: FrameStore, repeats: int) -> dict[str, float]:
    """CPU time of this process per batch of 50, one batch made in-process without a DataLoader (no IPC, no
    pinning): the train FrameDataset's items + collation, and for `device` the batch augmentation (on the CPU).
    Medians of interleaved repeats; process time, so other processes on the machine matter less."""
    sets, order = one_batch_sets(store, "data.augment_on", {})
    times: dict[str, list[float]] = {"worker": [], "device_items": [], "device_batch": []}
    for _ in range(repeats):
        t0 = time.process_time()
        default_collate([sets["worker"][int(i)] for i in order])
        t1 = time.process_time()
        x, _, aug = default_collate([sets["device"][int(i)] for i in order])
        t2 = time.process_time()
        to_device_inputs(x, torch.device("cpu"), aug)
        t3 = time.process_time()
        for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[k].append(1000 * dt)
    return {k: statistics.median(v) for k, v in times.items()}


def decode_ms(store: FrameStore, repeats: int, device: torch.device) -> dict[str, float]:
    """Per batch of 50 JPEG frames (paper settings), medians of interleaved repeats, in ms: the train items +
    collation in one process (CPU time) with `data.decode: worker` ("worker_items": decode + crop) and `device`
    ("device_items": the bytes copied out), and `decode_crops` on `device` ("decode", wall time, synchronised)."""
    sets, order = one_batch_sets(store, "data.decode", {"data.augment_on": "device"})
    times: dict[str, list[float]] = {"worker_items": [], "device_items": [], "decode": []}
    for _ in range(repeats):
        t0 = time.process_time()
        default_collate([sets["worker"][int(i)] for i in order])
        t1 = time.process_time()
        blobs, _, aug = collate_encoded([sets["device"][int(i)] for i in order])
        t2 = time.process_time()
        w0 = time.perf_counter()
        crops = decode_crops(blobs, aug["window"], aug["row"], device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        w1 = time.perf_counter()
        del crops
        for k, dt in zip(times, (t1 - t0, t2 - t1, w1 - w0)):
            times[k].append(1000 * dt)
    return {k: statistics.median(v) for k, v in times.items()}


DECODE_PATHS = {
    "worker": ("worker", "worker"),
    "augment_device": ("device", "worker"),
    "decode_device": ("device", "device"),
}


def decode_path_rates(store: FrameStore, workers: list[int], batches: int, repeats: int,
                 device: torch.device) -> dict[tuple[int, str], list[float]]:  # fmt: skip
    """{(workers, path): [frames/s per repeat]} on JPEG for the three DECODE_PATHS (augment_on, decode),
    interleaved, the order rotating between repeats."""
    runs = [(w, path) for w in workers for path in DECODE_PATHS]
    rates: dict[tuple[int, str], list[float]] = {r: [] for r in runs}
    for rep in range(repeats):
        for w, path in runs[rep % len(runs) :] + runs[: rep % len(runs)]:
            augment_on, decode = DECODE_PATHS[path]
            rates[(w, path)].append(augment_on_rate(store, augment_on, w, batches, device, decode))
    return rates


def augment_on_rates(stores: dict[str, FrameStore], workers: list[int], batches: int, repeats: int,
                     device: torch.device) -> dict[tuple[str, int, str], list[float]]:  # fmt: skip
    """{(codec, workers, path): [frames/s per repeat]}, interleaved, the order rotating between repeats."""
    runs = [(codec, w, path) for codec in stores for w in workers for path in ("worker", "device")]
    rates: dict[tuple[str, int, str], list[float]] = {r: [] for r in runs}
    for rep in range(repeats):
        for codec, w, path in runs[rep % len(runs) :] + runs[: rep % len(runs)]:
            rates[(codec, w, path)].append(augment_on_rate(stores[codec], path, w, batches, device))
    return rates


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
    ap.add_argument("--sections", nargs="+", default=["formats"], choices=["formats", "augment_on", "decode"],
                    help="formats: storage, codecs, loader vs model (issue 3); augment_on: worker vs device path; "
                         "decode: JPEG decoding in the workers vs on the device")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=5, help="augment_on: interleaved repeats (median reported)")
    ap.add_argument("--augment-workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--augment-batches", type=int, default=24, help="augment_on: timed batches of 50 per run")
    ap.add_argument("--device", default="cpu", help="augment_on: where the inputs are made (cpu, cuda, auto)")
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
    if "augment_on" in args.sections:
        device = resolve_device(args.device)
        print(f"loader, data.augment_on worker vs device (paper settings: crop 224, flip, cut-switch 50, batch 50; "
              f"inputs made on {device}; {args.augment_batches} batches a run; median [min-max] of {args.repeats} "
              f"interleaved repeats, frames/s):", flush=True)  # fmt: skip
        ms = augment_on_cpu_ms(stores["raw"], 2 * args.repeats + 1)
        print(f"  CPU ms per batch of 50, raw, one process, {torch.get_num_threads()} threads: worker path (items + "
              f"collate) {ms['worker']:.1f}; device path: items + collate {ms['device_items']:.1f}, batch augmentation "
              f"{ms['device_batch']:.1f}", flush=True)  # fmt: skip
        rates = augment_on_rates(
            {c: stores[c] for c in ("raw", "jpeg")}, args.augment_workers, args.augment_batches, args.repeats, device
        )
        for codec in ("raw", "jpeg"):
            for w in args.augment_workers:
                med = {p: statistics.median(rates[(codec, w, p)]) for p in ("worker", "device")}
                cells = "  ".join(f"{p} {med[p]:6.0f} [{min(rates[(codec, w, p)]):.0f}-{max(rates[(codec, w, p)]):.0f}]"
                                  for p in ("worker", "device"))  # fmt: skip
                print(f"  {codec:5s} num_workers={w}: {cells}  device/worker {med['device'] / med['worker']:.2f}",
                      flush=True)  # fmt: skip
    if "decode" in args.sections:
        device = resolve_device(args.device)
        ms = decode_ms(stores["jpeg"], 2 * args.repeats + 1, device)
        print(f"decode, JPEG q95 at {args.size} px, ms per batch of 50 (paper settings; medians of "
              f"{2 * args.repeats + 1} repeats): loader items, CPU time in one process: data.decode worker "
              f"{ms['worker_items']:.1f}, device {ms['device_items']:.1f} ({ms['worker_items'] / ms['device_items']:.0f}x "
              f"less); decode_crops on {device}: {ms['decode']:.1f}", flush=True)  # fmt: skip
        print(f"  train-loader frames/s, inputs made on {device}, {args.augment_batches} batches a run, median [min-max] "
              f"of {args.repeats} interleaved repeats (augment_on / decode):", flush=True)  # fmt: skip
        rates = decode_path_rates(stores["jpeg"], args.augment_workers, args.augment_batches, args.repeats, device)
        for w in args.augment_workers:
            med = {p: statistics.median(rates[(w, p)]) for p in DECODE_PATHS}
            cells = "  ".join(f"{'/'.join(DECODE_PATHS[p])} {med[p]:5.0f} [{min(rates[(w, p)]):.0f}-"
                              f"{max(rates[(w, p)]):.0f}]" for p in DECODE_PATHS)  # fmt: skip
            print(f"  num_workers={w}: {cells}  decode device / worker {med['decode_device'] / med['worker']:.2f}",
                  flush=True)  # fmt: skip
    if "formats" not in args.sections:
        return 0

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
