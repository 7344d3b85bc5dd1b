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
    - cv/test_f1_pooled: mean over AUs of F1 from the per-AU counts summed over folds.
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
    return out
