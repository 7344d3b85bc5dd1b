"""farm.tracking.sweeps on a real sqlite MLflow store laid out as `farm sweep` writes it."""

import math
import shutil

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from farm.config import BP4D_AUS
from farm.data.store import read_meta
from farm.evaluate.cv import aggregate_folds
from farm.metrics import summarize
from farm.tracking.mlflow import PARENT_TAG, RunTracker
from farm.tracking.sweeps import (
    SweepLookupError,
    best_per_fusion,
    best_trial,
    method_result,
    report_sweeps,
    trial_runs,
)

FOLDS = ("P1", "P2", "P3")
T0 = 1_700_000_000_000  # ms


def fold_results(seed):
    """FoldResult-like dicts with per-AU counts; AU24 has no known label in fold P2 (F1 NaN, not logged)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, fold in enumerate(FOLDS):
        counts = rng.integers(0, 40, (len(BP4D_AUS), 4))  # (A, 4) tp fp fn tn
        if fold == "P2":
            counts[-1] = 0
        out.append({"fold": fold, "test": summarize(counts, BP4D_AUS), "val": {"f1_mean": float(rng.uniform(0.3, 0.6))},
                    "split": {"hash": f"s{seed}{i}", "partitions_hash": "parts1"}, "data_hash": "data1"})  # fmt: skip
    return out


def add_trial(client, exp_id, trial, fusion, seed, start, status="FINISHED", val=None, data_path="/nonexistent/data",
              folds=True):  # fmt: skip
    """A parent run and its fold runs, logged the way farm/sweep/worker.py logs them (RunTracker)."""
    results = fold_results(seed)
    parent = client.create_run(exp_id, run_name=trial, start_time=start,
                               tags={"trial": trial, "sweep": "sw", "git_sha": "abc123"}).info.run_id  # fmt: skip
    pt = RunTracker(client, parent)
    pt.log_params({"model.fusion": fusion, "data.aus": BP4D_AUS, "data.path": data_path, "data.modalities": ""})
    for r in results if folds else []:
        kid = client.create_run(exp_id, run_name=f"{trial}-{r['fold']}", start_time=start + 1,
                                tags={PARENT_TAG: parent, "fold": r["fold"], "trial": trial}).info.run_id  # fmt: skip
        kt = RunTracker(client, kid)
        for e in range(2):
            kt.log_metrics({"val/f1_mean": r["val"]["f1_mean"] - 0.1 * (1 - e)}, step=e)
        kt.log_metrics(
            {"test/f1_mean": r["test"]["f1_mean"], **{f"test/f1_{a}": v for a, v in r["test"]["f1"].items()}}
        )
        kt.log_metrics({f"test/count_{k}_{a}": c[k] for a, c in r["test"]["counts"].items() for k in c})
        kt.set_tags({"split.train": "F001 M001", "split.val": "F002", "split.test": "M002", "best_epoch": 1,
                     "split_hash": r["split"]["hash"], "data_hash": r["data_hash"]})  # fmt: skip
        kt.finish("FINISHED" if status == "FINISHED" else "KILLED")
    if status == "FINISHED":
        cv = aggregate_folds(results, BP4D_AUS)
        cv["cv/val_f1_mean"] = cv["cv/val_f1_mean"] if val is None else val
        pt.log_metrics(cv)
        pt.log_metrics({f"fold/{r['fold']}/test_f1": r["test"]["f1_mean"] for r in results})
        pt.set_tags({"data_hash": "data1", "split_hashes": ",".join(f"{r['fold']}:{r['split']['hash']}" for r in results),
                     "partitions_hash": "parts1", "checkpoint": "/ckpt"})  # fmt: skip
    else:
        pt.log_metrics({"cv/val_f1_mean": 0.99})  # the ASHA-stopped trial looked best mid-way
    pt.finish(status)
    return parent


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The store, written once (MLflow's sqlite set-up takes seconds); each test gets a copy."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    client = MlflowClient(f"sqlite:///{path}")
    exp = client.create_experiment("sw")
    ids = {
        "amf": add_trial(client, exp, "t_amf", "amf", 1, T0, val=0.50),
        "late": add_trial(client, exp, "t_late", "late", 2, T0 + 10, val=0.60),
        "late_tie": add_trial(client, exp, "t_late2", "late", 3, T0 + 20, val=0.60),
        "killed": add_trial(client, exp, "t_killed", "amf", 4, T0 + 30, status="KILLED"),
    }
    client.create_experiment("empty")
    return path, ids


@pytest.fixture
def store(template, tmp_path):
    path, ids = template
    shutil.copy(path, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, MlflowClient(uri), ids


def test_trial_runs_reads_parents_with_their_folds(store):
    uri, client, ids = store
    records = trial_runs(client, "sw")
    assert [r.trial for r in records] == ["t_amf", "t_late", "t_late2", "t_killed"]  # oldest first
    amf = records[0]
    assert (amf.run_id, amf.fusion, amf.status, amf.sweep, amf.store) == (ids["amf"], "amf", "FINISHED", "sw", uri)
    assert [f.fold for f in amf.folds] == list(FOLDS) and all(f.status == "FINISHED" for f in amf.folds)
    assert amf.params["data.aus"] == ",".join(BP4D_AUS) and amf.tags["partitions_hash"] == "parts1"
    assert amf.metric("cv/val_f1_mean") == 0.5 and math.isnan(amf.metric("no/such"))
    assert records[-1].status == "KILLED" and "test/f1_AU24" not in records[0].folds[1].metrics


def test_trial_runs_errors_name_the_sweep_and_the_store(store):
    uri, client, _ = store
    with pytest.raises(SweepLookupError, match=r"no sweep 'nope' in the MLflow store sqlite:///.*mlflow\.db"):
        trial_runs(client, "nope")
    with pytest.raises(SweepLookupError, match="sweep 'empty' .* has no FINISHED trial"):
        trial_runs(client, "empty")


def test_best_trial_ignores_killed_trials_and_breaks_ties_by_start_time(store):
    _, client, ids = store
    records = trial_runs(client, "sw")
    assert best_trial(records).run_id == ids["late"]  # 0.60 twice: the earlier trial; KILLED 0.99 ignored
    assert best_trial(records, fusion="amf").run_id == ids["amf"]
    assert best_trial(records, metric="cv/test_f1_mean").status == "FINISHED"
    with pytest.raises(SweepLookupError, match="fusion 'cam'"):
        best_trial(records, fusion="cam")
    assert {f: r.run_id for f, r in best_per_fusion(records).items()} == {"amf": ids["amf"], "late": ids["late"]}


def test_method_result_reads_fold_f1_and_lineage(store):
    _, client, ids = store
    rec = best_trial(trial_runs(client, "sw"), fusion="amf")
    m = method_result(rec)
    expected = fold_results(1)
    assert sorted(m.fold_f1) == list(FOLDS)
    assert m.fold_f1["P1"] == pytest.approx(expected[0]["test"]["f1"])
    assert "AU24" not in m.fold_f1["P2"] and len(m.fold_f1["P2"]) == 11  # NaN F1 is never logged
    assert m.split_hashes == {"P1": "s10", "P2": "s11", "P3": "s12"} and m.data_hash == "data1"
    assert (m.partitions_hash, m.git_sha, m.objective, m.aus) == ("parts1", "abc123", 0.5, BP4D_AUS)
    assert m.data_description.startswith("not available")


def test_method_result_refuses_a_finished_trial_without_folds(store):
    _, client, _ = store
    exp = client.get_experiment_by_name("sw").experiment_id
    add_trial(client, exp, "t_bare", "cam", 5, T0 + 40, folds=False)
    rec = best_trial(trial_runs(client, "sw"), fusion="cam")
    with pytest.raises(SweepLookupError, match="trial t_bare .* has no finished fold run"):
        method_result(rec)


def test_method_result_describes_the_dataset_when_it_is_here(store, tiny_dataset):
    _, client, _ = store
    exp = client.get_experiment_by_name("sw").experiment_id
    add_trial(client, exp, "t_early", "early", 6, T0 + 50, data_path=str(tiny_dataset))
    m = method_result(best_trial(trial_runs(client, "sw"), fusion="early"))
    meta = read_meta(tiny_dataset)
    assert m.data_description.startswith(f"synthetic at {tiny_dataset}: 6 subjects, {meta.num_frames} frames")
    assert meta.data_hash in m.data_description and "WARNING" in m.data_description  # the run logged "data1"
    assert m.modalities == ("visual", "depth")  # data.modalities empty = all of the dataset's


def test_report_sweeps_avg_equals_the_logged_cv_test_f1(store, tmp_path):
    uri, client, ids = store
    report, paths = report_sweeps(uri, ["sw"], "bp4d", tmp_path / "report")
    assert {k: p.name for k, p in paths.items()} == {"md": "report.md", "csv": "report.csv", "png": "report.png"}
    assert [r.method.run_id for r in report.rows] == [ids["late"], ids["amf"]]
    for r in report.rows:
        logged = client.get_run(r.method.run_id).data.metrics
        assert r.avg_mean == pytest.approx(logged["cv/test_f1_mean"], abs=1e-12)
        assert r.avg_std == pytest.approx(logged["cv/test_f1_std"], abs=1e-12)
        for au in BP4D_AUS:
            assert r.au_mean[au] == pytest.approx(logged[f"cv/test_f1_{au}"], abs=1e-12)
    md = paths["md"].read_text()
    assert "AMF does not beat late fusion" in md or "AMF beats late fusion" in md or "AMF ties with" in md
    assert "differs from the run's" not in md and "not available" in md


def test_report_sweeps_checks_its_inputs(tmp_path, store):
    uri, _, _ = store
    with pytest.raises(ValueError, match="unknown paper table"):
        report_sweeps(uri, ["sw"], "disfa", tmp_path / "r")
    with pytest.raises(SweepLookupError, match="no MLflow store"):
        report_sweeps(f"sqlite:///{tmp_path / 'missing.db'}", ["sw"], None, tmp_path / "r")
    assert not (tmp_path / "missing.db").exists()
