import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score

from farm.metrics import all_positive_f1, au_counts, f1_from_counts, summarize


@pytest.mark.parametrize("seed", range(5))
def test_f1_and_counts_match_sklearn_with_unknown_labels(seed):
    rng = np.random.default_rng(seed)
    n, a = 300, 6
    labels = rng.choice([-1, 0, 1], size=(n, a), p=[0.1, 0.6, 0.3])
    labels[:, 5] = np.where(labels[:, 5] == 1, 0, labels[:, 5])  # an AU with no positive at all
    probs = rng.random((n, a))
    counts = au_counts(probs, labels)
    f1 = f1_from_counts(counts)
    for j in range(a):
        keep = labels[:, j] >= 0
        y, p = labels[keep, j], (probs[keep, j] >= 0.5).astype(int)
        assert f1[j] == pytest.approx(f1_score(y, p, zero_division=0))
        tn, fp, fn, tp = confusion_matrix(y, p, labels=[0, 1]).ravel()
        assert counts[j].tolist() == [tp, fp, fn, tn]
    assert summarize(counts, [f"AU{j}" for j in range(a)])["f1_mean"] == pytest.approx(f1.mean())


def test_pooled_f1_from_summed_counts():
    rng = np.random.default_rng(0)
    folds = [(rng.random((50, 3)), rng.integers(0, 2, (50, 3))) for _ in range(3)]
    pooled = f1_from_counts(sum(au_counts(p, y) for p, y in folds))
    allp = np.concatenate([p for p, _ in folds])
    ally = np.concatenate([y for _, y in folds])
    for j in range(3):
        assert pooled[j] == pytest.approx(f1_score(ally[:, j], allp[:, j] >= 0.5))


def test_au_without_known_labels_is_nan_and_left_out_of_the_mean():
    labels = np.array([[1, -1], [0, -1]])
    probs = np.array([[0.9, 0.9], [0.1, 0.1]])
    s = summarize(au_counts(probs, labels), ["AU1", "AU2"])
    assert np.isnan(s["f1"]["AU2"]) and s["f1_mean"] == 1.0


def test_all_positive_baseline():
    labels = np.array([[1], [0], [0], [1], [-1]])
    assert all_positive_f1(labels) == pytest.approx(f1_score([1, 0, 0, 1], [1, 1, 1, 1]))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        au_counts(np.zeros((2, 3)), np.zeros((2, 2)))
