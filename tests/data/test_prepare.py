import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_bp4d import (
    expected_labels,
    frame_value,
    sphere_obj,
    subject_value,
    task_value,
    write_heavy_tree,
    write_image,
    write_labels,
    write_raw,
    write_tree,
)
from PIL import Image

from farm.cli import main
from farm.data.folds import resolve_partitions, standard_partitions
from farm.data.inspect import describe
from farm.data.prepare import (
    FRAMES_WITHOUT_LABELS,
    LABELS_WITHOUT_FRAMES,
    MISSING_IMAGE,
    MISSING_LANDMARKS,
    UNREADABLE_IMAGE,
    PrepareSpec,
    StrictError,
    prepare,
)
from farm.data.store import DatasetError, FrameStore, read_skips

BP4D_SUBJECTS = sorted(s for p in standard_partitions("bp4d").parts.values() for s in p)


def rows(store):
    return list(zip(store.manifest.column("subject").to_pylist(), store.manifest.column("task").to_pylist(),
                    store.manifest.column("frame").to_pylist()))  # fmt: skip


def assert_images_match(store, skip=()):
    """Every stored frame's pixels say which subject, task and frame file it came from."""
    for i, (s, t, f) in enumerate(rows(store)):
        v = store.image(i, "visual")
        v = np.median(v.reshape(-1, 3), axis=0)[None, None]  # raw frames hold a white "face" square
        assert abs(int(v[..., 0].mean()) - frame_value(f)) <= 5, (s, t, f)
        assert abs(int(v[..., 1].mean()) - subject_value(s)) <= 5, (s, t, f)
        assert abs(int(v[..., 2].mean()) - task_value(t)) <= 5, (s, t, f)
        for m in [m for m in store.meta.modality_names[1:] if m not in skip]:
            assert abs(int(store.image(i, m).mean()) - frame_value(f)) <= 2, (m, s, t, f)


def test_tree_with_all_41_bp4d_subjects_lands_in_the_standard_folds(tmp_path):
    frames = range(98, 101)  # 098..100: crosses the 3-digit boundary, 3- and 4-digit names alternate
    write_tree(tmp_path / "raw", BP4D_SUBJECTS, frames=frames, size=20)
    meta = prepare(PrepareSpec("bp4d", str(tmp_path / "raw"), size=16, codec="png"), tmp_path / "out", workers=2)
    store = FrameStore(tmp_path / "out")
    assert meta.num_frames == len(store) == 41 * 3 and sorted(meta.subjects) == BP4D_SUBJECTS
    assert store.meta.modality("visual").height == 16 and store.meta.modality("depth").channels == 1
    assert_images_match(store)
    want = np.array([expected_labels(s, t, f) for s, t, f in rows(store)])
    assert (store.labels() == want).all()
    parts, notes = resolve_partitions(store.meta, set(store.subjects))
    assert parts.parts == standard_partitions("bp4d").parts and not notes
    assert read_skips(tmp_path / "out").num_rows == 0


def test_every_quirk_is_kept_or_reported(tmp_path):
    raw = tmp_path / "raw"
    nines = {(11, 4), (12, 23)}
    write_tree(raw, ["F001", "M001"], tasks=("T1", "T2"), frames=range(10, 14), nines=nines, size=20)
    (raw / "depth" / "F001" / "T1" / "0011.png").unlink()  # missing modality frame
    corrupt = raw / "visual" / "M001" / "T2" / "012.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated JPEG
    for m in ("visual", "depth"):  # frame 13 of F001/T2 has a label row but no image at all
        next((raw / m / "F001" / "T2").glob("*13.*")).unlink()
    write_image(raw / "visual" / "M001" / "T1" / "099.jpg", (1, 2, 3), 20, 3)  # image without a label row
    write_image(raw / "depth" / "M001" / "T1" / "099.png", (1,), 20, 1)
    write_tree(raw, ["F002"], tasks=("T1",), frames=range(10, 12), size=20)
    (raw / "AUCoding" / "AU_OCC" / "F002_T1.csv").unlink()  # a sequence with no label file

    with pytest.raises(StrictError, match="would be skipped"):
        prepare(PrepareSpec("bp4d", str(raw), size=20, codec="png"), tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict" / "dataset.json").exists()

    prepare(PrepareSpec("bp4d", str(raw), size=20, codec="png"), tmp_path / "out", workers=1)
    store = FrameStore(tmp_path / "out")
    kept = set(rows(store))
    skipped = {
        (r["subject"], r["task"], r["frame"], r["modality"], r["reason"])
        for r in read_skips(tmp_path / "out").to_pylist()
    }
    assert skipped == {
        ("F001", "T1", 11, "depth", MISSING_IMAGE),
        ("M001", "T2", 12, "visual", UNREADABLE_IMAGE),
        ("F001", "T2", 13, "", LABELS_WITHOUT_FRAMES),
        ("M001", "T1", 99, "visual", FRAMES_WITHOUT_LABELS),
        ("M001", "T1", 99, "depth", FRAMES_WITHOUT_LABELS),
        ("F002", "T1", 10, "visual", FRAMES_WITHOUT_LABELS),
        ("F002", "T1", 11, "visual", FRAMES_WITHOUT_LABELS),
        ("F002", "T1", 10, "depth", FRAMES_WITHOUT_LABELS),
        ("F002", "T1", 11, "depth", FRAMES_WITHOUT_LABELS),
    }
    assert len(kept) == 2 * 2 * 4 - 3 and ("F001", "T1", 11) not in kept and ("M001", "T2", 12) not in kept
    assert_images_match(store)
    labels = dict(zip(rows(store), store.labels()))
    assert labels[("F001", "T1", 12)][10] == -1 and labels[("M001", "T1", 11)][2] == -1  # 9 -> unknown
    assert (labels[("F001", "T1", 10)] >= 0).all()
    report = describe(tmp_path / "out")
    for reason in (MISSING_IMAGE, UNREADABLE_IMAGE, LABELS_WITHOUT_FRAMES, FRAMES_WITHOUT_LABELS):
        assert reason in report
    assert str(corrupt) in report and "9 (frame, modality) entries" in report


def test_bp4dplus_named_header_task_filter_and_frame_offset(tmp_path):
    raw = tmp_path / "raw"
    write_tree(raw, ["F001", "M001"], tasks=("T1", "T2", "T8"), frames=range(5, 8), style="named",
               modalities=("visual", "depth", "thermal"), size=20)  # fmt: skip
    prepare(PrepareSpec("bp4dplus", str(raw), size=20, codec="png"), tmp_path / "out", workers=1)
    store = FrameStore(tmp_path / "out")
    assert store.meta.modality_names == ("visual", "depth", "thermal")
    assert sorted(set(store.manifest.column("task").to_pylist())) == ["T1", "T8"]  # T2 is not AU-coded in BP4D+
    assert_images_match(store)
    assert (store.labels() == np.array([expected_labels(s, t, f) for s, t, f in rows(store)])).all()

    # labels numbered one above the images: --frame-offset -1 maps label row f to image f-1
    shifted = tmp_path / "shifted"
    write_tree(shifted, ["F001"], tasks=("T1",), frames=range(5, 8), style="named",
               modalities=("visual", "depth", "thermal"), size=20)  # fmt: skip
    write_labels(shifted / "AUCoding" / "AU_OCC" / "F001_T1.csv", "F001", "T1", range(6, 9), "named")
    prepare(PrepareSpec("bp4dplus", str(shifted), size=20, codec="png", frame_offset=-1), tmp_path / "o2", workers=1)
    store = FrameStore(tmp_path / "o2")
    assert rows(store) == [("F001", "T1", 6), ("F001", "T1", 7), ("F001", "T1", 8)]
    for i, f in enumerate((6, 7, 8)):
        assert abs(int(store.image(i, "visual")[..., 0].mean()) - frame_value(f - 1)) <= 2
    assert (store.labels() == np.array([expected_labels("F001", "T1", f) for f in (6, 7, 8)])).all()


def test_raw_bp4d_crops_from_landmarks_and_projects_meshes(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, ["F001", "M002"], frames=range(10, 13))
    seq = raw / "Sequences(2D+3D)" / "F001" / "T1"
    sphere_obj(seq / "0011.obj", radius=50.0)  # depth known analytically
    (raw / "2DFeatures" / "M002_T1.csv").write_text("frame,x1,y1,x2,y2,x3,y3,x4,y4\n10,32,22,48,22,32,38,48,38\n")
    spec = PrepareSpec("bp4d", str(raw), size=32, codec="png", face_margin=1.0, depth_range=50.0)
    prepare(spec, tmp_path / "out", workers=1)
    store = FrameStore(tmp_path / "out")
    got = dict(zip(rows(store), range(len(store))))
    assert set(got) == {("F001", "T1", 10), ("F001", "T1", 11), ("F001", "T1", 12), ("M002", "T1", 10)}
    skipped = {(r["subject"], r["frame"], r["reason"]) for r in read_skips(tmp_path / "out").to_pylist()}
    assert skipped == {("M002", 11, MISSING_LANDMARKS), ("M002", 12, MISSING_LANDMARKS)}
    # the landmarks outline the inside of the white square: the crop with margin 1 is all white
    assert store.image(got[("F001", "T1", 10)], "visual").min() >= 235
    # a plane facing the camera is uniformly nearest
    assert (store.image(got[("F001", "T1", 10)], "depth") == 255).all()
    # the hemisphere on a z = 0 grid: grey = 1 + 254 * z / r at each pixel centre (1 at z = 0, outside the sphere)
    depth = store.image(got[("F001", "T1", 11)], "depth")[..., 0].astype(float)
    c = (np.arange(32) + 0.5) * 100 / 32 - 50
    X, Y = np.meshgrid(c, -c)
    R2 = X**2 + Y**2
    inside, outside = R2 < (0.9 * 50) ** 2, R2 > (1.05 * 50) ** 2
    analytic = 1 + 254 * np.sqrt(np.clip(50**2 - R2, 0, None)) / 50
    assert np.abs(depth - analytic)[inside].max() <= 2 and (depth[outside] == 1).all()


def test_raw_bp4dplus_thermal_and_clear_errors_for_zips_and_videos(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, ["F001"], tasks=("T1", "T6"), frames=range(3, 5), plus=True, landmarks=False)
    prepare(PrepareSpec("bp4dplus", str(raw), size=24, codec="png"), tmp_path / "out", workers=1)
    store = FrameStore(tmp_path / "out")
    assert len(store) == 4 and store.meta.modality_names == ("visual", "depth", "thermal")
    assert_images_match(store, skip=("depth",))  # no landmarks: centre crop of a frame-coloured image
    assert all((store.image(i, "depth") == 255).all() for i in range(len(store)))  # frontal planes

    shutil.rmtree(raw / "Thermal")
    (raw / "Thermal" / "F001").mkdir(parents=True)
    (raw / "Thermal" / "F001" / "T1.mv").write_bytes(b"\0" * 10)
    with pytest.raises(DatasetError, match="T1.mv is a video: extract its frames first.*ffmpeg"):
        prepare(PrepareSpec("bp4dplus", str(raw), size=24, codec="png"), tmp_path / "o2")

    zipped = tmp_path / "zipped"
    (zipped / "AUCoding" / "AU_OCC").mkdir(parents=True)
    (zipped / "2D+3D").mkdir()
    (zipped / "2D+3D" / "F001.zip").write_bytes(b"PK")
    shutil.rmtree(zipped / "2D+3D")
    (zipped / "F001.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match="unzip them in place first"):
        prepare(PrepareSpec("bp4dplus", str(zipped)), tmp_path / "o3")


def test_bad_labels_and_outputs_get_clear_errors(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_tree(raw, ["F001", "M001"], frames=range(1, 4), size=16)
    spec = PrepareSpec("bp4d", str(raw), size=16, codec="png")
    out = tmp_path / "out"
    label = raw / "AUCoding" / "AU_OCC" / "M001_T1.csv"
    good = label.read_text()
    lines = good.splitlines()
    for bad, msg in (
        (lines[:2] + [lines[2] + ",1"] + lines[3:], r"M001_T1.csv.*line 3"),  # ragged row
        (lines[:3] + [lines[3].replace(",0,", ",2,", 1)] + lines[4:], r"M001_T1.csv.*line 4"),  # value 2
    ):
        label.write_text("\n".join(bad) + "\n")
        assert main(["data", "prepare", "bp4d", "--root", str(raw), "--out", str(out), "--codec", "png"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("farm: error:") and "Traceback" not in err
        with pytest.raises(ValueError, match=msg):
            prepare(spec, out, workers=1)
        assert not (out / "dataset.json").exists()
    label.write_text(good)

    meta = prepare(spec, out, workers=1)
    assert prepare(spec, out, workers=1).data_hash == meta.data_hash  # same arguments: reused
    with pytest.raises(DatasetError, match="holds a different bp4d dataset .*size: 16 != 20"):
        prepare(PrepareSpec("bp4d", str(raw), size=20, codec="png"), out)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    with pytest.raises(DatasetError, match="is not empty and holds no dataset"):
        prepare(spec, tmp_path / "busy")


def test_interrupted_prepare_leaves_nothing_trusted(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_tree(raw, ["F001", "M001"], frames=range(1, 4), size=16)
    spec = PrepareSpec("bp4d", str(raw), size=16, codec="png")
    from farm.data import store as store_mod

    def crash(self):
        self._flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.DatasetWriter, "close", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(spec, tmp_path / "out", workers=1)
    assert list((tmp_path / "out" / "images").glob("part-*.arrow"))  # a shard was written...
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        FrameStore(tmp_path / "out")  # ...but nothing trusts it
    monkeypatch.undo()
    meta = prepare(spec, tmp_path / "out", workers=1)
    assert meta.num_frames == len(FrameStore(tmp_path / "out")) == 6


def test_cli_prepare_check_and_folds(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_tree(raw, BP4D_SUBJECTS[:6], frames=range(1, 3), size=16)
    out = tmp_path / "out"
    assert (
        main(["data", "prepare", "bp4d", "--root", str(raw), "--out", str(out), "--size", "16", "--workers", "1"]) == 0
    )
    text = capsys.readouterr().out
    assert "6 subjects" in text and "AU12" in text and "skipped frames: none" in text
    assert main(["data", "check", str(out)]) == 0 and "12 frames" in capsys.readouterr().out
    assert main(["data", "folds", str(out)]) == 0
    text = capsys.readouterr().out
    assert "35 subject(s) of the standard bp4d partitions are not in this dataset" in text
    assert main(["data", "folds", "--dataset", "bp4dplus"]) == 0
    text = capsys.readouterr().out
    assert "bp4dplus.yaml" in text and text.count("  test  (") == 3


def test_farm_train_runs_on_a_prepared_bp4d_copy(tmp_path):
    """The prepared (JPEG) dataset goes through the one loader and the standard folds into a result."""
    import json

    raw = tmp_path / "raw"
    write_tree(raw, BP4D_SUBJECTS[:6], frames=range(1, 5), size=24)
    prepare(PrepareSpec("bp4d", str(raw), size=24), tmp_path / "data", workers=1)  # default codec: jpeg
    out = tmp_path / "r.json"
    argv = ["train", "--data", str(tmp_path / "data"), "--fusion", "late", "--fold", "P3", "--epochs", "1",
            "--set", "model.backbone=resnet10", "--set", "train.batch_size=4", "--set", "data.num_workers=1",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["split"]["test"] == ["F004", "F006"]  # P3 of the standard BP4D partitions present here
    assert result["split"]["partitions"] == "farm/data/partitions/bp4d.yaml"
    assert result["split"]["partitions_hash"] == standard_partitions("bp4d").hash
    assert "35 subject(s)" in result["split"]["notes"]
    assert sum(c["tp"] + c["fp"] + c["fn"] + c["tn"] for c in result["test"]["counts"].values()) == 12 * 2 * 4


def converted_tree(raw):
    """2 subjects x 4 frames of 32x32 crops, five of whose files do not match their modality."""
    write_tree(raw, ["F001", "M001"], frames=range(10, 14), size=32)  # F001: 4-digit names, M001: 3-digit
    odd = {
        "gray": raw / "visual" / "F001" / "T1" / "0011.jpg",
        "rgba": raw / "visual" / "M001" / "T1" / "010.png",
        "rgb_depth": raw / "depth" / "F001" / "T1" / "0013.png",
        "size": raw / "depth" / "M001" / "T1" / "012.png",
    }
    Image.fromarray(np.full((32, 32), frame_value(11), np.uint8)).save(odd["gray"])
    (raw / "visual" / "M001" / "T1" / "010.jpg").unlink()
    Image.fromarray(np.full((32, 32, 4), frame_value(10), np.uint8)).save(odd["rgba"])
    Image.fromarray(np.full((32, 32, 3), frame_value(13), np.uint8)).save(odd["rgb_depth"])
    Image.fromarray(np.full((40, 64), frame_value(12), np.uint8)).save(odd["size"])  # 64 wide, 40 high
    # a converted visual frame whose depth is unreadable: the frame is skipped, and only that is reported
    Image.fromarray(np.full((32, 32), 1, np.uint8)).save(raw / "visual" / "F001" / "T1" / "0012.jpg")
    bad = raw / "depth" / "F001" / "T1" / "0012.png"
    bad.write_bytes(bad.read_bytes()[:40])
    return odd


def test_frames_that_do_not_match_their_modality_are_converted_kept_and_reported(tmp_path):
    odd = converted_tree(tmp_path / "raw")
    out = tmp_path / "out"
    prepare(PrepareSpec("bp4d", str(tmp_path / "raw"), size=32, codec="png"), out, workers=2)
    store = FrameStore(out)
    got = {r[:3]: i for i, r in enumerate(rows(store))}
    assert len(store) == 7 and ("F001", "T1", 12) not in got
    report_rows = read_skips(out).to_pylist()
    assert {(r["subject"], r["frame"], r["modality"], r["reason"], r["path"]) for r in report_rows} == {
        ("F001", 11, "visual", "converted: grayscale to RGB", str(odd["gray"])),
        ("M001", 10, "visual", "converted: RGBA to RGB", str(odd["rgba"])),
        ("F001", 13, "depth", "converted: RGB to grayscale", str(odd["rgb_depth"])),
        ("M001", 12, "depth", "converted: resized 64x40 to 32x32", str(odd["size"])),
        ("F001", 12, "depth", UNREADABLE_IMAGE, str(tmp_path / "raw" / "depth" / "F001" / "T1" / "0012.png")),
    }
    details = {r["reason"]: r["detail"] for r in report_rows}
    assert details["converted: grayscale to RGB"] == "expected RGB (3 channels) for visual, got grayscale (mode L)"
    assert details["converted: resized 64x40 to 32x32"] == "expected 32x32 like the other depth frames, got 64x40"
    # converted frames are in the dataset, in the modality's shape, with their pixels
    gray = store.image(got[("F001", "T1", 11)], "visual")
    assert gray.shape == (32, 32, 3) and abs(int(gray.mean()) - frame_value(11)) <= 2
    assert store.image(got[("M001", "T1", 10)], "visual").shape == (32, 32, 3)
    for key, f in ((("F001", "T1", 13), 13), (("M001", "T1", 12), 12)):
        depth = store.image(got[key], "depth")
        assert depth.shape == (32, 32, 1) and abs(int(depth.mean()) - frame_value(f)) <= 2
    report = describe(out)
    assert "skipped: 1 (frame, modality) entries" in report
    assert "converted: 4 (frame, modality) entries, kept in the dataset" in report
    for line in ("converted: grayscale to RGB (visual)", "converted: resized 64x40 to 32x32 (depth)"):
        assert line in report
    assert str(odd["gray"]) in report and "got grayscale (mode L)" in report


@pytest.mark.parametrize(
    "which, expected",
    [
        ("gray", r"visual/F001/T1/0011.jpg does not match its modality: expected RGB \(3 channels\) for visual, "
                 r"got grayscale \(mode L\); without --strict it would be kept \(converted: grayscale to RGB\)"),
        ("size", r"depth/M001/T1/012.png does not match its modality: expected 32x32 like the other depth frames, "
                 r"got 64x40; without --strict it would be kept \(converted: resized 64x40 to 32x32\)"),
    ],
)  # fmt: skip
def test_strict_refuses_a_frame_that_would_be_converted(tmp_path, which, expected):
    raw = tmp_path / "raw"
    write_tree(raw, ["F001", "M001"], frames=range(10, 14), size=32)
    odd = converted_tree(tmp_path / "all")[which]
    shutil.copy(odd, raw / odd.relative_to(tmp_path / "all"))
    with pytest.raises(StrictError, match="^--strict: " + re.escape(str(raw)) + "/" + expected):
        prepare(PrepareSpec("bp4d", str(raw), size=32, codec="png"), tmp_path / "out", strict=True, workers=2)
    assert not (tmp_path / "out" / "dataset.json").exists()


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: state, ppid, ...; [] when the process is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _running(pid: int) -> bool:
    state = _proc_stat(pid)[:1]
    return bool(state) and state[0] not in ("Z", "X")  # a zombie is dead, only not yet reaped


def _forked_children(pid: int) -> list[int]:
    """Children of `pid` that run its own command line (pool workers are forked, not exec'd)."""
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and _proc_stat(int(d.name))[1:2] == [str(pid)]:
            try:
                if (d / "cmdline").read_bytes() == cmdline:
                    kids.append(int(d.name))
            except OSError:
                pass
    return kids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with their parent through Linux prctl")
def test_decoding_workers_die_with_a_killed_prepare_and_a_rerun_finishes(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_heavy_tree(raw, ["F001", "M001"], frames=range(200))  # seconds of decoding for two workers
    cmd = [sys.executable, "-m", "farm.cli", "data", "prepare", "bp4d", "--root", str(raw), "--out", str(out),
           "--size", "64", "--workers", "2"]  # fmt: skip
    log = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120  # generous: imports on a busy machine
        while len(workers) < 2:
            assert proc.poll() is None, (
                f"prepare ended before its workers were seen: {(tmp_path / 'stderr.txt').read_text()}"
            )
            assert time.monotonic() < deadline, "no decoding workers appeared"
            workers = _forked_children(proc.pid)
            time.sleep(0.02)
        assert not (out / "dataset.json").exists()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 20
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _running(w)], "decoding workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:  # only left when the test fails: do not leave them behind
            if _running(w):
                os.kill(w, signal.SIGKILL)
        log.close()
    meta = prepare(PrepareSpec("bp4d", str(raw), size=64), out, workers=2, log=lambda s: None)  # starts over
    assert meta.num_frames == len(FrameStore(out)) == 400


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux prctl")
def test_a_worker_whose_parent_died_before_it_armed_the_death_signal_exits():
    # the race: the parent died between fork and prctl; the worker was reparented, so no signal will come
    code = "import os; from farm.data.prepare import _die_with_parent as d; d(os.getppid() {}); print('alive')"
    done = subprocess.run([sys.executable, "-c", code.format("+ 1")], capture_output=True, text=True, timeout=120)
    assert done.stdout == "" and done.returncode == -signal.SIGKILL, done.stderr
    done = subprocess.run([sys.executable, "-c", code.format("")], capture_output=True, text=True, timeout=120)
    assert done.stdout == "alive\n" and done.returncode == 0, done.stderr
