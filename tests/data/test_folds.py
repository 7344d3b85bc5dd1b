import pytest

from farm.data.folds import BP4D_PARTITIONS, FoldError, balanced_partitions, check_partitions, make_split


def test_bp4d_partitions_are_the_standard_41_subjects():
    all_subjects = [s for p in BP4D_PARTITIONS.values() for s in p]
    assert len(all_subjects) == 41 == len(set(all_subjects))
    assert [len(p) for p in BP4D_PARTITIONS.values()] == [14, 14, 13]
    assert "F004" in BP4D_PARTITIONS["P3"] and "M018" in BP4D_PARTITIONS["P2"]


@pytest.mark.parametrize("fold", ["P1", "P2", "P3"])
def test_split_is_subject_exclusive_and_named_by_test_partition(fold):
    split = make_split(BP4D_PARTITIONS, fold, 0.2, seed=0)
    assert split.test == tuple(sorted(BP4D_PARTITIONS[fold]))
    train, val, test = set(split.train), set(split.val), set(split.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 41
    assert 4 <= len(val) <= 7
    assert make_split(BP4D_PARTITIONS, fold, 0.2, seed=0).hash == split.hash
    assert make_split(BP4D_PARTITIONS, fold, 0.2, seed=1).hash != split.hash


def test_balanced_partitions_deal_sexes_evenly():
    subjects = {f"F{i:03d}": {"sex": "F"} for i in range(1, 7)} | {f"M{i:03d}": {"sex": "M"} for i in range(1, 7)}
    parts = balanced_partitions(subjects, 3, seed=0)
    assert sorted(s for p in parts.values() for s in p) == sorted(subjects)
    for p in parts.values():
        assert len(p) == 4 and sum(s.startswith("F") for s in p) == 2
    assert balanced_partitions(subjects, 3, seed=0) == parts


def test_partition_errors():
    with pytest.raises(FoldError, match="F001 is in two partitions"):
        check_partitions({"P1": ("F001",), "P2": ("F001", "F002")}, {"F001", "F002"})
    with pytest.raises(FoldError, match="absent from the dataset: X9"):
        check_partitions({"P1": ("X9",)}, {"F001"})
    with pytest.raises(FoldError, match="P2 is empty"):
        check_partitions({"P1": ("F001",), "P2": ()}, {"F001"})
    with pytest.raises(FoldError, match="unknown fold 'P4'"):
        make_split(BP4D_PARTITIONS, "P4")
