"""Issue 14 end to end: seeds per fold and the nested protocol, `farm sweep` run as a user runs it (a real
local Ray, a real sqlite MLflow store, real Optuna) on the tiny synthetic set."""

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from sweep_helpers import FARM, best_val, runs_by_parent, sweep_args, tracking_uri

from farm.data.store import FrameStore
from farm.engine import fold_split
from farm.sweep.space import load_space

pytestmark = pytest.mark.slow
SPACES = Path(__file__).parent / "spaces"
FOLDS = ("P1", "P2", "P3")



def test_two_seeds_per_fold_train_six_runs_and_the_parent_averages_seeds_first(farm_env):
    env, tmp_path = farm_env
    start = time.time()
    # the space says 3 seeds, the command line 2: the command line wins
    proc = subprocess.run(sweep_args(tmp_path, "seeds", "--space", str(SPACES / "seeds.yaml"), "--seeds", "2"),
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    sweep_s = time.time() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 trials x 3 folds (P1, P2, P3) x 2 seeds" in proc.stdout
    assert "test F1 mean ± std (seed sd)" in proc.stdout and "2 seeds per fold" in proc.stdout

    client, parents, children = runs_by_parent(tmp_path, "seeds")
    assert len(parents) == 1
    p = parents[0]
    trial = p.info.run_name
    kids = children[p.info.run_id]
    assert p.info.status == "FINISHED" and all(k.info.status == "FINISHED" for k in kids)
    assert sorted((k.data.tags["fold"], k.data.tags["seed"]) for k in kids) == [(f, s) for f in FOLDS for s in "01"]
    for k in kids:  # named <trial>-<fold>-s<seed>, trained with that train.seed
        assert k.info.run_name == f"{trial}-{k.data.tags['fold']}-s{k.data.tags['seed']}"
        assert k.data.params["train.seed"] == k.data.tags["seed"]
    assert p.data.params["seeds"] == "2" and p.data.tags["seeds"] == "2" and p.data.tags["protocol"] == "joint"
    assert client.get_experiment_by_name("seeds").tags["protocol"] == "joint"

    by_fold = {f: sorted((k for k in kids if k.data.tags["fold"] == f), key=lambda k: k.data.tags["seed"])
               for f in FOLDS}  # fmt: skip
    for f, (a, b) in by_fold.items():  # one split, two trainings
        assert all(a.data.tags[f"split.{s}"] == b.data.tags[f"split.{s}"] for s in ("train", "val", "test")), f
        losses = [[m.value for m in client.get_metric_history(k.info.run_id, "train/loss")] for k in (a, b)]
        assert losses[0] != losses[1], f  # the seeds trained differently

    # the parent's figures from the children: per fold the seed mean and the seed std, then over folds
    m = p.data.metrics
    test = {f: [k.data.metrics["test/f1_mean"] for k in ks] for f, ks in by_fold.items()}
    val = {f: [best_val(client, k) for k in ks] for f, ks in by_fold.items()}
    assert m["cv/num_folds"] == 3 and m["cv/num_seeds"] == 2
    assert m["cv/val_f1_mean"] == pytest.approx(np.mean([np.mean(v) for v in val.values()]), abs=1e-12)  # objective
    assert m["cv/test_f1_mean"] == pytest.approx(np.mean([np.mean(v) for v in test.values()]), abs=1e-12)
    assert m["cv/test_f1_std"] == pytest.approx(np.std([np.mean(v) for v in test.values()], ddof=1), abs=1e-12)
    for f in FOLDS:
        assert m[f"fold/{f}/test_f1"] == pytest.approx(np.mean(test[f]), abs=1e-12)
        assert m[f"fold/{f}/test_f1_seed_std"] == pytest.approx(np.std(test[f], ddof=1), abs=1e-12)
        assert m[f"fold/{f}/val_f1_seed_std"] == pytest.approx(np.std(val[f], ddof=1), abs=1e-12)
    assert m["cv/test_f1_seed_std"] == pytest.approx(np.mean([np.std(v, ddof=1) for v in test.values()]), abs=1e-12)
    assert m["cv/val_f1_seed_std"] == pytest.approx(np.mean([np.std(v, ddof=1) for v in val.values()]), abs=1e-12)
    missing = [np.mean([k.data.metrics["val/f1_missing_depth"] for k in ks]) for ks in by_fold.values()]
    assert m["cv/val_f1_missing_depth"] == pytest.approx(np.mean(missing), abs=1e-12)  # robustness: seeds too
    curve = [x.value for x in sorted(client.get_metric_history(p.info.run_id, "cv/val_f1_epoch_mean"),
                                     key=lambda x: x.step)]  # fmt: skip
    per_epoch = {k.info.run_id: [x.value for x in sorted(client.get_metric_history(k.info.run_id, "val/f1_mean"),
                                                         key=lambda x: x.step)] for k in kids}  # fmt: skip
    assert curve == pytest.approx(
        [np.mean([np.mean([per_epoch[k.info.run_id][e] for k in ks]) for ks in by_fold.values()]) for e in range(2)],
        abs=1e-12,
    )
    row = next(line for line in proc.stdout.splitlines() if line.startswith(trial))
    assert row.split()[-3:] == [f"{100 * np.mean(test[f]):.1f}" for f in FOLDS], row  # per fold: the seed mean
    assert f"({100 * m['cv/test_f1_seed_std']:.1f})" in row

    # each (fold, seed) has its own folder in the trial's checkpoint, trained with its seed
    ckpt = Path(p.data.tags["checkpoint"])
    assert sorted(d.name for d in ckpt.iterdir() if d.is_dir()) == [f"{f}-s{s}" for f in FOLDS for s in "01"]
    for d in ckpt.iterdir():
        result = json.loads((d / "result.json").read_text())
        assert result["config"]["train"]["seed"] == int(d.name[-1]) and (d / "best.pt").is_file()
    assert sorted(k.data.tags["checkpoint_folder"] for k in kids) == [f"{f}-s{s}" for f in FOLDS for s in "01"]

    # the report side reads the seeds: per fold and AU the mean over seeds
    from mlflow.tracking import MlflowClient

    from farm.tracking.sweeps import method_result, trial_runs

    rec = trial_runs(MlflowClient(client.tracking_uri), "seeds")[0]
    res = method_result(rec)
    assert (res.seeds, res.protocol) == (2, "joint")
    for f, ks in by_fold.items():
        assert res.fold_f1[f]["AU1"] == pytest.approx(np.mean([k.data.metrics["test/f1_AU1"] for k in ks]), abs=1e-12)
    study = optuna.load_study(study_name="seeds", storage=f"sqlite:///{tmp_path / 'sweeps' / 'seeds' / 'optuna.db'}")
    assert len(study.trials) == 1

    # farm promote registers every (fold, seed) model, each with its fold's test subjects
    promo = subprocess.run([*FARM, "promote", "--sweep", "seeds", "--tracking-uri", tracking_uri(tmp_path),
                            "--model-name", "seeds-amf", "--no-robustness"], env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert promo.returncode == 0, promo.stdout[-3000:] + promo.stderr[-3000:]
    import mlflow

    from farm.evaluate.inference import FoldEnsemble

    mlflow.set_tracking_uri(tracking_uri(tmp_path))
    local = Path(mlflow.artifacts.download_artifacts("models:/seeds-amf/1", dst_path=str(tmp_path / "m")))
    ensemble = FoldEnsemble.load(next(local.rglob("model.json")).parent)
    assert sorted(ensemble.models) == [f"{f}-s{s}" for f in FOLDS for s in "01"]
    for name, subjects in ensemble.test_subjects.items():
        assert list(subjects) == by_fold[name[:2]][0].data.tags["split.test"].split()
    print(f"\nseeds sweep (1 trial x 3 folds x 2 seeds): {sweep_s:.0f} s")


def test_nested_protocol_runs_one_search_per_outer_fold_and_estimates_with_the_selected_trials(farm_env):
    env, tmp_path = farm_env
    start = time.time()
    proc = subprocess.run(sweep_args(tmp_path, "nested", "--space", str(SPACES / "nested.yaml")), env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    sweep_s = time.time() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "nested: one search per outer fold (P1, P2, P3), 2 trials each" in out
    assert "(nested: one search per outer fold)" in out and "nested estimate: test F1" in out

    # one Optuna study per outer fold, each with its trials
    storage = f"sqlite:///{tmp_path / 'sweeps' / 'nested' / 'optuna.db'}"
    assert sorted(optuna.get_all_study_names(storage)) == [f"nested-{f}" for f in FOLDS]
    for f in FOLDS:
        assert len(optuna.load_study(study_name=f"nested-{f}", storage=storage).trials) == 2

    client, parents, children = runs_by_parent(tmp_path, "nested")
    assert client.get_experiment_by_name("nested").tags["protocol"] == "nested"
    summary = next(p for p in parents if p.info.run_name == "nested-summary")
    trials = [p for p in parents if p.info.run_name != "nested-summary"]
    assert len(trials) == 6 and not children[summary.info.run_id]
    assert sorted(p.data.tags["outer_fold"] for p in trials) == sorted(FOLDS * 2)

    # each trial trained its outer fold only: its validation subjects are that fold's (carved from its training
    # partitions), never another fold's
    space = load_space(SPACES / "nested.yaml")
    store = FrameStore(tmp_path / "data")
    splits = {f: fold_split(space.base_config({"data.path": str(tmp_path / "data"), "data.fold": f}), store)[0]
              for f in FOLDS}  # fmt: skip
    assert len({splits[f].val for f in FOLDS}) > 1  # the folds' validation subjects differ: the check means something
    for p in trials:
        fold = p.data.tags["outer_fold"]
        assert p.data.tags["protocol"] == "nested"
        kids = children[p.info.run_id]
        assert [k.data.tags["fold"] for k in kids] == [fold], p.info.run_name
        assert kids[0].info.run_name == f"{p.info.run_name}-{fold}"
        if p.info.status == "FINISHED":
            assert p.data.metrics["cv/num_folds"] == 1
            assert kids[0].data.tags["split.val"].split() == list(splits[fold].val)
            assert kids[0].data.tags["split.test"].split() == list(splits[fold].test)
            assert not set(splits[fold].val) & set(splits[fold].test)

    # the outer estimate: per outer fold the finished trial best by its validation F1, and its test F1
    selected = {}
    for f in FOLDS:
        done = [p for p in trials if p.data.tags["outer_fold"] == f and p.info.status == "FINISHED"]
        selected[f] = max(done, key=lambda p: p.data.metrics["cv/val_f1_mean"])
        assert summary.data.tags[f"selected.{f}"] == selected[f].info.run_name
        assert summary.data.params[f"selected.{f}"] == selected[f].info.run_name
        assert summary.data.tags[f"selected.{f}.run_id"] == selected[f].info.run_id
        kid = children[selected[f].info.run_id][0]
        assert summary.data.metrics[f"fold/{f}/test_f1"] == pytest.approx(kid.data.metrics["test/f1_mean"], abs=1e-12)
    test = [selected[f].data.metrics["cv/test_f1_mean"] for f in FOLDS]
    assert summary.data.metrics["cv/test_f1_nested_mean"] == pytest.approx(np.mean(test), abs=1e-12)
    assert summary.data.metrics["cv/test_f1_nested_std"] == pytest.approx(np.std(test, ddof=1), abs=1e-12)
    assert summary.data.tags["protocol"] == "nested" and summary.info.status == "FINISHED"
    assert f"nested estimate: test F1 {100 * np.mean(test):.1f} ± {100 * np.std(test, ddof=1):.1f} over 3 outer folds" in out
    for f in FOLDS:
        assert re.search(rf"outer fold {f}: 2 trials \(Optuna study nested-{f}\), selected {selected[f].info.run_name}",
                         out)  # fmt: skip

    # report and promote read the selection: each outer fold's selected trial's fold run, every subject once
    rep = subprocess.run([*FARM, "report", "--sweep", "nested", "--out", str(tmp_path / "rep"), "--bootstrap", "200",
                          "--tracking-uri", tracking_uri(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    names = ", ".join(f"{f}:{selected[f].info.run_name}" for f in FOLDS)
    assert f"| AMF | farm: nested / {names.replace('_', chr(92) + '_')} |" in rep.stdout
    assert "3 folds (P1, P2, P3) x 1 seed, nested protocol" in rep.stdout and "Nested protocol:" in rep.stdout
    promo = subprocess.run([*FARM, "promote", "--sweep", "nested", "--model-name", "nested-amf", "--no-robustness",
                            "--tracking-uri", tracking_uri(tmp_path)], env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert promo.returncode == 0, promo.stdout[-3000:] + promo.stderr[-3000:]
    v = client.get_model_version_by_alias("nested-amf", "champion")
    assert v.tags["selected_trials"] == ",".join(f"{f}:{selected[f].info.run_name}" for f in FOLDS)
    assert dict(x.split(":") for x in v.tags["fold_run_ids"].split(",")) == {
        f: children[selected[f].info.run_id][0].info.run_id for f in FOLDS}  # fmt: skip
    assert "nested selection" in v.description

    # resuming the finished sweep searches no fold again and duplicates nothing
    again = subprocess.run([*FARM, "sweep", "--storage", str(tmp_path / "sweeps"), "--name", "nested", "--resume"],
                           env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert all(f"outer fold {f}: finished before, not searched again" in again.stdout for f in FOLDS)
    _, parents_after, _ = runs_by_parent(tmp_path, "nested")
    assert len(parents_after) == len(parents)
    assert len(client.get_metric_history(summary.info.run_id, "cv/test_f1_nested_mean")) == 1
    print(f"\n{out[out.index('sweep nested (nested') :]}\nnested sweep (3 outer folds x 2 trials): {sweep_s:.0f} s")
