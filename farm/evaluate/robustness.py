"""The paper's robustness study (Fig. 4 and 5) for a trained configuration. Plain PyTorch/NumPy.

Each fold model is tested on its own fold's test subjects (never on subjects it was trained or
selected on) under every condition:
- clean;
- each modality missing (all zeros after [-1, 1] normalisation) and, with three or more
  modalities, each pair missing (Fig. 4);
- Gaussian noise of std sigma in {0.1, 0.2, 0.5, 0.8} added to the normalised input of each
  modality and of all modalities at once, not clipped (Fig. 5).

Per condition: per-AU F1 per fold, the fold mean of the AU-mean F1 (the paper's number) and its
std over folds, and the change against clean. Every batch is decoded once and reused for all
conditions, each backbone runs once per distinct input and the fusion head once per condition
(`farm.data.perturb.condition_probs`); the noise comes from a generator seeded per (fold,
condition), noise on all modalities reusing each modality's own draws (`draw_noise`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from farm.data.dataset import FrameDataset
from farm.data.perturb import Condition, draw_noise
from farm.data.store import FrameStore
from farm.evaluate.cv import sample_std
from farm.evaluate.inference import FoldEnsemble
from farm.files import atomic_paths
from farm.metrics import au_counts, f1_from_counts


def evaluate(
    ensemble: FoldEnsemble, store: FrameStore, conds: list[Condition], batch_size: int = 0, seed: int = 0,
    stride: int = 1, progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """-> {fold: {condition name: per-AU counts (A, 4)}} on each fold's own test subjects.

    batch_size 0 = the training run's evaluation batch size, so with stride 1 the clean condition
    reproduces the fold's logged test F1 exactly.
    """
    spec = ensemble.spec
    batch_size = batch_size or int(ensemble.config.get("train", {}).get("eval_batch_size", 64))
    missing = [m for m in spec.modalities if m not in store.meta.modality_names]
    if missing:
        raise ValueError(f"{store.root} lacks modality {', '.join(missing)} of the model: robustness needs all of them")
    for m in spec.modalities:
        ms = store.meta.modality(m)
        if (ms.height, ms.width) != (spec.height, spec.width):
            raise ValueError(f"{store.root}: {m} images are {ms.height}x{ms.width}; the model was trained on "
                             f"{spec.height}x{spec.width} (prepare the data at that size)")  # fmt: skip
    present = set(store.subjects)
    out: dict[str, dict[str, np.ndarray]] = {}
    for fold_i, fold in enumerate(ensemble.models):
        subjects = [s for s in ensemble.test_subjects.get(fold, ()) if s in present]
        if not subjects:
            raise ValueError(f"fold {fold}: none of its test subjects {list(ensemble.test_subjects.get(fold, ()))} "
                             f"is in {store.root}")  # fmt: skip
        ds = FrameDataset(store, subjects, spec.modalities, spec.aus, crop=spec.crop)
        data = Subset(ds, range(0, len(ds), stride)) if stride > 1 else ds
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        gens = [torch.Generator().manual_seed(seed * 100_003 + 1000 * fold_i + j) for j in range(len(conds))]
        counts = {c.name: np.zeros((len(spec.aus), 4), np.int64) for c in conds}
        model = ensemble.models[fold]
        for x, y in loader:
            labels = y.numpy()
            probs = ensemble.predict_conditions(x, conds, draw_noise(x, conds, gens), fold)
            for cond in conds:
                counts[cond.name] += au_counts(probs[cond].cpu().numpy(), labels)
        out[fold] = counts
        if progress:
            how = "cached features" if model.feature_modalities else "full forward each"
            progress(f"fold {fold}: {len(data)} test frames of {len(subjects)} subjects x {len(conds)} conditions "
                     f"({how})")  # fmt: skip
    return out


def summarize(counts: dict[str, dict[str, np.ndarray]], conds: list[Condition]) -> list[dict]:
    """One row per condition: f1_mean / f1_std over folds (of the AU-mean F1; sample std, NaN for one fold), per-fold
    values, delta vs clean."""
    folds = list(counts)
    rows = []
    for c in conds:
        per_fold = [float(np.nanmean(f1_from_counts(counts[f][c.name]))) for f in folds]
        rows.append({"condition": c.name, "kind": c.kind, "modalities": "+".join(c.modalities), "sigma": c.sigma,
                     "f1_mean": float(np.mean(per_fold)), "f1_std": sample_std(per_fold),
                     **{f"f1_{f}": v for f, v in zip(folds, per_fold)}})  # fmt: skip
    clean = next((r["f1_mean"] for r in rows if r["kind"] == "clean"), math.nan)
    for r in rows:
        r["delta"] = r["f1_mean"] - clean
    return rows


def to_markdown(rows: list[dict], title: str = "") -> str:
    folds = [k[3:] for k in rows[0] if k.startswith("f1_") and k not in ("f1_mean", "f1_std")]
    head = ["condition", "F1 (mean ± std over folds)", "vs clean", *folds]
    lines = ([f"### {title}", ""] if title else []) + ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        delta = "" if r["kind"] == "clean" else f"{100 * r['delta']:+.1f}"
        cells = [r["condition"], f"{100 * r['f1_mean']:.1f} ± {100 * r['f1_std']:.1f}", delta,
                 *(f"{100 * r[f'f1_{f}']:.1f}" for f in folds)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Left: clean and missing modalities (Fig. 4). Right: F1 against noise sigma per target (Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    bars = [r for r in rows if r["kind"] in ("clean", "missing")]
    ax1.bar(range(len(bars)), [100 * r["f1_mean"] for r in bars], yerr=[100 * r["f1_std"] for r in bars],
            capsize=3, color=["#4c72b0" if r["kind"] == "clean" else "#dd8452" for r in bars])  # fmt: skip
    ax1.set_xticks(range(len(bars)), [r["condition"] for r in bars], rotation=30, ha="right")
    ax1.set_ylabel("F1 (%)")
    ax1.set_title("missing modality (zeros)")
    clean = next(r for r in rows if r["kind"] == "clean")
    for target in dict.fromkeys(r["modalities"] for r in rows if r["kind"] == "noise"):
        pts = [(0.0, clean["f1_mean"])] + [(r["sigma"], r["f1_mean"]) for r in rows
                                            if r["kind"] == "noise" and r["modalities"] == target]  # fmt: skip
        ax2.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-", label=f"noise on {target}")
    ax2.set_xlabel("Gaussian noise sigma (on [-1, 1] inputs)")
    ax2.set_ylabel("F1 (%)")
    ax2.set_title("noisy modality")
    ax2.legend(fontsize=8)
    top = max(100 * r["f1_mean"] + 100 * r["f1_std"] for r in rows)
    for ax in (ax1, ax2):
        ax.set_ylim(0, max(10.0, min(100.0, top * 1.15)))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write(rows: list[dict], out: str | Path, title: str = "") -> dict[str, Path]:
    """robustness.csv, robustness.md and robustness.png in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "robustness.csv", "md": out / "robustness.md", "png": out / "robustness.png"}
    with atomic_paths(*paths.values()) as (csv_tmp, md_tmp, png_tmp):  # all three, or the previous ones
        with csv_tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        md_tmp.write_text(to_markdown(rows, title))
        plot(rows, png_tmp, title)
    return paths


def read_csv(path: str | Path) -> list[dict]:
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    return [{k: (v if k in ("condition", "kind", "modalities") else float(v)) for k, v in r.items()} for r in rows]
