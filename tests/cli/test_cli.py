"""The `farm` command run as a user runs it: subprocesses on a generated synthetic set."""

import json
import os
import subprocess
import sys

import pytest

FARM = [sys.executable, "-m", "farm.cli"]
# 15 subjects: with fewer, 3-4 training subjects cannot generalise to unseen ones even on the easy set.
EASY = ["--subjects", "15", "--tasks", "2", "--frames", "30", "--size", "32", "--difficulty", "easy", "--seed", "1"]


def farm(*args, check=True):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([*FARM, *map(str, args)], capture_output=True, text=True, timeout=900, env=env)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture(scope="module")
def easy_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("easy") / "synth"
    farm("data", "synth", "--out", root, *EASY)
    return root


def test_help_lists_subcommands_and_each_has_help():
    top = farm("--help").stdout
    for cmd in ("data", "train"):
        assert cmd in top
    assert "--subjects" in farm("data", "synth", "--help").stdout
    train_help = farm("train", "--help").stdout
    assert "--fusion" in train_help and "amf.num_samples" in train_help
    assert "test partition" in " ".join(farm("data", "folds", "--help").stdout.lower().split())


def test_synth_reuses_and_refuses_a_different_dataset(easy_set):
    again = farm("data", "synth", "--out", easy_set, *EASY)
    assert "900 frames" in again.stdout
    other = farm("data", "synth", "--out", easy_set, *EASY[:-2], "--seed", "2", check=False)
    assert other.returncode == 2 and "seed" in other.stderr and "Traceback" not in other.stderr


def test_check_and_folds(easy_set):
    out = farm("data", "check", easy_set).stdout
    assert "15 subjects" in out and "AU12" in out
    folds = farm("data", "folds", easy_set).stdout
    assert folds.count("fold P") == 3 and "split hash" in folds


def test_bad_input_gives_one_clear_line(easy_set, tmp_path):
    out = farm("train", "--data", easy_set, "--fusion", "attention", check=False)
    assert out.returncode == 2 and "unknown fusion 'attention'" in out.stderr and "Traceback" not in out.stderr
    out = farm("train", "--data", easy_set, "--set", "amf.K=3", check=False)
    assert out.returncode == 2 and "unknown config key 'amf.K'" in out.stderr
    out = farm("train", "--data", tmp_path / "nothing", check=False)
    assert out.returncode == 2 and "dataset.json" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_amf_learns_on_the_easy_set(easy_set, tmp_path):
    """AMF trained as a user trains it beats the all-positive predictor on the same test frames."""
    result_path = tmp_path / "amf.json"
    out = farm("train", "--data", easy_set, "--fusion", "amf", "--fold", "P1", "--config", "cpu",
               "--epochs", "8", "--set", "model.backbone=resnet10", "--set", "train.patience=8",
               "--out", result_path)  # fmt: skip
    assert "AU12" in out.stdout and "mean" in out.stdout
    result = json.loads(result_path.read_text())
    assert {"fusion", "fold", "test", "val", "epochs_run", "config"} <= set(result)
    assert set(result["test"]["counts"]["AU1"]) == {"tp", "fp", "fn", "tn"}
    assert result["config"]["model"]["fusion"] == "amf"
    floor = result["baseline_all_positive"]
    assert result["test"]["f1_mean"] > floor + 0.05, (result["test"]["f1_mean"], floor)
    assert not set(result["split"]["test"]) & set(result["split"]["train"] + result["split"]["val"])
