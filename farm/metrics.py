"""Per-AU F1 the way the AU community reports it (DOMAIN.md section 5).

Threshold 0.5 on each AU's probability; frames whose label is unknown (-1, BP4D's 9) are dropped
for that AU only; F1 per AU over all test frames of a fold, mean over AUs. TP/FP/FN/TN are kept so
pooled F1 over folds can be derived by summing counts. An AU with known labels but no positive
and no predicted positive scores 0 (scikit-learn's zero_division default); an AU with no known
label at all is NaN and left out of the mean.
"""

from __future__ import annotations

import numpy as np


def au_counts(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """probs (N, A) in [0, 1], labels (N, A) in {1, 0, -1} -> counts (A, 4) as [tp, fp, fn, tn]."""
    if probs.shape != labels.shape:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} differ in shape")
    known = labels >= 0  # (N, A)
    pred = probs >= threshold
    pos = labels == 1
    tp = (pred & pos & known).sum(0)
    fp = (pred & ~pos & known).sum(0)
    fn = (~pred & pos & known).sum(0)
    tn = (~pred & ~pos & known).sum(0)
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)  # (A, 4)


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """counts (..., A, 4) -> F1 (..., A)."""
    tp, fp, fn, tn = np.moveaxis(counts.astype(np.float64), -1, 0)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return np.where(tp + fp + fn + tn > 0, f1, np.nan)


def summarize(counts: np.ndarray, aus: tuple[str, ...] | list[str]) -> dict:
    """{"f1_mean", "f1": {AU: f1}, "counts": {AU: {tp, fp, fn, tn}}} (JSON-ready)."""
    f1 = f1_from_counts(counts)
    return {
        "f1_mean": float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
        "f1": {au: float(v) for au, v in zip(aus, f1)},
        "counts": {au: dict(zip(("tp", "fp", "fn", "tn"), map(int, c))) for au, c in zip(aus, counts)},
    }


def all_positive_f1(labels: np.ndarray) -> float:
    """Mean F1 of the predictor that says every AU is present: the floor a model must beat."""
    return float(np.nanmean(f1_from_counts(au_counts(np.ones(labels.shape), labels))))
