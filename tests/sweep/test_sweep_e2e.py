"""`farm sweep` end to end: a real local Ray, a real sqlite MLflow store, real Optuna, as a user runs it."""

import signal
import subprocess
import time

import numpy as np
import optuna
import pytest
from sweep_helpers import FARM, kill_ray_processes, runs_by_parent, sweep_args

pytestmark = pytest.mark.slow


def test_smoke_sweep_logs_one_parent_per_trial_and_one_child_per_fold(smoke_sweep):
    tmp_path, name, proc = smoke_sweep.root, smoke_sweep.name, smoke_sweep.proc
    assert "top trials by fold-mean validation F1" in proc.stdout and "mlflow ui --backend-store-uri" in proc.stdout

    client, parents, children = runs_by_parent(tmp_path, name)
    assert len(parents) == 2 and len({p.info.run_name for p in parents}) == 2
    subjects = {f"{s}{i:03d}" for i in range(1, 4) for s in "FM"}
    for p in parents:
        kids = children[p.info.run_id]
        assert sorted(k.data.tags["fold"] for k in kids) == ["P1", "P2", "P3"]
        assert p.info.status == "FINISHED" and all(k.info.status == "FINISHED" for k in kids)
        tests = [k.data.metrics["test/f1_mean"] for k in kids]
        assert p.data.metrics["cv/test_f1_mean"] == pytest.approx(np.mean(tests), abs=1e-12)
        assert p.data.metrics["cv/test_f1_std"] == pytest.approx(np.std(tests), abs=1e-12)
        assert "cv/val_f1_mean" in p.data.metrics and "cv/test_f1_pooled" in p.data.metrics
        assert len(client.get_metric_history(p.info.run_id, "cv/val_f1_epoch_mean")) == 2  # per-epoch curve
        test_sets = []
        for k in kids:
            train, val, test = (set(k.data.tags[f"split.{s}"].split()) for s in ("train", "val", "test"))
            assert not (test & train) and not (test & val) and not (train & val)
            assert train | val | test == subjects
            test_sets.append(test)
            assert len(client.get_metric_history(k.info.run_id, "val/f1_mean")) == 2  # once per epoch
        assert set().union(*test_sets) == subjects and sum(map(len, test_sets)) == 6  # folds partition subjects
        for tag in ("git_sha", "version.torch", "data_hash", "split_hashes", "partitions_hash"):
            assert p.data.tags.get(tag), tag
        assert "plot_error" not in p.data.tags
        assert [a.path for a in client.list_artifacts(p.info.run_id)] == ["per_au_test_f1.png"]
        for k in kids:  # each fold's per-frame test predictions, for the champion bootstrap
            assert [a.path for a in client.list_artifacts(k.info.run_id, "predictions")] == [
                "predictions/test_predictions.parquet"
            ]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'sweeps' / name / 'optuna.db'}")
    assert len(study.trials) == 2


def test_resume_after_kill_9_finishes_without_duplicates(farm_env):
    env, tmp_path = farm_env
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(sweep_args(tmp_path, "resume", "--trials", "3"), env=env, stdout=log,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 600
    while "finished:" not in (tmp_path / "first.log").read_text():
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.time() < deadline, "the first trial did not finish in time"
        time.sleep(1)
    first.send_signal(signal.SIGKILL)  # the driver dies without any cleanup
    first.wait()
    kill_ray_processes(env["FARM_RAY_TEMP_DIR"])  # and its local Ray with it, as a reboot would
    _, parents, _ = runs_by_parent(tmp_path, "resume")
    done_before = {p.info.run_name for p in parents if p.info.status == "FINISHED"}
    assert done_before

    again = subprocess.run([*FARM, "sweep", "--storage", str(tmp_path / "sweeps"), "--name", "resume", "--resume"],
                           env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    client, parents, children = runs_by_parent(tmp_path, "resume")
    names = [p.info.run_name for p in parents]
    assert len(names) == len(set(names)) == 3  # no trial lost, none duplicated
    assert all(len(children[p.info.run_id]) == 3 for p in parents)
    for p in parents:
        if p.info.run_name in done_before:  # finished before the kill: not trained or logged again
            assert len(client.get_metric_history(p.info.run_id, "cv/test_f1_mean")) == 1
            for k in children[p.info.run_id]:
                assert len(client.get_metric_history(k.info.run_id, "val/f1_mean")) == 2
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{tmp_path / 'sweeps' / 'resume' / 'optuna.db'}")
    assert len(study.trials) == 3
