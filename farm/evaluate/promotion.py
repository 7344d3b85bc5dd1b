"""Is one model better than another? A paired, subject-level bootstrap of the F1 difference.

Pure NumPy. One implementation serves `farm promote` (`decide`: should a candidate replace the
champion?) and `farm report` (`compare`: AMF against each baseline). Inputs are the per-frame TEST
predictions of each model's cross-validation folds (every frame predicted by the fold model that
never saw its subject), so the comparison uses no frame that either model was trained or selected on.

The statistic is the one the paper reports: per fold, per-AU F1 at 0.5 over the fold's test
frames (the fold's pooled counts), mean over AUs, then mean over folds. Frames are not independent
(consecutive video frames of one subject), so the unit of resampling is the subject: each bootstrap
replicate draws, within every fold, that fold's subjects with replacement (stratified by fold), and
the SAME draw is applied to both models (paired).

Seeds: a model may have trained each fold with several seeds (the same frames predicted once per
seed, `Predictions.seed`). Its per-subject counts are then the mean over seeds, and each replicate
also draws, for every fold and each model separately, that fold's seeds with replacement and
averages the drawn seeds' per-subject counts, so the interval carries the seed-to-seed variation
too. The seeds are drawn from their own random stream: with one seed per fold nothing is drawn and
the replicates are exactly those of the subject bootstrap alone.

The candidate is promoted when the lower bound of the (1 - alpha) percentile interval of
F1(candidate) - F1(champion) is above zero.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from farm.metrics import au_counts, f1_from_counts

if TYPE_CHECKING:  # the module needs no torch (farm.checkpoints imports it): reports import this one
    from farm.checkpoints import Predictions


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


@dataclass(frozen=True)
class Comparison:
    """Model A against model B on their common test frames (fractions), or why they cannot be compared."""

    reason: str = ""
    """'' when compared; otherwise 'not comparable: ...' saying why."""
    a_f1: float = float("nan")
    b_f1: float = float("nan")
    difference: float = float("nan")
    """F1(A) - F1(B): fold mean of the AU-mean F1 from per-fold pooled counts (seeds: mean counts over seeds)."""
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_subjects: int = 0
    n_frames: int = 0
    """Common test frames (each counted once, whatever the number of seeds)."""
    n_boot: int = 0
    alpha: float = 0.05
    seed: int = 0
    """The bootstrap's random seed."""
    folds: tuple[str, ...] = ()
    """The folds compared on (A's folds of the common frames), in the order the bootstrap stratifies."""
    a_seeds: tuple[int, ...] = ()
    """Training seeds of A per fold (in `folds` order), each resampled by the bootstrap when more than one."""
    b_seeds: tuple[int, ...] = ()

    @property
    def comparable(self) -> bool:
        return not self.reason

    @property
    def winner(self) -> str:
        """'a' when the interval lies above zero, 'b' when below, '' when it holds zero (or no comparison)."""
        if not self.comparable:
            return ""
        return "a" if self.ci_low > 0 else "b" if self.ci_high < 0 else ""

    def to_dict(self) -> dict:
        return asdict(self)


def subject_counts(preds: Predictions, subjects: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-subject per-AU [tp, fp, fn, tn]: (S, A, 4) in the order of `subjects` (every row of a subject, all seeds)."""
    return np.stack([au_counts(preds.probs[preds.subject == s], preds.labels[preds.subject == s], threshold)
                     for s in subjects])  # fmt: skip


def seed_counts(
    preds: Predictions, subjects: np.ndarray, fold_of: np.ndarray, threshold: float = 0.5
) -> tuple[tuple[int, ...], np.ndarray]:
    """Per-seed per-subject per-AU counts: (seeds, counts (R, S, A, 4) float) in the order of `subjects`.

    A seed counts for a fold (fold_of: the fold of each subject) only if it predicted every subject of that
    fold; elsewhere its counts are NaN (the fold was not trained with that seed). Give it the common frames
    only (`compare` does): a seed that predicted fewer of a subject's frames would weigh the subject less.
    """
    seeds = tuple(int(r) for r in np.unique(preds.seed))
    out = np.full((len(seeds), len(subjects), len(preds.aus), 4), np.nan)
    for i, r in enumerate(seeds):
        mine = preds.seed == r
        for j, s in enumerate(subjects):
            rows = mine & (preds.subject == s)
            if rows.any():
                out[i, j] = au_counts(preds.probs[rows], preds.labels[rows], threshold)
    for f in dict.fromkeys(fold_of):
        cols = fold_of == f
        absent = np.isnan(out[:, cols]).any(axis=(1, 2, 3))  # (R,) seeds missing a subject of the fold
        out[np.ix_(absent, cols)] = np.nan
    return seeds, out


def seed_mean(counts: np.ndarray) -> np.ndarray:
    """Per-subject counts (S, A, 4) as they are, or (R, S, A, 4) per seed (NaN: absent) -> the mean over seeds."""
    if counts.ndim == 3:
        return counts
    if np.isnan(counts).all(axis=(0, 2, 3)).any():
        raise ValueError("a subject has counts from no seed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(counts, axis=0)


def fold_mean_f1(counts: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """counts (..., S, A, 4), fold per subject (S,) -> fold mean of the AU-mean F1, shape (...)."""
    per_fold = []
    for f in dict.fromkeys(fold_of):
        f1 = f1_from_counts(counts[..., fold_of == f, :, :].sum(axis=-3))  # (..., A)
        per_fold.append(np.nanmean(f1, axis=-1))
    return np.mean(per_fold, axis=0)


def _seed_rng(seed: int) -> np.random.Generator:
    """The seeds' own stream: the subjects' draws stay those of `default_rng(seed)` whatever the number of seeds."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


def _replicate_counts(counts: np.ndarray, w: np.ndarray, rng: np.random.Generator, fold: object) -> np.ndarray:
    """One fold: counts (R, S_f, A, 4) per seed (NaN: seed absent), subject weights w (B, S_f) -> (B, A, 4)
    pooled counts per replicate, each replicate averaging the counts of R seeds drawn with replacement."""
    finite = np.isfinite(counts).all(axis=(2, 3))  # (R, S_f)
    present = finite.all(axis=1)
    if (finite.any(axis=1) & ~present).any():
        raise ValueError(f"fold {fold}: a seed has counts for some of the fold's subjects and not others")
    c = counts[present]
    if len(c) == 0:
        raise ValueError(f"fold {fold}: no seed has counts for the fold's subjects")
    if len(c) == 1:  # nothing to draw: the subject bootstrap alone
        return np.einsum("bs,sak->bak", w, c[0])
    v = rng.multinomial(len(c), np.full(len(c), 1.0 / len(c)), size=len(w)) / len(c)  # (B, R_f), rows sum to 1
    return np.einsum("bs,br,rsak->bak", w, v, c, optimize=True)


def bootstrap_difference(
    candidate: np.ndarray, champion: np.ndarray, fold_of: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> np.ndarray:
    """Paired subject bootstrap, stratified by fold: (n_boot,) replicates of F1(candidate) - F1(champion).

    candidate, champion: per-subject counts (S, A, 4) over the same subjects, or per seed (R, S, A, 4) (NaN
    where a seed did not train the subject's fold; the two may have different seeds); fold_of: (S,). Per
    replicate and fold: one draw of the fold's subjects with replacement, applied to both models (paired);
    for a model with several seeds in the fold, a draw of its seeds with replacement (its own draw), whose
    per-subject counts are averaged. One seed per fold: exactly the subject bootstrap.
    """
    models = [m[None] if m.ndim == 3 else m for m in (candidate, champion)]  # (R, S, A, 4)
    rng, seed_rng = np.random.default_rng(seed), _seed_rng(seed)
    diffs = []
    for f in dict.fromkeys(fold_of):
        idx = np.flatnonzero(fold_of == f)
        w = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=n_boot).astype(np.float64)  # (B, S_f)
        f1 = [f1_from_counts(_replicate_counts(m[:, idx], w, seed_rng, f)) for m in models]  # 2 x (B, A)
        diffs.append(np.nanmean(f1[0], axis=-1) - np.nanmean(f1[1], axis=-1))  # (B,)
    return np.mean(diffs, axis=0)


def _per_seed_rows(preds: Predictions, keys: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """seed -> (its frame keys, sorted and unique; the row of each: the first one)."""
    out = {}
    for r in np.unique(preds.seed):
        rows = np.flatnonzero(preds.seed == r)
        uk, first = np.unique(keys[rows], return_index=True)
        out[int(r)] = (uk, rows[first])
    return out


def _complete_keys(preds: Predictions, per_seed: dict[int, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Frame keys predicted by every seed of their fold (one seed: every key)."""
    if len(per_seed) == 1:
        return next(iter(per_seed.values()))[0]
    out = []
    for f in np.unique(preds.fold):
        sets = [uk[preds.fold[rows] == f] for uk, rows in per_seed.values() if (preds.fold[rows] == f).any()]
        common = sets[0]
        for s in sets[1:]:
            common = np.intersect1d(common, s)
        out.append(common)
    return np.unique(np.concatenate(out))


def _common_rows(preds: Predictions, keys: np.ndarray, common: np.ndarray, per_seed: dict) -> tuple[np.ndarray, ...]:
    """(rows of the common frames, every seed; one row per common frame in key order: its first seed's row)."""
    rows = np.concatenate([r[np.isin(uk, common)] for uk, r in per_seed.values()])
    _, first = np.unique(keys[rows], return_index=True)
    return rows, rows[first]


def compare(
    a: Predictions, b: Predictions, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
    names: tuple[str, str] = ("the candidate", "the champion"),
) -> Comparison:  # fmt: skip
    """A against B on the test frames both predicted: the difference of the paper's statistic and its (1 - alpha)
    paired, subject-level bootstrap interval (`bootstrap_difference`, stratified by A's folds; several seeds per
    fold are resampled too). Models that detect other AUs, share no frame, or disagree on the labels of a shared
    frame (or whose seeds do) are not comparable: `reason` says why. `names` name A and B in those messages."""
    if a.aus != b.aus:
        return Comparison(f"not comparable: {names[0]} detects {list(a.aus)}, {names[1]} {list(b.aus)}",
                          n_boot=n_boot, alpha=alpha, seed=seed)  # fmt: skip
    keys_a, keys_b = a.keys(), b.keys()
    seeds_a, seeds_b = _per_seed_rows(a, keys_a), _per_seed_rows(b, keys_b)
    common = np.intersect1d(_complete_keys(a, seeds_a), _complete_keys(b, seeds_b))
    if len(common) == 0:
        return Comparison("not comparable: the two models share no test frame (different datasets?)", n_boot=n_boot,
                          alpha=alpha, seed=seed)  # fmt: skip
    rows_a, ref_a = _common_rows(a, keys_a, common, seeds_a)
    rows_b, ref_b = _common_rows(b, keys_b, common, seeds_b)
    for p, keys, rows, ref, name in ((a, keys_a, rows_a, ref_a, names[0]), (b, keys_b, rows_b, ref_b, names[1])):
        at = np.searchsorted(common, keys[rows])  # each row's frame in `common` (and in `ref`)
        differ = len(np.unique(at[(p.labels[rows] != p.labels[ref][at]).any(axis=1)]))
        if differ:
            return Comparison(f"not comparable: the labels of {differ} test frames differ between the seeds of "
                              f"{name}", n_boot=n_boot, alpha=alpha, seed=seed)  # fmt: skip
    differ = int((a.labels[ref_a] != b.labels[ref_b]).any(axis=1).sum())
    if differ:
        return Comparison(f"not comparable: the labels of {differ} common test frames differ (different label files "
                          "or frame offsets?)", n_boot=n_boot, alpha=alpha, seed=seed)  # fmt: skip
    subj = a.subject[ref_a]
    subjects = np.array(sorted(set(subj)), dtype=object)
    fold_of = np.array([a.fold[ref_a][subj == s][0] for s in subjects], dtype=object)  # A's folds
    (_, counts_a), (_, counts_b) = (seed_counts(p.select(rows), subjects, fold_of) for p, rows in ((a, rows_a),
                                                                                                   (b, rows_b)))  # fmt: skip
    folds = tuple(dict.fromkeys(fold_of))
    n_seeds = [tuple(int(np.isfinite(c[:, fold_of == f]).all(axis=(1, 2, 3)).sum()) for f in folds)
               for c in (counts_a, counts_b)]  # fmt: skip
    if min(*n_seeds[0], *n_seeds[1]) == 0:
        return Comparison("not comparable: a fold has no seed that predicted all of its common test frames",
                          n_boot=n_boot, alpha=alpha, seed=seed)  # fmt: skip
    f1_a, f1_b = (float(fold_mean_f1(seed_mean(c), fold_of)) for c in (counts_a, counts_b))
    diffs = bootstrap_difference(counts_a, counts_b, fold_of, n_boot, seed)
    low, high = (float(v) for v in np.quantile(diffs, [alpha / 2, 1 - alpha / 2]))
    return Comparison("", f1_a, f1_b, f1_a - f1_b, low, high, len(subjects), len(common), n_boot, alpha, seed,
                      tuple(str(f) for f in folds), n_seeds[0], n_seeds[1])  # fmt: skip


def decide(
    candidate: Predictions, champion: Predictions | None, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Decision:
    """Promote `candidate` over `champion` if the bootstrap CI of the F1 difference lies above zero (`compare`)."""
    if champion is None:
        return Decision(True, "no champion yet")
    c = compare(candidate, champion, n_boot, alpha, seed)
    if not c.comparable:
        return Decision(False, c.reason)
    f1_c, f1_h, low, high = c.a_f1, c.b_f1, c.ci_low, c.ci_high
    level = f"{100 * (1 - alpha):g}%"
    promote = low > 0
    if promote:
        reason = f"the candidate is better: F1 +{100 * (f1_c - f1_h):.1f} points, {level} CI [{100 * low:+.1f}, {100 * high:+.1f}] above zero"
    elif high < 0:
        reason = f"the candidate is worse: F1 {100 * (f1_c - f1_h):+.1f} points, {level} CI [{100 * low:+.1f}, {100 * high:+.1f}]"
    else:
        reason = (f"no clear difference: F1 {100 * (f1_c - f1_h):+.1f} points, {level} CI [{100 * low:+.1f}, "
                  f"{100 * high:+.1f}] includes zero")  # fmt: skip
    extra = f" (compared on {c.n_frames} common frames of {c.n_subjects} subjects, {n_boot} subject resamples"
    if max(*c.a_seeds, *c.b_seeds) > 1:
        extra += f", seeds per fold resampled too: candidate {seeds_text(c.a_seeds)}, champion {seeds_text(c.b_seeds)}"
    return Decision(promote, reason + extra + ")", f1_c, f1_h, f1_c - f1_h, low, high, c.n_subjects, c.n_frames,
                    n_boot, alpha, seed)  # fmt: skip


def seeds_text(per_fold: tuple[int, ...]) -> str:
    """'3 folds x 2 seeds', '3 folds x 1 seed', '3 folds x 1-2 seeds' (seeds differ between folds)."""
    lo, hi = min(per_fold, default=0), max(per_fold, default=0)
    n = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return f"{len(per_fold)} fold{'s' * (len(per_fold) != 1)} x {n} seed{'s' * (hi != 1)}"
