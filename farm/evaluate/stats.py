"""Small-sample statistics for comparing two cross-validated models (NumPy, and SciPy's t distribution).

Cross-validation on a face dataset has few independent units: the subjects (a dozen to a few dozen, split
into 3 folds), and the folds of a few subject partitions. Two corrections follow from that.

- The subject bootstrap (`stratified_weights`, `bootstrap_interval`). The plain stratified bootstrap draws
  the n_h subjects of stratum (fold) h with replacement; its variance of a stratum mean is (n_h - 1) / n_h
  of the unbiased one (3/4 with 4 subjects a fold), and its percentile interval also ignores that this
  variance is estimated from only n - H degrees of freedom (n subjects, H strata). The 'corrected' interval
  fixes both: the rescaled bootstrap of Rao and Wu (1988) draws n_h - 1 subjects of each stratum and scales
  their counts by n_h / (n_h - 1) (so a linear statistic's replicate variance is the unbiased stratified
  one), and the interval is the observed difference +- t(1 - alpha/2, n - H) x the replicates' SD, the
  design degrees of freedom of a stratified cluster sample (Korn and Graubard 1990). The 'percentile'
  interval (the plain bootstrap's quantiles) stays selectable; tests/evaluate/test_stats.py measures the
  coverage of both on a simulation with a known truth.
- The repeated cross-validation t (`corrected_t`): the J unit differences of a repeated CV are correlated
  (their training sets overlap, and every partition tests the same subjects), so the naive variance s^2 / J
  is far too small. Nadeau and Bengio (2003) scale it to (1/J + n_test/n_train) s^2, with J - 1 degrees of
  freedom. It is a heuristic: it covers when the correlation comes mostly from the test subjects and
  training-set effects independent of them (the simulation in the tests), and can be too narrow when a
  subject's effect on the models it trains and on its own test score go the same way.
- `holm`: Holm's (1979) step-down adjustment of several p-values (AMF against each baseline).

References: J.N.K. Rao and C.F.J. Wu, Resampling inference with complex survey data, JASA 83 (1988)
231-241; E.L. Korn and B.I. Graubard, Simultaneous testing of regression coefficients with complex survey
data: use of Bonferroni t statistics, The American Statistician 44 (1990) 270-276; C. Nadeau and
Y. Bengio, Inference for the generalization error, Machine Learning 52 (2003) 239-281; S. Holm, A simple
sequentially rejective multiple test procedure, Scandinavian Journal of Statistics 6 (1979) 65-70.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.stats import t as student_t

INTERVALS = ("corrected", "percentile")


def stratified_weights(strata: np.ndarray, n_boot: int, rng: np.random.Generator, rescaled: bool) -> np.ndarray:
    """Subject weights of n_boot bootstrap replicates, (n_boot, S): per stratum (first-seen order, one multinomial
    draw each), n_h subjects drawn with replacement (plain) or n_h - 1 scaled by n_h / (n_h - 1) (Rao-Wu rescaled).
    Every replicate's weights of a stratum sum to n_h. A stratum of one subject keeps weight 1 under the rescaled
    bootstrap (nothing to draw: it adds no variance, and no degree of freedom)."""
    w = np.ones((n_boot, len(strata)))
    for h in dict.fromkeys(strata):
        idx = np.flatnonzero(strata == h)
        n = len(idx)
        m = n - 1 if rescaled else n
        if m >= 1:
            w[:, idx] = rng.multinomial(m, np.full(n, 1.0 / n), size=n_boot) * (n / m)  # (B, n_h)
    return w


def design_df(strata: np.ndarray) -> int:
    """Degrees of freedom of a stratified cluster sample: clusters (subjects) - strata (folds)."""
    return len(strata) - len(set(strata))


def bootstrap_interval(
    observed: float, replicates: np.ndarray, alpha: float, interval: str, df: int
) -> tuple[float, float]:
    """The (1 - alpha) interval: 'percentile' (the replicates' alpha/2 and 1 - alpha/2 quantiles) or 'corrected'
    (observed +- t(1 - alpha/2, df) x the replicates' SD, ddof=1; NaN when df < 1: no variance to scale)."""
    if interval == "percentile":
        low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
        return float(low), float(high)
    if interval != "corrected":
        raise ValueError(f"unknown interval {interval!r}; choose one of {', '.join(INTERVALS)}")
    if df < 1 or len(replicates) < 2:
        return math.nan, math.nan
    half = float(student_t.ppf(1 - alpha / 2, df)) * float(np.std(replicates, ddof=1))
    return observed - half, observed + half


class CorrectedT(NamedTuple):
    """The Nadeau-Bengio corrected resampled t over J paired unit differences."""

    mean: float
    low: float
    high: float
    p_value: float
    """Two-sided, H0: the expected difference is zero."""
    df: int
    """J - 1."""
    reason: str = ""
    """'' when the interval exists; otherwise why it is NaN (fewer than 2 units, or no variance)."""


def corrected_t(diffs: np.ndarray, test_train_ratio: float, alpha: float = 0.05) -> CorrectedT:
    """Mean of the J unit differences d_j, its (1 - alpha) interval and two-sided p-value with the variance
    (1/J + test_train_ratio) x s^2 (s^2: the sample variance, ddof=1) and a t distribution with J - 1 degrees of
    freedom (Nadeau and Bengio 2003). test_train_ratio = 0 gives the naive t (variance s^2 / J)."""
    d = np.asarray(diffs, dtype=np.float64)  # (J,)
    j = len(d)
    mean = float(d.mean()) if j else math.nan
    if j < 2:
        return CorrectedT(mean, math.nan, math.nan, math.nan, 0, f"{j} unit{'s' * (j != 1)}: no t interval")
    var = float(d.var(ddof=1))
    if not var > 0:
        return CorrectedT(mean, math.nan, math.nan, math.nan, j - 1,
                          f"the {j} unit differences are all equal: no variance, no t interval")  # fmt: skip
    se = math.sqrt((1 / j + test_train_ratio) * var)
    half = float(student_t.ppf(1 - alpha / 2, j - 1)) * se
    p = float(2 * student_t.sf(abs(mean) / se, j - 1))
    return CorrectedT(mean, mean - half, mean + half, p, j - 1)


def holm(pvalues: np.ndarray | list[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order: the k-th smallest of m (k = 1..m) becomes
    max over i <= k of min(1, (m - i + 1) p_(i)) (monotone in p, capped at 1). NaN p-values (no test) stay NaN
    and do not count in m."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]  # ascending
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out
