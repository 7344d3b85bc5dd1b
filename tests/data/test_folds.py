import pytest

from farm.data.folds import (
    BP4DPLUS_SUBJECTS,
    FoldError,
    balanced_partitions,
    check_partitions,
    make_split,
    read_partitions,
    redraw_partitions,
    resolve_partitions,
    standard_partitions,
    write_bp4dplus_partitions,
)
from farm.data.store import DatasetMeta

# DOMAIN.md section 3, typed in independently of farm/data/partitions/bp4d.yaml
DRML = {
    "P1": "F001 F002 F008 F009 F010 F016 F018 F023 M001 M004 M007 M008 M012 M014",
    "P2": "F003 F005 F011 F013 F020 F022 M002 M005 M010 M011 M013 M016 M017 M018",
    "P3": "F004 F006 F007 F012 F014 F015 F017 F019 F021 M003 M006 M009 M015",
}
BP4D = standard_partitions("bp4d").parts


def meta(name, subjects):
    return DatasetMeta(name, (), ("AU1",), subjects={s: {"sex": s[0]} for s in subjects})


def test_bp4d_partitions_are_the_standard_41_subjects():
    assert BP4D == {k: tuple(sorted(v.split())) for k, v in DRML.items()}
    assert len({s for p in BP4D.values() for s in p}) == 41


def test_bp4dplus_file_is_seeded_sex_balanced_and_reproducible(tmp_path):
    shipped = standard_partitions("bp4dplus")
    assert sorted(shipped.subjects) == sorted(BP4DPLUS_SUBJECTS) and len(shipped.subjects) == 140
    for p in shipped.parts.values():
        females = sum(s.startswith("F") for s in p)
        assert 27 <= females <= 28 and 19 <= len(p) - females <= 20
    regenerated = write_bp4dplus_partitions(tmp_path / "p.yaml")
    assert regenerated.parts == shipped.parts and regenerated.hash == shipped.hash
    assert read_partitions(tmp_path / "p.yaml").hash == shipped.hash


@pytest.mark.parametrize("fold", ["P1", "P2", "P3"])
def test_split_is_subject_exclusive_and_named_by_test_partition(fold):
    split = make_split(BP4D, fold, 0.2, seed=0)
    assert split.test == tuple(sorted(BP4D[fold]))
    train, val, test = set(split.train), set(split.val), set(split.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 41
    assert 4 <= len(val) <= 7
    assert make_split(BP4D, fold, 0.2, seed=0).hash == split.hash
    assert make_split(BP4D, fold, 0.2, seed=1).hash != split.hash


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
        make_split(BP4D, "P4")


def test_standard_lists_drop_absent_subjects_and_say_so():
    present = set(BP4D["P1"][:3] + BP4D["P2"][:3] + BP4D["P3"][:3])
    parts, notes = resolve_partitions(meta("bp4d", present), present)
    assert parts.subjects == present and "32 subject(s)" in notes[0]
    with pytest.raises(FoldError, match="partition P3 .* is empty on this dataset"):
        resolve_partitions(meta("bp4d", present - set(BP4D["P3"])), present - set(BP4D["P3"]))
    with pytest.raises(FoldError, match="in no partition .*: F999"):
        resolve_partitions(meta("bp4d", present | {"F999"}), present | {"F999"})


def test_user_partitions_file_is_strict(tmp_path):
    present = {"F001", "F002", "M001", "M002"}
    good = tmp_path / "good.yaml"
    good.write_text("partitions:\n  A: [F001, M001]\n  B: [F002, M002]\n")
    parts, notes = resolve_partitions(meta("bp4d", present), present, str(good))
    assert parts.parts == {"A": ("F001", "M001"), "B": ("F002", "M002")} and not notes
    assert make_split(parts.parts, "B").test == ("F002", "M002")
    cases = {
        "partitions:\n  A: [F001, M001]\n  B: [F002, M002, X007]\n": "good.yaml.*absent from the dataset: X007",
        "partitions:\n  A: [F001, M001]\n  B: [F001, F002, M002]\n": "subject F001 is in two partitions",
        "partitions:\n  A: [F001, M001, F002, M002]\n  B: []\n": "partition B is empty",
        "partitions:\n  A: [F001, M001, F002, M002]\n": "1 partition",
        "folds: [F001]\n": "expected a mapping with a 'partitions' key",
        "partitions: {A: [F001, [M001]]}\n": "partition A must be a list of subject names",
        "partitions: [\n": "not valid YAML",
    }
    for text, msg in cases.items():
        good.write_text(text)
        with pytest.raises(FoldError, match=msg):
            resolve_partitions(meta("bp4d", present), present, str(good))
    with pytest.raises(FoldError, match="not found"):
        resolve_partitions(meta("bp4d", present), present, str(tmp_path / "missing.yaml"))


def test_partitions_files_with_duplicate_keys_are_refused(tmp_path):
    from farm.data.folds import FoldError, read_partitions

    f = tmp_path / "parts.yaml"
    f.write_text("partitions:\n  P1: [F001]\n  P2: [F002]\n  P1: [F003]\n")
    with pytest.raises(FoldError, match=r"parts.yaml: duplicate key 'P1' on line 4 \(first on line 2\)"):
        read_partitions(f)


def test_redrawn_partitions_are_new_subject_exclusive_sex_balanced_splits_of_the_same_subjects():
    parts = standard_partitions("bp4d")
    sexes = {s: {"sex": s[0]} for s in parts.subjects}
    assert redraw_partitions(parts, sexes, 0) is parts  # r = 0: the standard list itself
    seen = {parts.hash}
    for r in (1, 2, 3):
        new = redraw_partitions(parts, sexes, r)
        check_partitions(new.parts)  # disjoint, none empty
        assert new.subjects == parts.subjects and list(new.parts) == list(parts.parts)
        assert redraw_partitions(parts, sexes, r).hash == new.hash  # seeded: the same list again
        for p in new.parts.values():  # dealt round-robin within each sex: sizes and sexes even
            females = sum(s.startswith("F") for s in p)
            assert abs(len(p) - len(parts.subjects) / 3) < 1 and abs(females - 23 / 3) < 1
        seen.add(new.hash)
        for fold in new.parts:  # a fold's split stays subject-exclusive
            split = make_split(new.parts, fold)
            assert not set(split.test) & (set(split.train) | set(split.val))
    assert len(seen) == 4
    with pytest.raises(FoldError):
        redraw_partitions(parts, sexes, -1)
