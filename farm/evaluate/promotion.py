"""Should a candidate replace the champion? A paired, subject-level bootstrap of the F1 difference.

Pure NumPy. Inputs are the per-frame TEST predictions of each model's cross-validation folds
(every frame predicted by the fold model that never saw its subject), so the comparison uses
no frame that either model was trained or selected on.

The statistic is the one the paper reports: per fold, per-AU F1 at 0.5 over the fold's test
frames, mean over AUs, then mean over folds. Frames are not independent (consecutive video
frames of one subject), so the unit of resampling is the subject: each bootstrap replicate
draws, within every fold, that fold's subjects with replacement (stratified by fold), and the
SAME draw is applied to both models (paired). The candidate is promoted when the lower bound of
the (1 - alpha) percentile interval of F1(candidate) - F1(champion) is above zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from farm.checkpoints import Predictions
from farm.metrics import au_counts, f1_from_counts


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate_f1: float = float("nan")
    champion_f1: float = float("nan")
    difference: float = float("nan")
    """F1(candidate) - F1(champion) on the common test frames (fold mean of the AU-mean F1)."""
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_subjects: int = 0
    n_frames: int = 0
    n_boot: int = 0
    alpha: float = 0.05
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def subject_counts(preds: Predictions, subjects: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-subject per-AU [tp, fp, fn, tn]: (S, A, 4) in the order of `subjects`."""
    return np.stack([au_counts(preds.probs[preds.subject == s], preds.labels[preds.subject == s], threshold)
                     for s in subjects])  # fmt: skip


def fold_mean_f1(counts: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """counts (..., S, A, 4), fold per subject (S,) -> fold mean of the AU-mean F1, shape (...)."""
    per_fold = []
    for f in dict.fromkeys(fold_of):
        f1 = f1_from_counts(counts[..., fold_of == f, :, :].sum(axis=-3))  # (..., A)
        per_fold.append(np.nanmean(f1, axis=-1))
    return np.mean(per_fold, axis=0)


def bootstrap_difference(
    candidate: np.ndarray, champion: np.ndarray, fold_of: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> np.ndarray:
    """Paired subject bootstrap, stratified by fold: (n_boot,) replicates of F1(candidate) - F1(champion).

    candidate, champion: per-subject counts (S, A, 4) over the same subjects; fold_of: (S,).
    """
    rng = np.random.default_rng(seed)
    diffs = []
    for f in dict.fromkeys(fold_of):
        idx = np.flatnonzero(fold_of == f)
        w = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=n_boot).astype(np.float64)  # (B, S_f)
        both = np.stack([candidate[idx], champion[idx]])  # (2, S_f, A, 4)
        f1 = f1_from_counts(np.einsum("bs,msak->mbak", w, both))  # (2, B, A)
        diffs.append(np.nanmean(f1[0], axis=-1) - np.nanmean(f1[1], axis=-1))  # (B,)
    return np.mean(diffs, axis=0)


def decide(
    candidate: Predictions, champion: Predictions | None, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Decision:
    """Promote `candidate` over `champion` if the bootstrap CI of the F1 difference lies above zero."""
    if champion is None:
        return Decision(True, "no champion yet")
    if candidate.aus != champion.aus:
        return Decision(False, f"not comparable: the candidate detects {list(candidate.aus)}, the champion "
                        f"{list(champion.aus)}")  # fmt: skip
    keys_c, keys_h = candidate.keys(), champion.keys()
    common, ic, ih = np.intersect1d(keys_c, keys_h, return_indices=True)
    if len(common) == 0:
        return Decision(False, "not comparable: the two models share no test frame (different datasets?)")
    cand, champ = candidate.select(ic), champion.select(ih)
    differ = int((cand.labels != champ.labels).any(axis=1).sum())
    if differ:
        return Decision(False, f"not comparable: the labels of {differ} common test frames differ (different "
                        "label files or frame offsets?)")  # fmt: skip
    subjects = np.array(sorted(set(cand.subject)), dtype=object)
    fold_of = np.array([cand.fold[cand.subject == s][0] for s in subjects], dtype=object)  # the candidate's folds
    counts_c, counts_h = subject_counts(cand, subjects), subject_counts(champ, subjects)
    f1_c, f1_h = float(fold_mean_f1(counts_c, fold_of)), float(fold_mean_f1(counts_h, fold_of))
    diffs = bootstrap_difference(counts_c, counts_h, fold_of, n_boot, seed)
    low, high = (float(v) for v in np.quantile(diffs, [alpha / 2, 1 - alpha / 2]))
    level = f"{100 * (1 - alpha):g}%"
    promote = low > 0
    if promote:
        reason = f"the candidate is better: F1 +{100 * (f1_c - f1_h):.1f} points, {level} CI [{100 * low:+.1f}, {100 * high:+.1f}] above zero"
    elif high < 0:
        reason = f"the candidate is worse: F1 {100 * (f1_c - f1_h):+.1f} points, {level} CI [{100 * low:+.1f}, {100 * high:+.1f}]"
    else:
        reason = (f"no clear difference: F1 {100 * (f1_c - f1_h):+.1f} points, {level} CI [{100 * low:+.1f}, "
                  f"{100 * high:+.1f}] includes zero")  # fmt: skip
    extra = f" (compared on {len(common)} common frames of {len(subjects)} subjects, {n_boot} subject resamples)"
    return Decision(promote, reason + extra, f1_c, f1_h, f1_c - f1_h, low, high, len(subjects), len(common), n_boot,
                    alpha, seed)  # fmt: skip
