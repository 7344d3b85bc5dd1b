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
