"""farm.files: outputs are written whole, or the previous file stays."""

import pytest

from farm.files import OutputError, atomic_path, atomic_paths, check_writable, write_text


def test_success_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_text(target, "new")
    assert target.read_text() == "new" and [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failure_keeps_the_previous_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("48 rows")
    with pytest.raises(ValueError, match="bad input"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ValueError("bad input")
    assert target.read_text() == "48 rows" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_several_files_are_replaced_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "a.md", tmp_path / "b.png"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(RuntimeError), atomic_paths(a, b) as (ta, tb):
        ta.write_text("new a")
        raise RuntimeError("the second file failed")
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    with atomic_paths(a, b) as (ta, tb):
        assert ta.suffix == ".md" and tb.suffix == ".png"  # formats are inferred from the suffix
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_unwritable_destinations_are_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=str(blocker)):
        check_writable(blocker / "out.json")
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path)
