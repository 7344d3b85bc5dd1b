"""CPU train-step cost of AMF relative to late fusion, before and after issue 16 (item 5).

    python bench/amf_step.py --out runs/bench/amf_step.json [--sizes 64 112] [--rounds 15] [--threads 1]

Three models of the paper preset (ResNet-18 per modality, visual 3 + depth 1 + thermal 1 channels,
batch 50, AMF K = 100, Adam), each built by `farm.models.build_model` and `farm.engine.build_optimizer`
and stepped by `farm.engine.train_step`, the functions training calls, on random inputs:

- `late`: late fusion;
- `amf`: AMF as `farm/models/amf.py` implements it now;
- `amf_baseline`: the same AMF module with its forward replaced by the pre-issue-16 one (the (B, K, D, M)
  one-hot straight-through selection, `baseline_forward` below), the "before" of docs/benchmarks.md.

Timing is interleaved: each round times `--steps` steps of every model, the order rotating between rounds,
so that load from other processes on the machine hits the three alike; a ratio is taken within each round
and the median, min and max over rounds are printed, with the ratio of each model's fastest round to late
fusion's fastest, for wall-clock time and for this process's CPU time (with one thread, `--threads 1`,
the figure least sensitive to other processes on a shared machine). `--profile` prints where one step of each AMF spends
its time (torch.profiler, self CPU time per operator). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from farm.config import load_config  # noqa: E402
from farm.engine import build_optimizer, train_step  # noqa: E402
from farm.models import build_model  # noqa: E402
from farm.models.amf import AMF  # noqa: E402

CHANNELS = {"visual": 3, "depth": 1, "thermal": 1}
MODELS = ("late", "amf", "amf_baseline")


# ---------------------------------------------------------------------------------------------
# BASELINE: the AMF selection and forward as they were before issue 16 (git 77bc90c), kept here
# verbatim so that "before" and "after" are measured in the same run. Not used by training.


def baseline_gumbel_select(
    log_alpha: torch.Tensor, num_samples: int, tau: float, generator: torch.Generator | None = None,
    shared: bool = False,
) -> torch.Tensor:  # fmt: skip
    B, D, M = log_alpha.shape
    shape = (1 if shared else B, num_samples, D, M)
    u = torch.rand(shape, generator=generator, device=log_alpha.device, dtype=log_alpha.dtype)
    gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))  # Eq. 5, (B or 1, K, D, M)
    soft = torch.softmax((log_alpha.unsqueeze(1) + gumbel) / tau, dim=-1)  # Eq. 6, (B, K, D, M)
    hard = F.one_hot(soft.argmax(dim=-1), M).to(soft.dtype)  # Eq. 4, (B, K, D, M)
    return hard - soft.detach() + soft


def baseline_forward(self: AMF, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    feats = {m: self.backbones[m](x[m]) for m in self.modalities}  # a^k, each (B, D)
    a = torch.stack([feats[m] for m in self.modalities], dim=-1)  # (B, D, M)
    log_alpha = torch.stack([F.logsigmoid(self.scorers[m](feats[m])) for m in self.modalities], dim=-1)  # (B, D, M)
    if self.training:
        select = baseline_gumbel_select(log_alpha, self.num_samples, self.tau)  # (B, K, D, M)
    elif self.eval_mode == "mean":
        gen = torch.Generator(device=a.device).manual_seed(self.eval_seed)
        select = baseline_gumbel_select(log_alpha, self.num_samples, self.tau_floor, gen, shared=True)
    else:
        select = F.one_hot(log_alpha.argmax(dim=-1), len(self.modalities)).to(a.dtype).unsqueeze(1)  # (B, 1, D, M)
    fused = (select * a.unsqueeze(1)).sum(dim=-1)  # a*_j, (B, K, D)
    fused_logits = self.classifier(fused)  # (B, K, A)
    probs = torch.sigmoid(fused_logits).mean(dim=1)  # (B, A)
    out = {"probs": probs, "fused_logits": fused_logits, "selection": select.detach().mean(dim=1)}  # (B, D, M)
    for m in self.modalities:
        out[f"features/{m}"] = feats[m]
        out[f"alpha/{m}"] = log_alpha[..., self.modalities.index(m)].exp()  # (B, D)
        out[f"logits/{m}"] = self.classifiers[m](feats[m])  # (B, A)
        if self.training and not self.guidance_backbone:
            out[f"alpha_guide/{m}"] = torch.sigmoid(self.scorers[m](feats[m].detach()))  # (B, D)
    return out


# ---------------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), None)
    return {
        "cpu": cpu or platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def build(name: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """One model of the paper preset, as training builds it; the baseline is AMF with the old forward."""
    cfg = load_config("paper", {"model.fusion": "late" if name == "late" else "amf"})
    torch.manual_seed(0)
    model = build_model(cfg, CHANNELS, len(cfg.data.aus)).train()
    if name == "amf_baseline":
        model.forward = types.MethodType(baseline_forward, model)
    model.set_progress(0.0)
    return model, build_optimizer(cfg, model)


def batch(size: int, batch_size: int, num_aus: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = {m: torch.rand(batch_size, c, size, size, generator=g) * 2 - 1 for m, c in CHANNELS.items()}  # (B, C, H, W)
    target = torch.randint(0, 2, (batch_size, num_aus), generator=g).float()
    return x, target, torch.ones_like(target)


def same_first_step(x, target, mask) -> bool:
    """The current AMF and the baseline give the same loss from the same weights and the same seed."""
    losses = []
    for name in ("amf", "amf_baseline"):
        model, opt = build(name)
        torch.manual_seed(5)
        losses.append(train_step(model, opt, x, target, mask)["loss"])
    return bool(torch.allclose(losses[0], losses[1], rtol=1e-6, atol=1e-6))


def measure(size: int, rounds: int, steps: int, warmup: int) -> dict:
    cfg = load_config("paper")
    x, target, mask = batch(size, cfg.train.batch_size, len(cfg.data.aus))
    same = same_first_step(x, target, mask)
    models = {name: build(name) for name in MODELS}
    for model, opt in models.values():
        for _ in range(warmup):
            train_step(model, opt, x, target, mask)
    times: dict[str, list[float]] = {name: [] for name in MODELS}
    cpu_times: dict[str, list[float]] = {name: [] for name in MODELS}
    for r in range(rounds):
        order = MODELS[r % len(MODELS) :] + MODELS[: r % len(MODELS)]  # rotate who goes first
        for name in order:
            model, opt = models[name]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                train_step(model, opt, x, target, mask)
            times[name].append((time.perf_counter() - t0) / steps)
            cpu_times[name].append((time.process_time() - c0) / steps)  # this process's CPU time, all threads
    ratios = {name: ratio_to_late(times, name) for name in ("amf", "amf_baseline")}
    cpu_ratios = {name: ratio_to_late(cpu_times, name) for name in ("amf", "amf_baseline")}
    return {
        "size": size,
        "batch": cfg.train.batch_size,
        "K": cfg.amf.num_samples,
        "same_loss_as_baseline": same,
        "seconds_per_step": times,
        "cpu_seconds_per_step": cpu_times,
        "ratio_to_late": ratios,
        "cpu_ratio_to_late": cpu_ratios,
        "summary": {name: spread(v) for name, v in ratios.items()},
        "cpu_summary": {name: spread(v) for name, v in cpu_ratios.items()},
        # each model's fastest round over late fusion's fastest: the least disturbed estimate on a busy machine
        "ratio_of_minima": {name: min(times[name]) / min(times["late"]) for name in ("amf", "amf_baseline")},
        "cpu_ratio_of_minima": {
            name: min(cpu_times[name]) / min(cpu_times["late"]) for name in ("amf", "amf_baseline")
        },
        "median_seconds": {name: statistics.median(v) for name, v in times.items()},
        "min_seconds": {name: min(v) for name, v in times.items()},
    }


def ratio_to_late(times: dict[str, list[float]], name: str) -> list[float]:
    return [t / late for t, late in zip(times[name], times["late"])]  # one ratio per round


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def print_profile(size: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    cfg = load_config("paper")
    x, target, mask = batch(size, cfg.train.batch_size, len(cfg.data.aus))
    for name in ("amf_baseline", "amf"):
        model, opt = build(name)
        train_step(model, opt, x, target, mask)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(model, opt, x, target, mask)
        print(f"\n{name}, {size} px: self CPU time per operator, one train step")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 112], help="input sizes in pixels")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (one ratio each)")
    p.add_argument("--steps", type=int, default=1, help="timed train steps per model per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed train steps per model first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--profile", action="store_true", help="also profile one step of each AMF at the first size")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads, "
          f"{info['cpu_capability']}), load average {info['load_average'][0]:.1f}", flush=True)  # fmt: skip
    result = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "sizes": []}
    print("train step, paper preset (ResNet-18 x 3: visual+depth+thermal, batch 50, K = 100, Adam), "
          f"{args.rounds} rounds x {args.steps} steps, ratio to late fusion within each round:", flush=True)  # fmt: skip
    for size in args.sizes:
        r = measure(size, args.rounds, args.steps, args.warmup)
        result["sizes"].append(r)
        med = r["median_seconds"]
        print(f"  {size:4d} px  late {med['late']:.3f} s/step", flush=True)
        for name in ("amf_baseline", "amf"):
            s, c = r["summary"][name], r["cpu_summary"][name]
            print(f"           {name:13s} {med[name]:.3f} s/step  ratio median {s['median']:.3f} "
                  f"(min {s['min']:.3f}, max {s['max']:.3f}), of minima {r['ratio_of_minima'][name]:.3f}; "
                  f"CPU time: median {c['median']:.3f} (min {c['min']:.3f}, max {c['max']:.3f}), "
                  f"of minima {r['cpu_ratio_of_minima'][name]:.3f}", flush=True)  # fmt: skip
        print(f"           same first-step loss as the baseline: {r['same_loss_as_baseline']}", flush=True)
    result["machine"]["load_average_end"] = os.getloadavg()
    if args.profile:
        print_profile(args.sizes[0])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
