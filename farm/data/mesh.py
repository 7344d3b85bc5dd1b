"""Triangle meshes (OBJ / VRML) and orthographic depth-map rendering of the face region.

Conventions: mesh units as stored in the file (BP4D / BP4D+: millimetres); x right, y up, z towards the
viewer (the camera sits at +z looking along -z, so larger z = nearer). Depth maps are orthographic
projections along z: image column grows with +x, image row grows with -y (row 0 = top = largest y).
Grey values: 1 (z_near - z_range or further) .. 255 (z_near or nearer); 0 = no surface (background, holes).
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["MeshError", "Mesh", "FaceRegion", "read_obj", "read_wrl", "read_mesh", "face_region", "depth_map"]

SUPPORTED_SUFFIXES = (".obj", ".wrl", ".obj.gz", ".wrl.gz")


class MeshError(ValueError):
    """A mesh file is unreadable or malformed; the message names the file (and line where known) and what was expected."""


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh.

    vertices: (V, 3) float64, x right, y up, z towards the viewer (camera at +z looking along -z).
    faces: (F, 3) int64, 0-based vertex indices of triangles (polygons are fan-triangulated on reading).
    Equality is identity (arrays are not compared); compare ``vertices`` / ``faces`` explicitly.
    """

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self) -> None:
        v = np.ascontiguousarray(self.vertices, dtype=np.float64)
        f = np.ascontiguousarray(self.faces, dtype=np.int64)
        if f.size == 0:
            f = f.reshape(0, 3)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"Mesh.vertices must have shape (V, 3), got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"Mesh.faces must have shape (F, 3), got {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"Mesh.faces index out of range [0, {len(v)}): min {f.min()}, max {f.max()}")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)


# ----------------------------------------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
    """The file's text; ``*.gz`` is gunzipped. Undecodable bytes are replaced (only ASCII matters here)."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise MeshError(f"{path}: cannot read mesh file ({e})") from e
    return data.decode("utf-8", errors="replace")


def _fan(flat: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Fan-triangulate polygons given as concatenated vertex indices ``flat`` with ``counts`` (all >= 3)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and (counts == 3).all():
        return flat.reshape(-1, 3)
    ntri = counts - 2
    starts = np.cumsum(counts) - counts
    total = int(ntri.sum())
    poly = np.repeat(np.arange(len(counts)), ntri)
    j = np.arange(total) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    s = starts[poly]
    return np.stack([flat[s], flat[s + j + 1], flat[s + j + 2]], axis=1)


_WS = (" ", "\t")
_SLASH_TAIL = re.compile(r"/\S*")


def read_obj(path: str | PathLike) -> Mesh:
    """Read a Wavefront OBJ (``v`` and ``f`` lines; ``*.obj.gz`` too).

    ``v x y z [w]``: w and extra values (vertex colours) are ignored. ``f`` tokens ``i``, ``i/t``, ``i//n``,
    ``i/t/n``; 1-based, negative = relative to the vertices defined so far; polygons fan-triangulated.
    Other line types are ignored. Raises MeshError (``file:line: ...``) on malformed input.
    """
    path = Path(path)
    lines = _read_text(path).splitlines()
    vtok: list[str] = []
    vline: list[int] = []
    ftok: list[str] = []
    fcount: list[int] = []
    fline: list[int] = []
    fnv: list[int] = []  # vertices defined before each f line (base of negative indices)
    for i, line in enumerate(lines):
        if line[:1] in _WS:
            line = line.lstrip()
        head = line[:2]
        if head == "v " or head == "v\t" or line == "v":
            parts = line.split()
            if len(parts) < 4:
                raise MeshError(f"{path}:{i + 1}: vertex line needs 3 numbers 'v x y z', got {line.strip()!r}")
            vtok += parts[1:4]
            vline.append(i + 1)
        elif head == "f " or head == "f\t" or line == "f":
            parts = line.split()
            n = len(parts) - 1
            if n < 3:
                raise MeshError(f"{path}:{i + 1}: face line needs at least 3 vertices, got {line.strip()!r}")
            ftok += parts[1:]
            fcount.append(n)
            fline.append(i + 1)
            fnv.append(len(vline))
    if not vline:
        raise MeshError(f"{path}: no vertices ('v x y z' lines) found")
    if not fline:
        raise MeshError(f"{path}: no faces ('f i j k' lines) found")

    # vertices: one vectorised conversion; locate the culprit line only on failure
    try:
        verts = np.array(vtok, dtype=np.float64).reshape(-1, 3)
        ok = bool(np.isfinite(verts).all())
    except ValueError:
        ok = False
    if not ok:
        for k, ln in enumerate(vline):
            vals = vtok[3 * k : 3 * k + 3]
            try:
                good = all(np.isfinite(float(t)) for t in vals)
            except ValueError:
                good = False
            if not good:
                raise MeshError(f"{path}:{ln}: vertex line needs 3 finite numbers, got {' '.join(vals)!r}")
    nverts = len(vline)

    # faces: keep the vertex part of each token, convert at once
    counts = np.asarray(fcount, dtype=np.int64)
    ends = np.cumsum(counts)
    joined = " ".join(ftok)
    if "/" in joined:
        joined = _SLASH_TAIL.sub("", joined)
    toks = joined.split()
    idx = None
    if len(toks) == len(ftok):
        try:
            idx = np.array(toks, dtype=np.int64)
        except (ValueError, OverflowError):
            idx = None
    if idx is None:
        for k, ln in enumerate(fline):
            for t in ftok[ends[k] - counts[k] : ends[k]]:
                try:
                    int(t.split("/", 1)[0])
                except ValueError:
                    raise MeshError(f"{path}:{ln}: face vertex {t!r} is not an integer index") from None
        raise MeshError(f"{path}: malformed face indices")  # unreachable in practice
    base = np.repeat(np.asarray(fnv, dtype=np.int64), counts)
    idx0 = np.where(idx > 0, idx - 1, base + idx)
    bad = (idx == 0) | (idx0 < 0) | (idx0 >= nverts)
    if bad.any():
        k = int(np.argmax(bad))
        ln = fline[int(np.searchsorted(ends, k, side="right"))]
        raise MeshError(
            f"{path}:{ln}: face index {idx[k]} out of range (1-based; {nverts} vertices, negative = relative)"
        )
    return Mesh(verts, _fan(idx0, counts))


_COMMENT = re.compile(r"#[^\n\r]*")
# patterns start with a literal (fast scanning); the word boundary before it is checked in _keyword()
_COORD = re.compile(r"Coordinate3?\s*\{\s*point\s*\[([^\]]*)\]")
_COORD_INDEX = re.compile(r"coordIndex\s*\[([^\]]*)\]")
_IFS = re.compile(r"IndexedFaceSet\s*\{")
_DEF = re.compile(r"\bDEF\s+([^\s{}\[\],#\"']+)\s+$")
_USE = re.compile(r"\bcoord\s+USE\s+([^\s{}\[\],#\"']+)")
_BRACE = re.compile(r"[{}]")


def _keyword(pattern: re.Pattern[str], text: str) -> list[re.Match[str]]:
    """Matches of ``pattern`` not preceded by an identifier character (so TextureCoordinate != Coordinate)."""
    return [
        m
        for m in pattern.finditer(text)
        if m.start() == 0 or not (text[m.start() - 1].isalnum() or text[m.start() - 1] in "_-")
    ]


def _def_name(text: str, pos: int) -> str | None:
    m = _DEF.search(text[max(0, pos - 200) : pos])
    return m.group(1) if m else None


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def read_wrl(path: str | PathLike) -> Mesh:
    """Read the IndexedFaceSet geometry of a VRML 2.0 / 1.0 file (``*.wrl.gz`` too).

    Coordinates come from ``Coordinate { point [...] }`` (VRML 1: ``Coordinate3``), faces from ``coordIndex``
    (-1 ends a polygon; polygons fan-triangulated, ones with < 3 vertices skipped). Texture coordinates,
    normals and colours are ignored; several IndexedFaceSets are concatenated. Transforms are NOT applied.
    """
    path = Path(path)
    text = _COMMENT.sub("", _read_text(path))
    coords = _keyword(_COORD, text)
    cindex = _keyword(_COORD_INDEX, text)
    if not coords:
        raise MeshError(f"{path}: no coordinates ('Coordinate {{ point [ x y z, ... ] }}') found")
    if not cindex:
        raise MeshError(f"{path}: no 'coordIndex [ ... ]' found")
    sets = _keyword(_IFS, text)
    if not sets:
        raise MeshError(f"{path}: no IndexedFaceSet found")

    # extent of each IndexedFaceSet node by brace matching (braces are few; number lists have none)
    close: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            close[stack.pop()] = m.start()

    blocks: dict[int, tuple[int, np.ndarray]] = {}  # coordinate match index -> (vertex offset, points)
    vert_parts: list[np.ndarray] = []
    face_parts: list[np.ndarray] = []
    nverts = 0
    for s in sets:
        lo, hi = s.start(), close.get(s.end() - 1, len(text))
        ci = next((m for m in cindex if lo <= m.start() < hi), None)
        if ci is None:
            continue
        k = next((j for j, m in enumerate(coords) if lo <= m.start() < hi), None)
        if k is None:
            use = _USE.search(text, lo, hi)
            if use is not None:
                named = [
                    j for j, m in enumerate(coords) if m.start() < lo and _def_name(text, m.start()) == use.group(1)
                ]
                if not named:
                    raise MeshError(f"{path}:{_line_of(text, use.start())}: 'coord USE {use.group(1)}' has no DEF")
                k = named[-1]
            else:  # VRML 1: the last Coordinate3 before the face set
                before = [j for j, m in enumerate(coords) if m.start() < lo]
                if not before:
                    raise MeshError(f"{path}:{_line_of(text, lo)}: IndexedFaceSet without coordinates")
                k = before[-1]
        if k not in blocks:
            m = coords[k]
            toks = m.group(1).replace(",", " ").split()
            try:
                pts = np.array(toks, dtype=np.float64)
            except ValueError:
                raise MeshError(f"{path}:{_line_of(text, m.start())}: non-numeric value in Coordinate point") from None
            if pts.size == 0 or pts.size % 3:
                raise MeshError(
                    f"{path}:{_line_of(text, m.start())}: Coordinate point list has {pts.size} numbers, "
                    "expected a non-empty multiple of 3 (x y z per point)"
                )
            if not np.isfinite(pts).all():
                raise MeshError(f"{path}:{_line_of(text, m.start())}: non-finite value in Coordinate point")
            blocks[k] = (nverts, pts.reshape(-1, 3))
            vert_parts.append(blocks[k][1])
            nverts += len(blocks[k][1])
        offset, pts = blocks[k]
        try:
            idx = np.array(ci.group(1).replace(",", " ").split(), dtype=np.int64)
        except (ValueError, OverflowError):
            raise MeshError(f"{path}:{_line_of(text, ci.start())}: non-integer value in coordIndex") from None
        bad = (idx < -1) | (idx >= len(pts))
        if bad.any():
            raise MeshError(
                f"{path}:{_line_of(text, ci.start())}: coordIndex {idx[np.argmax(bad)]} out of range "
                f"(0-based; {len(pts)} points; -1 ends a polygon)"
            )
        sep = idx == -1
        pid = (np.cumsum(sep) - sep)[~sep]
        vals = idx[~sep]
        counts = np.bincount(pid) if pid.size else np.zeros(0, np.int64)
        keep = counts[pid] >= 3 if pid.size else np.zeros(0, bool)
        if keep.any():
            face_parts.append(_fan(vals[keep] + offset, counts[counts >= 3]))
    if not face_parts:
        raise MeshError(f"{path}: no faces (no coordIndex polygon with >= 3 vertices in an IndexedFaceSet)")
    return Mesh(np.concatenate(vert_parts), np.concatenate(face_parts))


def read_mesh(path: str | PathLike) -> Mesh:
    """Read a mesh by suffix: ``.obj``, ``.wrl``, ``.obj.gz``, ``.wrl.gz`` (case-insensitive)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".obj", ".obj.gz")):
        return read_obj(path)
    if name.endswith((".wrl", ".wrl.gz")):
        return read_wrl(path)
    raise MeshError(f"{path}: unsupported mesh file suffix; supported: {', '.join(SUPPORTED_SUFFIXES)}")


# --------------------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class FaceRegion:
    """Square crop in the xy plane plus the depth window, all in mesh units.

    (cx, cy): centre of the square; side: its side length. Depth z in [z_near - z_range, z_near] maps to grey
    [1, 255] (z_near, e.g. the nose tip, brightest); nearer is clipped to 255, further to 1.
    """

    cx: float
    cy: float
    side: float
    z_near: float
    z_range: float


def face_region(mesh: Mesh, z_range: float = 100.0, margin: float = 1.0) -> FaceRegion:
    """Face-region crop: z_near = max z of the (face-referenced) vertices; the square is the xy bounding box of the
    vertices with z >= z_near - z_range (drops neck / hair / shoulders further back), centred, side = margin * the
    box's larger extent."""
    if not z_range > 0 or not margin > 0:
        raise ValueError(f"face_region needs z_range > 0 and margin > 0, got {z_range}, {margin}")
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[mesh.faces.ravel()] = True
    v = mesh.vertices[used]
    v = v[np.isfinite(v).all(axis=1)]
    if len(v) == 0:
        raise ValueError("face_region: the mesh has no faces")
    z_near = float(v[:, 2].max())
    near = v[v[:, 2] >= z_near - z_range]
    lo, hi = near[:, :2].min(axis=0), near[:, :2].max(axis=0)
    side = float(margin * (hi - lo).max())
    if not side > 0:
        raise ValueError("face_region: the face region has zero extent in x and y")
    c = (lo + hi) / 2
    return FaceRegion(float(c[0]), float(c[1]), side, z_near, float(z_range))


_EPS = 1e-9  # barycentric tolerance: pixel centres on a shared edge are covered by both triangles
_CHUNK = 1 << 20  # candidate (triangle, pixel) pairs evaluated at once


def _zbuffer(mesh: Mesh, size: int, region: FaceRegion) -> np.ndarray:
    """(size, size) float64 of the nearest surface z at each pixel centre; -inf where no triangle covers it."""
    zbuf = np.full(size * size, -np.inf)
    if len(mesh.faces) == 0:
        return zbuf.reshape(size, size)
    s = size / region.side
    v = mesh.vertices
    u = (v[:, 0] - (region.cx - region.side / 2)) * s - 0.5  # pixel column c has its centre at u = c
    w = ((region.cy + region.side / 2) - v[:, 1]) * s - 0.5  # pixel row r has its centre at w = r
    f = mesh.faces
    u0, u1, u2 = u[f[:, 0]], u[f[:, 1]], u[f[:, 2]]
    w0, w1, w2 = w[f[:, 0]], w[f[:, 1]], w[f[:, 2]]
    z = v[:, 2]
    z0, z1, z2 = z[f[:, 0]], z[f[:, 1]], z[f[:, 2]]

    # pixel-centre bounding boxes (clipped to the image), culling what covers no centre
    with np.errstate(invalid="ignore"):
        cmin = np.ceil(np.minimum(np.minimum(u0, u1), u2) - 1e-7)
        cmax = np.floor(np.maximum(np.maximum(u0, u1), u2) + 1e-7)
        rmin = np.ceil(np.minimum(np.minimum(w0, w1), w2) - 1e-7)
        rmax = np.floor(np.maximum(np.maximum(w0, w1), w2) + 1e-7)
        np.clip(cmin, 0, size, out=cmin)
        np.clip(rmin, 0, size, out=rmin)
        np.clip(cmax, -1, size - 1, out=cmax)
        np.clip(rmax, -1, size - 1, out=rmax)
        e1u, e1w, e2u, e2w = u1 - u0, w1 - w0, u2 - u0, w2 - w0
        area = e1u * e2w - e2u * e1w
        keep = (cmin <= cmax) & (rmin <= rmax) & (np.abs(area) > 1e-12) & np.isfinite(z0 + z1 + z2)
    if not keep.any():
        return zbuf.reshape(size, size)
    inv = 1.0 / area[keep]
    # per triangle: origin, barycentric gradients (l1, l2 as functions of (dc, dr)), z at vertex 0 and deltas
    coef = np.stack(
        [
            u0[keep],
            w0[keep],
            e2w[keep] * inv,
            -e2u[keep] * inv,
            -e1w[keep] * inv,
            e1u[keep] * inv,
            z0[keep],
            (z1 - z0)[keep],
            (z2 - z0)[keep],
        ],
        axis=1,
    )
    c0 = cmin[keep].astype(np.int64)
    r0 = rmin[keep].astype(np.int64)
    bw = cmax[keep].astype(np.int64) - c0 + 1
    k = bw * (rmax[keep].astype(np.int64) - r0 + 1)  # candidate pixels per triangle
    starts = np.cumsum(k) - k
    total = int(starts[-1] + k[-1])
    for a in range(0, total, _CHUNK):
        b = min(a + _CHUNK, total)
        if a == 0 and b == total:
            tri = np.repeat(np.arange(len(k)), k)
        else:
            tri = np.searchsorted(starts, np.arange(a, b), side="right") - 1
        local = np.arange(a, b) - starts[tri]
        bwt = bw[tri]
        col = c0[tri] + local % bwt
        row = r0[tri] + local // bwt
        cf = coef[tri]
        dc = col - cf[:, 0]
        dr = row - cf[:, 1]
        l1 = cf[:, 2] * dc + cf[:, 3] * dr
        l2 = cf[:, 4] * dc + cf[:, 5] * dr
        inside = (l1 >= -_EPS) & (l2 >= -_EPS) & (l1 + l2 <= 1 + _EPS)
        zc = (cf[:, 6] + cf[:, 7] * l1 + cf[:, 8] * l2)[inside]
        np.maximum.at(zbuf, (row * size + col)[inside], zc)
    return zbuf.reshape(size, size)


def depth_map(mesh: Mesh, size: int, region: FaceRegion | None = None) -> np.ndarray:
    """Orthographic depth image (size, size) uint8 of ``region`` (default: ``face_region(mesh)``).

    Pixel (r, c) samples x = cx - side/2 + (c + 0.5) * side/size, y = cy + side/2 - (r + 0.5) * side/size; the
    nearest (largest z) triangle covering that point wins, z interpolated linearly over the triangle. Grey =
    round(1 + 254 * clip((z - (z_near - z_range)) / z_range, 0, 1)); 0 where no triangle covers the pixel.
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"depth_map size must be >= 1, got {size}")
    if region is None:
        region = face_region(mesh)
    if not region.side > 0 or not region.z_range > 0:
        raise ValueError(f"depth_map needs region.side > 0 and region.z_range > 0, got {region}")
    zbuf = _zbuffer(mesh, size, region)
    covered = np.isfinite(zbuf)
    t = np.clip((zbuf[covered] - (region.z_near - region.z_range)) / region.z_range, 0.0, 1.0)
    out = np.zeros((size, size), dtype=np.uint8)
    out[covered] = np.rint(1 + 254 * t).astype(np.uint8)
    return out
