"""A trial cut off by Ctrl-C keeps RUNNING runs with a tag saying so, and the tag goes when `--resume` reopens it
(a real sqlite MLflow store)."""

from mlflow.tracking import MlflowClient

from farm.sweep.leaderboard import close_stopped_runs
from farm.tracking.mlflow import INTERRUPTED_TAG, PARENT_TAG, get_or_create_run


def test_an_interrupted_trial_is_tagged_left_running_and_untagged_on_resume(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("s1", artifact_location=str(tmp_path / "art"))
    parent = get_or_create_run(client, exp, "t1")
    child = get_or_create_run(client, exp, "t1-P1", parent_run_id=parent)
    stopped = get_or_create_run(client, exp, "t2")
    rows = [{"trial": "t1", "status": "interrupted", "epoch": 1}, {"trial": "t2", "status": "stopped", "epoch": 1}]
    close_stopped_runs(client, exp, rows)
    run = client.get_run(parent)
    assert run.info.status == "RUNNING" and client.get_run(child).info.status == "RUNNING"
    assert run.data.tags[INTERRUPTED_TAG].startswith("cut off after epoch 1 (Ctrl-C or a crash)")
    assert client.get_run(stopped).info.status == "KILLED"  # ASHA's stop closes the run
    assert INTERRUPTED_TAG not in client.get_run(stopped).data.tags
    assert get_or_create_run(client, exp, "t1") == parent  # --resume reopens the same run
    assert INTERRUPTED_TAG not in client.get_run(parent).data.tags
    assert client.get_run(child).data.tags[PARENT_TAG] == parent
