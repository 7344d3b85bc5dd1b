"""Output files are written whole or not at all.

Every file a command writes (result JSON, predictions CSV, reports, robustness tables, plots,
checkpoints) goes to a temporary name in the same folder and is renamed over the target only
when everything it belongs with has been written; a run that fails (bad input, a crash, Ctrl-C)
leaves the previous files untouched and removes its temporary ones.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


class OutputError(ValueError):
    """An output file cannot be written where asked; the message names it."""


def temporary_name(path: Path) -> Path:
    """A hidden sibling that keeps the suffix (matplotlib and pyarrow infer formats from it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def check_writable(path: str | Path) -> Path:
    """Create the file's folder and check that the file can be written there: fail before the work, not after."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot create its folder {path.parent} ({e.strerror})") from None
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; expected a file name")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"{path}: folder {path.parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Yield temporary paths for `paths`; on success rename each over its target, on failure remove them all.

    The folders are created first, so an unwritable destination fails before any work is done.
    """
    targets = [check_writable(p) for p in paths]
    temps = [temporary_name(t) for t in targets]
    try:
        yield temps
        for tmp, t in zip(temps, targets, strict=True):
            if tmp.exists():
                os.replace(tmp, t)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """One file: see `atomic_paths`."""
    with atomic_paths(path) as (tmp,):
        yield tmp


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def link_tree(src: str | Path, dest: str | Path) -> int:
    """Every file under `src` at the same place under `dest`, as a hard link (a copy where the two folders are on
    different filesystems); a file already at the target is replaced. Returns the number of files.

    A link shares the file, not a snapshot of it: safe for files that are only ever replaced by a rename (what
    this module writes), so the linked version stays whole when `src` gets its next one."""
    src, dest = Path(src), Path(dest)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for f in files:
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(f, target)
        except OSError:  # another filesystem (a network mount) or no links there
            shutil.copy2(f, target)
    return len(files)
