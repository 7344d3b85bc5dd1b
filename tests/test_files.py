"""farm.files: outputs are written whole, or the previous file stays."""

import pytest

from farm.files import OutputError, atomic_path, atomic_paths, check_writable, link_tree, write_text


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


def test_link_tree_links_every_file_and_a_rename_in_the_source_keeps_the_linked_version(tmp_path):
    src, dest = tmp_path / "local", tmp_path / "storage" / "round_0001"
    write_text(src / "P1" / "last.pt", "epoch 1")
    write_text(src / "P1" / "round.json", "{}")
    (dest / "P1").mkdir(parents=True)
    (dest / "P1" / "round.json").write_text("a dead attempt's")  # a restarted group reports the round again
    assert link_tree(src, dest) == 2
    assert (dest / "P1" / "last.pt").stat().st_ino == (src / "P1" / "last.pt").stat().st_ino  # no copy
    assert (dest / "P1" / "round.json").read_text() == "{}"
    write_text(src / "P1" / "last.pt", "epoch 2")  # the next round's file: a new file renamed over the name
    assert (dest / "P1" / "last.pt").read_text() == "epoch 1"


def test_link_tree_copies_where_links_fail(tmp_path, monkeypatch):
    src, dest = tmp_path / "a", tmp_path / "b"
    write_text(src / "best.pt", "weights")

    def no_links(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("farm.files.os.link", no_links)
    link_tree(src, dest)
    assert (dest / "best.pt").read_text() == "weights"
    assert (dest / "best.pt").stat().st_ino != (src / "best.pt").stat().st_ino
