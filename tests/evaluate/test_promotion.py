"""The champion decision: paired subject-level bootstrap of the fold-mean F1 difference (pure NumPy)."""

import numpy as np
import pytest

from farm.checkpoints import Predictions
from farm.evaluate.promotion import bootstrap_difference, decide, fold_mean_f1, subject_counts
from farm.metrics import au_counts, summarize

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
