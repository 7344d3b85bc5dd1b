"""Validation robustness of a fold from cached features against a full forward per condition (issue 22, item 1).

    python bench/robustness_cache.py --out runs/bench/robustness_cache.json [--fusion amf --fusion late ...]
        [--repeats 3] [--stride 1] [--threads 2] [--data DIR]

On the default synthetic set (`farm data synth`: visual + depth + thermal, 64 px; generated into the working
folder unless `--data` names one) fold P1's validation subjects, a freshly initialised model of the `cpu`
preset (ResNet-18 per modality, AMF K = 16), built by `farm.engine.build_training` as a fold builds it, and
timed with the functions a fold calls:

- clean: `farm.engine.predict` on the validation loader, the pass every epoch makes;
- full: `robustness_f1(..., cached=False)`, a forward per condition (the code before issue 22, except that
  noise on all modalities now reuses each modality's draws, which changes no cost);
- cached: `robustness_f1(...)`, each backbone once per distinct input and the fusion head per condition;
- cached, missing only: the same with `train.val_robustness: [missing]`'s conditions.

The conditions are the fold's (`val_conditions`: each modality and pair missing, noise at four sigmas on each
modality and on all: 22 with three modalities). Noise needs one backbone pass per (modality, sigma) on its own
noisy input, so with S sigmas the cached path cannot cost less than (1 + S) clean passes' backbones; the
printout gives that floor beside the measured ratio. Rounds alternate the order of the measurements so that load
from other processes hits them alike; ratios are taken within a round, and the median, min and max over rounds
are printed (after an unrecorded warm-up on 8 frames), for wall time and for this process's CPU time (the figure less sensitive to other processes on a
shared machine). Every round also checks that both paths give the same F1 per condition (within 1e-6).
Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402

from farm.config import load_config  # noqa: E402
from farm.data.store import FrameStore  # noqa: E402
from farm.engine import build_loaders, build_training, fold_split, predict, robustness_f1, val_conditions  # noqa: E402
from farm.models import fusion_modalities  # noqa: E402


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), None)
    return {"cpu": cpu or platform.processor(), "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}  # fmt: skip


def setup(data: Path, fusion: str, stride: int) -> dict:
    """The fold's model (fresh), validation loader (every `stride`-th frame) and conditions."""
    cfg = load_config("cpu", {"data.path": str(data), "data.fold": "P1", "model.fusion": fusion,
                              "data.num_workers": 0, "train.device": "cpu"})  # fmt: skip
    store = FrameStore(data)
    mods = fusion_modalities(fusion, cfg.data.modalities, store.meta.modality_names)
    split, _ = fold_split(cfg, store)
    val = build_loaders(cfg, store, split, mods)["val"]
    if stride > 1:
        val = DataLoader(Subset(val.dataset, range(0, len(val.dataset), stride)), batch_size=cfg.train.eval_batch_size)
    torch.manual_seed(0)
    model, _, _, compute = build_training(cfg, store, mods, torch.device("cpu"))
    conds = val_conditions(cfg, mods)
    return {"cfg": cfg, "model": model, "loader": val, "compute": compute, "conds": conds, "modalities": mods,
            "missing": [c for c in conds if c.kind == "missing"]}  # fmt: skip


RATIOS = (("full", "clean"), ("cached", "clean"), ("full", "cached"), ("cached_missing", "clean"))


def timed(fn) -> tuple[float, float, object]:
    """Wall and this process's CPU seconds of fn(), and its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def one_round(s: dict, order: int) -> dict:
    cpu = torch.device("cpu")
    args = (s["model"], s["loader"], cpu)
    rob = dict(aus=tuple(s["cfg"].data.aus), seed=s["cfg"].amf.eval_seed, **s["compute"])
    steps = {
        "clean": lambda: predict(*args, **s["compute"]),
        "full": lambda: robustness_f1(*args, s["conds"], cached=False, **rob),
        "cached": lambda: robustness_f1(*args, s["conds"], **rob),
        "cached_missing": lambda: robustness_f1(*args, s["missing"], **rob),
    }
    names = list(steps)
    names = names[order % len(names) :] + names[: order % len(names)]  # rotate: load hits every step alike
    secs, cpu_secs, outs = {}, {}, {}
    for name in names:
        secs[name], cpu_secs[name], outs[name] = timed(steps[name])
    diff = max(abs(outs["full"][k] - outs["cached"][k]) for k in outs["full"])
    return {"s": secs, "cpu_s": cpu_secs, "max_f1_diff": diff, "load": os.getloadavg()[0]}


def summary(rounds: list[dict], num: str, den: str, clock: str = "s") -> dict:
    r = [x[clock][num] / x[clock][den] for x in rounds]
    return {"median": statistics.median(r), "min": min(r), "max": max(r)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="", help="JSON file for the figures (default: print only)")
    ap.add_argument("--fusion", action="append", help="fusion heads (default: amf, late, early)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per fusion head")
    ap.add_argument("--stride", type=int, default=1, help="every N-th validation frame (1: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--data", default="", help="a prepared dataset (default: the default synthetic set, generated)")
    ap.add_argument("--work", default="", help="working folder for the generated set (default: a temporary one)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data) if args.data else Path(args.work or tempfile.mkdtemp(prefix="farm-bench-")) / "synth"
    if not (data / "dataset.json").exists():
        from farm.data.synth import SynthSpec, generate

        print(f"generating the default synthetic set in {data} ...", flush=True)
        generate(SynthSpec(), data, progress=False)
    results = {"machine": machine(), "stride": args.stride, "fusions": {}}
    for fusion in args.fusion or ["amf", "late", "early"]:
        s = setup(data, fusion, args.stride)
        n_sigmas = len({c.sigma for c in s["conds"] if c.kind == "noise"})
        print(f"{fusion} on {', '.join(s['modalities'])}: {len(s['loader'].dataset)} validation frames, "
              f"{len(s['conds'])} conditions ({len(s['missing'])} missing)", flush=True)  # fmt: skip
        first = DataLoader(Subset(s["loader"].dataset, range(min(8, len(s["loader"].dataset)))), batch_size=8)
        one_round({**s, "loader": first}, 0)  # warm-up, not recorded: the first calls pay one-off costs
        rounds = []
        for i in range(args.repeats):
            rounds.append(one_round(s, i))
            r = rounds[-1]
            print(f"  round {i}: " + ", ".join(f"{k} {v:.2f} s ({r['cpu_s'][k]:.2f} CPU s)" for k, v in r["s"].items())
                  + f"; max |F1 full - cached| {r['max_f1_diff']:.1e}; load {r['load']:.1f}", flush=True)  # fmt: skip
        res = {"frames": len(s["loader"].dataset), "conditions": len(s["conds"]), "rounds": rounds,
               **{f"{a}_over_{b}{suffix}": summary(rounds, a, b, clock) for a, b in RATIOS
                  for clock, suffix in (("s", ""), ("cpu_s", "_cpu"))},
               "floor_over_clean": 1 + n_sigmas if s["model"].feature_modalities else None,
               "split": bool(s["model"].feature_modalities)}  # fmt: skip
        results["fusions"][fusion] = res
        for a, b in RATIOS:
            v, c = res[f"{a}_over_{b}"], res[f"{a}_over_{b}_cpu"]
            print(f"  {a} / {b}: wall median {v['median']:.2f} (min {v['min']:.2f}, max {v['max']:.2f}); "
                  f"CPU median {c['median']:.2f} (min {c['min']:.2f}, max {c['max']:.2f})")  # fmt: skip
        if res["floor_over_clean"]:
            print(f"  floor of the cached path (clean + one backbone pass per sigma): {res['floor_over_clean']}x clean")
        else:
            print("  early fusion cannot split per modality: both paths run the full forward per condition")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
