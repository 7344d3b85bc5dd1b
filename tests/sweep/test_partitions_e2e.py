"""Issue 20 item 4 end to end: a trial trains every fold of two subject partitions, `farm sweep` run as a user
runs it (a real local Ray, a real sqlite MLflow store, real Optuna) on the tiny synthetic set."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from sweep_helpers import best_val, runs_by_parent, sweep_args

from farm.checkpoints import PREDICTIONS_DIR, PREDICTIONS_FILE, Predictions
from farm.data.store import FrameStore
from farm.engine import fold_split
from farm.sweep.space import load_space

pytestmark = pytest.mark.slow
SPACE = Path(__file__).parent / "spaces" / "partitions.yaml"
FOLDS = ("P1", "P2", "P3")



def test_two_partitions_train_six_fold_runs_on_two_subject_exclusive_splits(farm_env):
    env, tmp_path = farm_env
    proc = subprocess.run(sweep_args(tmp_path, "parts", "--space", str(SPACE)), env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 trials x 3 folds (P1, P2, P3) x 2 subject partitions" in proc.stdout
    assert "2 subject partitions" in proc.stdout and "[partition sd]" in proc.stdout

    client, parents, children = runs_by_parent(tmp_path, "parts")
    assert len(parents) == 1
    p = parents[0]
    trial, kids = p.info.run_name, children[p.info.run_id]
    assert p.info.status == "FINISHED" and all(k.info.status == "FINISHED" for k in kids)
    assert sorted((k.data.tags["partition"], k.data.tags["fold"]) for k in kids) == [(r, f) for r in "01" for f in FOLDS]
    for k in kids:  # named <trial>-r<r>-<fold>, trained with data.partition = r
        assert k.info.run_name == f"{trial}-r{k.data.tags['partition']}-{k.data.tags['fold']}"
        assert k.data.params["data.partition"] == k.data.tags["partition"]
    assert p.data.params["partitions"] == "2" and client.get_experiment_by_name("parts").tags["partitions"] == "2"

    # each partition is subject-exclusive and covers every subject; the two partitions differ
    subjects = set(FrameStore(tmp_path / "data").subjects)
    by_part = {r: {k.data.tags["fold"]: k for k in kids if k.data.tags["partition"] == r} for r in "01"}
    tests = {}
    for r, folds in by_part.items():
        test = {f: set(k.data.tags["split.test"].split()) for f, k in folds.items()}
        assert set.union(*test.values()) == subjects and sum(map(len, test.values())) == len(subjects), r
        for f, k in folds.items():
            train, val = (set(k.data.tags[f"split.{s}"].split()) for s in ("train", "val"))
            assert not (train | val) & test[f] and train | val | test[f] == subjects
        tests[r] = {frozenset(v) for v in test.values()}
    assert tests["0"] != tests["1"]
    hashes = {r: {k.data.tags["split_hash"] for k in folds.values()} for r, folds in by_part.items()}
    assert len(hashes["0"] | hashes["1"]) == 6  # six distinct splits
    assert {k.data.tags["partition_hash"] for k in by_part["1"].values()} != set()  # r1 records its redrawn list
    # the redraw is the one `data.partition: 1` gives anywhere (farm train, farm data folds)
    base = load_space(SPACE).base_config({"data.path": str(tmp_path / "data"), "data.partition": 1, "data.fold": "P1"})
    assert " ".join(fold_split(base, FrameStore(tmp_path / "data"))[0].test) == by_part["1"]["P1"].data.tags["split.test"]

    # the parent: mean over partitions of the fold means, the spread over partitions (sample std)
    m = p.data.metrics
    val = {r: np.mean([best_val(client, k) for k in folds.values()]) for r, folds in by_part.items()}
    test_f1 = {r: np.mean([k.data.metrics["test/f1_mean"] for k in folds.values()]) for r, folds in by_part.items()}
    assert m["cv/num_partitions"] == 2 and m["cv/num_folds"] == 3
    assert m["cv/val_f1_mean"] == pytest.approx(np.mean(list(val.values())), abs=1e-12)  # the objective
    assert m["cv/test_f1_mean"] == pytest.approx(np.mean(list(test_f1.values())), abs=1e-12)
    assert m["cv/test_f1_partition_std"] == pytest.approx(np.std(list(test_f1.values()), ddof=1), abs=1e-12)
    for r, folds in by_part.items():
        for f, k in folds.items():
            assert m[f"fold/r{r}-{f}/test_f1"] == pytest.approx(k.data.metrics["test/f1_mean"], abs=1e-12)
    row = next(line for line in proc.stdout.splitlines() if line.startswith(trial))
    assert row.split()[-2:] == [f"{100 * test_f1[r]:.1f}" for r in "01"], row  # a column per partition
    assert f"[{100 * m['cv/test_f1_partition_std']:.1f}]" in row

    # the predictions of partition 1 say so; each unit has its own checkpoint folder
    k = by_part["1"]["P2"]
    path = client.download_artifacts(k.info.run_id, f"{PREDICTIONS_DIR}/{PREDICTIONS_FILE}", str(tmp_path / "pred"))
    preds = Predictions.read([path])
    assert set(preds.partition) == {1} and set(preds.subject) == set(k.data.tags["split.test"].split())
    ckpt = Path(p.data.tags["checkpoint"])
    assert sorted(d.name for d in ckpt.iterdir() if d.is_dir()) == [f"r{r}-{f}" for r in "01" for f in FOLDS]
