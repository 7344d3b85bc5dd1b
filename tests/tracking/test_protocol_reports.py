"""`farm report` and `farm promote` beyond one joint trial per fusion, on a real sqlite MLflow store: nested sweeps
(each outer fold's selected trial), the joint protocol's optimism, two trials compared, subject partitions."""

import csv
import shutil

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from store_helpers import FOLDS, T0, add_trial, fold_preds, fold_results, subject_splits

from farm.checkpoints import InputSpec, Predictions, save_checkpoint
from farm.cli import main
from farm.config import BP4D_AUS, to_dict, unflatten
from farm.evaluate.promotion import compare
from farm.models import build_model
from farm.tracking.registry import PromoteError, PromoteOptions, promote
from farm.tracking.reports import report_sweeps, report_trials
from farm.tracking.sweeps import (
    SweepLookupError,
    best_trial,
    fold_predictions,
    method_result,
    prediction_runs,
    trial_runs,
)

NESTED_VAL = {"P1": (0.5, 0.4, 0.45), "P2": (0.3, 0.6, 0.2), "P3": (0.5, 0.45, 0.55)}
"""Per outer fold the validation F1 of amf-1, amf-2 and late: AMF's pick is amf-1, amf-2, amf-1; the search's
selection (all fusions) amf-1, amf-2, late."""


def nested_sweep(client, name, space="sp", start=T0, ckpt="/ckpt"):
    exp = client.create_experiment(name, tags={"protocol": "nested", "space": space, "data_hash": "data1"})
    runs = {}
    for i, f in enumerate(FOLDS):
        trials = [("amf", 20 + i, 0.9), ("amf", 30 + i, 0.7), ("late", 40 + i, 0.6)]
        best = int(np.argmax(NESTED_VAL[f]))
        for j, ((fusion, seed, right), val) in enumerate(zip(trials, NESTED_VAL[f])):
            trial = f"n{j}_{f}"
            tags = {"outer_fold": f, "protocol": "nested", **({"selected": "true"} if j == best else {})}
            runs[trial] = add_trial(client, exp, trial, fusion, seed, start + 10 * (3 * i + j), val=val, train=(f,),
                                    preds=fold_preds(right, seed), tags=tags, checkpoint=f"{ckpt}/{trial}")  # fmt: skip
    return exp, runs


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A joint sweep and a nested sweep of the space `sp`, and a nested sweep of another space (written once)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    client = MlflowClient(f"sqlite:///{path}")
    joint = client.create_experiment("joint", tags={"protocol": "joint", "space": "sp", "data_hash": "data1"})
    splits = subject_splits()
    searched = {"searched": "model.fusion,amf.dropout"}
    add_trial(client, joint, "t_a", "amf", 1, T0, val=0.5, preds=fold_preds(0.9, 1), splits=splits,
              params={"amf.dropout": "0.3"}, tags={**searched, "best": "true"})  # fmt: skip
    add_trial(client, joint, "t_b", "amf", 3, T0 + 10, val=0.45, preds=fold_preds(0.6, 3), splits=splits,
              params={"amf.dropout": "0.0"}, tags=searched)  # fmt: skip
    add_trial(client, joint, "t_late", "late", 2, T0 + 20, val=0.4, preds=fold_preds(0.6, 2), splits=splits)
    add_trial(client, joint, "t_nopred", "amf", 4, T0 + 30, val=0.3, splits=splits)
    ckpt = path.parent / "ckpt"
    _, runs = nested_sweep(client, "nested", ckpt=str(ckpt))
    write_checkpoints(ckpt, [("n0_P1", "P1"), ("n1_P2", "P2"), ("n2_P3", "P3")])  # the searches' selections
    client.create_experiment("nested-other", tags={"protocol": "nested", "space": "other"})  # not the joint's twin
    return path


@pytest.fixture
def store(template, tmp_path):
    shutil.copy(template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, MlflowClient(uri)


def picks(client, sweep="nested"):
    """{outer fold: AMF's trial there} by the test's own reading of NESTED_VAL (amf trials are n0_*, n1_*)."""
    records = {t.trial: t for t in trial_runs(client, sweep)}
    return {f: records[f"n{int(np.argmax(NESTED_VAL[f][:2]))}_{f}"] for f in FOLDS}


def test_a_nested_report_reads_each_outer_folds_selected_trial(store, tmp_path):
    uri, client = store
    report, paths = report_sweeps(uri, ["nested"], None, tmp_path / "r", n_boot=200)
    rows = {r.method.fusion: r for r in report.rows}
    amf = rows["amf"].method
    chosen = picks(client)
    assert [t.trial for t in chosen.values()] == ["n0_P1", "n1_P2", "n0_P3"]
    assert amf.protocol == "nested" and amf.selected == tuple(f"{f}: trial {t.trial} (run {t.run_id})"
                                                              for f, t in chosen.items())  # fmt: skip
    for i, (f, t) in enumerate(chosen.items()):  # each outer fold's numbers are its chosen trial's fold run
        seed = 20 + i if t.trial.startswith("n0") else 30 + i
        logged = next(r for r in fold_results(seed) if r["fold"] == f)["test"]["f1"]
        assert amf.fold_f1[f] == pytest.approx({au: v for au, v in logged.items() if np.isfinite(v)})
    (pair,) = report.pairs
    pooled = Predictions.from_table(__import__("pyarrow").concat_tables(
        [fold_predictions(client, t).to_table() for t in chosen.values()]))  # fmt: skip
    late = {f: next(t for t in trial_runs(client, "nested") if t.trial == f"n2_{f}") for f in FOLDS}
    late_pooled = Predictions.from_table(__import__("pyarrow").concat_tables(
        [fold_predictions(client, t).to_table() for t in late.values()]))  # fmt: skip
    expected = compare(pooled, late_pooled, 200, 0.05, 0)
    c = pair.result
    assert (c.n_subjects, c.n_frames) == (12, 360)  # every subject once, by its own outer fold's model
    assert (c.difference, c.ci_low, c.ci_high) == (expected.difference, expected.ci_low, expected.ci_high)
    md = paths["md"].read_text()
    assert "| AMF | farm: nested / P1:n0\\_P1, P2:n1\\_P2, P3:n0\\_P3 |" in md
    assert "- Nested protocol: the test numbers of a nested method are the pooled test predictions" in md
    assert "used the joint protocol" not in md and "3 folds (P1, P2, P3) x 1 seed, nested protocol" in md


def test_a_nested_sweep_with_an_unfinished_outer_fold_is_refused_naming_it(store, tmp_path):
    uri, client = store
    p3 = next(t for t in trial_runs(client, "nested") if t.tags.get("selected") == "true" and t.trial.endswith("P3"))
    client.delete_tag(p3.run_id, "selected")  # the P3 search was cut off before it selected
    with pytest.raises(SweepLookupError, match=r"nested sweep 'nested' .*: outer fold P3 did not finish \(no trial"):
        report_sweeps(uri, ["nested"], None, tmp_path / "r")
    with pytest.raises(PromoteError, match="outer fold P3 did not finish"):
        promote(PromoteOptions(sweep="nested", tracking_uri=uri, robustness=False), log=lambda s: None)
    assert not (tmp_path / "r").exists()


def test_a_joint_report_counts_the_test_subjects_its_selection_saw_and_sets_the_nested_estimate_beside(store, tmp_path):
    uri, client = store
    report, paths = report_sweeps(uri, ["joint"], None, tmp_path / "r", n_boot=100)
    vals = [set(v) for _, v, _ in subject_splits().values()]
    assert len(set().union(*vals)) == 3  # S00, S01, S02: each a test subject of one fold, validation of others
    md = paths["md"].read_text()
    assert ("- Sweep joint used the joint protocol: its selection (each fold's early stopping, and the choice of trial "
            "by cv/val\\_f1\\_mean, the mean over folds of the validation F1) saw the test subjects of other folds as "
            "validation subjects: 3 of its 12 test subjects were a validation subject of another fold") in md  # fmt: skip
    est = {e.fusion: e for e in report.estimates}
    assert set(est) == {"amf", "late"} and {e.nested_sweep for e in est.values()} == {"nested"}  # not nested-other
    records = {t.trial: t for t in trial_runs(client, "joint")}
    amf_nested = np.mean([t.metrics["cv/test_f1_mean"] for t in picks(client).values()])
    assert est["amf"].joint == records["t_a"].metrics["cv/test_f1_mean"]
    assert est["amf"].nested == pytest.approx(amf_nested, abs=1e-12)
    assert f"{100 * (est['amf'].joint - amf_nested):.1f} points" in md
    with paths["csv"].open() as fh:
        rows = {r["fusion"]: r for r in csv.DictReader(fh) if r["section"] == "optimism"}
    assert float(rows["amf"]["diff"]) == pytest.approx(100 * (est["amf"].joint - amf_nested), abs=1e-9)
    assert rows["late"]["nested_sweep"] == "nested" and rows["amf"]["trial"] == "t_a"


def test_two_trials_of_one_fusion_are_compared_and_labelled_by_what_differs(store, tmp_path):
    uri, client = store
    report, paths = report_trials(uri, "joint", ["t_a", "t_b"], None, tmp_path / "r", n_boot=200)
    (pair,) = report.pairs
    assert [r.method.label for r in report.rows] == ["AMF t_a (dropout=0.3)", "AMF t_b (dropout=0.0)"]
    assert pair.verdict == "AMF t_a (dropout=0.3) beats AMF t_b (dropout=0.0)"  # right on 90% against 60%
    md = paths["md"].read_text()
    assert "## Comparison: AMF t\\_a (dropout=0.3) against AMF t\\_b (dropout=0.0)" in md
    assert "The two trials differ in amf.dropout: 0.3 vs 0.0 (trial t\\_a vs trial t\\_b)." in md
    by_tag, _ = report_trials(uri, "joint", ["tag:best=true", "t_b"], None, tmp_path / "r2", n_boot=50)
    assert by_tag.rows[0].method.trial == "t_a"
    with pytest.raises(SweepLookupError, match=r"sweep 'joint' has no trial 't_x' \(trials: t_a, t_b, t_late, t_nopred\)"):
        report_trials(uri, "joint", ["t_a", "t_x"], None, tmp_path / "r3")
    with pytest.raises(SweepLookupError, match="trial t_nopred of sweep 'joint' has no test predictions to compare"):
        report_trials(uri, "joint", ["t_a", "t_nopred"], None, tmp_path / "r3")
    args = ["report", "--sweep", "joint", "--trial", "t_a", "--tracking-uri", uri, "--out", str(tmp_path / "r4")]
    assert main(args) == 2  # one --trial: the one-line error says what is expected


def test_two_partitions_are_read_from_the_fold_runs_tags(store, tmp_path):
    uri, client = store
    exp = client.create_experiment("parts")
    preds = {0: fold_preds(0.9, 1), 1: fold_preds(0.8, 7)}
    add_trial(client, exp, "t_p", "amf", 1, T0, preds=preds, partitions=(0, 1), params={"partitions": "2"})
    rec = best_trial(trial_runs(client, "parts"))
    runs = prediction_runs(rec)
    assert [(f.partition, f.fold) for f in runs] == [(r, f) for r in (0, 1) for f in FOLDS]
    got = fold_predictions(client, rec, runs)
    assert np.array_equal(got.partition, np.repeat([0, 1], 360))  # the tag, where the file has no column
    assert np.array_equal(got.probs[got.partition == 1], np.concatenate([preds[1][f].probs for f in FOLDS]))
    m = method_result(rec)
    for r in (0, 1):
        for res in fold_results(1 + 100 * r):
            logged = {au: v for au, v in res["test"]["f1"].items() if np.isfinite(v)}  # NaN F1 is never logged
            assert m.partition_f1[r][res["fold"]] == pytest.approx(logged)
    report, paths = report_sweeps(uri, ["parts"], None, tmp_path / "r")
    (row,) = report.rows
    avgs = [np.mean([res["test"]["f1_mean"] for res in fold_results(1 + 100 * r)]) for r in (0, 1)]
    assert row.avg_mean == pytest.approx(np.mean(avgs), abs=1e-12)
    assert row.partition_std == pytest.approx(np.std(avgs, ddof=1), abs=1e-12)
    assert "3 folds (P1, P2, P3) x 2 partitions x 1 seed, joint protocol" in paths["md"].read_text()


def write_checkpoints(root, trials):
    """A tiny late-fusion model per (trial, fold) at <root>/<trial>/<fold>/best.pt, as the engine writes best.pt."""
    spec = InputSpec(("visual", "depth"), {"visual": 3, "depth": 1}, 20, 20, 16, BP4D_AUS)
    cfg = unflatten({"model.fusion": "late", "model.backbone": "resnet10", "model.pretrained": "none"})
    for i, (trial, fold) in enumerate(trials):
        torch.manual_seed(i)
        model = build_model(cfg, spec.channels, len(BP4D_AUS))
        path = root / trial / fold / "best.pt"
        path.parent.mkdir(parents=True)
        save_checkpoint({"model": model.state_dict(), "config": to_dict(cfg), "input": spec.to_dict()}, path)


def test_promote_registers_a_nested_selection_with_its_lineage(store, tmp_path):
    uri, client = store
    lines = []
    out = promote(PromoteOptions(sweep="nested", tracking_uri=uri, model_name="nested-m", robustness=False,
                                 n_boot=100), log=lines.append)  # fmt: skip
    selected = {f: next(t for t in trial_runs(client, "nested") if t.tags.get("selected") == "true"
                        and t.tags["outer_fold"] == f) for f in FOLDS}  # fmt: skip
    assert [t.trial for t in selected.values()] == ["n0_P1", "n1_P2", "n2_P3"]  # every fusion: the search's own
    v = client.get_model_version("nested-m", out["version"])
    assert v.tags["selected_trials"] == ",".join(f"{f}:{t.trial}" for f, t in selected.items())
    fold_runs = dict(x.split(":") for x in v.tags["fold_run_ids"].split(","))
    assert fold_runs == {f: t.folds[0].run_id for f, t in selected.items()} and v.tags["protocol"] == "nested"
    assert "the nested selection of sweep nested" in v.description and out["alias"] == "champion"
    assert lines[0].startswith("candidate: the nested selection (per outer fold P1:n0_P1, P2:n1_P2, P3:n2_P3)")
    from farm.tracking.registry import version_predictions

    logged = version_predictions(client, v)  # what the next challenger is compared on: the pooled selection
    assert sorted(set(logged.subject)) == [f"S{i:02d}" for i in range(12)] and len(logged.subject) == 360
