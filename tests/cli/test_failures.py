"""Issue 11: bad input and faults give one clear line, and lose nothing. `farm` run as a user runs it."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

FARM = [sys.executable, "-m", "farm.cli"]
TINY = ["--subjects", "6", "--tasks", "2", "--frames", "12", "--size", "32", "--difficulty", "easy"]
FAST = ["--config", "cpu", "--set", "model.backbone=resnet10", "--set", "amf.num_samples=2",
        "--set", "train.max_train_batches=2", "--set", "train.batch_size=8"]  # fmt: skip


def farm(*args, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*FARM, *map(str, args)], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def one_line_error(out, *words):
    err = out.stderr.strip()
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for w in words:
        assert str(w) in err, (w, err)
    return err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "synth"
    out = farm("data", "synth", "--out", root, *TINY)
    assert out.returncode == 0, out.stderr
    return root


def test_epochs_zero_is_refused_not_ignored(tiny):
    one_line_error(farm("train", "--data", tiny, "--epochs", "0", *FAST), "train.epochs", "got 0")


def test_a_diverging_run_fails_naming_epoch_and_value_and_keeps_the_previous_result(tiny, tmp_path):
    out_json = tmp_path / "result.json"
    out_json.write_text('{"previous": true}')
    out = farm("train", "--data", tiny, "--epochs", "2", *FAST, "--set", "train.lr=1e6", "--out", out_json)
    err = one_line_error(out, "training diverged in epoch 0", "fold P1", "train.divergence_factor")
    assert out.returncode == 1, err
    assert out_json.read_text() == '{"previous": true}'  # nothing reported as a result, nothing overwritten
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_infinite_learning_rate_is_refused_by_the_config(tiny):
    one_line_error(farm("train", "--data", tiny, *FAST, "--set", "train.lr=inf"), "train.lr")


def test_out_that_cannot_be_written_fails_before_training(tiny, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = farm("train", "--data", tiny, *FAST, "--out", blocker / "result.json")
    one_line_error(out, blocker)
    assert "epoch" not in out.stdout  # refused before any training


def test_output_piped_into_a_reader_that_goes_away(tiny):
    proc = subprocess.Popen([*FARM, "data", "check", str(tiny), "--all-skips"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err


class Hostile:
    """A pickle that would create a file if torch.load ever unpickled code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def bad_files(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(os.urandom(256))
    hostile = tmp_path / "hostile.pt"
    marker = tmp_path / "pwned"
    hostile.write_bytes(pickle.dumps({"model": Hostile(marker)}))
    other_kind = tmp_path / "other_kind.pt"
    torch.save({"weights": torch.zeros(2)}, other_kind)  # a valid torch file, but not a farm checkpoint
    return {"empty": empty, "foreign": foreign, "hostile": hostile, "other_kind": other_kind}, marker


@pytest.mark.parametrize("kind", ["empty", "foreign", "hostile", "other_kind"])
def test_bad_last_checkpoint_is_one_line_naming_the_file(tiny, tmp_path, kind):
    files, marker = bad_files(tmp_path)
    ckdir = tmp_path / "ckpt"
    ckdir.mkdir()
    (ckdir / "last.pt").write_bytes(files[kind].read_bytes())
    out = farm("train", "--data", tiny, *FAST, "--checkpoint-dir", ckdir)
    one_line_error(out, ckdir / "last.pt", "checkpoint")
    assert not marker.exists(), "a checkpoint's pickle ran code"


@pytest.mark.parametrize("kind", ["empty", "foreign", "hostile", "other_kind"])
def test_bad_pretrained_file_is_one_line_naming_the_file(tiny, tmp_path, kind):
    files, marker = bad_files(tmp_path)
    out = farm("train", "--data", tiny, *FAST, "--set", f"model.pretrained={files[kind]}")
    one_line_error(out, files[kind])
    assert not marker.exists(), "a weights file's pickle ran code"


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only folder even for root: a read-only tmpfs (skipped where mounting is not allowed)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield ro
    subprocess.run(["umount", str(ro)], capture_output=True)


def test_read_only_out_names_the_folder_not_a_file_that_never_existed(read_only_dir):
    out = farm("data", "synth", "--out", read_only_dir, *TINY)
    err = one_line_error(out, f"--out {read_only_dir}", "Read-only file system")
    assert "manifest" not in err
