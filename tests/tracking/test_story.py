"""farm/tracking/story.py on a real sqlite MLflow store: tables, the best-trial tag, the dataset input, the
descriptions (issue 15)."""

import json
import math
import re

import pytest
from mlflow.tracking import MlflowClient

from farm.evaluate.cv import aggregate_folds
from farm.tracking.story import (
    BEST_TAG,
    LOGGED_ARTIFACTS,
    NOTE,
    TRIAL_METRICS,
    dataset_input,
    log_table,
    mark_best,
    read_table,
    trial_description,
)


@pytest.fixture
def client(tmp_path):
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    c.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())
    return c


def new_run(client, name):
    return client.create_run(client.get_experiment_by_name("x").experiment_id, run_name=name).info.run_id


def test_a_table_logged_twice_is_replaced_listed_once_and_nan_is_null(client, tmp_path):
    run = new_run(client, "t")
    log_table(client, run, "per_au.json", ["AU", "P1"], [["AU1", 0.5], ["AU2", 0.25]])
    log_table(client, run, "per_au.json", ["AU", "P1"], [["AU1", 0.75], ["AU2", math.nan]])
    table = read_table(client.download_artifacts(run, "per_au.json", str(tmp_path)))
    assert table == {"AU": ["AU1", "AU2"], "P1": [0.75, None]}  # replaced, not appended (a resumed trial)
    assert json.loads(client.get_run(run).data.tags[LOGGED_ARTIFACTS]) == [{"path": "per_au.json", "type": "table"}]


def test_only_one_run_keeps_the_best_tag_and_its_line(client):
    runs = {name: new_run(client, name) for name in ("a", "b")}
    for r in runs.values():
        client.set_tag(r, NOTE, "Trial description")
    mark_best(client, runs, "a", "Best trial of sweep x by cv/val_f1_mean (0.5)")
    mark_best(client, runs, "b", "Best trial of sweep x by cv/val_f1_mean (0.6)")  # a resumed sweep found better
    tags = {k: client.get_run(r).data.tags for k, r in runs.items()}
    assert BEST_TAG not in tags["a"] and tags["a"][NOTE] == "Trial description"
    assert tags["b"][BEST_TAG] == "true"
    assert tags["b"][NOTE] == "**Best trial of sweep x by cv/val_f1_mean (0.6)**\n\nTrial description"
    mark_best(client, runs, "b", "Best trial of sweep x by cv/val_f1_mean (0.6)")  # again: one line, not two
    assert client.get_run(runs["b"]).data.tags[NOTE].count("Best trial") == 1


def test_the_dataset_input_carries_the_data_hash_and_the_context(client):
    run = new_run(client, "d")
    client.log_inputs(run, datasets=[dataset_input("synthetic", "0123abcd", "/data/s", "train", {"frames": 10},
                                                   {"split.test": "F001 M001"})])  # fmt: skip
    (inp,) = client.get_run(run).inputs.dataset_inputs
    assert inp.dataset.digest == "0123abcd" and inp.dataset.name == "synthetic"
    assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "train", "split.test": "F001 M001"}


def test_every_cv_metric_a_trial_logs_is_defined_in_its_description():
    aus = ["AU1", "AU2"]
    fold = lambda f, seed: {  # noqa: E731
        "fold": f, "seed": seed, "val": {"f1_mean": 0.5}, "test": {"f1_mean": 0.4, "f1": {"AU1": 0.3, "AU2": 0.5},
        "counts": {a: {"tp": 1, "fp": 1, "fn": 1, "tn": 1} for a in aus}},
        "val_robustness": {"val/f1_missing_depth": 0.2, "val/f1_noise_all_0.5": 0.3},
    }  # fmt: skip
    metrics = aggregate_folds([fold(f, s) for f in ("P1", "P2") for s in (0, 1)], aus)
    text = trial_description("t1", "x", "amf", ["P1", "P2"], 2, {"train.lr": 0.001})
    patterns = [re.compile("^" + re.sub(r"<[^>]+>", "[^/]+", re.escape(n)) + "$")
                for names, _ in TRIAL_METRICS for n in names.split(", ")]  # fmt: skip
    undefined = [k for k in metrics if not any(p.match(k) for p in patterns)]
    assert not undefined and "`train.lr` = 0.001" in text and "2 seeds each" in text
    assert all(f"`{names}`" in text for names, _ in TRIAL_METRICS)
