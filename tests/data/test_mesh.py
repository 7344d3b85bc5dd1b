import gzip

import numpy as np
import pytest

from farm.data.mesh import FaceRegion, Mesh, MeshError, depth_map, face_region, read_mesh, read_obj, read_wrl

# ----------------------------------------------------------------------------------------------------------- helpers


def grid_mesh(f, x0, x1, y0, y1, step, keep=None):
    """Height field z = f(x, y) on a regular grid, each quad split into two triangles.

    keep(x, y) -> bool per vertex: only triangles whose three vertices are kept survive (vertices compacted)."""
    xs = np.arange(x0, x1 + step / 2, step)
    ys = np.arange(y0, y1 + step / 2, step)
    gx, gy = np.meshgrid(xs, ys)
    verts = np.stack([gx.ravel(), gy.ravel(), f(gx, gy).ravel()], axis=1)
    nx = len(xs)
    i = np.arange(len(ys) - 1)[:, None] * nx + np.arange(nx - 1)[None, :]
    i = i.ravel()
    faces = np.concatenate([np.stack([i, i + 1, i + nx + 1], 1), np.stack([i, i + nx + 1, i + nx], 1)])
    if keep is not None:
        ok = keep(verts[:, 0], verts[:, 1])
        faces = faces[ok[faces].all(axis=1)]
        used = np.unique(faces)
        remap = np.full(len(verts), -1)
        remap[used] = np.arange(len(used))
        verts, faces = verts[used], remap[faces]
    return Mesh(verts, faces)


def hemisphere(r, step, cx=0.0, cy=0.0):
    def f(x, y):
        return np.sqrt(np.maximum(r * r - (x - cx) ** 2 - (y - cy) ** 2, 0.0))

    return grid_mesh(f, cx - r, cx + r, cy - r, cy + r, step, keep=lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= r * r)


def concat(*meshes):
    verts, faces, off = [], [], 0
    for m in meshes:
        verts.append(m.vertices)
        faces.append(m.faces + off)
        off += len(m.vertices)
    return Mesh(np.concatenate(verts), np.concatenate(faces))


def obj_text(mesh, quads=None):
    lines = ["# test mesh", "mtllib none.mtl", "o thing"]
    lines += [f"v {x!r} {y!r} {z!r}" for x, y, z in mesh.vertices.tolist()]
    lines += ["vt 0.5 0.5", "vn 0 0 1", "g group", "s off", "usemtl skin", ""]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces.tolist()]
    return "\n".join(lines) + "\n"


def wrl_text(mesh, sep=", "):
    pts = sep.join(f"{x!r} {y!r} {z!r}" for x, y, z in mesh.vertices.tolist())
    tex = ", ".join("0.25 0.75" for _ in range(len(mesh.vertices)))
    idx = sep.join(f"{a} {b} {c} -1" for a, b, c in mesh.faces.tolist())
    return (
        "#VRML V2.0 utf8\n# exported for a test\n"
        "Transform { children [ Shape {\n"
        '  appearance Appearance { texture ImageTexture { url "face.bmp" } }\n'
        "  geometry IndexedFaceSet {\n"
        "    creaseAngle 0.5  # comment [ with brackets ]\n"
        f"    texCoord TextureCoordinate {{ point [ {tex} ] }}\n"
        f"    coord Coordinate {{ point [ {pts} ] }}\n"
        f"    texCoordIndex [ {idx} ]\n"
        f"    coordIndex [ {idx} ]\n"
        "    normal Normal { vector [ 0 0 1 ] }\n"
        "  }\n} ] }\n"
    )


def write(tmp_path, name, text):
    p = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(p, "wt") as fh:
            fh.write(text)
    else:
        p.write_text(text)
    return p


def pixel_centres(size, region):
    c = np.arange(size)
    x = region.cx - region.side / 2 + (c + 0.5) * region.side / size
    y = region.cy + region.side / 2 - (c + 0.5) * region.side / size
    return np.meshgrid(x, y)  # (X, Y) indexed [row, col]


# --------------------------------------------------------------------------------------------------------- rendering


def test_plane_inside_is_255_and_outside_is_background():
    mesh = grid_mesh(lambda x, y: np.full_like(x, 7.0), -10, 10, -10, 10, 1.0)
    region = FaceRegion(0.0, 0.0, 40.0, z_near=7.0, z_range=10.0)
    img = depth_map(mesh, 40, region)  # 1 mesh unit per pixel; centres at -19.5 .. 19.5
    assert img.shape == (40, 40) and img.dtype == np.uint8
    inside = np.zeros((40, 40), bool)
    inside[10:30, 10:30] = True  # centres with |x|, |y| <= 9.5
    assert (img[inside] == 255).all()
    assert (img[~inside] == 0).all()


def test_plane_below_window_is_1_and_tessellation_has_no_holes():
    # grid vertices land exactly on pixel centres and edges pass through them
    mesh = grid_mesh(lambda x, y: np.zeros_like(x), -4.5, 4.5, -4.5, 4.5, 1.0)
    img = depth_map(mesh, 10, FaceRegion(0.0, 0.0, 10.0, z_near=50.0, z_range=10.0))
    assert (img == 1).all()
    img = depth_map(mesh, 10, FaceRegion(0.0, 0.0, 10.0, z_near=5.0, z_range=10.0))
    assert (img == 128).all()  # 1 + 254 * 0.5


@pytest.mark.parametrize("size", [64, 97])
def test_hemisphere_matches_analytic_depth(size):
    r = 50.0
    mesh = hemisphere(r, 0.5)
    region = FaceRegion(0.0, 0.0, 2.2 * r, z_near=r, z_range=r)
    img = depth_map(mesh, size, region).astype(float)
    x, y = pixel_centres(size, region)
    rho = np.hypot(x, y)
    inner = rho < 0.95 * r
    z = np.sqrt(np.maximum(r * r - rho**2, 0))
    expect = 1 + 254 * np.clip((z - (region.z_near - region.z_range)) / region.z_range, 0, 1)
    assert inner.sum() > 0.5 * size * size
    assert np.abs(img[inner] - expect[inner]).max() <= 2
    assert (img[rho > 1.05 * r] == 0).all()
    assert (img[rho < r - 1] > 0).all()


def test_orientation_rows_grow_downwards_columns_rightwards():
    region = FaceRegion(0.0, 0.0, 20.0, z_near=10.0, z_range=20.0)
    tilted_y = grid_mesh(lambda x, y: 0.5 * y, -10, 10, -10, 10, 1.0)  # nearer at the top (large y)
    img = depth_map(tilted_y, 16, region).astype(int)
    assert img[0].min() > img[-1].max()
    assert (np.diff(img, axis=0) <= 0).all() and (np.diff(img[:, 8]) < 0).all()
    tilted_x = grid_mesh(lambda x, y: 0.5 * x, -10, 10, -10, 10, 1.0)  # nearer on the right (large x)
    img = depth_map(tilted_x, 16, region).astype(int)
    assert img[:, -1].min() > img[:, 0].max()
    assert (np.diff(img[8]) > 0).all()


def test_region_offset_and_scale():
    # a small square plateau at x in [2, 4], y in [-4, -2] lands in the right pixels of a region centred elsewhere
    mesh = concat(
        grid_mesh(lambda x, y: np.zeros_like(x), -10, 10, -10, 10, 2.0),
        grid_mesh(lambda x, y: np.full_like(x, 3.0), 2, 4, -4, -2, 0.5),
    )
    region = FaceRegion(1.0, -1.0, 16.0, z_near=3.0, z_range=6.0)  # x in [-7, 9], y in [-9, 7]; 0.5 per pixel
    img = depth_map(mesh, 32, region)
    plateau = np.zeros((32, 32), bool)
    plateau[18:22, 18:22] = True  # rows: y = 6.75 - 0.5 r in [-4, -2]; cols: x = -6.75 + 0.5 c in [2, 4]
    assert (img[plateau] == 255).all()
    assert (img[~plateau] == 128).all()


@pytest.mark.parametrize("far_first", [True, False])
def test_zbuffer_nearest_wins_regardless_of_face_order(tmp_path, far_first):
    far = grid_mesh(lambda x, y: np.zeros_like(x), -10, 10, -10, 10, 1.0)
    near = grid_mesh(lambda x, y: np.full_like(x, 5.0), 0, 10, -10, 10, 1.0)
    mesh = concat(far, near) if far_first else concat(near, far)
    path = write(tmp_path, "two.obj", obj_text(mesh))
    img = depth_map(read_obj(path), 20, FaceRegion(0.0, 0.0, 20.0, z_near=5.0, z_range=10.0))
    assert (img[:, 10:] == 255).all()  # x > 0: both planes, the near one wins
    assert (img[:, :10] == 128).all()  # x < 0: only the far plane


def test_face_region_ignores_far_background():
    face = hemisphere(30.0, 1.0, cx=5.0, cy=-3.0)
    back = grid_mesh(lambda x, y: np.full_like(x, -500.0), -200, 200, -200, 200, 20.0)
    mesh = concat(back, face)
    reg = face_region(mesh)
    assert reg.z_near == pytest.approx(30.0)
    assert reg.z_range == 100.0
    assert reg.cx == pytest.approx(5.0, abs=0.5) and reg.cy == pytest.approx(-3.0, abs=0.5)
    assert reg.side == pytest.approx(60.0, abs=2.0)
    assert face_region(mesh, margin=1.5).side == pytest.approx(1.5 * reg.side)
    # with a deep enough window the back plane is part of the region
    assert face_region(mesh, z_range=600.0).side == pytest.approx(400.0)
    img = depth_map(mesh, 48)
    assert np.array_equal(img, depth_map(mesh, 48, reg))
    assert img[24, 24] == 255  # nose tip brightest
    assert img[0, 0] == 1  # corner: only the back plane, far beyond the window, clipped to 1


def test_face_region_uses_only_referenced_vertices():
    mesh = grid_mesh(lambda x, y: np.zeros_like(x), -1, 1, -1, 1, 1.0)
    stray = Mesh(np.concatenate([mesh.vertices, [[50.0, 50.0, 10.0]]]), mesh.faces)
    reg = face_region(stray)
    assert (reg.cx, reg.cy, reg.side, reg.z_near) == (0.0, 0.0, 2.0, 0.0)


def test_degenerate_and_outside_triangles_are_harmless():
    verts = np.array([[0, 0, 1], [1, 1, 1], [2, 2, 1], [100, 100, 9], [101, 100, 9], [100, 101, 9.0]])
    mesh = Mesh(verts, [[0, 1, 2], [3, 4, 5]])
    img = depth_map(mesh, 8, FaceRegion(0.0, 0.0, 8.0, 1.0, 1.0))
    assert (img == 0).all()


# ----------------------------------------------------------------------------------------------------------- reading


def test_obj_token_forms_negative_indices_and_quads(tmp_path):
    text = "\n".join(
        [
            "# comment",
            "v 0 0 0",
            "v 1 0 0 1.0",
            "v 1 1 0",
            "v 0 1 0",
            "vt 0 0",
            "vn 0 0 1",
            "g face",
            "f 1/1/1 2/2/2 3/3/3",
            "f 1//1 3//1 4//1",
            "f 1/1 2/1 3/1",
            "  f -4 -3 -2",
            "f 1 2 3 4",
            "v 2 2 2",
            "f -1 -2 -3",
        ]
    )
    m = read_obj(write(tmp_path, "a.obj", text))
    assert m.vertices.dtype == np.float64 and m.faces.dtype == np.int64
    assert m.vertices.shape == (5, 3)
    expect = [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 2, 3], [4, 3, 2]]
    assert m.faces.tolist() == expect


def test_obj_pentagon_is_fan_triangulated(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 2 1 0\nv 1 2 0\nv 0 1 0\nf 1 2 3 4 5\n"
    m = read_obj(write(tmp_path, "p.obj", text))
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]


@pytest.mark.parametrize("suffix", [".obj", ".wrl", ".obj.gz", ".wrl.gz"])
def test_obj_and_vrml_give_the_same_mesh(tmp_path, suffix):
    mesh = grid_mesh(lambda x, y: 0.1 * x * y - 0.3 * y + 2.5, -3, 3, -2, 2, 0.7)
    text = obj_text(mesh) if ".obj" in suffix else wrl_text(mesh)
    got = read_mesh(write(tmp_path, "m" + suffix, text))
    assert np.array_equal(got.vertices, mesh.vertices)
    assert np.array_equal(got.faces, mesh.faces)


def test_vrml_whitespace_only_polygons_and_missing_trailing_terminator(tmp_path):
    text = (
        "#VRML V2.0 utf8\nShape { geometry IndexedFaceSet {\n"
        "coordIndex [ 0 1 2 3 -1\n 0 2 4 ]\n"
        "coord Coordinate { point [ 0 0 0\n 1 0 0\n 1 1 0\n 0 1 0\n 2 2 2 ] }\n"
        "texCoordIndex [ 9 9 9 -1 ] } }\n"
    )
    m = read_wrl(write(tmp_path, "w.wrl", text))
    assert m.vertices.shape == (5, 3)
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 4]]


def test_vrml_several_face_sets_are_concatenated(tmp_path):
    a = grid_mesh(lambda x, y: np.zeros_like(x), 0, 1, 0, 1, 1.0)
    b = grid_mesh(lambda x, y: np.ones_like(x), 5, 7, 0, 1, 1.0)
    text = wrl_text(a) + wrl_text(b).replace("#VRML V2.0 utf8\n", "")
    m = read_wrl(write(tmp_path, "two.wrl", text))
    want = concat(a, b)
    assert np.array_equal(m.vertices, want.vertices) and np.array_equal(m.faces, want.faces)


def test_vrml1_coordinate3(tmp_path):
    text = (
        "#VRML V1.0 ascii\nSeparator {\n"
        "  TextureCoordinate2 { point [ 0 0, 1 0, 1 1 ] }\n"
        "  Coordinate3 { point [ 0 0 0, 1 0 0, 1 1 0, 0 1 0 ] }\n"
        "  IndexedFaceSet { coordIndex [ 0, 1, 2, 3, -1 ] textureCoordIndex [ 0, 1, 2, -1 ] }\n"
        "}\n"
    )
    m = read_mesh(write(tmp_path, "v1.wrl", text))
    assert m.vertices.shape == (4, 3) and m.faces.tolist() == [[0, 1, 2], [0, 2, 3]]


# ------------------------------------------------------------------------------------------------------------ errors


def test_obj_index_out_of_range_names_file_and_line(tmp_path):
    p = write(tmp_path, "bad_index.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n# x\nf 1 2 4\n")
    with pytest.raises(MeshError, match=r"bad_index\.obj:6:.*out of range"):
        read_obj(p)
    p = write(tmp_path, "zero.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n")
    with pytest.raises(MeshError, match=r"zero\.obj:4:"):
        read_obj(p)
    p = write(tmp_path, "neg.obj", "v 0 0 0\nv 1 0 0\nf -1 -2 -3\nv 0 1 0\n")
    with pytest.raises(MeshError, match=r"neg\.obj:3:"):
        read_obj(p)


def test_obj_malformed_lines_name_the_line(tmp_path):
    with pytest.raises(MeshError, match=r"short\.obj:3:.*3 numbers"):
        read_obj(write(tmp_path, "short.obj", "v 0 0 0\nv 1 0 0\nv 1 2\nf 1 2 3\n"))
    with pytest.raises(MeshError, match=r"text\.obj:2:"):
        read_obj(write(tmp_path, "text.obj", "v 0 0 0\nv 1 zero 0\nv 0 1 0\nf 1 2 3\n"))
    with pytest.raises(MeshError, match=r"twoface\.obj:4:.*at least 3"):
        read_obj(write(tmp_path, "twoface.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n"))
    with pytest.raises(MeshError, match=r"word\.obj:4:.*'x/1'"):
        read_obj(write(tmp_path, "word.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1/1 2/1 x/1\n"))


def test_empty_and_faceless_files(tmp_path):
    with pytest.raises(MeshError, match=r"empty\.obj.*no vertices"):
        read_mesh(write(tmp_path, "empty.obj", ""))
    with pytest.raises(MeshError, match=r"nofaces\.obj.*no faces"):
        read_mesh(write(tmp_path, "nofaces.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n"))
    with pytest.raises(MeshError, match=r"empty\.wrl.*no coordinates"):
        read_mesh(write(tmp_path, "empty.wrl", ""))


def test_vrml_errors(tmp_path):
    def shape(fields):
        return "#VRML V2.0 utf8\nShape { geometry IndexedFaceSet {\n" + fields + "\n} }\n"

    with pytest.raises(MeshError, match=r"noidx\.wrl.*coordIndex"):
        text = shape("coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }\ntexCoordIndex [ 0 1 2 -1 ]")
        read_wrl(write(tmp_path, "noidx.wrl", text))
    with pytest.raises(MeshError, match=r"range\.wrl:4:.*coordIndex 3 out of range"):
        text = shape("coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }\ncoordIndex [ 0, 1, 3, -1 ]")
        read_wrl(write(tmp_path, "range.wrl", text))
    with pytest.raises(MeshError, match=r"odd\.wrl:3:.*8 numbers.*multiple of 3"):
        text = shape("coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 ] }\ncoordIndex [ 0, 1, 2, -1 ]")
        read_wrl(write(tmp_path, "odd.wrl", text))
    with pytest.raises(MeshError, match=r"texonly\.wrl.*no coordinates"):
        text = shape("texCoord TextureCoordinate { point [ 0 0, 1 0, 0 1 ] }\ncoordIndex [ 0 1 2 ]")
        read_wrl(write(tmp_path, "texonly.wrl", text))


def test_unsupported_suffix_and_unreadable_file(tmp_path):
    with pytest.raises(MeshError, match=r"face\.ply.*\.obj.*\.wrl"):
        read_mesh(write(tmp_path, "face.ply", "ply\n"))
    with pytest.raises(MeshError, match=r"missing\.obj"):
        read_mesh(tmp_path / "missing.obj")
    with pytest.raises(MeshError, match=r"notgz\.obj\.gz"):
        read_mesh(write(tmp_path, "notgz.obj", "v 0 0 0\n").rename(tmp_path / "notgz.obj.gz"))


def test_mesh_validates_arrays():
    with pytest.raises(ValueError):
        Mesh(np.zeros((3, 2)), np.zeros((1, 3), int))
    with pytest.raises(ValueError):
        Mesh(np.zeros((3, 3)), [[0, 1, 3]])
    m = Mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    assert m.vertices.dtype == np.float64 and m.faces.dtype == np.int64


def test_vrml_def_use_shares_coordinates(tmp_path):
    text = (
        "#VRML V2.0 utf8\n"
        "Shape { geometry IndexedFaceSet { coord DEF pts Coordinate { point [ 0 0 0, 1 0 0, 1 1 0, 0 1 0 ] }\n"
        "  coordIndex [ 0 1 2 -1 ] } }\n"
        "Shape { geometry IndexedFaceSet { coord USE pts coordIndex [ 0, 2, 3, -1 ] } }\n"
    )
    m = read_wrl(write(tmp_path, "use.wrl", text))
    assert m.vertices.shape == (4, 3) and m.faces.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_chunked_rasterisation_matches_single_pass(monkeypatch):
    import farm.data.mesh as mesh_module

    mesh = concat(hemisphere(20.0, 2.0), grid_mesh(lambda x, y: np.full_like(x, -5.0), -25, 25, -25, 25, 50.0))
    region = FaceRegion(0.0, 0.0, 48.0, z_near=20.0, z_range=30.0)
    whole = depth_map(mesh, 64, region)
    monkeypatch.setattr(mesh_module, "_CHUNK", 777)  # splits inside the two big background triangles too
    assert np.array_equal(depth_map(mesh, 64, region), whole)
    assert (whole > 0).all() and whole[32, 32] == 255 and whole[0, 0] == round(1 + 254 * 5 / 30)
