"""GPU benchmarks: model consumption vs loader supply, and the robustness study trained on a GPU.

    python bench/gpu.py throughput --out runs/bench/gpu_throughput.json
    python bench/gpu.py robustness --out runs/bench/gpu_robustness
    python bench/gpu.py fold --out runs/bench/gpu_fold.json [--precision bf16 --channels-last --augment-on device
                                                             --decode device]
    python bench/gpu.py trial --gpus-per-fold 1/3 --out runs/bench/gpu_trial.json

`fold` / `trial`: end to end on a 256-px synthetic visual + depth set stored as JPEG q95 (BP4D's codec): one
paper-preset fold on the whole GPU (the engine's loaders and model, frames/s and GPU utilisation), and a whole
3-fold trial through `farm sweep` with the folds sharing the GPU (their frames/s summed). The issue-16 target:
trial / fold frames/s >= 3 on one GPU.

`throughput`: training frames/s of the paper's configuration (AMF K = 100 and late fusion,
ResNet-18 per modality, visual + depth, 224 x 224 crops, batch 50, Adam) on random input tensors
already on the GPU (the model alone), fp32 and bf16 autocast; then the project's train loader
(FrameDataset + DataLoader exactly as `farm.engine.build_loaders` builds it for the paper preset:
224 crop, flip, cut-switch, normalise, pinned memory) on a 256-pixel synthetic set, raw and JPEG
q95, for several `num_workers`, copying each batch to the GPU as training does. Prints the loader
workers one GPU fold needs: ceil(model frames/s / per-worker loader frames/s).

`robustness`: generates the default synthetic set, trains AMF and late fusion on folds P1, P2, P3
with `fit_fold` (preset `cpu`, on the GPU), then runs `farm.evaluate.robustness` (clean, each modality and
each pair missing, Gaussian noise) with each fold's model on its own test subjects.

Plain PyTorch: no Ray, MLflow or Optuna. Results: docs/benchmarks.md and docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.data import RandomSampler  # noqa: E402

from farm.config import load_config  # noqa: E402
from farm.data.folds import Split  # noqa: E402
from farm.data.store import FrameStore  # noqa: E402
from farm.data.synth import SynthSpec, generate  # noqa: E402
from farm.engine import build_loaders, build_optimizer, crop_size, train_step  # noqa: E402
from farm.models import build_model, fusion_modalities  # noqa: E402

PAPER_CHANNELS = {"visual": 3, "depth": 1}


def machine() -> dict:
    info = {
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    return info


# ---------------------------------------------------------------------------------------------
# throughput


def model_rate(
    fusion: str, precision: str, batch: int, crop: int, warmup: int, steps: int, device: torch.device
) -> dict:
    """Training frames/s of one paper-configured model on random tensors already on the device."""
    cfg = load_config("paper", {"model.fusion": fusion})
    torch.manual_seed(0)
    model = build_model(cfg, PAPER_CHANNELS, len(cfg.data.aus)).to(device).train()
    model.set_progress(0.0)
    opt = build_optimizer(cfg, model)  # the engine's builders: the benchmark measures what training runs
    x = {m: torch.rand(batch, c, crop, crop, device=device) * 2 - 1 for m, c in PAPER_CHANNELS.items()}
    target = torch.randint(0, 2, (batch, len(cfg.data.aus)), device=device).float()
    mask = torch.ones_like(target)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None  # as engine.build_training

    def step() -> torch.Tensor:  # autocast over forward + loss only, inside train_step, as in training
        return train_step(model, opt, x, target, mask, precision, scaler)["loss"].detach()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    losses = [step() for _ in range(steps)]
    torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    finite = bool(torch.isfinite(torch.stack(losses)).all())
    result = {
        "fusion": fusion,
        "K": cfg.amf.num_samples if fusion == "amf" else None,
        "precision": precision,
        "batch": batch,
        "crop": crop,
        "steps": steps,
        "frames_per_s": steps * batch / dt,
        "ms_per_step": 1000 * dt / steps,
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "loss_finite": finite,
    }
    return result


def loader_rate(store: FrameStore, workers: int, batches: int, device: torch.device, plain: bool = False) -> dict:
    """Train-loader frames/s, batches copied to the device, at steady state (no epoch ends).

    The dataset and DataLoader arguments are those of `build_loaders` for the paper preset; only
    the sampler draws `batches` x batch indices with replacement, so that the few hundred frames of
    the benchmark set do not put an epoch boundary (workers idle) inside the timed window.
    `plain`: no pinned memory and no copy to the device (the workers and collation alone).
    """
    cfg = load_config("paper", {"data.path": str(store.root), "augment.crop_size": 224, "data.num_workers": workers})
    modalities = fusion_modalities("amf", cfg.data.modalities, store.meta.modality_names)
    subjects = tuple(sorted(set(store.subjects)))
    split = Split(fold="bench", train=subjects, val=subjects, test=subjects)
    bs = cfg.train.batch_size
    train_subjects = build_loaders(cfg, store, split, modalities)["train"].dataset
    gen = torch.Generator().manual_seed(cfg.train.seed)
    sampler = RandomSampler(train_subjects, replacement=True, num_samples=(batches + 1) * bs, generator=gen)
    pin = None if not plain else False  # None: the engine's choice (pinned when CUDA is there)
    dl = build_loaders(cfg, store, split, modalities, train_sampler=sampler, pin_memory=pin)["train"]
    ds = dl.dataset
    it = iter(dl)
    x, _ = next(it)  # workers started and the first batch made
    n = 0
    t0 = time.perf_counter()
    for x, y in it:
        if not plain:
            x = {m: t.to(device, non_blocking=True) for m, t in x.items()}
            y = y.to(device, non_blocking=True)
        n += len(y)
    torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    del it
    return {
        "num_workers": workers,
        "frames": n,
        "frames_per_s": n / dt,
        "per_worker": n / dt / workers if workers else None,
        "crop": crop_size(cfg, store, modalities),
        "cut_switch_block": ds.cut_switch_block,
        "pin_memory": dl.pin_memory,
        "to_device": not plain,
        "batch": bs,
    }


def cmd_throughput(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        print("throughput needs a CUDA GPU", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    info = machine()
    print(f"# {info['gpu']}, {info['cores']} cores, torch {info['torch']} (CUDA {info['cuda']}), "
          f"cudnn.benchmark={info['cudnn_benchmark']}", flush=True)  # fmt: skip
    result: dict = {"machine": info, "model": [], "loader": {}}
    # the 256-px loader set is generated (one core) in another process while the GPU measures the model
    data = Path(args.data or tempfile.mkdtemp(prefix="gpu_bench_"))
    spec = SynthSpec(subjects=4, tasks=2, frames=60, size=256, modalities=("visual", "depth"))
    t_gen = time.perf_counter()
    gen = multiprocessing.get_context("spawn").Process(target=generate, args=(spec, data / "synth256"),
                                                       kwargs={"progress": False})  # fmt: skip
    gen.start()

    print(f"model train step (ResNet-18 x 2 visual+depth, {args.crop} crop, batch {args.batch}, Adam, "
          f"{args.warmup} warm-up + {args.steps} timed steps, random inputs on the GPU):", flush=True)  # fmt: skip
    for fusion in args.fusions:
        for precision in args.precisions:
            r = model_rate(fusion, precision, args.batch, args.crop, args.warmup, args.steps, device)
            torch.cuda.empty_cache()
            result["model"].append(r)
            print(f"  {fusion:5s} K={str(r['K'] or '-'):>3s} {precision:5s} {r['frames_per_s']:8.0f} frames/s  "
                  f"{r['ms_per_step']:7.1f} ms/step  peak {r['peak_mem_gib']:5.1f} GiB  loss finite: {r['loss_finite']}",
                  flush=True)  # fmt: skip

    gen.join()
    if gen.exitcode != 0:
        print(f"generating {data / 'synth256'} failed (exit code {gen.exitcode})", file=sys.stderr)
        return 1
    raw = FrameStore(data / "synth256")
    result["loader"]["generate_s"] = time.perf_counter() - t_gen
    stores = {"raw": raw}
    if "jpeg" in args.codecs:
        from bench.loader import recode  # the same JPEG q95 re-encoding as bench/loader.py

        stores["jpeg"] = recode(raw, data / "synth256_jpeg", "jpeg")
    print(f"loader ({len(raw)} frames visual+depth at 256 px, ready after {result['loader']['generate_s']:.0f} s; "
          f"train transforms 224 crop, flip, cut-switch, normalise; batch 50; pinned; copied to the GPU; "
          f"{args.loader_batches} batches at steady state):", flush=True)  # fmt: skip
    for codec in args.codecs:
        rows = []
        for w in args.workers:
            try:
                r = loader_rate(stores[codec], w, args.loader_batches, device)
            except Exception as e:  # noqa: BLE001 - e.g. too little /dev/shm for many workers: record, go on
                print(f"  {codec:5s} num_workers={w:<3d} FAILED: {type(e).__name__}: {e}", flush=True)
                result["loader"].setdefault("errors", []).append({"codec": codec, "num_workers": w, "error": str(e)})
                continue
            rows.append(r)
            per = f"{r['per_worker']:7.0f} /worker" if r["per_worker"] else ""
            print(f"  {codec:5s} num_workers={w:<3d} {r['frames_per_s']:8.0f} frames/s  {per}", flush=True)
        result["loader"][codec] = rows
        for w in args.plain_workers:  # where the ceiling is: the same loader without pinning and device copies
            r = loader_rate(stores[codec], w, args.loader_batches, device, plain=True)
            result["loader"].setdefault(f"{codec}_plain", []).append(r)
            print(f"  {codec:5s} num_workers={w:<3d} {r['frames_per_s']:8.0f} frames/s  (not pinned, not copied to the GPU)",
                  flush=True)  # fmt: skip

    # sizing: workers a fold needs = ceil(model frames/s / per-worker loader frames/s)
    sizing = []
    for codec in args.codecs:
        rows = [r for r in result["loader"][codec] if r["num_workers"]]
        if not rows:
            continue
        one = next((r for r in rows if r["num_workers"] == 1), None)
        per_worker = one["per_worker"] if one else max(r["per_worker"] for r in rows)
        best = max(r["frames_per_s"] for r in result["loader"][codec])
        for m in result["model"]:
            need = math.ceil(m["frames_per_s"] / per_worker)
            sizing.append({"codec": codec, "fusion": m["fusion"], "precision": m["precision"],
                           "model_frames_per_s": m["frames_per_s"], "per_worker": per_worker,
                           "workers_needed": need, "best_measured_loader": best,
                           "loader_keeps_up_at_max_workers": best >= m["frames_per_s"]})  # fmt: skip
    result["sizing"] = sizing
    print("sizing (workers = ceil(model frames/s / per-worker loader frames/s)):")
    for s in sizing:
        print(f"  {s['codec']:5s} {s['fusion']:5s} {s['precision']:5s} model {s['model_frames_per_s']:7.0f} / "
              f"{s['per_worker']:5.0f} per worker -> {s['workers_needed']:3d} workers; best measured loader "
              f"{s['best_measured_loader']:6.0f} frames/s {'>=' if s['loader_keeps_up_at_max_workers'] else '<'} model")  # fmt: skip
    write_result(args.out, result)
    if not args.data:
        shutil.rmtree(data, ignore_errors=True)
    return 0


# ---------------------------------------------------------------------------------------------
# robustness


def cmd_robustness(args: argparse.Namespace) -> int:
    from farm.checkpoints import BEST_FILE, BEST_KEYS, InputSpec, load_checkpoint
    from farm.data.perturb import conditions
    from farm.engine import fit_fold
    from farm.evaluate import robustness
    from farm.evaluate.inference import FoldEnsemble

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.allow_cpu:
        print("robustness is meant for a GPU (pass --allow-cpu to run it anyway)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_robust_"))
    start = time.perf_counter()
    info = machine()
    print(f"# {info['gpu'] or 'cpu'}, {info['cores']} cores, torch {info['torch']}", flush=True)

    t0 = time.perf_counter()
    meta = generate(SynthSpec(), work / "synthetic", progress=False)
    store = FrameStore(work / "synthetic")
    print(f"# synthetic set: {meta.num_frames} frames, data hash {meta.data_hash}, {time.perf_counter() - t0:.0f} s",
          flush=True)  # fmt: skip
    summary: dict = {"machine": info, "data_hash": meta.data_hash, "frames": meta.num_frames, "preset": "cpu",
                     "overrides": {}, "fusions": {}}  # fmt: skip

    def save() -> None:
        summary["seconds_total"] = time.perf_counter() - start
        (out / "gpu_robustness.json").write_text(json.dumps(summary, indent=2))

    for fusion in args.fusions:
        folds, checkpoints, test_subjects, spec = [], {}, {}, None
        t_fusion = time.perf_counter()
        for fold in args.folds:
            overrides = {"data.path": str(work / "synthetic"), "model.fusion": fusion, "data.fold": fold,
                         "train.device": device, "data.num_workers": args.num_workers}  # fmt: skip
            if args.epochs:
                overrides["train.epochs"] = args.epochs
            if args.max_train_batches:
                overrides["train.max_train_batches"] = args.max_train_batches
            summary["overrides"] = {
                k: v for k, v in overrides.items() if k not in ("data.path", "model.fusion", "data.fold")
            }
            cfg = load_config("cpu", overrides)
            ckdir = work / "runs" / fusion / fold
            print(f"== {fusion} {fold}", flush=True)
            res = fit_fold(cfg, checkpoint_dir=ckdir, log=lambda s: print(s, flush=True))
            ckpt = load_checkpoint(ckdir / BEST_FILE, "cpu", BEST_KEYS)
            spec = InputSpec.from_dict(ckpt["input"])
            checkpoints[fold] = ckdir / BEST_FILE
            test_subjects[fold] = tuple(res.split["test"])
            folds.append({"fold": fold, "test_f1": res.test["f1_mean"], "val_f1": res.val.get("f1_mean"),
                          "test_f1_per_au": res.test["f1"], "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                          "seconds": res.seconds, "all_positive_f1": res.baseline_all_positive,
                          "test_subjects": list(res.split["test"]), "val_subjects": list(res.split["val"]),
                          "split_hash": res.split.get("hash")})  # fmt: skip
            print(f"-- {fusion} {fold}: test F1 {100 * res.test['f1_mean']:.1f}  val F1 "
                  f"{100 * res.val.get('f1_mean', float('nan')):.1f}  best epoch {res.best_epoch} of "
                  f"{res.epochs_run}  {res.seconds:.0f} s", flush=True)  # fmt: skip
            summary["fusions"][fusion] = {"folds": folds}
            save()
        train_s = time.perf_counter() - t_fusion

        t_eval = time.perf_counter()
        ensemble = FoldEnsemble.from_checkpoints(checkpoints, spec, test_subjects, device=device)
        conds = conditions(spec.modalities)
        counts = robustness.evaluate(
            ensemble, store, conds, stride=args.stride, progress=lambda s: print(s, flush=True)
        )
        rows = robustness.summarize(counts, conds)
        title = f"{fusion}, synthetic set, preset cpu on {info['gpu'] or 'cpu'}"
        paths = robustness.write(rows, work / "robustness" / fusion, title)
        for kind in ("md", "csv"):
            shutil.copy(paths[kind], out / f"robustness_{fusion}.{kind}")
        print(robustness.to_markdown(rows, title), flush=True)
        clean = next(r for r in rows if r["kind"] == "clean")
        for f in folds:  # stride 1: the clean condition must reproduce each fold's logged test F1
            f["robustness_clean_f1"] = clean[f"f1_{f['fold']}"]
        summary["fusions"][fusion] = {
            "folds": folds,
            "test_f1_mean": sum(f["test_f1"] for f in folds) / len(folds),
            "train_s": train_s,
            "robustness_s": time.perf_counter() - t_eval,
            "robustness": rows,
        }
        save()
    save()
    print(f"wrote {out}; total {time.perf_counter() - start:.0f} s", flush=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


# ---------------------------------------------------------------------------------------------
# fold / trial: end to end (loader + model), one fold on the whole device vs a whole trial sharing it


class Utilisation:
    """GPU utilisation (%) sampled from nvidia-smi every `every` s in a thread, between start() and stop()."""

    def __init__(self, every: float = 0.5) -> None:
        import threading

        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import subprocess

        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5).stdout  # fmt: skip
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.every)

    def start(self) -> Utilisation:
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=10)
        n = len(self.samples)
        return {"gpu_util_mean": sum(self.samples) / n if n else None, "gpu_util_samples": n}


def jpeg_set(work: Path, subjects: int, frames: int, size: int) -> FrameStore:
    """A synthetic visual + depth set at `size` px stored as JPEG q95 (BP4D's codec), in `work` (reused)."""
    from bench.loader import recode

    raw = work / f"synth{size}"
    if not (raw / "dataset.json").exists():
        generate(SynthSpec(subjects=subjects, tasks=2, frames=frames, size=size, modalities=("visual", "depth")), raw,
                 progress=False)  # fmt: skip
    return recode(FrameStore(raw), work / f"synth{size}_jpeg", "jpeg")


def fold_overrides(args: argparse.Namespace, data: Path) -> dict:
    return {"data.path": str(data), "model.fusion": args.fusion, "train.precision": args.precision,
            "train.channels_last": args.channels_last, "data.augment_on": args.augment_on, "data.decode": args.decode,
            "data.num_workers": args.num_workers, "train.val_robustness": []}  # fmt: skip


def cmd_fold(args: argparse.Namespace) -> int:
    """One fold of the paper preset, end to end: the engine's loaders (JPEG decode, crop, flip, cut-switch) and
    model, `--warmup` batches, then `--batches` timed batches (drawn with replacement: no epoch end inside)."""
    from farm.engine import build_training, fold_split, resolve_device, train_one_epoch

    device = resolve_device("auto")
    if device.type != "cuda" and not args.allow_cpu:
        print("fold needs a CUDA GPU (--allow-cpu: a smoke run on the CPU)", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_fold_"))
    store = jpeg_set(work, args.subjects, args.frames, args.size)
    cfg = load_config("paper", fold_overrides(args, store.root))
    modalities = fusion_modalities(cfg.model.fusion, cfg.data.modalities, store.meta.modality_names)
    split, _ = fold_split(cfg, store)
    base = build_loaders(cfg, store, split, modalities)["train"].dataset
    draws = (args.warmup + args.batches + 2) * cfg.train.batch_size
    sampler = RandomSampler(base, replacement=True, num_samples=draws, generator=torch.Generator().manual_seed(0))
    loader = build_loaders(cfg, store, split, modalities, train_sampler=sampler)["train"]
    model, opt, scaler, compute = build_training(cfg, store, modalities, device)  # as fit_fold sets a fold up
    train_one_epoch(model, loader, opt, device, 0, args.warmup, scaler=scaler, **compute)  # workers up, kernels
    util = Utilisation().start() if device.type == "cuda" else None
    m = train_one_epoch(model, loader, opt, device, 0, args.batches, scaler=scaler, **compute)
    result = {"machine": machine(), "config": fold_overrides(args, store.root), "frames": args.batches * cfg.train.batch_size,
              "frames_per_s": m["time/train_frames_per_s"], "train_loss": m["train/loss"], "frame_px": args.size,
              **(util.stop() if util else {"gpu_util_mean": None})}  # fmt: skip
    print(f"fold ({args.fusion}, {args.precision}, channels_last={args.channels_last}, augment_on={args.augment_on}, "
          f"decode={args.decode}, {args.num_workers} loader workers): {result['frames_per_s']:.0f} frames/s end to end, GPU utilisation "
          f"{result['gpu_util_mean'] if result['gpu_util_mean'] is not None else 'n/a'}%", flush=True)  # fmt: skip
    write_result(args.out, result)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def cmd_trial(args: argparse.Namespace) -> int:
    """A whole 3-fold trial through `farm sweep` with `--gpus-per-fold` (e.g. 1/3: the three folds share one GPU):
    the folds' end-to-end train frames/s (their MLflow runs' time/train_frames_per_s) summed = the GPU's."""
    import subprocess

    from bench.farm_overhead import one_cell_space

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("trial needs a CUDA GPU (--allow-cpu: a smoke run on the CPU)", file=sys.stderr)
        return 2
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_trial_"))
    store = jpeg_set(work, args.subjects, args.frames, args.size)
    fixed = {**fold_overrides(args, store.root), "train.epochs": 1, "train.max_train_batches": args.batches}
    fixed.pop("data.path")
    one_cell_space(work / "trial.yaml", "bench/gpu.py trial, one fixed configuration", "paper", fixed,
                   gpus_per_fold=args.gpus_per_fold)  # fmt: skip
    db = work / "mlflow.db"
    cmd = [sys.executable, "-m", "farm.cli", "sweep", "--space", str(work / "trial.yaml"), "--data", str(store.root),
           "--storage", str(work / "sweeps"), "--tracking-uri", f"sqlite:///{db}", "--name", "gpu-trial"]  # fmt: skip
    util = Utilisation().start() if torch.cuda.is_available() else None
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    used = util.stop() if util else {"gpu_util_mean": None}
    if proc.returncode:
        print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
        return 1
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("gpu-trial")
    folds = [
        r
        for r in client.search_runs([exp.experiment_id])
        if "fold" in r.data.tags and r.data.tags.get("mlflow.parentRunId")
    ]
    rates = {r.data.tags["fold"]: r.data.metrics.get("time/train_frames_per_s", float("nan")) for r in folds}
    result = {"machine": machine(), "config": fixed, "gpus_per_fold": args.gpus_per_fold, "fold_frames_per_s": rates,
              "trial_frames_per_s": sum(rates.values()), "wall_s": wall, **used}  # fmt: skip
    print(f"trial (3 folds, gpus_per_fold={args.gpus_per_fold}): {result['trial_frames_per_s']:.0f} frames/s on the "
          f"GPU ({', '.join(f'{k} {v:.0f}' for k, v in sorted(rates.items()))}), wall {wall:.0f} s, GPU utilisation "
          f"{used['gpu_util_mean'] if used['gpu_util_mean'] is not None else 'n/a'}% (averaged over the whole sweep)")  # fmt: skip
    fold_file = Path(args.fold_result)
    if fold_file.is_file():  # today's layout: one fold on a whole GPU (bench/gpu.py fold)
        one = json.loads(fold_file.read_text())["frames_per_s"]
        result["one_fold_per_gpu_frames_per_s"] = one
        result["trial_over_fold"] = result["trial_frames_per_s"] / one
        print(f"trial / one fold per GPU: {result['trial_over_fold']:.2f}x ({fold_file}: {one:.0f} frames/s)")
    write_result(args.out, result)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def write_result(out: str, result: dict) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    csv = lambda s: [v for v in s.split(",") if v]  # noqa: E731
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731

    t = sub.add_parser("throughput", help="model frames/s on the GPU vs loader frames/s per worker")
    t.add_argument("--out", default="runs/bench/gpu_throughput.json", help="JSON result file")
    t.add_argument("--fusions", type=csv, default=["amf", "late"])
    t.add_argument("--precisions", type=csv, default=["fp32", "bf16"])
    t.add_argument("--batch", type=int, default=50)
    t.add_argument("--crop", type=int, default=224)
    t.add_argument("--warmup", type=int, default=5)
    t.add_argument("--steps", type=int, default=30)
    t.add_argument("--workers", type=ints, default=[0, 1, 4, 8, 12], help="loader num_workers to measure")
    t.add_argument("--plain-workers", type=ints, default=[], help="also measure these without pinning / device copy")
    t.add_argument(
        "--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark (the engine leaves it off)"
    )
    t.add_argument("--codecs", type=csv, default=["raw", "jpeg"], help="raw (the synthetic codec), jpeg (BP4D's)")
    t.add_argument("--loader-batches", type=int, default=60, help="timed loader batches of 50")
    t.add_argument("--data", default="", help="where to generate the 256-px set (default: a temp dir, removed)")
    t.set_defaults(fn=cmd_throughput)

    r = sub.add_parser("robustness", help="train AMF and late fusion on P1-P3 on the GPU, then the robustness study")
    r.add_argument("--out", default="runs/bench/gpu_robustness", help="directory for robustness_<fusion>.md/csv + JSON")
    r.add_argument("--fusions", type=csv, default=["amf", "late"])
    r.add_argument("--folds", type=csv, default=["P1", "P2", "P3"])
    r.add_argument("--epochs", type=int, default=0, help="override train.epochs (0 = the cpu preset's 12)")
    r.add_argument("--max-train-batches", type=int, default=0, help="smoke runs only")
    r.add_argument("--num-workers", type=int, default=4)
    r.add_argument("--stride", type=int, default=1, help="every n-th test frame in the robustness study (smoke: > 1)")
    r.add_argument("--work", default="", help="data + checkpoints directory (default: a temp dir, removed)")
    r.add_argument("--allow-cpu", action="store_true")
    r.set_defaults(fn=cmd_robustness)

    for name, fn, helptext in (
        ("fold", cmd_fold, "one paper-preset fold end to end (JPEG loader + model): frames/s"),
        ("trial", cmd_trial, "a 3-fold trial through farm sweep sharing the GPU: frames/s"),
    ):
        f = sub.add_parser(name, help=helptext)
        f.add_argument("--out", default=f"runs/bench/gpu_{name}.json", help="JSON result file")
        f.add_argument("--fusion", default="amf")
        f.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
        f.add_argument("--channels-last", action="store_true")
        f.add_argument("--augment-on", default="worker", choices=["worker", "device"])
        f.add_argument(
            "--decode",
            default="worker",
            choices=["worker", "device"],
            help="data.decode: JPEG decoded by the loader workers or on the GPU (nvJPEG; needs --augment-on device)",
        )
        f.add_argument("--num-workers", type=int, default=8, help="loader workers (per fold)")
        f.add_argument("--batches", type=int, default=100, help="timed batches of 50")
        f.add_argument("--subjects", type=int, default=12, help="synthetic subjects (P1-P3 need >= 3)")
        f.add_argument("--frames", type=int, default=40, help="frames per (subject, task); 2 tasks")
        f.add_argument("--size", type=int, default=256, help="stored frame side in px (224 crops: >= 224)")
        f.add_argument("--work", default="", help="data (reused) + outputs folder (default: a temp dir, removed)")
        f.add_argument("--allow-cpu", action="store_true", help="smoke run without a GPU")
        f.set_defaults(fn=fn)
        if name == "fold":
            f.add_argument("--warmup", type=int, default=10, help="untimed batches first")
            f.add_argument("--cudnn-benchmark", action="store_true")
        else:
            f.add_argument("--gpus-per-fold", default="1/3", help="GPU share of each fold (1/3: a trial on one GPU)")
            f.add_argument("--fold-result", default="runs/bench/gpu_fold.json",
                           help="a `fold` result to compare with (frames/s of one fold on the whole GPU)")  # fmt: skip

    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
