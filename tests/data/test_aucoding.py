import re

import numpy as np
import pytest

from farm.data.aucoding import AUOcc, LabelFileError, au_name, index_frames, read_au_occ

BP4D_12 = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24"]
# 34 AUs of a BP4D+ header, after its frame column
BP4DP_34 = [1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23,
            24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37]  # fmt: skip
FRAMES = [2440, 2441, 2443, 2444, 2445, 2450, 2451]  # gaps, not starting at 0 or 1
UNKNOWN = (2, 4)  # (row, AU number) coded 9


def pattern(au: int, row: int) -> int:
    """Bit `row` of the AU number: with 7 rows every AU 1..99 has its own column of values."""
    return (au >> row) & 1


def expected(aus: list[int]) -> np.ndarray:
    out = np.array([[pattern(a, i) for a in aus] for i in range(len(FRAMES))], np.int8)
    if UNKNOWN[1] in aus:
        out[UNKNOWN[0], aus.index(UNKNOWN[1])] = -1
    return out


def table(header: list[str], aus: list[int]) -> list[list[str]]:
    rows = [header]
    for i, f in enumerate(FRAMES):
        rows.append([str(f)] + [str(9 if (i, a) == UNKNOWN else pattern(a, i)) for a in aus])
    return rows


def write(tmp_path, rows, name="F001_T1.csv", eol="\n", bom=False, trailing=False):
    text = eol.join(",".join(r) + ("," if trailing else "") for r in rows) + eol
    p = tmp_path / name
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return p


def legacy_rows():
    return table([str(i) for i in range(100)], list(range(1, 100)))


def raises_at(path, line, *more):
    """pytest.raises matching the file and line (and more regex parts) in the message."""
    parts = [re.escape(str(path)), rf"line {line}\b", *more]
    return pytest.raises(LabelFileError, match="(?s)" + "".join(f"(?=.*{p})" for p in parts))


@pytest.mark.parametrize(
    "cell, name",
    [("12", "AU12"), ("AU12", "AU12"), ("au 12", "AU12"), (" 12 ", "AU12"), ("12.0", "AU12"), ("AU01", "AU1"),
     ("Frame", None), ("", None), ("AU", None), ("12.5", None), ("-1", None), ("AU12a", None)],
)  # fmt: skip
def test_au_name(cell, name):
    assert au_name(cell) == name


def test_legacy_header(tmp_path):
    occ = read_au_occ(write(tmp_path, legacy_rows()))
    assert isinstance(occ, AUOcc) and occ.header_style == "legacy"
    assert occ.aus == tuple(f"AU{i}" for i in range(1, 100))
    assert occ.frames.dtype == np.int64 and occ.frames.tolist() == FRAMES
    assert occ.values.dtype == np.int8 and occ.values.shape == (7, 99)
    assert np.array_equal(occ.values, expected(list(range(1, 100))))
    assert occ.values[UNKNOWN[0], UNKNOWN[1] - 1] == -1 and set(np.unique(occ.values)) == {-1, 0, 1}
    sel = occ.select(BP4D_12)
    assert sel.dtype == np.int8 and np.array_equal(sel, expected([int(a[2:]) for a in BP4D_12]))
    assert np.array_equal(occ.select(["AU24", "AU1"]), expected([24, 1]))  # order as asked
    assert occ.path.endswith("F001_T1.csv")


def test_bp4d_plus_header_first_two_cells_both_read_1(tmp_path):
    rows = table(["1"] + [str(a) for a in BP4DP_34], BP4DP_34)
    assert rows[0][:2] == ["1", "1"]
    occ = read_au_occ(write(tmp_path, rows, "F001_T1.csv"))
    assert occ.header_style == "named" and len(occ.aus) == 34
    assert occ.aus == tuple(f"AU{a}" for a in BP4DP_34) and occ.aus[0] == "AU1"
    assert occ.frames.tolist() == FRAMES
    assert np.array_equal(occ.values, expected(BP4DP_34))
    assert np.array_equal(occ.select(["AU1"])[:, 0], expected([1])[:, 0])
    assert np.array_equal(occ.select(["AU37", "AU4", "AU2"]), expected([37, 4, 2]))


@pytest.mark.parametrize("frame_cell", ["Frame", "frame", "", "1"])
def test_named_header_with_au_names(tmp_path, frame_cell):
    aus = [1, 2, 4, 6, 12, 17]
    rows = table([frame_cell] + [f"AU{a:02d}" if a < 5 else f"au {a}" for a in aus], aus)
    occ = read_au_occ(write(tmp_path, rows))
    assert occ.header_style == "named" and occ.aus == ("AU1", "AU2", "AU4", "AU6", "AU12", "AU17")
    assert occ.frames.tolist() == FRAMES and np.array_equal(occ.values, expected(aus))
    assert np.array_equal(occ.select(["AU12", "AU4"]), expected([12, 4]))


@pytest.mark.parametrize("style", ["legacy", "named"])
def test_bom_crlf_blank_lines_trailing_comma_quotes_and_spaces_parse_the_same(tmp_path, style):
    rows = legacy_rows() if style == "legacy" else table(["1"] + [str(a) for a in BP4DP_34], BP4DP_34)
    plain = read_au_occ(write(tmp_path, rows, "plain.csv"))
    variants = {
        "bom.csv": dict(bom=True),
        "crlf.csv": dict(eol="\r\n"),
        "trailing.csv": dict(trailing=True),
        "all.csv": dict(bom=True, eol="\r\n", trailing=True),
    }
    paths = [write(tmp_path, rows, name, **kw) for name, kw in variants.items()]
    # blank lines (also one holding only spaces) between rows and at the end
    p = tmp_path / "blank.csv"
    lines = [",".join(r) for r in rows]
    p.write_text("\r\n".join(lines[:3] + ["", "   "] + lines[3:] + ["", ""]) + "\r\n", encoding="utf-8-sig")
    paths.append(p)
    # spaces around cells, quoted cells, 1.0-style floats (the slow path)
    p = tmp_path / "spaces.csv"
    spaced = [[f" {c} " for c in rows[0]]] + [[f'"{r[0]}.0"'] + [f" {c}.0" if j % 3 else f'"{c}"' for j, c in
                                                               enumerate(r[1:])] for r in rows[1:]]  # fmt: skip
    p.write_text("\n".join(",".join(r) for r in spaced) + "\n")
    paths.append(p)
    for path in paths:
        occ = read_au_occ(path)
        assert occ.header_style == plain.header_style == style, path.name
        assert occ.aus == plain.aus, path.name
        assert np.array_equal(occ.frames, plain.frames), path.name
        assert occ.values.dtype == np.int8 and np.array_equal(occ.values, plain.values), path.name


def test_header_only_gives_zero_frames(tmp_path):
    occ = read_au_occ(write(tmp_path, [[str(i) for i in range(100)]]))
    assert occ.frames.shape == (0,) and occ.frames.dtype == np.int64
    assert occ.values.shape == (0, 99) and occ.values.dtype == np.int8
    assert occ.select(BP4D_12).shape == (0, 12)


def test_arrays_are_read_only(tmp_path):
    occ = read_au_occ(write(tmp_path, legacy_rows()))
    with pytest.raises(ValueError):
        occ.values[0, 0] = 1
    sel = occ.select(["AU1"])
    sel[0, 0] = 5  # a copy
    assert occ.values[0, 0] != 5


def _bad_row(tmp_path, row_index, edit, name="bad.csv", header=None):
    rows = [header] + table(["x"], [1, 2, 3, 4])[1:] if header else table(["0", "1", "2", "3", "4"], [1, 2, 3, 4])
    edit(rows[row_index])
    return write(tmp_path, rows, name)


def test_ragged_rows(tmp_path):
    p = _bad_row(tmp_path, 3, lambda r: r.pop())  # row 3 is file line 4
    with raises_at(p, 4, "4 cells, expected 5", r"header has 5 columns"):
        read_au_occ(p)
    p = _bad_row(tmp_path, 2, lambda r: r.append("1"), "long.csv")
    with raises_at(p, 3, "6 cells, expected 5"):
        read_au_occ(p)


def test_trailing_comma_header_with_a_value_in_the_extra_column_is_ragged(tmp_path):
    rows = table(["0", "1", "2"], [1, 2])
    p = tmp_path / "t.csv"
    lines = [",".join(r) + "," for r in rows]
    lines[4] = lines[4] + "1"
    p.write_text("\n".join(lines) + "\n")
    with raises_at(p, 5, "4 cells, expected 3"):
        read_au_occ(p)


@pytest.mark.parametrize("value", ["2", "", "x", "-1", "10"])
def test_bad_value(tmp_path, value):
    def edit(r):
        r[3] = value  # column 4 of the file, AU3

    p = _bad_row(tmp_path, 2, edit)
    with raises_at(p, 3, "column 4", r"\(AU3\)", re.escape(repr(value)), "expected 0, 1 or 9"):
        read_au_occ(p)


def test_first_bad_value_is_reported_and_line_numbers_count_blank_lines(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("0,1,2,3\n\n10, 1 ,0,1\n\n\n11,1,0,x\n12,2,0,1\n")
    with raises_at(p, 6, "column 4", r"\(AU3\)", "'x'"):
        read_au_occ(p)
    p.write_text("0,1,2,3\r\n\r\n10,1,0,1\r\n\r\n11,1,0\r\n")
    with raises_at(p, 5, "3 cells, expected 4"):
        read_au_occ(p)


@pytest.mark.parametrize("cell", ["abc", "", "-3", "12.5"])
def test_bad_frame(tmp_path, cell):
    def edit(r):
        r[0] = cell

    p = _bad_row(tmp_path, 4, edit)
    with raises_at(p, 5, "frame", re.escape(repr(cell))):
        read_au_occ(p)


def test_frame_written_as_float_is_accepted(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("0,1\n12.0,1\n13,0\n")
    assert read_au_occ(p).frames.tolist() == [12, 13]


def test_duplicate_frame(tmp_path):
    def edit(r):
        r[0] = str(FRAMES[1])

    p = _bad_row(tmp_path, 4, edit)  # line 5 repeats the frame of line 3
    with raises_at(p, 5, f"frame {FRAMES[1]}", r"\b3\b", r"\b5\b"):
        read_au_occ(p)


def test_duplicate_au_in_named_header(tmp_path):
    p = _bad_row(tmp_path, 1, lambda r: None, header=["Frame", "1", "AU2", "au 1", "4"])
    with raises_at(p, 1, "AU1"):
        read_au_occ(p)


def test_non_au_header_cell(tmp_path):
    p = _bad_row(tmp_path, 1, lambda r: None, header=["1", "1", "2", "Smile", "4"])
    with raises_at(p, 1, "column 4", "'Smile'"):
        read_au_occ(p)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf", b"  \r\n"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "empty.csv"
    p.write_bytes(content)
    with pytest.raises(LabelFileError, match=re.escape(str(p)) + ".*empty"):
        read_au_occ(p)


def test_unreadable_files(tmp_path):
    with pytest.raises(LabelFileError, match=re.escape(str(tmp_path / "nope.csv"))):
        read_au_occ(tmp_path / "nope.csv")
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"0,1\n1,\xe9\n")
    with pytest.raises(LabelFileError, match=re.escape(str(p))):
        read_au_occ(p)


def test_select_absent_au(tmp_path):
    aus = [1, 2, 4]
    p = write(tmp_path, table(["Frame", "1", "2", "4"], aus), "F002_T3.csv")
    occ = read_au_occ(p)
    with pytest.raises(LabelFileError, match=r"(?s)(?=.*F002_T3\.csv)(?=.*AU12)(?=.*AU24)(?=.*AU1, AU2, AU4)"):
        occ.select(["AU1", "AU12", "AU24"])


def test_large_legacy_file_parses_exactly(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.choice(np.array([0, 1, 9]), size=(2500, 99), p=[0.7, 0.2, 0.1])
    lines = [",".join(map(str, range(100)))] + [",".join([str(100 + i)] + [str(c) for c in row])
                                                for i, row in enumerate(codes)]  # fmt: skip
    p = tmp_path / "big.csv"
    p.write_text("\n".join(lines) + "\n")
    occ = read_au_occ(p)  # the vectorised path (bare 0/1/9 cells)
    assert np.array_equal(occ.values, np.where(codes == 9, -1, codes)) and occ.frames[-1] == 2599


def _touch(d, *names):
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_bytes(b"")
    return d


def test_index_frames_padding_styles(tmp_path):
    three = _touch(tmp_path / "three", *(f"{i:03d}.jpg" for i in range(1, 13)))
    assert index_frames(three) == {i: three / f"{i:03d}.jpg" for i in range(1, 13)}
    four = _touch(tmp_path / "four", *(f"{i:04d}.jpg" for i in range(995, 1003)))
    assert index_frames(four) == {i: four / f"{i:04d}.jpg" for i in range(995, 1003)}


def test_index_frames_mixed_and_ignored(tmp_path):
    d = _touch(tmp_path / "mixed", "9.jpg", "0010.JPG", "011.png", "12.jpeg", "Thumbs.db", "0012_mask.png",
               "notes.txt", "0013.txt", "._0014.jpg")  # fmt: skip
    (d / "0015.jpg").mkdir()  # a directory is not a frame
    assert index_frames(d) == {9: d / "9.jpg", 10: d / "0010.JPG", 11: d / "011.png", 12: d / "12.jpeg"}
    assert index_frames(d, suffixes=(".png",)) == {11: d / "011.png"}


@pytest.mark.parametrize("pair", [("012.jpg", "0012.jpg"), ("0012.jpg", "0012.png")])
def test_index_frames_conflict(tmp_path, pair):
    d = _touch(tmp_path / "conflict", "0011.jpg", *pair)
    with pytest.raises(ValueError, match=f"(?s)(?=.*{re.escape(pair[0])})(?=.*{re.escape(pair[1])})"):
        index_frames(d)


def test_index_frames_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        index_frames(tmp_path / "no_such_dir")
