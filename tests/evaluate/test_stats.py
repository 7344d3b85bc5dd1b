"""Small-sample statistics: Holm's adjustment, the corrected resampled t, and the coverage of both intervals on
simulations with a known truth (seeded, deterministic; `pytest -s` prints the coverages)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from farm.evaluate.promotion import bootstrap_difference, fold_mean_f1
from farm.evaluate.stats import bootstrap_interval, corrected_t, design_df, holm, stratified_weights
from farm.metrics import f1_from_counts

# ---------------------------------------------------------------------------------------------
# Holm


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4) -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(1 x 0.04, 0.06): monotone
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.array_equal(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    out = holm([0.01, float("nan"), 0.02])  # no test: NaN, and not counted in m
    assert math.isnan(out[1]) and np.allclose(out[[0, 2]], [0.02, 0.02])
    assert holm([]).shape == (0,)


def holm_rejects(p, alpha):
    """Holm's procedure as he states it: walk the sorted p-values, reject while p_(k) <= alpha / (m - k + 1)."""
    order, m, out = np.argsort(p), len(p), set()
    for k, i in enumerate(order):
        if p[i] > alpha / (m - k):
            break
        out.add(int(i))
    return out


def test_holm_adjusted_p_values_reject_what_the_sequential_procedure_rejects():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.random(rng.integers(1, 8)) ** 3  # many small ones
        adj = holm(p)
        assert np.all(adj >= p) and np.all(adj <= 1)
        for alpha in (0.01, 0.05, 0.1):
            assert set(np.flatnonzero(adj <= alpha).tolist()) == holm_rejects(p, alpha)


# ---------------------------------------------------------------------------------------------
# the corrected resampled t


def test_corrected_t_by_hand_and_against_scipy():
    d = np.array([0.01, 0.03, 0.02, 0.04])  # mean 0.025, sample variance 0.0005 / 3
    t = corrected_t(d, 0.5, alpha=0.05)
    se = math.sqrt((1 / 4 + 0.5) * 0.0005 / 3)
    assert t.mean == pytest.approx(0.025) and t.df == 3 and t.reason == ""
    assert (t.low, t.high) == pytest.approx((0.025 - 3.182446305 * se, 0.025 + 3.182446305 * se))
    assert t.p_value == pytest.approx(2 * sps.t.sf(0.025 / se, 3))
    naive = corrected_t(d, 0.0)  # test_train_ratio 0: the one-sample t test
    ref = sps.ttest_1samp(d, 0.0)
    assert naive.p_value == pytest.approx(ref.pvalue) and naive.high - naive.low < t.high - t.low
    low, high = ref.confidence_interval(0.95)
    assert (naive.low, naive.high) == pytest.approx((low, high))


def test_corrected_t_says_why_it_has_no_interval():
    one = corrected_t(np.array([0.02]), 0.5)
    assert one.mean == 0.02 and math.isnan(one.low) and math.isnan(one.p_value) and "1 unit" in one.reason
    flat = corrected_t(np.zeros(6), 0.5)
    assert flat.mean == 0 and math.isnan(flat.high) and flat.df == 5 and "no variance" in flat.reason


def test_bootstrap_weights_and_interval():
    strata = np.array(["P1"] * 4 + ["P2"] * 3 + ["P3"], dtype=object)
    rng = np.random.default_rng(0)
    plain, rescaled = stratified_weights(strata, 500, rng, False), stratified_weights(strata, 500, rng, True)
    for w in (plain, rescaled):  # every replicate keeps each stratum's size
        assert np.allclose([w[:, strata == h].sum(axis=1) for h in ("P1", "P2", "P3")], [[4], [3], [1]])
    assert set(np.unique(rescaled[:, :4])) <= {0, 4 / 3, 8 / 3, 4} and np.all(rescaled[:, 7] == 1)
    assert (rescaled[:, :4] == 0).any(axis=1).all()  # n_h - 1 draws: a subject of P1 is left out every time
    assert design_df(strata) == 5
    reps = np.random.default_rng(1).normal(0.1, 0.02, 1000)
    low, high = bootstrap_interval(0.12, reps, 0.05, "corrected", 5)
    assert (low + high) / 2 == pytest.approx(0.12) and (high - low) / 2 == pytest.approx(
        sps.t.ppf(0.975, 5) * reps.std(ddof=1))  # fmt: skip
    assert bootstrap_interval(0.12, reps, 0.05, "percentile", 5) == tuple(np.quantile(reps, [0.025, 0.975]))
    assert all(math.isnan(v) for v in bootstrap_interval(0.12, reps, 0.05, "corrected", 0))
    with pytest.raises(ValueError, match="unknown interval"):
        bootstrap_interval(0.12, reps, 0.05, "bca", 5)


# ---------------------------------------------------------------------------------------------
# coverage on simulations with a known truth


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_the_corrected_bootstrap_covers_the_truth_and_the_plain_percentile_does_less():
    """A population of 20000 subjects, each with its own per-AU base rate and, for two fixed models, its own
    true- and false-positive rates (a shared difficulty plus a model-specific part, so the gain varies by
    subject). The truth is the statistic on the whole population with expected counts (per AU F1 of the pooled
    expected counts, AU mean; every fold of an infinite sample gives it). Each repetition draws 12 subjects
    (3 folds x 4, the synthetic set's size) and 300 frames each, and asks whether the 95% interval holds the
    truth."""
    rng = np.random.default_rng(0)
    n, aus, frames, reps = 20000, 4, 300, 300
    base = _sigmoid(rng.normal(-0.8, 0.8, (n, aus)))  # (N, A) P(AU present)
    hard_tp, hard_fp = rng.normal(0, 0.7, (2, n, aus))  # subject difficulty, shared by both models
    own = lambda: rng.normal(0, 0.5, (n, aus))  # noqa: E731  # a model's own part: the gain varies by subject
    rates = [(_sigmoid(tp + hard_tp + own()), _sigmoid(fp + hard_fp + own())) for tp, fp in ((1.2, -1.8), (1.0, -1.6))]
    # model A, model B: (TPR, FPR), (N, A) each

    def expected(tpr, fpr):  # (N, A, 4) expected [tp, fp, fn, tn] per frame
        return np.stack([base * tpr, (1 - base) * fpr, base * (1 - tpr), (1 - base) * (1 - fpr)], -1)

    truth = float(np.nanmean(f1_from_counts(expected(*rates[0]).sum(0)))
                  - np.nanmean(f1_from_counts(expected(*rates[1]).sum(0))))  # fmt: skip
    fold_of = np.repeat(["P1", "P2", "P3"], 4).astype(object)
    covered = {"corrected": 0, "percentile": 0}
    for k in range(reps):
        idx = rng.choice(n, 12, replace=False)
        pos = rng.binomial(frames, base[idx])  # (12, A) labels shared by both models
        counts = []
        for tpr, fpr in rates:
            tp, fp = rng.binomial(pos, tpr[idx]), rng.binomial(frames - pos, fpr[idx])
            counts.append(np.stack([tp, fp, pos - tp, frames - pos - fp], -1).astype(np.float64))  # (12, A, 4)
        observed = float(fold_mean_f1(counts[0], fold_of) - fold_mean_f1(counts[1], fold_of))
        for interval in covered:
            diffs = bootstrap_difference(*counts, fold_of, n_boot=400, seed=k, rescaled=interval == "corrected")
            low, high = bootstrap_interval(observed, diffs, 0.05, interval, design_df(fold_of))
            covered[interval] += low <= truth <= high
    coverage = {k: v / reps for k, v in covered.items()}
    print(f"\nbootstrap coverage at nominal 95% over {reps} repetitions (3 folds x 4 subjects): {coverage}")
    assert coverage["corrected"] >= 0.90 and coverage["percentile"] < coverage["corrected"]


def test_the_corrected_t_covers_the_truth_and_the_naive_t_does_less():
    """Repeated 3-fold CV of 12 subjects over 3 partitions. Subject i has a test effect e_i (how much more A gains
    than B on i's frames) and a training effect g_i (how much training on i helps A more than B), both drawn anew
    each repetition; a unit's difference is delta + mean of its test subjects' e + mean of its training subjects'
    g + noise. The units are correlated (the same subjects in every partition, overlapping training sets); the
    truth is delta."""
    rng = np.random.default_rng(1)
    delta, reps, partitions = 0.02, 400, 3
    covered = {"corrected": 0, "naive": 0}
    for _ in range(reps):
        e, g = rng.normal(0, 0.03, (2, 12))
        d = []
        for _ in range(partitions):
            folds = rng.permutation(12).reshape(3, 4)  # one subject-exclusive 3-way split
            for test in folds:
                train = np.setdiff1d(np.arange(12), test)
                d.append(delta + e[test].mean() + g[train].mean() + rng.normal(0, 0.01))
        for name, ratio in (("corrected", 4 / 8), ("naive", 0.0)):
            t = corrected_t(np.array(d), ratio, 0.05)
            covered[name] += t.low <= delta <= t.high
    coverage = {k: v / reps for k, v in covered.items()}
    print(f"\nt coverage at nominal 95% over {reps} repetitions ({partitions} partitions x 3 folds): {coverage}")
    assert coverage["corrected"] >= 0.90 and coverage["naive"] < coverage["corrected"]
