"""Face crops for the raw release layout: from released 2D landmarks where present, else a centre crop.

The crop is a square around the landmarks' bounding box (side = `margin` x its larger side), rotated
so the eyes are level when the landmark scheme is known (49-point IntraFace, 68-point iBUG, 83-point
BP4D), resampled to `size` x `size` with bilinear interpolation. Without landmarks, the largest
centred square of the frame is used. Pre-processed trees (the common case) skip all of this.
The released landmark files' exact layout is *unverified* (DOMAIN.md section 4): `read_landmarks`
accepts CSV (frame, x1, y1, ..., xL, yL) and NumPy files, and MATLAB files when scipy is installed.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image

# (left-eye indices, right-eye indices) for the landmark schemes whose eye points are known
EYE_INDICES: dict[int, tuple[slice, slice]] = {
    49: (slice(19, 25), slice(25, 31)),  # IntraFace / SDM (BP4D 2DFeatures)
    68: (slice(36, 42), slice(42, 48)),  # iBUG / dlib / OpenFace
    83: (slice(20, 28), slice(28, 36)),  # BP4D 3D feature points
}


class LandmarkError(ValueError):
    """A landmark file is unreadable or has an unexpected layout; the message names it."""


def read_landmarks(path: str | Path) -> dict[int, np.ndarray]:
    """frame -> (L, 2) float array of x, y pixel coordinates in the 2D frame."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        out: dict[int, np.ndarray] = {}
        with path.open(newline="") as f:
            for line, row in enumerate(csv.reader(f), start=1):
                if not row or not row[0].strip() or not row[0].strip().replace(".", "", 1).isdigit():
                    continue  # blank or header line
                vals = row[1:]
                if len(vals) % 2 or not vals:
                    raise LandmarkError(
                        f"{path} line {line}: expected frame, x1, y1, ..., xL, yL; got {len(row)} cells"
                    )
                try:
                    out[int(float(row[0]))] = np.asarray(vals, dtype=np.float64).reshape(-1, 2)
                except ValueError:
                    raise LandmarkError(f"{path} line {line}: non-numeric coordinate") from None
        return out
    if suffix in (".npy", ".npz"):
        data = np.load(path, allow_pickle=False)
        arr = data[data.files[0]] if suffix == ".npz" else data
        return _from_array(arr, path)
    if suffix == ".mat":
        try:
            from scipy.io import loadmat
        except ImportError:
            raise LandmarkError(f"{path}: reading MATLAB landmark files needs scipy (pip install scipy)") from None
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
        for key, value in mat.items():
            if key.startswith("__"):
                continue
            arr = _numeric_landmarks(value)
            if arr is not None:
                return _from_array(arr, path)
        raise LandmarkError(
            f"{path}: no (frames, L, 2) landmark array found (variables: {', '.join(k for k in mat if not k.startswith('__'))})"
        )
    raise LandmarkError(f"{path}: unsupported landmark file type {suffix!r} (csv, txt, npy, npz, mat)")


def _numeric_landmarks(value) -> np.ndarray | None:
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.ndim in (2, 3):
        return value
    fields = getattr(value, "_fieldnames", None)
    if fields:  # a MATLAB struct such as fit.pred
        for name in ("pred", "landmarks", "pts", "points"):
            if name in fields:
                return _numeric_landmarks(getattr(value, name))
    if isinstance(value, np.ndarray) and value.dtype == object and value.size:
        frames = [_numeric_landmarks(v) for v in value.ravel()]
        if all(f is not None and f.ndim == 2 and f.shape == frames[0].shape for f in frames):
            return np.stack(frames)
    return None


def _from_array(arr: np.ndarray, path: Path) -> dict[int, np.ndarray]:
    """(N, L, 2) or (N, 2L) -> {frame index: (L, 2)}; frames numbered from 0 in file order."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] % 2 == 0:
        arr = arr.reshape(len(arr), -1, 2)
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise LandmarkError(f"{path}: landmark array of shape {arr.shape}, expected (frames, L, 2) or (frames, 2L)")
    return {i: a for i, a in enumerate(arr) if np.isfinite(a).all()}


def crop_geometry(landmarks: np.ndarray, margin: float = 1.4) -> tuple[float, float, float, float]:
    """-> (cx, cy, side, angle in radians) of the face crop for one frame's (L, 2) landmarks."""
    pts = np.asarray(landmarks, dtype=np.float64)
    lo, hi = pts.min(0), pts.max(0)
    cx, cy = (lo + hi) / 2
    side = margin * float((hi - lo).max())
    angle = 0.0
    eyes = EYE_INDICES.get(len(pts))
    if eyes is not None:
        (lx, ly), (rx, ry) = pts[eyes[0]].mean(0), pts[eyes[1]].mean(0)
        angle = math.atan2(ry - ly, rx - lx)
    return float(cx), float(cy), side, angle


def align_crop(image: np.ndarray, size: int, landmarks: np.ndarray | None = None, margin: float = 1.4) -> np.ndarray:
    """(H, W, C) uint8 frame -> (size, size, C) uint8 face crop (see the module docstring)."""
    h, w = image.shape[:2]
    if landmarks is None:
        cx, cy, side, angle = w / 2, h / 2, float(min(h, w)), 0.0
    else:
        cx, cy, side, angle = crop_geometry(landmarks, margin)
    # Rotate and crop at (about) the source resolution, then resize with PIL's antialiasing filter:
    # output pixel (u, v) of an n x n crop -> input (x, y) = centre + R(angle) @ ((u, v) + 0.5 - n/2) * side/n
    n = max(size, int(round(side))) if side > 1.5 * size else size
    s = side / n
    c, si = math.cos(angle), math.sin(angle)
    a, b, d, e = c * s, -si * s, si * s, c * s
    off = 0.5 - n / 2
    coeffs = (a, b, cx + (a + b) * off - 0.5, d, e, cy + (d + e) * off - 0.5)
    squeeze = image.shape[2] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    pil = pil.transform((n, n), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    if n != size:
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(pil)
    return out[..., None] if squeeze else out
