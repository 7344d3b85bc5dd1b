"""Cross-validation summaries: the folds of one configuration -> the numbers a researcher reports.

Pure NumPy. The objective of a search is `cv/val_f1_mean` (validation subjects carved from each
fold's training subjects); test-partition numbers are reported beside it, never optimised.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from farm.metrics import f1_from_counts


def aggregate_folds(folds: list[dict[str, Any]], aus: list[str] | tuple[str, ...]) -> dict[str, float]:
    """Fold results (FoldResult.to_json() dicts, or `fold_summary` dicts) -> flat `cv/...` metrics.

    - cv/val_f1_mean: mean over folds of the best-epoch validation F1 (the search objective);
    - cv/test_f1_mean, cv/test_f1_std: mean and population std over folds of the test F1;
    - cv/test_f1_<AU>: per-AU test F1 averaged over folds;
    - cv/test_f1_pooled: mean over AUs of F1 from the per-AU counts summed over folds;
    - cv/val_f1_<condition> (e.g. cv/val_f1_missing_depth, cv/val_f1_noise_all_0.5): mean over folds of the
      best epoch's validation F1 under that robustness condition, where the folds measured it;
    - cv/val_f1_missing_worst: the lowest of the cv/val_f1_missing_* (the modality whose loss hurts most).
    """
    if not folds:
        raise ValueError("no fold results to aggregate")
    val = np.array([f["val"]["f1_mean"] for f in folds], dtype=float)
    test = np.array([f["test"]["f1_mean"] for f in folds], dtype=float)
    out: dict[str, float] = {
        "cv/val_f1_mean": float(val.mean()),
        "cv/val_f1_std": float(val.std()),
        "cv/test_f1_mean": float(test.mean()),
        "cv/test_f1_std": float(test.std()),
        "cv/num_folds": float(len(folds)),
    }
    summed = np.zeros((len(aus), 4), np.int64)
    for j, au in enumerate(aus):
        out[f"cv/test_f1_{au}"] = float(np.nanmean([f["test"]["f1"][au] for f in folds]))
        summed[j] = [sum(f["test"]["counts"][au][k] for f in folds) for k in ("tp", "fp", "fn", "tn")]
    out["cv/test_f1_pooled"] = float(np.nanmean(f1_from_counts(summed)))
    out.update(aggregate_robustness(folds))
    return out


def objective_metrics(
    modalities: tuple[str, ...], val_robustness: tuple[str, ...], sigmas: tuple[float, ...]
) -> list[str]:
    """The cv/val_* metrics a trial reports: the names a search may optimise (`sweep.objective`)."""
    from farm.data.perturb import conditions, metric_suffix

    kinds = set(val_robustness)
    names = ["cv/val_f1_mean"]
    conds = [c for c in conditions(modalities, sigmas) if c.kind in kinds]
    names += [f"cv/val_f1_{metric_suffix(c)}" for c in conds]
    if any(c.kind == "missing" for c in conds):
        names.append("cv/val_f1_missing_worst")
    return names


def aggregate_robustness(folds: list[dict[str, Any]]) -> dict[str, float]:
    """cv/val_f1_<condition> means over folds (conditions every fold measured) and cv/val_f1_missing_worst."""
    robust = [f.get("val_robustness") or {} for f in folds]
    keys = sorted(set.intersection(*(set(r) for r in robust))) if robust else []
    out = {f"cv/{k.removeprefix('val/')}".replace("cv/f1_", "cv/val_f1_"): float(np.mean([r[k] for r in robust]))
           for k in keys}  # fmt: skip
    missing = [v for k, v in out.items() if k.startswith("cv/val_f1_missing_")]
    if missing:
        out["cv/val_f1_missing_worst"] = float(min(missing))
    return out


def pareto_front(points: list[list[float]]) -> list[int]:
    """Indices of the non-dominated points (every objective maximised; a point with a NaN is never on the front).

    A point is dominated when another is at least as good on every objective and better on one.
    """
    ok = [i for i, p in enumerate(points) if all(np.isfinite(p))]
    front = []
    for i in ok:
        p = points[i]
        dominated = any(
            all(q >= v for q, v in zip(points[j], p)) and any(q > v for q, v in zip(points[j], p)) for j in ok if j != i
        )
        if not dominated:
            front.append(i)
    return front
