"""The farm's own cost on the CPU: one fixed configuration trained as a `farm sweep` trial against the same folds
as plain `farm train` processes (issue 16, item 4).

    python bench/farm_overhead.py --out runs/bench/farm.json [--repeats 2] [--epochs 3] [--batches 24] [--trials 1]

Both sides train AMF (preset `cpu`, ResNet-10) on the default synthetic set's folds P1-P3 with the same config,
each fold for `--epochs` epochs of `--batches` batches (no early stop), one torch thread per fold, the three
folds at once:

- bare: three `farm train` processes started together (OMP_NUM_THREADS=1), no checkpoints, no tracking;
- farm: `farm sweep` with a one-cell grid (the same config), a local Ray started by the sweep, Ray Train
  workers, per-round checkpoints, MLflow parent/child runs, Tune + Optuna (its CPUs shared out so that each fold
  also gets one thread).

`--trials N`: N configurations one after the other (seeds 0..N-1, the same cost each): the bare side runs N
rounds of three processes, the farm one sweep of N trials, so Ray's start is paid once and the per-trial cost
shows (trials 1 and 3 give the marginal trial's ratio).

The ratio is bare wall time / farm wall time (the farm's share of a bare loop's throughput; 1.0 = no cost).
The sweep's log gives where the farm's time goes: Ray's start, and the first epoch's report against the bare
folds' first epoch. Runs alternate (bare, farm, bare, farm, ...) so that load from other processes hits both;
the table in docs/benchmarks.md gives each pair and the median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FARM = [sys.executable, "-m", "farm.cli"]
FOLDS = ("P1", "P2", "P3")


def fixed(epochs: int, batches: int) -> dict[str, object]:
    return {"model.fusion": "amf", "model.backbone": "resnet10", "train.epochs": epochs, "train.patience": epochs,
            "train.max_train_batches": batches, "data.num_workers": 0, "train.seed": 0}  # fmt: skip


def run_bare(data: Path, work: Path, epochs: int, batches: int, env: dict, trials: int = 1) -> dict:
    start = time.time()
    for seed in range(trials):  # one round of three fold processes per configuration
        sets = [a for k, v in {**fixed(epochs, batches), "train.seed": seed}.items() for a in ("--set", f"{k}={v}")]
        procs = [subprocess.Popen([*FARM, "train", "--data", str(data), "--fold", f, "--config", "cpu", *sets,
                                   "--out", str(work / f"bare-{f}.json")], env={**env, "OMP_NUM_THREADS": "1"},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for f in FOLDS]  # fmt: skip
        outs = [p.communicate()[0] for p in procs]
        for p, out in zip(procs, outs):
            if p.returncode:
                raise SystemExit(f"farm train failed:\n{out[-2000:]}")
    wall = time.time() - start
    epoch_s = [json.loads((work / f"bare-{f}.json").read_text())["history"][0]["time/epoch_s"] for f in FOLDS]
    return {"wall_s": wall, "first_epoch_s": max(epoch_s)}


def one_cell_space(path: Path, description: str, preset: str, fixed: dict, seeds: int = 1, **sweep) -> Path:
    """A search-space file whose grid is one configuration (`fixed` on `preset`) over folds P1-P3, for seeds
    0..seeds-1 (one trial each), one trial at a time; `sweep` adds keys to its sweep section (e.g. gpus_per_fold)."""
    import yaml

    space = {"description": description, "config": preset, "fixed": {k: v for k, v in fixed.items() if k != "train.seed"},
             "space": {"train.seed": {"choice": list(range(seeds))}},
             "sweep": {"sampler": "grid", "max_concurrent": 1, "folds": list(FOLDS), **sweep}}  # fmt: skip
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def run_farm(data: Path, work: Path, epochs: int, batches: int, env: dict, i: int, trials: int = 1) -> dict:
    space = one_cell_space(work / "farm_bench.yaml", "bench/farm_overhead.py, one fixed configuration", "cpu",
                           fixed(epochs, batches), seeds=trials)  # fmt: skip
    name = f"farm-bench-{i}"
    ray_tmp = tempfile.mkdtemp(prefix="rayb", dir="/tmp")  # short: Ray's socket paths
    start = time.time()
    proc = subprocess.run([*FARM, "sweep", "--space", str(space), "--data", str(data), "--storage",
                           str(work / "sweeps"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--name", name],
                          env={**env, "FARM_RAY_TEMP_DIR": ray_tmp}, capture_output=True, text=True)  # fmt: skip
    wall = time.time() - start
    if proc.returncode:
        raise SystemExit(f"farm sweep failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    stamps = [(time.strptime(m.group(1), "%H:%M:%S"), m.group(2)) for m in
              re.finditer(r"^\[(\d\d:\d\d:\d\d)\] (.*)$", proc.stdout, re.M)]  # fmt: skip
    secs = lambda t: t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec  # noqa: E731
    t0 = secs(stamps[0][0])
    planned = next(secs(t) for t, s in stamps if s.startswith(f"sweep {name}:"))
    first = next(secs(t) for t, s in stamps if " epoch 1:" in s)
    return {"wall_s": wall, "ray_and_plan_s": planned - t0, "to_first_epoch_s": first - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench/farm.json")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--trials", type=int, default=1, help="configurations run one after the other (seeds 0..N-1)")
    ap.add_argument("--work", default="", help="working folder (default: a new temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="farm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(work), "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    data = work / "data"
    if not (data / "dataset.json").exists():
        subprocess.run([*FARM, "data", "synth", "--out", str(data)], check=True, env=env, capture_output=True)
    pairs = []
    for i in range(args.repeats):
        bare = run_bare(data, work, args.epochs, args.batches, env, args.trials)
        farm = run_farm(data, work, args.epochs, args.batches, env, i, args.trials)
        pairs.append({"bare": bare, "farm": farm, "ratio": bare["wall_s"] / farm["wall_s"],
                      "load": os.getloadavg()[0]})  # fmt: skip
        print(f"pair {i}: bare {bare['wall_s']:.1f} s, farm {farm['wall_s']:.1f} s (Ray + plan "
              f"{farm['ray_and_plan_s']} s, first epoch reported at {farm['to_first_epoch_s']} s; bare first epoch "
              f"{bare['first_epoch_s']:.1f} s) -> ratio {pairs[-1]['ratio']:.3f}, load {pairs[-1]['load']:.1f}",
              flush=True)  # fmt: skip
    result = {"pairs": pairs, "median_ratio": statistics.median(p["ratio"] for p in pairs), "epochs": args.epochs,
              "batches": args.batches, "trials": args.trials, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                   "platform": platform.platform()}}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"median farm/bare throughput ratio {result['median_ratio']:.3f} over {len(pairs)} pairs -> {args.out}")


if __name__ == "__main__":
    main()
