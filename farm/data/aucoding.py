"""BP4D / BP4D+ AU occurrence files (AUCoding/AU_OCC/<subject>_<task>.csv) and per-frame image file names.

Two header styles:
- legacy: the integers 0..n-1; column 0 is the frame number, column N is AU N;
- named: column 0 is the frame number whatever its header cell reads (BP4D+ writes "1" there, so the first
  two cells can both read "1"); every later column names an AU ("12", "AU12"), mapped by position.
Values are 1 (present), 0 (absent) or 9 (unknown / not coded), stored as 1, 0, -1.
Only the coded segment of a task is labelled: frame numbers start anywhere and may have gaps.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["AUOcc", "LabelFileError", "au_name", "index_frames", "read_au_occ"]

VALUES = {"0": 0, "1": 1, "9": -1, "0.0": 0, "1.0": 1, "9.0": -1}
"""accepted value cells (after stripping whitespace) -> stored code"""
_AU = re.compile(r"(?:au)?\s*([0-9]+)(?:\.0+)?", re.IGNORECASE)
_FRAME = re.compile(r"([0-9]+)(?:\.0+)?")
_BAD = 127
_LUT = np.full(256, _BAD, np.int8)  # single ASCII byte -> code, for the fast path
_LUT[[ord("0"), ord("1"), ord("9")]] = [0, 1, -1]


class LabelFileError(ValueError):
    """A label (AU_OCC) file is unreadable or malformed; the message names the file, the 1-based line and column
    where known, and what was expected."""


def au_name(cell: str) -> str | None:
    """ "12", "AU12", "au 12", " 12 ", "12.0" -> "AU12"; anything else ("Frame", "") -> None."""
    m = _AU.fullmatch(cell.strip())
    return f"AU{int(m.group(1))}" if m else None


@dataclass(frozen=True)
class AUOcc:
    """One parsed AU_OCC file; the arrays are read-only."""

    path: str
    header_style: str
    """"legacy" or "named" """
    frames: np.ndarray
    """(N,) int64 frame numbers as written, in file order"""
    aus: tuple[str, ...]
    """AUs in the file, in column order ("AU1", "AU2", ...)"""
    values: np.ndarray
    """(N, len(aus)) int8 in {1, 0, -1}; -1 is unknown (9 in the file)"""

    def select(self, aus: Sequence[str]) -> np.ndarray:
        """(N, len(aus)) int8 copy of the given AUs' columns, in the order asked for."""
        if isinstance(aus, str):
            aus = [aus]
        names = [au_name(a) or a for a in aus]
        missing = [a for a, n in zip(aus, names) if n not in self.aus]
        if missing:
            raise LabelFileError(
                f"{self.path}: no column for {', '.join(missing)}; the file has {', '.join(self.aus) or 'no AUs'}"
            )
        where = {a: j for j, a in enumerate(self.aus)}
        return self.values[:, [where[n] for n in names]]


def _records(path: str) -> list[tuple[int, list[str]]]:
    """(1-based line where the record starts, cells) for every non-blank record of the file."""
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise LabelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    out: list[tuple[int, list[str]]] = []
    with fh:
        reader = csv.reader(fh)
        start = 1
        try:
            for row in reader:
                if row and (len(row) > 1 or row[0].strip()):
                    out.append((start, row))
                start = reader.line_num + 1
        except UnicodeDecodeError as e:
            raise LabelFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except csv.Error as e:
            raise LabelFileError(f"{path} line {reader.line_num}: not readable as CSV ({e})") from None
        except OSError as e:
            raise LabelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    return out


def _header(path: str, line: int, header: list[str]) -> tuple[str, tuple[str, ...]]:
    """(style, AUs of columns 1..) from the stripped header cells."""
    if len(header) < 2:
        raise LabelFileError(
            f"{path} line {line}: a header of {len(header)} column(s), expected a frame column followed by AU columns"
        )
    if all(_FRAME.fullmatch(c) and int(_FRAME.fullmatch(c).group(1)) == j for j, c in enumerate(header)):
        return "legacy", tuple(f"AU{j}" for j in range(1, len(header)))
    names: list[str] = []
    for j, cell in enumerate(header[1:], start=2):
        name = au_name(cell)
        if name is None:
            raise LabelFileError(
                f"{path} line {line} column {j}: header cell {cell!r} does not name an AU (expected e.g. 12 or AU12; "
                "column 1 is the frame number)"
            )
        names.append(name)
    seen: dict[str, int] = {}
    dupes: list[str] = []
    for j, name in enumerate(names, start=2):
        if name in seen:
            dupes.append(f"{name} (columns {seen[name]} and {j})")
        else:
            seen[name] = j
    if dupes:
        raise LabelFileError(f"{path} line {line}: AU column(s) named more than once: {', '.join(dupes)}")
    return "named", tuple(names)


def _fast_values(rows: list[list[str]], k: int) -> np.ndarray | None:
    """(N, k) codes when every value cell is exactly "0", "1" or "9", else None."""
    text = ",".join([",".join(r[1:]) for r in rows])
    try:
        raw = np.frombuffer(text.encode("ascii"), np.uint8)
    except UnicodeEncodeError:
        return None
    if raw.size != 2 * len(rows) * k - 1 or not (raw[1::2] == ord(",")).all():
        return None
    codes = _LUT[raw[0::2]]
    if (codes == _BAD).any():
        return None
    return codes.reshape(len(rows), k)


def _slow_values(path: str, lines: list[int], rows: list[list[str]], aus: tuple[str, ...]) -> np.ndarray:
    """(N, k) codes, tolerating whitespace and "1.0"; names the first bad cell."""
    out = np.empty((len(rows), len(aus)), np.int8)
    get = VALUES.get
    for i, r in enumerate(rows):
        codes = list(map(get, map(str.strip, r[1:])))
        if None in codes:
            j = codes.index(None)
            raise LabelFileError(
                f"{path} line {lines[i]} column {j + 2} ({aus[j]}): value {r[j + 1].strip()!r}, "
                "expected 0, 1 or 9 (unknown)"
            )
        out[i] = codes
    return out


def read_au_occ(path: str | os.PathLike) -> AUOcc:
    """Parse one AU_OCC csv file; LabelFileError on anything malformed."""
    name = os.fspath(path)
    records = _records(name)
    if not records:
        raise LabelFileError(f"{name}: empty file, expected a header row (frame column, then AU columns)")
    hline, raw_header = records[0]
    header = [c.strip() for c in raw_header]
    trailing = len(header) > 1 and header[-1] == ""
    if trailing:  # written with a trailing comma: drop the matching empty cell of every row
        header.pop()
    style, aus = _header(name, hline, header)
    width = len(header)
    lines = [n for n, _ in records[1:]]
    rows = [r for _, r in records[1:]]
    for n, r in records[1:]:
        if trailing and len(r) == width + 1 and not r[-1].strip():
            r.pop()
        if len(r) != width:
            raise LabelFileError(f"{name} line {n}: {len(r)} cells, expected {width} (header has {width} columns)")
    cells = [r[0] for r in rows]
    joined = "".join(cells)
    if all(cells) and joined.isascii() and joined.isdigit():  # fast path: plain integers
        frames = np.array(list(map(int, cells)), np.int64)
        if np.unique(frames).size == frames.size:
            return _finish(name, style, frames, aus, rows, lines)
    frames = np.empty(len(rows), np.int64)
    first: dict[int, int] = {}
    for i, (n, r) in enumerate(zip(lines, rows)):
        cell = r[0].strip()
        m = _FRAME.fullmatch(cell)
        if m is None:
            raise LabelFileError(f"{name} line {n} column 1: frame {cell!r}, expected a non-negative integer")
        f = int(m.group(1))
        if f in first:
            raise LabelFileError(f"{name} line {n}: frame {f} appears twice (lines {first[f]} and {n})")
        first[f] = n
        frames[i] = f
    return _finish(name, style, frames, aus, rows, lines)


def _finish(name: str, style: str, frames: np.ndarray, aus: tuple[str, ...], rows: list[list[str]],
            lines: list[int]) -> AUOcc:  # fmt: skip
    """Parse the value cells and build the read-only AUOcc."""
    k = len(aus)
    values = _fast_values(rows, k) if rows else np.zeros((0, k), np.int8)
    if values is None:
        values = _slow_values(name, lines, rows, aus)
    frames.flags.writeable = False
    values.flags.writeable = False
    return AUOcc(name, style, frames, aus, values)


def index_frames(directory: str | os.PathLike, suffixes: Sequence[str] = (".jpg", ".jpeg", ".png")) -> dict[int, Path]:
    """frame number -> image file of one sequence directory; any zero padding ("12", "012", "0012") resolves alike."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not a directory")
    wanted = {s.lower() if s.startswith(".") else "." + s.lower() for s in suffixes}
    out: dict[int, Path] = {}
    for p in sorted(directory.iterdir()):
        stem = p.stem
        if p.suffix.lower() not in wanted or not (stem.isascii() and stem.isdigit()) or not p.is_file():
            continue
        f = int(stem)
        if f in out:
            raise ValueError(f"{out[f]} and {p} are both frame {f} in {directory}: keep one of them")
        out[f] = p
    return out
