"""farm.tracking.sweeps on a real sqlite MLflow store laid out as `farm sweep` writes it."""

import csv
import math
import shutil

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from store_helpers import FOLDS, T0, VAL_CONDITIONS, add_trial, fold_preds, fold_results

from farm.config import BP4D_AUS
from farm.data.store import read_meta
from farm.evaluate.promotion import decide
from farm.tracking.reports import report_sweeps
from farm.tracking.sweeps import (
    SweepLookupError,
    best_per_fusion,
    best_trial,
    fold_predictions,
    method_result,
    prediction_runs,
    trial_runs,
    trial_test_study,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The store, written once (MLflow's sqlite set-up takes seconds); each test gets a copy."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    client = MlflowClient(f"sqlite:///{path}")
    exp = client.create_experiment("sw", artifact_location=str(path.parent / "artifacts"))  # read, never written
    ids = {
        "amf": add_trial(client, exp, "t_amf", "amf", 1, T0, val=0.50, robust=True, preds=fold_preds(0.9, 1)),
        "late": add_trial(client, exp, "t_late", "late", 2, T0 + 10, val=0.60, preds=fold_preds(0.6, 2)),
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
    assert {k: p.name for k, p in paths.items()} == {"md": "report.md", "csv": "report.csv", "png": "report.png",
                                                     "robustness_png": "robustness.png"}  # fmt: skip
    assert [r.method.run_id for r in report.rows] == [ids["late"], ids["amf"]]
    for r in report.rows:
        logged = client.get_run(r.method.run_id).data.metrics
        assert r.avg_mean == pytest.approx(logged["cv/test_f1_mean"], abs=1e-12)
        folds = [logged[f"fold/{f}/test_f1"] for f in FOLDS]  # the sample std over folds (ddof = 1)
        assert r.avg_std == pytest.approx(np.std(folds, ddof=1), abs=1e-12)
        for au in BP4D_AUS:
            assert r.au_mean[au] == pytest.approx(logged[f"cv/test_f1_{au}"], abs=1e-12)
    md = paths["md"].read_text()
    assert "- AMF beats late fusion by " in md  # right on 90% of the labels against 60%: a clear interval
    assert "differs from the run's" not in md and "not available" in md


def test_report_sweeps_checks_its_inputs(tmp_path, store):
    uri, _, _ = store
    with pytest.raises(ValueError, match="unknown paper table"):
        report_sweeps(uri, ["sw"], "disfa", tmp_path / "r")
    with pytest.raises(SweepLookupError, match="no MLflow store"):
        report_sweeps(f"sqlite:///{tmp_path / 'missing.db'}", ["sw"], None, tmp_path / "r")
    assert not (tmp_path / "missing.db").exists()


# ---------------------------------------------------------------------------------------------
# robustness: the validation conditions on the trial's run, a promoted model's test study


def cv_robustness(client, run_id):
    """The trial run's cv/val_f1_missing_* and cv/val_f1_noise_* metrics by suffix (missing_worst left out)."""
    logged = client.get_run(run_id).data.metrics
    return {k[len("cv/val_f1_") :]: v for k, v in logged.items()
            if k.startswith(("cv/val_f1_missing_", "cv/val_f1_noise_")) and k != "cv/val_f1_missing_worst"}  # fmt: skip


def write_study(folder, level):
    """robustness.csv (with its .md and .png) as farm.evaluate.robustness.write writes a test-subject study."""
    from farm.evaluate.robustness import write

    conds = [("clean", "clean", "", 0.0), ("missing visual", "missing", "visual", 0.0),
             ("missing depth", "missing", "depth", 0.0), ("noise visual sigma=0.5", "noise", "visual", 0.5),
             ("noise visual+depth sigma=0.5", "noise", "visual+depth", 0.5)]  # fmt: skip
    rows = []
    for i, (cond, kind, mods, sigma) in enumerate(conds):
        f1 = level - 0.05 * i
        rows.append({"condition": cond, "kind": kind, "modalities": mods, "sigma": sigma, "f1_mean": f1,
                     "f1_std": 0.01, **{f"f1_{f}": f1 for f in FOLDS}, "delta": f1 - level})  # fmt: skip
    write(rows, folder, title=folder.name)
    return rows


def log_study(client, exp_id, tmp_path, trial_run_id, level, name="study", start=T0 + 100):
    """A promotion run of the trial (registry.py's tags) holding robustness/robustness.csv."""
    run = client.create_run(exp_id, run_name=f"amf-synth<-{name}", start_time=start,
                            tags={"trial_run_id": trial_run_id, "farm.kind": "promotion"})  # fmt: skip
    rows = write_study(tmp_path / name, level)
    client.log_artifacts(run.info.run_id, str(tmp_path / name), "robustness")
    client.set_terminated(run.info.run_id)
    return run.info.run_id, rows


def test_method_result_reads_the_validation_robustness(store):
    _, client, ids = store
    records = trial_runs(client, "sw")
    amf = method_result(best_trial(records, fusion="amf"))
    logged = cv_robustness(client, ids["amf"])
    assert set(logged) == set(VAL_CONDITIONS)  # aggregate_folds wrote them all
    assert amf.val_robustness == logged and amf.val_f1_clean == 0.5  # cv/val_f1_mean as logged
    folds = fold_results(1, robust=True)
    for c in VAL_CONDITIONS:  # the fold mean of the child runs' val/f1_<condition>
        assert amf.val_robustness[c] == pytest.approx(np.mean([f["val_robustness"][f"val/f1_{c}"] for f in folds]))
    late = method_result(best_trial(records, fusion="late"))
    assert late.val_robustness == {} and late.test_robustness == ()  # an older sweep: nothing measured


def test_report_sweeps_robustness_equals_the_logged_metrics(store, tmp_path):
    uri, client, ids = store
    report, paths = report_sweeps(uri, ["sw"], "bp4d", tmp_path / "report")
    amf, late = {mr.method.fusion: mr for mr in report.robustness}["amf"], report.robustness[0]
    logged = cv_robustness(client, ids["amf"])
    assert {f"{r.condition.kind}_{'-'.join(r.condition.modalities)}" + (f"_{r.condition.sigma:g}" if
            r.condition.kind == "noise" else ""): r.val for r in (*amf.missing, *amf.noise)} == logged  # fmt: skip
    md = paths["md"].read_text()
    clean = round(100 * 0.5, 1)
    for m in ("visual", "depth"):
        v = round(100 * logged[f"missing_{m}"], 1)
        paper = {"visual": "60.7 (-5.1)", "depth": "60.6 (-5.2)"}[m]
        assert f"| AMF | {m} missing | {v:.1f} ({v - clean:+.1f}) | {paper} |" in md
    assert late.method.fusion == "late" and not late.measured
    assert "| late fusion | visual missing | not measured | 23.6 (-37.5) |" in md
    assert "- late fusion: not measured (trial t\\_late logged no cv/val\\_f1\\_missing" in md
    with paths["csv"].open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["section"] == "robustness" and r["source"] == "farm"]
    by_cond = {r["condition"]: r for r in rows if r["fusion"] == "amf" and r["split"] == "val"}
    assert float(by_cond["missing depth"]["f1"]) == pytest.approx(100 * logged["missing_depth"], abs=1e-9)
    assert float(by_cond["noise visual+depth sigma=0.1"]["f1"]) == pytest.approx(
        100 * logged["noise_visual-depth_0.1"], abs=1e-9)  # fmt: skip
    assert {r["fusion"] for r in rows if r["condition"] != "clean"} == {"amf"}  # late: clean only
    assert paths["robustness_png"].stat().st_size > 5000


def test_report_sweeps_reads_the_test_study_of_a_promoted_model_of_the_trial(store, tmp_path):
    uri, client, ids = store
    exp = client.create_experiment("promote-amf-synth", artifact_location=str(tmp_path / "artifacts"))
    run_id, rows = log_study(client, exp, tmp_path, ids["amf"], 0.45)
    client.create_registered_model("amf-synth")
    client.create_model_version("amf-synth", source=str(tmp_path / "artifacts" / run_id / "artifacts" / "model"),
                                run_id=run_id,
                                tags={"trial_run_id": ids["amf"], "promotion_run_id": run_id})  # fmt: skip
    # another trial's model, newer: not late's study, nor amf's
    log_study(client, exp, tmp_path, ids["late_tie"], 0.3, name="decoy", start=T0 + 150)
    report, paths = report_sweeps(uri, ["sw"], None, tmp_path / "report")
    amf = {mr.method.fusion: mr for mr in report.robustness}["amf"]
    assert amf.has_test_study and amf.method.test_robustness_run == run_id
    study = {r["condition"]: r["f1_mean"] for r in rows}
    got = {r.condition.name: r.test for r in (amf.clean, *amf.missing, *amf.noise) if math.isfinite(r.test)}
    assert got == pytest.approx(study)
    md = paths["md"].read_text()
    assert f"- AMF: models:/amf-synth/1, promotion run {run_id}, robustness/robustness.csv" in md
    (visual,) = [ln for ln in md.splitlines() if ln.startswith("| AMF | visual missing |")]
    assert visual.endswith("| 40.0 (-5.0) |")  # the test study's own column (no paper column here)
    assert "- late fusion: none found for trial t\\_late" in md  # the decoy belongs to t_late2
    with paths["csv"].open() as fh:
        test_rows = [r for r in csv.DictReader(fh) if r["section"] == "robustness" and r["split"] == "test"]
    assert {(r["fusion"], r["condition"]): float(r["f1"]) for r in test_rows} == pytest.approx(
        {("amf", c): 100 * v for c, v in study.items()})  # fmt: skip
    assert {r["run_id"] for r in test_rows} == {run_id}


def test_trial_test_study_prefers_a_readable_promotion_study_and_falls_back_to_the_trials_run(store, tmp_path):
    uri, client, _ = store
    exp = client.create_experiment("sw-art", artifact_location=str(tmp_path / "sw-art"))
    trial = add_trial(client, exp, "t_art", "amf", 7, T0, robust=True)
    rec = best_trial(trial_runs(client, "sw-art"))
    assert trial_test_study(client, rec).rows == ()  # nothing logged: no study, no error
    own_rows = write_study(tmp_path / "own", 0.4)
    client.log_artifacts(trial, str(tmp_path / "own"), "robustness")  # `farm robustness --run` on the trial's run
    found = trial_test_study(client, rec)
    assert found.run_id == trial and "the trial's own run" in found.source
    assert [r["f1_mean"] for r in found.rows] == pytest.approx([r["f1_mean"] for r in own_rows])
    promo = client.create_experiment("promote-amf-art", artifact_location=str(tmp_path / "promo-art"))
    good, _ = log_study(client, promo, tmp_path, trial, 0.35, name="good", start=T0 + 200)
    assert trial_test_study(client, rec).run_id == good  # a promoted model's study comes first
    bad = client.create_run(promo, tags={"trial_run_id": trial, "farm.kind": "promotion"}, start_time=T0 + 300)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "robustness.csv").write_text("condition,kind,modalities,sigma,f1_mean\nclean,clean,,0,oops\n")
    client.log_artifacts(bad.info.run_id, str(tmp_path / "bad"), "robustness")
    found = trial_test_study(client, rec)  # the newest study cannot be read: the next one, and a note
    assert found.run_id == good and f"run {bad.info.run_id} could not be read" in found.note
    report, paths = report_sweeps(uri, ["sw-art"], "bp4d", tmp_path / "report")
    assert report.robustness[0].method.test_robustness_run == good and paths["md"].exists()


# ---------------------------------------------------------------------------------------------
# comparisons: the fold runs' logged test predictions, the promotion bootstrap, seeds


def test_report_sweeps_compares_amf_with_the_baseline_as_promote_would(store, tmp_path):
    from farm.tracking.registry import fold_predictions as promote_predictions

    uri, client, ids = store
    report, paths = report_sweeps(uri, ["sw"], None, tmp_path / "report", n_boot=300, seed=2)
    (pair,) = report.pairs
    records = trial_runs(client, "sw")
    amf, late = (promote_predictions(client, best_trial(records, fusion=f)) for f in ("amf", "late"))
    logged = fold_preds(0.9, 1)
    assert np.array_equal(amf.probs, np.concatenate([logged[f].probs for f in FOLDS])) and not amf.seed.any()
    d = decide(amf, late, n_boot=300, seed=2)
    c = pair.result
    assert (c.ci_low, c.ci_high, c.difference, c.n_subjects, c.n_frames) == (d.ci_low, d.ci_high, d.difference, 12,
                                                                             360)  # fmt: skip
    assert pair.verdict == "AMF beats late fusion" and c.ci_low > 0.1
    with paths["csv"].open() as fh:
        (row,) = [r for r in csv.DictReader(fh) if r["section"] == "comparison"]
    assert (float(row["low"]), float(row["high"])) == pytest.approx((100 * d.ci_low, 100 * d.ci_high), abs=1e-9)
    assert (row["baseline"], row["n_boot"], row["seed"], row["run_id"]) == ("late fusion", "300", "2", ids["amf"])
    md = paths["md"].read_text()
    assert f"| AMF | late fusion | {100 * c.difference:.1f} | [{100 * c.t_low:.1f}, {100 * c.t_high:.1f}] | " \
        f"{pair.p_text.removeprefix('p ')} | [{100 * c.ci_low:.1f}, {100 * c.ci_high:.1f}] |" in md  # fmt: skip
    assert "Every farm number here: 3 folds (P1, P2, P3) x 1 seed, joint protocol." in md


def test_predictions_that_cannot_be_read_leave_the_rest_of_the_report(store, tmp_path, monkeypatch):
    from farm.tracking.registry import PromoteError
    from farm.tracking.registry import fold_predictions as promote_predictions

    uri, client, _ = store
    exp = client.create_experiment("sw-np", artifact_location=str(tmp_path / "np-art"))
    add_trial(client, exp, "t_amf", "amf", 1, T0, preds=fold_preds(0.9, 1))
    late = add_trial(client, exp, "t_late", "late", 2, T0 + 10)  # its fold runs logged no predictions
    report, paths = report_sweeps(uri, ["sw-np"], None, tmp_path / "report", n_boot=100)
    (pair,) = report.pairs
    kid = next(f.run_id for f in best_trial(trial_runs(client, "sw-np"), fusion="late").folds if f.fold == "P1")
    why = f"fold P1 of trial t_late (run {kid}) has no test predictions (predictions/test_predictions.parquet): "
    assert pair.verdict.startswith(f"not comparable: the test predictions of late fusion (trial t_late) could not be "
                                   f"read: {why}")  # fmt: skip
    assert all(p.exists() for p in paths.values()) and "not comparable" in paths["md"].read_text()
    with pytest.raises(PromoteError, match=r"fold P1 of trial t_late \(run \w+\) has no test predictions"):
        promote_predictions(client, best_trial(trial_runs(client, "sw-np"), fusion="late"))  # promote: as before
    assert late

    def unreachable(self, run_id, path, dst_path=None):  # e.g. S3 with no credentials on this machine
        raise RuntimeError("artifact store unreachable\nsecond line")

    monkeypatch.setattr(MlflowClient, "download_artifacts", unreachable)
    report, paths = report_sweeps(uri, ["sw"], "bp4d", tmp_path / "report2")
    (pair,) = report.pairs
    assert pair.verdict == ("not comparable: the test predictions of AMF (trial t_amf) could not be read: "
                            "RuntimeError: artifact store unreachable; the test predictions of late fusion (trial "
                            "t_late) could not be read: RuntimeError: artifact store unreachable")  # fmt: skip
    md = paths["md"].read_text()
    assert "with no interval: no claim either way" in md and "| AMF | visual missing |" in md  # the rest is there


def test_seed_tags_become_seeds_and_the_protocol_tag_is_named(store, tmp_path):
    uri, client, _ = store
    exp = client.create_experiment("sw-seeds", artifact_location=str(tmp_path / "seeds-art"))
    two = [fold_preds(0.9, 1), fold_preds(0.7, 5)]
    amf = add_trial(client, exp, "t_amf", "amf", 1, T0, preds=two, params={"seeds": "2"},
                    tags={"protocol": "per-modality"})  # fmt: skip
    add_trial(client, exp, "t_late", "late", 2, T0 + 10, preds=fold_preds(0.6, 2), tags={"protocol": "per-modality"})
    rec = best_trial(trial_runs(client, "sw-seeds"), fusion="amf")
    runs = prediction_runs(rec)
    assert [(f.fold, f.tags["seed"]) for f in runs] == [(f, s) for f in FOLDS for s in ("0", "1")]
    preds = fold_predictions(client, rec, runs)
    assert sorted(set(preds.seed)) == [0, 1] and len(preds.subject) == 720  # the same 360 frames once per seed
    assert np.array_equal(preds.probs[preds.seed == 1], np.concatenate([two[1][f].probs for f in FOLDS]))
    m = method_result(rec)
    assert (m.seeds, m.protocol, sorted(m.fold_f1)) == (2, "per-modality", list(FOLDS)) and m.run_id == amf
    report, paths = report_sweeps(uri, ["sw-seeds"], None, tmp_path / "report", n_boot=200)
    (pair,) = report.pairs
    assert (pair.result.a_seeds, pair.result.b_seeds, pair.result.n_frames) == ((2, 2, 2), (1, 1, 1), 360)
    md = paths["md"].read_text()
    assert "3 folds (P1, P2, P3) x 2 seeds, per-modality protocol (AMF)" in md
    assert "| AMF 3 folds x 2 seeds vs late fusion 3 folds x 1 seed | per-modality |" in md
