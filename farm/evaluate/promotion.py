"""Is one model better than another? A paired, subject-level bootstrap of the F1 difference, and a corrected t.

Pure NumPy (SciPy's t distribution in `farm.evaluate.stats`). One implementation serves `farm promote` (`decide`:
should a candidate replace the champion?) and `farm report` (`compare`: AMF against each baseline). Inputs are the
per-frame TEST predictions of each model's cross-validation folds (every frame predicted by a fold model that never
trained on its subject), so the comparison uses no frame that either fold model was trained on. Whether a test
frame was seen by the SELECTION (which trial) depends on the protocol: under the joint protocol a test subject of
one fold is a training or validation subject of the other folds, whose validation F1 chose the trial; only a nested
sweep selects without it.

The statistic is the table's (`cv/test_f1_mean`): a unit is one (partition, fold, seed) fold model; its score U is
the mean over AUs (an AU with no known label left out) of per-AU F1 at 0.5 from the unit's pooled counts over the
fold's test frames; a method's score is the mean over partitions of the mean over folds of the mean over seeds of U.
With one partition and one seed it is the paper's number: per fold the AU-mean F1, mean over folds.

The bootstrap. Frames are not independent (consecutive video frames of one subject), so the unit of resampling is
the subject: each replicate draws the subjects once, stratified by the folds of the lowest partition compared, and
the SAME subject weights apply to every partition (a subject sits in different folds of different partitions) and
to both models (paired). A fold of another partition may get no weight in a replicate: that replicate's fold mean
leaves it out. Seeds: a model may have trained a fold with several seeds (the same frames predicted once per seed,
`Predictions.seed`); each replicate also draws, for every (partition, fold) and each model separately, that unit's
seeds with replacement and averages the drawn seeds' U (F1 per seed, then the mean, as the table does), so the
interval carries the seed-to-seed variation too. The seeds are drawn from their own random stream: with one seed
per fold nothing is drawn and the replicates are exactly those of the subject bootstrap alone. The interval is
'corrected' by default (the Rao-Wu rescaled bootstrap's SD with a t quantile, `farm.evaluate.stats`: with 4
subjects a fold the plain percentile interval is too narrow) or 'percentile' (the plain bootstrap's quantiles).
The subject bootstrap holds the fold models fixed: it measures how the test subjects vary, not the training sets.

The Nadeau-Bengio corrected t (`farm.evaluate.stats.corrected_t`) is reported beside it: over the J (partition,
fold) units, the difference of the two models' seed-mean U, with n_test/n_train from the compared subjects.

The candidate is promoted when the lower bound of the corrected (1 - alpha) bootstrap interval of
F1(candidate) - F1(champion) is above zero.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from farm.evaluate.stats import INTERVALS, bootstrap_interval, corrected_t, design_df, stratified_weights
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
    """F1(candidate) - F1(champion) on the common test frames (the table's statistic, `Comparison.difference`)."""
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
    """A's score on the common frames: mean over partitions of the fold mean of the seed mean of the AU-mean F1."""
    b_f1: float = float("nan")
    difference: float = float("nan")
    """F1(A) - F1(B), each the table's statistic (`a_f1`)."""
    ci_low: float = float("nan")
    """The (1 - alpha) bootstrap interval (`interval`) of `difference`."""
    ci_high: float = float("nan")
    n_subjects: int = 0
    n_frames: int = 0
    """Common test frames (each counted once, whatever the number of partitions and seeds)."""
    n_boot: int = 0
    alpha: float = 0.05
    seed: int = 0
    """The bootstrap's random seed."""
    folds: tuple[str, ...] = ()
    """The folds of the lowest partition (A's names), in the order the bootstrap stratifies."""
    a_seeds: tuple[int, ...] = ()
    """Training seeds of A per (partition, fold) unit (partitions in `partitions` order, then each partition's
    folds), each resampled by the bootstrap when more than one; one partition: per fold in `folds` order."""
    b_seeds: tuple[int, ...] = ()
    interval: str = "corrected"
    """The bootstrap interval: 'corrected' (Rao-Wu rescaled SD, t quantile) or 'percentile' (`farm.evaluate.stats`)."""
    t_low: float = float("nan")
    """The (1 - alpha) Nadeau-Bengio corrected t interval of the mean unit difference (NaN: see `t_reason`)."""
    t_high: float = float("nan")
    p_value: float = float("nan")
    """Two-sided p-value of the corrected t (unadjusted; several comparisons: `farm.evaluate.stats.holm`)."""
    n_units: int = 0
    """J: the (partition, fold) units the corrected t is over."""
    partitions: tuple[int, ...] = ()
    """The subject partitions compared (both models predicted every one)."""
    t_reason: str = ""
    """Why the corrected t has no interval ('' when it has one)."""

    @property
    def comparable(self) -> bool:
        return not self.reason

    @property
    def winner(self) -> str:
        """'a' when the bootstrap interval lies above zero, 'b' when below, '' when it holds zero (or no comparison)."""
        if not self.comparable:
            return ""
        return "a" if self.ci_low > 0 else "b" if self.ci_high < 0 else ""

    def significant(self, p_adjusted: float | None = None, alpha: float | None = None) -> bool:
        """Whether the corrected t rejects 'no difference': p (`p_adjusted`, e.g. Holm's over a report's comparisons,
        else `p_value`) below alpha (else the comparison's). False when not compared or without a p-value."""
        p = self.p_value if p_adjusted is None else p_adjusted
        return self.comparable and bool(p < (self.alpha if alpha is None else alpha))

    def units_text(self, side: str = "a") -> str:
        """'3 folds x 2 seeds' or '2 partitions x 3 folds x 1 seed': what A ('a') or B ('b') was compared on."""
        return seeds_text(self.a_seeds if side == "a" else self.b_seeds, max(len(self.partitions), 1))

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
    of one partition only (`compare` does): a seed that predicted fewer of a subject's frames would weigh the
    subject less.
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


def fold_f1(counts: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """counts (..., S, A, 4), fold per subject (S,) -> per fold (first-seen order) the AU-mean F1 of its pooled
    counts, (F, ...): NaN where no AU has a known label (a fold with no weight in a bootstrap replicate)."""
    per_fold = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN AUs: the fold has no weight
        for f in dict.fromkeys(fold_of):
            f1 = f1_from_counts(counts[..., fold_of == f, :, :].sum(axis=-3))  # (..., A)
            per_fold.append(np.nanmean(f1, axis=-1))
    return np.stack(per_fold)


def fold_mean_f1(counts: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """counts (..., S, A, 4), fold per subject (S,) -> fold mean of the AU-mean F1, shape (...): one seed's score."""
    return np.mean(fold_f1(counts, fold_of), axis=0)


def unit_scores(counts: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """One partition: per-seed counts (R, S, A, 4) (NaN: the seed did not train the subject's fold) -> per fold
    (first-seen order) the mean over its seeds of U, each seed's AU-mean F1, (F,)."""
    u = fold_f1(counts, fold_of)  # (F, R), NaN where the seed is absent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(u, axis=1)


def table_score(counts: list[np.ndarray], fold_of: list[np.ndarray]) -> float:
    """The table's statistic: per partition (counts (R, S, A, 4) per seed, fold_of (S,)) the fold mean of the seed
    mean of U (`unit_scores`), then the mean over partitions."""
    return float(np.mean([np.mean(unit_scores(c, f)) for c, f in zip(counts, fold_of)]))


def _seed_rng(seed: int) -> np.random.Generator:
    """The seeds' own stream: the subjects' draws stay those of `default_rng(seed)` whatever the number of seeds."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


def _replicate_scores(counts: np.ndarray, w: np.ndarray, rng: np.random.Generator, fold: object) -> np.ndarray:
    """One (partition, fold): counts (R, S_f, A, 4) per seed (NaN: seed absent), subject weights w (B, S_f) -> (B,)
    per replicate the mean of U (AU-mean F1 of the weighted pooled counts) over R seeds drawn with replacement;
    NaN where the fold has no weight."""
    finite = np.isfinite(counts).all(axis=(2, 3))  # (R, S_f)
    present = finite.all(axis=1)
    if (finite.any(axis=1) & ~present).any():
        raise ValueError(f"fold {fold}: a seed has counts for some of the fold's subjects and not others")
    c = counts[present]
    if len(c) == 0:
        raise ValueError(f"fold {fold}: no seed has counts for the fold's subjects")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a fold without weight: every AU NaN
        u = np.nanmean(f1_from_counts(np.einsum("bs,rsak->brak", w, c)), axis=-1)  # (B, R_f)
    if len(c) == 1:  # nothing to draw: the subject bootstrap alone
        return u[:, 0]
    v = rng.multinomial(len(c), np.full(len(c), 1.0 / len(c)), size=len(w)) / len(c)  # (B, R_f), rows sum to 1
    return (v * u).sum(axis=1)  # a fold without weight: NaN for every seed, NaN here


def _as_partitions(counts: np.ndarray | list[np.ndarray], fold_of: np.ndarray | list[np.ndarray]) -> tuple[list, list]:
    """One partition's counts (S, A, 4) / (R, S, A, 4) and fold_of (S,), or lists of them -> lists of (R, S, A, 4)."""
    if isinstance(fold_of, np.ndarray):
        counts, fold_of = [counts], [fold_of]
    return [c[None] if c.ndim == 3 else c for c in counts], list(fold_of)


def bootstrap_difference(
    candidate: np.ndarray | list[np.ndarray], champion: np.ndarray | list[np.ndarray],
    fold_of: np.ndarray | list[np.ndarray], n_boot: int = 2000, seed: int = 0, rescaled: bool = False,
) -> np.ndarray:  # fmt: skip
    """Paired subject bootstrap, stratified by fold: (n_boot,) replicates of F1(candidate) - F1(champion).

    candidate, champion: per-subject counts (S, A, 4) over the same subjects, or per seed (R, S, A, 4) (NaN where a
    seed did not train the subject's fold; the two may have different seeds), or a list of those, one per
    partition, with fold_of a list of (S,) (the same subjects, the partition's folds); one partition: fold_of (S,).
    Per replicate: one draw of the subjects, stratified by the first partition's folds (plain, or Rao-Wu
    `rescaled`: `farm.evaluate.stats.stratified_weights`), applied to every partition and both models (paired); per
    (partition, fold) and model, a draw of its seeds with replacement (its own draw) whose U are averaged. The
    replicate is the mean over partitions of the fold mean (folds without weight left out) of U(cand) - U(champ).
    One partition, one seed per fold, plain: exactly the subject bootstrap.
    """
    (ca, fold_of), (cb, _) = _as_partitions(candidate, fold_of), _as_partitions(champion, fold_of)
    rng, seed_rng = np.random.default_rng(seed), _seed_rng(seed)
    w = stratified_weights(fold_of[0], n_boot, rng, rescaled)  # (B, S)
    per_partition = []
    for a, b, fo in zip(ca, cb, fold_of):
        diffs = []
        for f in dict.fromkeys(fo):
            idx = np.flatnonzero(fo == f)
            ua, ub = (_replicate_scores(m[:, idx], w[:, idx], seed_rng, f) for m in (a, b))  # (B,) each
            diffs.append(ua - ub)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per_partition.append(np.nanmean(diffs, axis=0))  # (B,)
    return np.mean(per_partition, axis=0)


def _per_unit_rows(preds: Predictions, keys: np.ndarray) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """(partition, seed) -> (its frame keys, sorted and unique; the row of each: the first one)."""
    out = {}
    for r, s in sorted(set(zip(preds.partition.tolist(), preds.seed.tolist()))):
        rows = np.flatnonzero((preds.partition == r) & (preds.seed == s))
        uk, first = np.unique(keys[rows], return_index=True)
        out[(int(r), int(s))] = (uk, rows[first])
    return out


def _complete_keys(preds: Predictions, per_unit: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Frame keys that every partition predicted, each by every seed of the frame's fold there (one unit: every key)."""
    if len(per_unit) == 1:
        return next(iter(per_unit.values()))[0]
    per_partition = []
    for r in sorted({r for r, _ in per_unit}):
        mine = [v for (q, _), v in per_unit.items() if q == r]
        out = []
        for f in np.unique(np.concatenate([preds.fold[rows] for _, rows in mine])):
            sets = [uk[preds.fold[rows] == f] for uk, rows in mine if (preds.fold[rows] == f).any()]
            common = sets[0]
            for s in sets[1:]:
                common = np.intersect1d(common, s)
            out.append(common)
        per_partition.append(np.unique(np.concatenate(out)))
    common = per_partition[0]
    for s in per_partition[1:]:
        common = np.intersect1d(common, s)
    return common


def _common_rows(preds: Predictions, keys: np.ndarray, common: np.ndarray, per_unit: dict) -> tuple[np.ndarray, ...]:
    """(rows of the common frames, every unit; one row per common frame in key order: its first unit's row)."""
    rows = np.concatenate([r[np.isin(uk, common)] for uk, r in per_unit.values()])
    _, first = np.unique(keys[rows], return_index=True)
    return rows, rows[first]


def _folds_of(preds: Predictions, rows: np.ndarray, subjects: np.ndarray, r: int) -> np.ndarray | None:
    """The fold of each subject in partition r (subjects' order), from `rows`; None if a subject is in two folds."""
    mine = rows[preds.partition[rows] == r]
    pairs = dict(zip(preds.subject[mine], preds.fold[mine]))
    if len(set(zip(preds.subject[mine], preds.fold[mine]))) != len(pairs):
        return None
    return np.array([pairs[s] for s in subjects], dtype=object)


def _common_frames(
    a: Predictions, b: Predictions, names: tuple[str, str], num_partitions: int
) -> str | tuple[np.ndarray, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The frames every unit of both models predicted, with (rows of every unit, one row per frame) of each model;
    or why there is none to compare on: no common frame, or labels that differ between units or models."""
    keys_a, keys_b = a.keys(), b.keys()
    units_a, units_b = _per_unit_rows(a, keys_a), _per_unit_rows(b, keys_b)
    common = np.intersect1d(_complete_keys(a, units_a), _complete_keys(b, units_b))
    if len(common) == 0:
        return "the two models share no test frame (different datasets?)"
    rows_a, ref_a = _common_rows(a, keys_a, common, units_a)
    rows_b, ref_b = _common_rows(b, keys_b, common, units_b)
    what = "seeds" if num_partitions == 1 else "partitions and seeds"
    for p, keys, rows, ref, name in ((a, keys_a, rows_a, ref_a, names[0]), (b, keys_b, rows_b, ref_b, names[1])):
        at = np.searchsorted(common, keys[rows])  # each row's frame in `common` (and in `ref`)
        differ = len(np.unique(at[(p.labels[rows] != p.labels[ref][at]).any(axis=1)]))
        if differ:
            return f"the labels of {differ} test frames differ between the {what} of {name}"
    differ = int((a.labels[ref_a] != b.labels[ref_b]).any(axis=1).sum())
    if differ:
        return f"the labels of {differ} common test frames differ (different label files or frame offsets?)"
    return common, (rows_a, ref_a), (rows_b, ref_b)


def compare(
    a: Predictions, b: Predictions, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
    names: tuple[str, str] = ("the candidate", "the champion"), interval: str = "corrected",
) -> Comparison:  # fmt: skip
    """A against B on the test frames both predicted: the difference of the table's statistic, its (1 - alpha)
    paired, subject-level bootstrap interval (`bootstrap_difference`, stratified by A's folds of the lowest
    partition; several seeds per fold resampled too; `interval`: 'corrected' or 'percentile') and the corrected
    resampled t over the (partition, fold) units. Models that detect other AUs, were tested on other subject
    partitions, split the subjects into other folds, share no frame, or disagree on the labels of a shared frame
    (or whose seeds or partitions do) are not comparable: `reason` says why. `names` name A and B in those messages."""
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; choose one of {', '.join(INTERVALS)}")

    def no(why: str) -> Comparison:
        return Comparison(f"not comparable: {why}", n_boot=n_boot, alpha=alpha, seed=seed, interval=interval)

    if a.aus != b.aus:
        return no(f"{names[0]} detects {list(a.aus)}, {names[1]} {list(b.aus)}")
    parts = tuple(sorted(int(r) for r in np.unique(a.partition)))
    if parts != tuple(sorted(int(r) for r in np.unique(b.partition))):
        return no(f"{names[0]} was tested on subject partitions {list(parts)}, {names[1]} on "
                  f"{sorted(int(r) for r in np.unique(b.partition))}")  # fmt: skip
    aligned = _common_frames(a, b, names, len(parts))
    if isinstance(aligned, str):
        return no(aligned)
    common, (rows_a, ref_a), (rows_b, _) = aligned
    subjects = np.array(sorted(set(a.subject[ref_a])), dtype=object)
    fold_of = []  # per partition: A's fold of each subject
    for r in parts:
        fa, fb = _folds_of(a, rows_a, subjects, r), _folds_of(b, rows_b, subjects, r)
        if fa is None or fb is None:
            return no(f"a subject is in two folds of partition {r} of {names[0] if fa is None else names[1]}")
        if not len(set(fa)) == len(set(fb)) == len(set(zip(fa, fb))):
            return no(f"{names[0]} and {names[1]} split the subjects of partition {r} into different folds")
        fold_of.append(fa)
    counts = [[seed_counts(p.select(rows[p.partition[rows] == r]), subjects, fo)[1] for r, fo in zip(parts, fold_of)]
              for p, rows in ((a, rows_a), (b, rows_b))]  # fmt: skip  # 2 x partitions x (R, S, A, 4)
    n_seeds = [tuple(int(np.isfinite(c[:, fo == f]).all(axis=(1, 2, 3)).sum()) for c, fo in zip(m, fold_of)
                     for f in dict.fromkeys(fo)) for m in counts]  # fmt: skip  # per (partition, fold) unit
    if min(*n_seeds[0], *n_seeds[1]) == 0:
        return no("a fold has no seed that predicted all of its common test frames")
    f1_a, f1_b = (table_score(m, fold_of) for m in counts)
    diffs = bootstrap_difference(counts[0], counts[1], fold_of, n_boot, seed, rescaled=interval == "corrected")
    low, high = bootstrap_interval(f1_a - f1_b, diffs, alpha, interval, design_df(fold_of[0]))
    units = np.concatenate([unit_scores(ca, fo) - unit_scores(cb, fo) for ca, cb, fo in zip(*counts, fold_of)])  # (J,)
    n_test = np.concatenate([[np.sum(fo == f) for f in dict.fromkeys(fo)] for fo in fold_of])  # (J,) test subjects
    t = corrected_t(units, float(np.mean(n_test / (len(subjects) - n_test))), alpha)
    return Comparison("", f1_a, f1_b, f1_a - f1_b, low, high, len(subjects), len(common), n_boot, alpha, seed,
                      tuple(str(f) for f in dict.fromkeys(fold_of[0])), n_seeds[0], n_seeds[1], interval, t.low,
                      t.high, t.p_value, len(units), parts, t.reason)  # fmt: skip


def decide(
    candidate: Predictions, champion: Predictions | None, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Decision:
    """Promote `candidate` over `champion` if the corrected bootstrap CI of the F1 difference lies above zero
    (`compare`, interval='corrected')."""
    if champion is None:
        return Decision(True, "no champion yet")
    c = compare(candidate, champion, n_boot, alpha, seed, interval="corrected")
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
        extra += f", seeds per fold resampled too: candidate {c.units_text('a')}, champion {c.units_text('b')}"
    elif len(c.partitions) > 1:
        extra += f", candidate {c.units_text('a')}, champion {c.units_text('b')}"
    return Decision(promote, reason + extra + ")", f1_c, f1_h, f1_c - f1_h, low, high, c.n_subjects, c.n_frames,
                    n_boot, alpha, seed)  # fmt: skip


def seeds_text(per_fold: tuple[int, ...], partitions: int = 1) -> str:
    """'3 folds x 2 seeds', '3 folds x 1 seed', '3 folds x 1-2 seeds' (seeds differ between folds); with several
    partitions (per_fold: the seeds of each (partition, fold) unit), '2 partitions x 3 folds x 2 seeds'."""
    lo, hi = min(per_fold, default=0), max(per_fold, default=0)
    n = f"{lo}" if lo == hi else f"{lo}-{hi}"
    folds = len(per_fold) // partitions if partitions > 1 else len(per_fold)
    head = f"{partitions} partitions x " if partitions > 1 else ""
    return f"{head}{folds} fold{'s' * (folds != 1)} x {n} seed{'s' * (hi != 1)}"
