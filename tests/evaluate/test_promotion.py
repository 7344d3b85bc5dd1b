"""The champion decision: paired subject-level bootstrap of the fold-mean F1 difference (pure NumPy)."""

import dataclasses

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
    seed_mean,
    seeds_text,
    subject_counts,
)
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
    d = decide(a, b, n_boot=300, seed=5)
    assert (d.ci_low, d.ci_high) == tuple(np.quantile(before, [0.025, 0.975]))
    assert d.reason.endswith(f"(compared on {len(a.subject)} common frames of 24 subjects, 300 subject resamples)")


def test_identical_seeds_change_nothing_and_different_seeds_widen_the_interval(data):
    a0, a1, b = model(*data, 0.1, seed=1), model(*data, 0.35, seed=3), model(*data, 0.2, seed=2)
    one = compare(a0, b, n_boot=400, seed=4)
    twice = compare(seeded(a0, a0), b, n_boot=400, seed=4)  # two seeds that predict alike: nothing to resample
    assert (twice.ci_low, twice.ci_high, twice.difference) == (one.ci_low, one.ci_high, one.difference)
    assert twice.a_seeds == (2, 2, 2) and twice.b_seeds == (1, 1, 1) and twice.n_frames == len(a0.subject)
    two = compare(seeded(a0, a1), b, n_boot=400, seed=4)
    # against the same counts averaged over the two seeds, with the same subject draws: only the seeds' draw differs
    subjects, fold_of = counts_of(a0)
    _, per_seed = seed_counts(seeded(a0, a1), subjects, fold_of)
    mean = seed_mean(per_seed)
    assert np.allclose(mean, (subject_counts(a0, subjects) + subject_counts(a1, subjects)) / 2)
    averaged = bootstrap_difference(mean, subject_counts(b, subjects), fold_of, 400, 4)
    low, high = np.quantile(averaged, [0.025, 0.975])
    assert two.difference == pytest.approx(float(fold_mean_f1(mean, fold_of) - fold_mean_f1(
        subject_counts(b, subjects), fold_of)), abs=1e-12)  # fmt: skip
    assert two.ci_high - two.ci_low > 1.5 * (high - low)  # the seeds' spread is in the interval
    assert two.ci_low < np.median(averaged) < two.ci_high


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
