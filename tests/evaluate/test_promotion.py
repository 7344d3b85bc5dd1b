"""The champion decision: paired subject-level bootstrap of the fold-mean F1 difference (pure NumPy)."""

import dataclasses
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from farm.checkpoints import Predictions, predictions_table
from farm.evaluate.promotion import (
    bootstrap_difference,
    compare,
    decide,
    fold_mean_f1,
    seed_counts,
    seeds_text,
    subject_counts,
)
from farm.evaluate.stats import bootstrap_interval, corrected_t, stratified_weights
from farm.metrics import au_counts, f1_from_counts, summarize

AUS = ("AU1", "AU2", "AU4", "AU6")


def labels_for(subjects=24, frames=60, seed=0):
    rng = np.random.default_rng(seed)
    subj = np.repeat([f"S{i:02d}" for i in range(subjects)], frames)
    fold = np.repeat([f"P{i % 3 + 1}" for i in range(subjects)], frames)
    labels = (rng.random((len(subj), len(AUS))) < 0.35).astype(np.int8)
    labels[rng.random(labels.shape) < 0.03] = -1  # unknown labels (BP4D's 9)
    return subj, fold, labels


def model(subj, fold, labels, error_rate, seed):
    """Predictions that flip each known label with probability `error_rate`."""
    rng = np.random.default_rng(seed)
    truth = labels == 1
    flip = rng.random(labels.shape) < error_rate
    probs = np.where(truth ^ flip, 0.8, 0.2).astype(np.float32)
    n = len(subj)
    return Predictions(subj.astype(object), np.full(n, "T1", object), np.tile(np.arange(60), n // 60), fold.astype(object),
                       probs, labels, AUS)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return labels_for()


def test_no_champion_promotes(data):
    d = decide(model(*data, 0.3, seed=1), None)
    assert d.promote and d.reason == "no champion yet"


def test_clear_win_promotes_and_the_statistic_is_the_fold_mean_f1(data):
    good, bad = model(*data, 0.1, seed=1), model(*data, 0.4, seed=2)
    d = decide(good, bad, n_boot=500)
    assert d.promote and d.ci_low > 0 and "better" in d.reason
    # the observed statistic = mean over folds of the AU-mean F1 on each fold's frames (the paper's number)
    per_fold = [summarize(au_counts(good.probs[good.fold == f], good.labels[good.fold == f]), AUS)["f1_mean"]
                for f in ("P1", "P2", "P3")]  # fmt: skip
    assert d.candidate_f1 == pytest.approx(np.mean(per_fold), abs=1e-12)
    assert d.n_subjects == 24 and d.n_frames == len(good.subject)


def test_clear_loss_keeps_the_champion(data):
    d = decide(model(*data, 0.4, seed=1), model(*data, 0.1, seed=2), n_boot=500)
    assert not d.promote and d.ci_high < 0 and "worse" in d.reason


def test_overlap_keeps_the_champion(data):
    # two models of the same quality: the interval straddles zero
    d = decide(model(*data, 0.25, seed=1), model(*data, 0.25, seed=2), n_boot=500)
    assert not d.promote and d.ci_low < 0 < d.ci_high and "no clear difference" in d.reason


def test_a_gain_carried_by_one_subject_is_not_enough():
    # Frames of a subject are correlated: a big gain on one subject of six is not evidence about new subjects.
    # A frame-level bootstrap would call this significant; the subject-level one must not.
    few = labels_for(subjects=6, frames=60, seed=3)
    champion = model(*few, 0.3, seed=2)
    candidate = champion.select(np.arange(len(champion.subject)))
    one = candidate.subject == "S00"
    candidate.probs = candidate.probs.copy()
    candidate.probs[one] = np.where(candidate.labels[one] == 1, 0.9, 0.1)  # perfect on S00, identical elsewhere
    d = decide(candidate, champion, n_boot=500)
    assert d.difference > 0.02 and not d.promote and d.ci_low <= 0


def test_bootstrap_is_paired_and_seeded(data):
    a = model(*data, 0.2, seed=1)
    subjects = np.array(sorted(set(a.subject)), dtype=object)
    fold_of = np.array([a.fold[a.subject == s][0] for s in subjects], dtype=object)
    counts = subject_counts(a, subjects)
    # the model against itself: every paired replicate is exactly zero
    assert np.all(bootstrap_difference(counts, counts, fold_of, n_boot=50) == 0)
    b = subject_counts(model(*data, 0.3, seed=2), subjects)
    r1 = bootstrap_difference(counts, b, fold_of, n_boot=50, seed=7)
    assert np.array_equal(r1, bootstrap_difference(counts, b, fold_of, n_boot=50, seed=7))
    assert fold_mean_f1(counts, fold_of) > fold_mean_f1(b, fold_of)


def test_only_common_frames_are_compared(data):
    a, b = model(*data, 0.1, seed=1), model(*data, 0.4, seed=2)
    half = b.select(np.flatnonzero(np.isin(b.subject, [f"S{i:02d}" for i in range(12)])))
    d = decide(a, half, n_boot=200)
    assert d.n_subjects == 12 and d.n_frames == len(half.subject)


def test_incomparable_models_are_not_promoted(data):
    a, b = model(*data, 0.1, seed=1), model(*data, 0.4, seed=2)
    other = Predictions(np.array(["X"] * 3, object), np.array(["T1"] * 3, object), np.arange(3),
                        np.array(["P1"] * 3, object), np.zeros((3, 4), np.float32), np.zeros((3, 4), np.int8), AUS)  # fmt: skip
    assert "share no test frame" in decide(a, other).reason and not decide(a, other).promote
    relabelled = b.select(np.arange(len(b.subject)))
    relabelled.labels = np.where(relabelled.labels == 1, 0, 1).astype(np.int8)
    d = decide(a, relabelled)
    assert not d.promote and "labels of" in d.reason


# ---------------------------------------------------------------------------------------------
# several seeds per fold, and the function `farm report` shares with `farm promote`


def subject_bootstrap_before_seeds(candidate, champion, fold_of, n_boot, seed):
    """The bootstrap as it was before seeds (a verbatim copy): one seed must reproduce it exactly."""
    rng = np.random.default_rng(seed)
    diffs = []
    for f in dict.fromkeys(fold_of):
        idx = np.flatnonzero(fold_of == f)
        w = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=n_boot).astype(np.float64)
        both = np.stack([candidate[idx], champion[idx]])
        f1 = f1_from_counts(np.einsum("bs,msak->mbak", w, both))
        diffs.append(np.nanmean(f1[0], axis=-1) - np.nanmean(f1[1], axis=-1))
    return np.mean(diffs, axis=0)


def seeded(*parts):
    """One Predictions holding each part's rows with seed 0, 1, ... (the same frames once per seed)."""
    cols = {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("subject", "task", "frame", "fold", "probs",
                                                                         "labels")}  # fmt: skip
    seed = np.concatenate([np.full(len(p.subject), i) for i, p in enumerate(parts)])
    return Predictions(**cols, aus=parts[0].aus, seed=seed)


def counts_of(p):
    subjects = np.array(sorted(set(p.subject)), dtype=object)
    fold_of = np.array([p.fold[p.subject == s][0] for s in subjects], dtype=object)
    return subjects, fold_of


def test_one_seed_reduces_exactly_to_the_subject_bootstrap(data):
    a, b = model(*data, 0.2, seed=1), model(*data, 0.3, seed=2)
    subjects, fold_of = counts_of(a)
    ca, cb = subject_counts(a, subjects), subject_counts(b, subjects)
    before = subject_bootstrap_before_seeds(ca, cb, fold_of, 300, 5)
    assert np.array_equal(bootstrap_difference(ca, cb, fold_of, 300, 5), before)
    (_, sa), (_, sb) = seed_counts(a, subjects, fold_of), seed_counts(b, subjects, fold_of)  # (1, S, A, 4) each
    assert sa.shape == (1, *ca.shape) and np.array_equal(bootstrap_difference(sa, sb, fold_of, 300, 5), before)
    c = compare(a, b, n_boot=300, seed=5, interval="percentile")
    assert (c.ci_low, c.ci_high) == tuple(np.quantile(before, [0.025, 0.975])) and c.interval == "percentile"
    # farm promote decides on the corrected interval (Rao-Wu rescaled subject draws, a t quantile): wider here
    d, corrected = decide(a, b, n_boot=300, seed=5), compare(a, b, n_boot=300, seed=5)
    assert (d.ci_low, d.ci_high) == (corrected.ci_low, corrected.ci_high) and corrected.interval == "corrected"
    assert d.ci_high - d.ci_low > c.ci_high - c.ci_low and d.difference == c.difference
    assert d.reason.endswith(f"(compared on {len(a.subject)} common frames of 24 subjects, 300 subject resamples)")


def test_identical_seeds_change_nothing_and_different_seeds_widen_the_interval(data):
    a0, a1, b = model(*data, 0.1, seed=1), model(*data, 0.35, seed=3), model(*data, 0.2, seed=2)
    one = compare(a0, b, n_boot=400, seed=4)
    twice = compare(seeded(a0, a0), b, n_boot=400, seed=4)  # two seeds that predict alike: nothing to resample
    assert (twice.ci_low, twice.ci_high, twice.difference) == (one.ci_low, one.ci_high, one.difference)
    assert twice.a_seeds == (2, 2, 2) and twice.b_seeds == (1, 1, 1) and twice.n_frames == len(a0.subject)
    two = compare(seeded(a0, a1), b, n_boot=400, seed=4, interval="percentile")
    # the table's statistic: each seed's fold-mean F1, then the mean over seeds (not the F1 of the seeds' mean counts)
    subjects, fold_of = counts_of(a0)
    f1_a0, f1_a1, f1_b = (fold_mean_f1(subject_counts(p, subjects), fold_of) for p in (a0, a1, b))
    assert two.a_f1 == pytest.approx((f1_a0 + f1_a1) / 2, abs=1e-12) and two.b_f1 == one.b_f1 == f1_b
    pooled = fold_mean_f1((subject_counts(a0, subjects) + subject_counts(a1, subjects)) / 2, fold_of)
    assert abs(pooled - two.a_f1) > 1e-3  # the two statistics differ here: the test tells them apart
    # with the same subject draws, a fixed A (seed 0 alone) against the resampled seeds: the seeds' spread widens it
    alone = compare(a0, b, n_boot=400, seed=4, interval="percentile")
    assert two.ci_high - two.ci_low > 1.5 * (alone.ci_high - alone.ci_low)
    assert two.ci_low < two.difference < two.ci_high


def test_seeds_are_drawn_per_fold_and_per_model():
    counts = np.zeros((2, 4, 1, 4))
    counts[0, :, 0] = [9, 1, 1, 9]  # seed 0: F1 0.9 on every subject
    counts[1, :, 0] = [1, 9, 9, 1]  # seed 1: F1 0.1
    fold_of = np.array(["P1", "P1", "P2", "P2"], dtype=object)
    reps = bootstrap_difference(counts, counts[:1], fold_of, n_boot=2000, seed=0)  # (2 seeds) - (seed 0)
    # per fold the drawn pair is (0, 0), (0, 1) or (1, 1): F1 0.9, 0.5, 0.1; the fold mean of two folds' draws
    assert set(np.round(reps, 6)) <= {0.0, -0.2, -0.4, -0.6, -0.8}
    assert np.mean(np.isclose(reps, 0.0)) == pytest.approx(1 / 16, abs=0.02)  # both folds draw (0, 0)
    assert np.mean(np.isclose(reps, -0.4)) == pytest.approx(6 / 16, abs=0.03)


def test_a_seed_that_missed_frames_leaves_them_out_and_inconsistent_seeds_are_not_comparable(data):
    a0, a1, b = model(*data, 0.1, seed=1), model(*data, 0.2, seed=3), model(*data, 0.3, seed=2)
    partial = a1.select(np.flatnonzero(a1.subject != "S00"))  # seed 1 of S00's fold lacks S00's frames
    c = compare(seeded(a0, partial), b, n_boot=100)
    assert c.comparable and c.n_subjects == 23 and c.n_frames == len(a0.subject) - 60
    relabelled = dataclasses.replace(a1, labels=np.where(a1.labels == 1, 0, a1.labels).astype(np.int8))
    c = compare(seeded(a0, relabelled), b, n_boot=100, names=("AMF", "late fusion"))
    assert not c.comparable and c.reason.startswith("not comparable: the labels of ") and "seeds of AMF" in c.reason
    assert c.winner == "" and seeds_text((2, 2, 1)) == "3 folds x 1-2 seeds" and seeds_text((1,)) == "1 fold x 1 seed"


def test_compare_names_the_models_and_gives_the_winner(data):
    good, bad = model(*data, 0.1, seed=1), model(*data, 0.4, seed=2)
    assert compare(good, bad, n_boot=200).winner == "a" and compare(bad, good, n_boot=200).winner == "b"
    same = compare(good, good, n_boot=200)
    assert same.comparable and same.winner == "" and (same.ci_low, same.difference, same.ci_high) == (0, 0, 0)
    fewer = dataclasses.replace(bad, aus=("AU1", "AU2", "AU4", "AU7"))
    assert compare(good, fewer, names=("AMF", "late fusion")).reason == (
        "not comparable: AMF detects ['AU1', 'AU2', 'AU4', 'AU6'], late fusion ['AU1', 'AU2', 'AU4', 'AU7']"
    )


def test_predictions_carry_their_seed_and_files_without_it_read_as_seed_0(data, tmp_path):
    p = model(*data, 0.2, seed=1)
    old = predictions_table(p.subject, p.task, p.frame, p.probs, p.labels, p.aus, p.fold)  # as the engine writes
    assert "seed" not in old.column_names
    pq.write_table(old, tmp_path / "old.parquet")
    back = Predictions.read([tmp_path / "old.parquet"])
    assert back.seed.dtype == np.int64 and not back.seed.any() and np.array_equal(back.probs, p.probs)
    two = seeded(p, p)
    pq.write_table(two.to_table(), tmp_path / "two.parquet")
    back = Predictions.read([tmp_path / "two.parquet"])
    assert np.array_equal(back.seed, two.seed) and np.array_equal(back.select(np.array([0, len(p.subject)])).seed,
                                                                  [0, 1])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# repeated subject partitions: units (partition, fold, seed), the table's statistic, the corrected t


def partitioned(error, labels, subj, frames, folds_by_partition, seeds=(0, 1), aus=AUS):
    """One method's predictions over every (partition, fold, seed) unit: each unit flips each known label with its own
    probability error[partition][seed] + a fold offset (so units differ)."""
    parts = []
    for r, fold_of in enumerate(folds_by_partition):
        for s in seeds:
            fold = np.array([fold_of[x] for x in subj], dtype=object)
            rate = error[r][s] + np.array([{"P1": 0.0, "P2": 0.05, "P3": 0.1}[f] for f in fold])[:, None]
            flip = np.random.default_rng([r, s, int(100 * error[r][s])]).random(labels.shape) < rate
            probs = np.where((labels == 1) ^ flip, 0.8, 0.2).astype(np.float32)
            parts.append(Predictions(subj.astype(object), np.full(len(subj), "T1", object), frames, fold, probs,
                                     labels, aus, np.full(len(subj), s), np.full(len(subj), r)))  # fmt: skip
    cols = {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("subject", "task", "frame", "fold", "probs",
                                                                         "labels", "seed", "partition")}  # fmt: skip
    return Predictions(**cols, aus=aus)


def table_number(p):
    """The table's statistic, independently: per unit, per AU sklearn's F1 on the unit's known labels (an AU with none
    left out); AU mean; mean over seeds, then folds, then partitions. Also the seed means per (partition, fold)."""
    from sklearn.metrics import f1_score

    per_unit = {}
    for r, f, s in sorted(set(zip(p.partition, p.fold, p.seed))):
        rows = (p.partition == r) & (p.fold == f) & (p.seed == s)
        f1 = [f1_score(p.labels[rows, j][k], p.probs[rows, j][k] >= 0.5, zero_division=0)
              for j in range(len(p.aus)) if (k := p.labels[rows, j] >= 0).any()]  # fmt: skip
        per_unit.setdefault((r, f), []).append(np.mean(f1))
    folds = {rf: np.mean(v) for rf, v in per_unit.items()}
    return np.mean([np.mean([v for (q, _), v in folds.items() if q == r]) for r in sorted(set(p.partition))]), folds


@pytest.fixture(scope="module")
def two_partitions():
    """12 subjects x 40 frames; partition 0 deals them round-robin into P1-P3, partition 1 is another split. AU4 is
    unknown on every frame of partition 0's P1 (its F1 left out of that unit)."""
    rng = np.random.default_rng(9)
    subj = np.repeat([f"S{i:02d}" for i in range(12)], 40)
    labels = (rng.random((len(subj), len(AUS))) < 0.35).astype(np.int8)
    labels[np.isin(subj, ["S00", "S03", "S06", "S09"]), 2] = -1
    folds = [{f"S{i:02d}": f"P{i % 3 + 1}" for i in range(12)},
             {f"S{i:02d}": f"P{j // 4 + 1}" for j, i in enumerate([3, 7, 11, 0, 4, 8, 1, 2, 5, 9, 6, 10])}]  # fmt: skip
    frames = np.tile(np.arange(40), 12)
    a = partitioned([[0.1, 0.2], [0.15, 0.12]], labels, subj, frames, folds)
    b = partitioned([[0.25, 0.3], [0.2, 0.35]], labels, subj, frames, folds)
    return a, b, folds


def test_partitions_compare_the_tables_statistic(two_partitions):
    a, b, folds = two_partitions
    (table_a, units_a), (table_b, units_b) = table_number(a), table_number(b)
    c = compare(a, b, n_boot=300, seed=3)
    assert c.comparable and c.partitions == (0, 1) and c.n_units == 6 and c.a_seeds == c.b_seeds == (2,) * 6
    assert c.a_f1 == pytest.approx(table_a, abs=1e-12) and c.b_f1 == pytest.approx(table_b, abs=1e-12)
    assert c.difference == pytest.approx(table_a - table_b, abs=1e-12) and c.n_subjects == 12 and c.n_frames == 480
    assert c.folds == ("P1", "P2", "P3") and c.units_text("a") == "2 partitions x 3 folds x 2 seeds"
    # the corrected t over the 6 (partition, fold) seed-mean differences, n_test / n_train = 4 / 8
    t = corrected_t(np.array([units_a[u] - units_b[u] for u in sorted(units_a)]), 0.5, 0.05)
    assert (c.t_low, c.t_high, c.p_value) == pytest.approx((t.low, t.high, t.p_value), abs=1e-12)
    assert c.t_low < c.difference < c.t_high and c.t_reason == "" and c.significant() == (c.p_value < 0.05)
    assert not c.significant(p_adjusted=1.0) and c.significant(p_adjusted=0.001)
    # the bootstrap: the same subject draws for both partitions (stratified by partition 0's folds)
    subjects = np.array(sorted(set(a.subject)), dtype=object)
    fold_of = [np.array([f[s] for s in subjects], dtype=object) for f in folds]
    counts = [[seed_counts(p.select(np.flatnonzero(p.partition == r)), subjects, fold_of[r])[1] for r in (0, 1)]
              for p in (a, b)]  # fmt: skip
    reps = bootstrap_difference(*counts, fold_of, n_boot=300, seed=3, rescaled=True)
    assert (c.ci_low, c.ci_high) == bootstrap_interval(c.difference, reps, 0.05, "corrected", 12 - 3)
    assert c.interval == "corrected" and c.ci_low < c.difference < c.ci_high
    flat = compare(a, b, n_boot=300, seed=3, interval="percentile")
    assert flat.difference == c.difference and flat.ci_high - flat.ci_low < c.ci_high - c.ci_low
    d = decide(a, b, n_boot=300, seed=3)
    assert (d.ci_low, d.ci_high) == (c.ci_low, c.ci_high) and "candidate 2 partitions x 3 folds x 2 seeds" in d.reason


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")  # the reference's folds without weight
def test_a_fold_of_another_partition_without_weight_is_left_out_of_that_replicate():
    # 6 subjects: partition 0 folds {0, 1}, {2, 3}, {4, 5}; partition 1 folds {0, 2}, {1, 4}, {3, 5}. The rescaled
    # bootstrap draws 1 subject of 2 per stratum: partition 1's fold {0, 2} has no weight in about 1 replicate of 4
    p0 = np.array(["P1", "P1", "P2", "P2", "P3", "P3"], dtype=object)
    p1 = np.array(["P1", "P2", "P1", "P3", "P2", "P3"], dtype=object)
    rng = np.random.default_rng(0)
    ca, cb = (rng.integers(1, 30, (2, 6, 2, 4)).astype(np.float64) for _ in range(2))  # (partition, S, A, 4)
    w = stratified_weights(p0, 400, np.random.default_rng(5), True)  # the draws bootstrap_difference makes
    empty = w[:, [0, 2]].sum(axis=1) == 0
    assert 40 < empty.sum() < 200
    reps = bootstrap_difference([ca[0], ca[1]], [cb[0], cb[1]], [p0, p1], n_boot=400, seed=5, rescaled=True)
    assert np.isfinite(reps).all()
    # in those replicates partition 1's mean is over its other two folds
    u = lambda c, idx: np.nanmean(f1_from_counts(np.einsum("bs,sak->bak", w[:, idx], c[idx])), axis=-1)  # noqa: E731
    part0 = np.mean([u(ca[0], i) - u(cb[0], i) for i in ([0, 1], [2, 3], [4, 5])], axis=0)
    part1 = np.mean([u(ca[1], i) - u(cb[1], i) for i in ([1, 4], [3, 5])], axis=0)
    assert np.allclose(reps[empty], ((part0 + part1) / 2)[empty], atol=1e-12)


def test_methods_on_other_partitions_or_folds_are_not_comparable(two_partitions):
    a, b, _ = two_partitions
    only0 = b.select(np.flatnonzero(b.partition == 0))
    c = compare(a, only0, names=("AMF", "late fusion"))
    assert c.reason == "not comparable: AMF was tested on subject partitions [0, 1], late fusion on [0]"
    regrouped = dataclasses.replace(only0, fold=np.where(only0.subject == "S00", "P2", only0.fold))
    c = compare(a.select(np.flatnonzero(a.partition == 0)), regrouped, names=("AMF", "late fusion"))
    assert not c.comparable and "split the subjects of partition 0 into different folds" in c.reason
    renamed = dataclasses.replace(only0, fold=np.array([{"P1": "F1", "P2": "F2", "P3": "F3"}[f] for f in only0.fold],
                                                       dtype=object))  # fmt: skip
    assert compare(a.select(np.flatnonzero(a.partition == 0)), renamed, n_boot=50).comparable  # the same grouping
    relabelled = a.select(np.arange(len(a.subject)))
    relabelled.labels = relabelled.labels.copy()
    relabelled.labels[(relabelled.partition == 1) & (relabelled.subject == "S01"), 0] ^= 1
    c = compare(relabelled, b, names=("AMF", "late fusion"))
    assert c.reason == "not comparable: the labels of 40 test frames differ between the partitions and seeds of AMF"
    assert seeds_text((2,) * 6, 2) == "2 partitions x 3 folds x 2 seeds" and seeds_text((1, 1, 1)) == "3 folds x 1 seed"


def test_one_partition_one_seed_has_a_corrected_t_over_its_folds(data):
    a, b = model(*data, 0.1, seed=1), model(*data, 0.3, seed=2)
    c = compare(a, b, n_boot=100)
    assert c.partitions == (0,) and c.n_units == 3 and c.p_value < 0.05 and c.t_low > 0
    subjects, fold_of = counts_of(a)
    per_fold = [fold_mean_f1(subject_counts(p.select(np.flatnonzero(p.fold == f)), subjects[fold_of == f]),
                             fold_of[fold_of == f]) for f in ("P1", "P2", "P3") for p in (a, b)]  # fmt: skip
    t = corrected_t(np.array(per_fold[0::2]) - np.array(per_fold[1::2]), 8 / 16)
    assert (c.t_low, c.t_high, c.p_value) == pytest.approx((t.low, t.high, t.p_value), abs=1e-12)
    same = compare(a, a, n_boot=100)
    assert math.isnan(same.p_value) and "no variance" in same.t_reason and not same.significant()
