"""Small fake BP4D / BP4D+ copies, in both layouts, with the real releases' quirks.

Every image encodes who it is: visual pixels are (frame_value, subject_value, task_value), depth
and thermal pixels frame_value, so a test can check each stored frame came from the right file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

AU_NUMBERS = list(range(1, 100))  # legacy header: columns 1..99 = AU1..AU99
BP4DPLUS_AUS = [1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 28, 29, 30,
                31, 32, 33, 34, 35, 36, 37]  # fmt: skip
STD_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)


def frame_value(frame: int) -> int:
    return 20 + (frame * 7) % 200


def subject_value(subject: str) -> int:
    return 10 + (int(subject[1:]) * 13 + (50 if subject[0] == "M" else 0)) % 230


def task_value(task: str) -> int:
    return 30 * int(task[1:])


def label_value(subject: str, task: str, frame: int, au: int) -> int:
    """A deterministic 0/1 pattern that differs per AU column (a column mix-up changes it)."""
    return int((frame * 3 + au * 5 + int(subject[1:]) + int(task[1:])) % 7 < 3)


def write_labels(path: Path, subject: str, task: str, frames, style: str = "legacy", nines=()) -> None:
    """AU_OCC file: legacy (header 0..99) or named (BP4D+: first two header cells read "1")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aus = AU_NUMBERS if style == "legacy" else BP4DPLUS_AUS
    header = [str(i) for i in range(100)] if style == "legacy" else ["1", *[str(a) for a in aus]]
    rows = [",".join(header)]
    for f in frames:
        vals = [9 if (f, a) in nines else label_value(subject, task, f, a) for a in aus]
        rows.append(",".join([str(f), *map(str, vals)]))
    path.write_text("\n".join(rows) + "\n")


def expected_labels(subject: str, task: str, frame: int, nines=()) -> list[int]:
    return [-1 if (frame, a) in nines else label_value(subject, task, frame, a) for a in STD_AUS]


def write_image(path: Path, value_rgb, size: int, channels: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if channels == 3:
        arr = np.zeros((size, size, 3), np.uint8) + np.asarray(value_rgb, np.uint8)
        Image.fromarray(arr).save(path)
    else:
        Image.fromarray(np.full((size, size), value_rgb[0], np.uint8)).save(path)


def frame_name(frame: int, digits: int, suffix: str) -> str:
    return f"{frame:0{digits}d}{suffix}"


def write_tree(root: Path, subjects, tasks=("T1",), frames=range(10, 16), size=24, modalities=("visual", "depth"),
               style="legacy", digits=None, nines=()) -> None:  # fmt: skip
    """Pre-processed layout: root/<modality>/<subject>/<task>/<frame>.(jpg|png) + AUCoding/AU_OCC."""
    for i, s in enumerate(subjects):
        d = digits or (3 if i % 2 else 4)  # alternate 3- and 4-digit names
        for t in tasks:
            write_labels(root / "AUCoding" / "AU_OCC" / f"{s}_{t}.csv", s, t, frames, style, nines)
            for f in frames:
                for m in modalities:
                    suffix = ".jpg" if m == "visual" else ".png"
                    value = (frame_value(f), subject_value(s), task_value(t))
                    write_image(root / m / s / t / frame_name(f, d, suffix), value, size, 3 if m == "visual" else 1)


def plane_obj(path: Path, z: float, half: float = 60.0, n: int = 6) -> None:
    """A flat square mesh at depth z (a frontal plane): its depth map is uniform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    xs = np.linspace(-half, half, n)
    lines = [f"v {x:.3f} {y:.3f} {z:.3f}" for y in xs for x in xs]
    for r in range(n - 1):
        for c in range(n - 1):
            a = r * n + c + 1
            lines.append(f"f {a} {a + 1} {a + n + 1} {a + n}")
    path.write_text("\n".join(lines) + "\n")


def sphere_obj(path: Path, radius: float = 50.0, n: int = 81) -> None:
    """A hemisphere z = sqrt(r^2 - x^2 - y^2) on a grid (clipped at z = 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    xs = np.linspace(-radius, radius, n)
    X, Y = np.meshgrid(xs, xs[::-1])
    Z = np.sqrt(np.clip(radius**2 - X**2 - Y**2, 0, None))
    lines = [f"v {x:.4f} {y:.4f} {z:.4f}" for x, y, z in zip(X.ravel(), Y.ravel(), Z.ravel())]
    for r in range(n - 1):
        for c in range(n - 1):
            a = r * n + c + 1
            lines.append(f"f {a} {a + n} {a + n + 1} {a + 1}")
    path.write_text("\n".join(lines) + "\n")


def write_raw(root: Path, subjects, tasks=("T1",), frames=range(10, 14), frame_size=(60, 80), plus=False,
              landmarks=True, nines=()) -> None:  # fmt: skip
    """Raw release layout: 2D frames + per-frame meshes (+ thermal frames for BP4D+), 2DFeatures landmarks."""
    top = root / ("2D+3D" if plus else "Sequences(2D+3D)")
    h, w = frame_size
    for s in subjects:
        for t in tasks:
            write_labels(root / "AUCoding" / "AU_OCC" / f"{s}_{t}.csv", s, t, frames,
                         "named" if plus else "legacy", nines)  # fmt: skip
            rows = []
            for f in frames:
                img = np.zeros((h, w, 3), np.uint8)
                img[:] = (frame_value(f), subject_value(s), task_value(t))
                img[20:40, 30:50] = 255  # the "face": a white square the landmarks outline
                (top / s / t).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(top / s / t / f"{f:04d}.jpg", quality=98)
                plane_obj(top / s / t / f"{f:04d}.obj", z=float(f))
                rows.append(f"{f},32,22,48,22,32,38,48,38")  # inside the white square
                if plus:
                    write_image(root / "Thermal" / s / t / f"{f:04d}.png", (frame_value(f),), 40, 1)
            if landmarks:
                lm = root / "2DFeatures" / f"{s}_{t}.csv"
                lm.parent.mkdir(parents=True, exist_ok=True)
                lm.write_text("frame,x1,y1,x2,y2,x3,y3,x4,y4\n" + "\n".join(rows) + "\n")


def write_heavy_tree(root: Path, subjects, frames=range(400), size: int = 512, modalities=("visual", "depth")) -> None:
    """A pre-processed tree that takes seconds to prepare, written in a moment: one noise image per modality
    (slow to decode and resize), hard-linked as every frame of every sequence."""
    rng = np.random.default_rng(0)
    for m in modalities:
        channels = 3 if m == "visual" else 1
        src = root / "noise" / ("visual.jpg" if m == "visual" else f"{m}.png")
        src.parent.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
        Image.fromarray(noise if channels == 3 else noise[..., 0]).save(src, quality=95)
        for s in subjects:
            (root / m / s / "T1").mkdir(parents=True, exist_ok=True)
            for f in frames:
                os.link(src, root / m / s / "T1" / frame_name(f, 4, src.suffix))
    for s in subjects:
        write_labels(root / "AUCoding" / "AU_OCC" / f"{s}_T1.csv", s, "T1", frames)
