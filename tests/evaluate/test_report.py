"""farm.evaluate.report: numbers over folds, Markdown / CSV / PNG, and the paper's tables (pure: no MLflow)."""

import csv
import dataclasses
import math

import numpy as np
import pytest
import yaml

from farm.checkpoints import Predictions
from farm.config import BP4D_AUS
from farm.data.perturb import Condition
from farm.evaluate.paper import PAPER_FILE, ReportError, load_paper_robustness, load_paper_table, parse_condition
from farm.evaluate.promotion import decide
from farm.evaluate.report import MethodResult, build_report
from farm.evaluate.report_files import write_report

FOLDS = ("P1", "P2", "P3")
WRONG_HEADERS = ("AU5", "AU9", "AU20", "AU25", "AU26")


def method(fusion, level, seed=0, aus=BP4D_AUS, **kw):
    """Hand-made per-fold per-AU F1 around `level`."""
    rng = np.random.default_rng(seed)
    fold_f1 = {f: {a: float(level + rng.uniform(-0.1, 0.1)) for a in aus} for f in FOLDS}
    return MethodResult(fusion, f"trial_{fusion}", f"run_{fusion}", fold_f1, data_hash="d1", sweep="sw",
                        split_hashes={f: f"h{f}" for f in FOLDS}, partitions_hash="p1", aus=tuple(aus),
                        modalities=("visual", "depth"), objective=level, **kw)  # fmt: skip


def test_means_and_stds_over_folds():
    fold_f1 = {"P1": {"AU1": 0.2, "AU2": 0.5}, "P2": {"AU1": 0.4, "AU2": 0.7}, "P3": {"AU1": 0.3, "AU2": 0.3}}
    r = build_report([MethodResult("amf", "t", "r", fold_f1)], ["AU1", "AU2"]).rows[0]
    assert r.au_mean["AU1"] == pytest.approx(0.3) and r.au_std["AU1"] == pytest.approx(np.std([0.2, 0.4, 0.3], ddof=1))
    assert r.au_mean["AU2"] == pytest.approx(0.5) and r.au_std["AU2"] == pytest.approx(np.std([0.5, 0.7, 0.3], ddof=1))
    assert r.fold_avg == pytest.approx({"P1": 0.35, "P2": 0.55, "P3": 0.3})
    assert r.avg_mean == pytest.approx(np.mean([0.35, 0.55, 0.3]))
    assert r.avg_std == pytest.approx(np.std([0.35, 0.55, 0.3], ddof=1))  # the sample std over folds
    assert math.isnan(r.partition_std) and r.partition_avg == {0: r.avg_mean}  # one partition: no spread
    assert "mean ± sample std (ddof = 1) over the 3 folds" in " ".join(build_report([r.method], ["AU1"]).notes())


def test_avg_is_the_mean_over_folds_of_the_per_fold_au_mean_with_missing_aus_left_out():
    m = method("late", 0.5, seed=3)
    del m.fold_f1["P2"]["AU24"]  # no known label in that fold: the run does not log it
    r = build_report([m], BP4D_AUS).rows[0]
    per_fold = [np.mean([v for v in m.fold_f1[f].values()]) for f in FOLDS]
    assert r.avg_mean == pytest.approx(np.mean(per_fold), abs=1e-12)
    assert r.avg_std == pytest.approx(np.std(per_fold, ddof=1), abs=1e-12)
    assert r.au_mean["AU24"] == pytest.approx(np.mean([m.fold_f1[f]["AU24"] for f in ("P1", "P3")]))


def test_two_partitions_average_the_partitions_fold_means_and_give_their_sample_std(tmp_path):
    r0 = {"P1": {"AU1": 0.2, "AU2": 0.5}, "P2": {"AU1": 0.4, "AU2": 0.7}, "P3": {"AU1": 0.3}}  # AU2 unknown in P3
    r1 = {"P1": {"AU1": 0.6, "AU2": 0.1}, "P2": {"AU1": 0.5, "AU2": 0.3}, "P3": {"AU1": 0.1, "AU2": 0.2}}
    m = MethodResult("amf", "t", "r", r0, partition_f1={0: r0, 1: r1})
    report = build_report([m], ["AU1", "AU2"])
    (row,) = report.rows
    avgs = [np.mean([np.mean(list(p[f].values())) for f in FOLDS]) for p in (r0, r1)]
    assert row.partition_avg == pytest.approx({0: avgs[0], 1: avgs[1]})
    assert row.avg_mean == pytest.approx(np.mean(avgs)) and row.partition_std == pytest.approx(np.std(avgs, ddof=1))
    assert row.au_mean["AU2"] == pytest.approx(np.mean([np.mean([0.5, 0.7]), np.mean([0.1, 0.3, 0.2])]))
    assert row.au_std["AU1"] == pytest.approx(np.mean([np.std([0.2, 0.4, 0.3], ddof=1), np.std([0.6, 0.5, 0.1], ddof=1)]))
    paths = write_report(report, tmp_path / "out")
    md = paths["md"].read_text()
    assert "3 folds (P1, P2, P3) x 2 partitions x 1 seed, joint protocol" in md
    assert f"sample std over partitions {100 * np.std(avgs, ddof=1):.1f}" in md and "(sweep.partitions)" in md
    with paths["csv"].open() as fh:
        (avg,) = [r for r in csv.DictReader(fh) if r["section"] == "test_f1" and r["au"] == "Avg"]
    assert float(avg["partition_std_pct"]) == pytest.approx(100 * np.std(avgs, ddof=1)) and avg["num_partitions"] == "2"


def test_markdown_headers_comparison_and_provenance():
    report = build_report([method("amf", 0.25, 1), method("late", 0.40, 2)], BP4D_AUS, load_paper_table("bp4d"))
    md = report.to_markdown()
    assert "| " + " | ".join(BP4D_AUS) + " | Avg |" in md
    for wrong in WRONG_HEADERS:
        assert wrong not in md, wrong
    assert [r.method.fusion for r in report.rows] == ["late", "amf"]  # the paper's row order
    (sentence,) = report.comparisons()  # no predictions given: numbers from the table, no claim
    a, b = (100 * r.avg_mean for r in reversed(report.rows))
    assert sentence.startswith("AMF vs late fusion: not comparable: the test predictions of AMF (trial trial_amf) were "
                               "not read; the test predictions of late fusion (trial trial_late) were not read")  # fmt: skip
    assert f"the table's Avg: AMF {a:.1f} vs late fusion {b:.1f} ({round(a, 1) - round(b, 1):+.1f} points), with no " \
        "interval: no claim either way" in sentence and "beat" not in sentence  # fmt: skip
    assert sentence.endswith("; paper: AMF 65.8 vs 61.1 (+4.7).")
    assert "relabelled" in md and "paper, Table 1 (BP4D)" in md
    assert "`run_amf`" in md and "P1:hP1, P2:hP2, P3:hP3" in md


def test_comparison_reports_no_amf_and_no_baseline():
    none = build_report([method("late", 0.6, 1)], BP4D_AUS)
    assert none.comparisons() == ["This report holds no AMF result, so it makes no AMF comparison."]
    alone = build_report([method("amf", 0.6, 1)], BP4D_AUS)
    assert alone.comparisons() == ["This report holds no baseline to compare AMF with."] and alone.pairs == ()
    assert "| Method | Baseline |" not in alone.to_markdown()


def test_notes_flag_au_set_data_and_logged_mean_differences():
    aus = ("AU1", "AU2", "AU5")
    a = method("amf", 0.5, 1, aus=aus, logged_test_f1_mean=0.1)
    b = MethodResult("late", "t", "r", method("late", 0.5, 2, aus=aus).fold_f1, data_hash="d2")
    notes = " ".join(build_report([a, b], aus, load_paper_table("bp4dplus")).notes())
    assert "Our AU set differs from the paper's: only ours AU5" in notes
    assert "different datasets (data hash): d1, d2" in notes
    assert "differs from the run's cv/test_f1_mean 10.0" in notes
    assert "test numbers never chose a trial" in notes and "WARNING" not in notes
    biased = build_report([method("amf", 0.5, 1, objective_metric="cv/test_f1_mean")], aus).notes()
    assert any(s.startswith("WARNING: cv/test_f1_mean is a test metric") for s in biased)
    assert "ours uses visual, depth, the paper's row visual, depth, thermal" in notes


def test_csv_round_trips_and_files_are_written(tmp_path):
    report = build_report([method("amf", 0.25, 1), method("single:visual", 0.4, 2)], BP4D_AUS,
                          load_paper_table("bp4d"))  # fmt: skip
    paths = write_report(report, tmp_path / "out")
    assert sorted(paths) == ["csv", "md", "png", "robustness_png"] and all(p.exists() for p in paths.values())
    assert "Every farm number here: 3 folds (P1, P2, P3) x 1 seed, joint protocol." in paths["md"].read_text()
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 1000
    assert paths["md"].read_text().startswith("# AU detection report")
    with paths["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    ours = {(r["fusion"], r["au"]): r for r in rows if r["source"] == "farm" and r["section"] == "test_f1"}
    assert len(ours) == 2 * (len(BP4D_AUS) + 1)
    for r in report.rows:
        for au in BP4D_AUS:
            got = ours[(r.method.fusion, au)]
            assert float(got["f1_mean_pct"]) == pytest.approx(100 * r.au_mean[au], abs=1e-12)
            assert float(got["f1_std_pct"]) == pytest.approx(100 * r.au_std[au], abs=1e-12)
            assert got["run_id"] == r.method.run_id and got["data_hash"] == "d1" and got["num_folds"] == "3"
            assert (got["protocol"], got["seeds"]) == ("joint", "1")
        assert float(ours[(r.method.fusion, "Avg")]["f1_mean_pct"]) == pytest.approx(100 * r.avg_mean, abs=1e-12)
    assert ours[("amf", "AU24")]["paper_f1_pct"] == "52.0" and ours[("single:visual", "Avg")]["paper_f1_pct"] == "59.6"
    paper = [r for r in rows if r["source"] == "paper" and r["section"] == "test_f1"]
    assert len(paper) == 13 * 13 and {r["au"] for r in paper} == {*BP4D_AUS, "Avg"}


def test_paper_tables_parse_with_12_corrected_aus_and_consistent_averages():
    doc = yaml.safe_load(PAPER_FILE.read_text())
    assert tuple(doc["aus"]) == BP4D_AUS
    for name, table in doc["tables"].items():
        for row in table["rows"]:
            label = f"{name}: {row['method']} {row['modal']}"
            assert list(row["f1"]) == list(BP4D_AUS), label
            values = list(row["f1"].values())
            if all(v is None for v in values):  # '-' in the paper (TEMT-Net on BP4D+)
                assert row["avg"] is None, label
                continue
            assert all(isinstance(v, float) for v in values) and isinstance(row["avg"], float), label
            assert np.mean(values) == pytest.approx(row["avg"], abs=0.15), label


def test_load_paper_table():
    t1, t2 = load_paper_table("bp4d"), load_paper_table("bp4dplus")
    assert (len(t1.rows), len(t2.rows)) == (13, 8)
    assert t1.aus == BP4D_AUS and "AU26" in t1.printed_headers
    assert t1.row_for("amf").avg == 65.8 and t2.row_for("amf").avg == 64.1 and t1.row_for("late").avg == 61.1
    assert t1.row_for("single:depth").f1["AU24"] == 36.2 and t2.row_for("cam") is None
    assert [r.method for r in t1.rows if r.fusion is None] == ["DSIN [7]", "JAA [31]", "OF-Net [42]",
                                                                "LP-Net [29]", "SRERL [20]"]  # fmt: skip
    assert t1.rows[1].f1["AU7"] == 74.6  # printed "74.6."
    with pytest.raises(ReportError, match="bp4d, bp4dplus"):
        load_paper_table("disfa")


def test_build_report_refuses_empty_input():
    with pytest.raises(ReportError):
        build_report([], BP4D_AUS)
    with pytest.raises(ReportError, match="no fold results"):
        build_report([MethodResult("amf", "t", "r", {})], BP4D_AUS)


def test_a_failed_report_leaves_the_previous_files_whole(tmp_path, monkeypatch):
    from farm.evaluate import report_files as report_mod

    first = write_report(build_report([method("amf", 0.25, 1)], BP4D_AUS), tmp_path / "out")
    before = {k: p.read_bytes() for k, p in first.items()}

    def broken_plot(report, path):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report_mod, "plot_report", broken_plot)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_report(build_report([method("late", 0.5, 2)], BP4D_AUS), tmp_path / "out")
    assert {k: p.read_bytes() for k, p in first.items()} == before  # md and csv were not replaced either
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.csv", "report.md", "report.png",
                                                                    "robustness.png"]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# robustness: validation conditions, test studies, the paper's Fig. 4 / 5

AMF_VAL = {"missing_visual": 0.2013, "missing_depth": 0.516, "missing_worst": 0.2013, "noise_visual_0.1": 0.594,
           "noise_visual_0.5": 0.502, "noise_depth_0.1": 0.6, "noise_depth_0.5": 0.581,
           "noise_visual-depth_0.1": 0.552, "noise_visual-depth_0.5": 0.3}  # fmt: skip
STUDY = (  # robustness.csv rows of a test-subject study, as farm.evaluate.robustness.read_csv returns them
    {"condition": "clean", "kind": "clean", "modalities": "", "sigma": 0.0, "f1_mean": 0.58, "f1_std": 0.01,
     "delta": 0.0},
    {"condition": "missing visual", "kind": "missing", "modalities": "visual", "sigma": 0.0, "f1_mean": 0.19,
     "f1_std": 0.02, "delta": -0.39},
    {"condition": "missing depth", "kind": "missing", "modalities": "depth", "sigma": 0.0, "f1_mean": 0.5,
     "f1_std": 0.02, "delta": -0.08},
    {"condition": "noise visual+depth sigma=0.5", "kind": "noise", "modalities": "visual+depth", "sigma": 0.5,
     "f1_mean": 0.28, "f1_std": 0.03, "delta": -0.3},
)  # fmt: skip


def robust(fusion, clean, val, mods=("visual", "depth"), seed=0, **kw):
    """A method whose trial logged cv/val_f1_mean = clean and cv/val_f1_<suffix> = val[suffix]."""
    return dataclasses.replace(method(fusion, clean, seed), modalities=mods, val_f1_clean=clean,
                               val_robustness=dict(val), **kw)  # fmt: skip


def with_study(m):
    return dataclasses.replace(m, test_robustness=STUDY, test_robustness_run="promo1",
                               test_robustness_source="models:/amf-bp4d/2, promotion run promo1")  # fmt: skip


def line(md, method_label, condition):
    """The Markdown table line of (method, condition)."""
    found = [ln for ln in md.splitlines() if ln.startswith(f"| {method_label} | {condition} |")]
    assert len(found) == 1, (method_label, condition, found)
    return found[0]


def test_parse_condition_reads_every_metric_name_the_engine_logs():
    from farm.data.perturb import conditions, metric_suffix

    for mods in (("visual", "depth"), ("visual", "depth", "thermal")):
        conds = [c for c in conditions(mods) if c.kind != "clean"]
        got = [parse_condition(metric_suffix(c), mods) for c in conds]
        assert got == [Condition(c.kind, c.modalities, c.sigma) for c in conds]
        assert [g.name for g in got] == [c.name for c in conds]  # the text of robustness.csv's condition column
    assert parse_condition("missing_visual-depth") == Condition("missing", ("visual", "depth"))
    assert parse_condition("noise_all_0.5", ("visual", "depth")) == Condition("noise", ("visual", "depth"), 0.5)
    for other in ("missing_worst", "mean", "std", "noise_visual_x", "noise_0.5", "clean"):
        assert parse_condition(other, ("visual", "depth")) is None, other


def test_robustness_table_values_equal_the_logged_metrics():
    report = build_report([robust("amf", 0.601, AMF_VAL)], BP4D_AUS)
    (mr,) = report.robustness
    assert mr.clean.val == 0.601 and mr.measured and not mr.has_test_study
    got = {r.condition.name: r.val for r in (*mr.missing, *mr.noise)}
    assert got == {"missing visual": 0.2013, "missing depth": 0.516, "noise visual sigma=0.1": 0.594,
                   "noise visual sigma=0.5": 0.502, "noise depth sigma=0.1": 0.6, "noise depth sigma=0.5": 0.581,
                   "noise visual+depth sigma=0.1": 0.552, "noise visual+depth sigma=0.5": 0.3}  # fmt: skip
    md = report.to_markdown()
    assert "| Method | Condition | Ours: validation F1 (fold mean) |" in md  # no test or paper column here
    assert line(md, "AMF", "clean") == "| AMF | clean | 60.1 |"
    assert line(md, "AMF", "visual missing") == "| AMF | visual missing | 20.1 (-40.0) |"
    assert line(md, "AMF", "depth missing") == "| AMF | depth missing | 51.6 (-8.5) |"
    assert "| Method | Noise on | Split | clean | σ=0.1 | σ=0.5 |" in md
    assert line(md, "AMF", "visual") == "| AMF | visual | validation | 60.1 | 59.4 | 50.2 |"
    assert line(md, "AMF", "depth") == "| AMF | depth | validation | 60.1 | 60.0 | 58.1 |"
    assert line(md, "AMF", "visual+depth (all)") == "| AMF | visual+depth (all) | validation | 60.1 | 55.2 | 30.0 |"
    assert "never its test subjects" in md and "Paper column" not in md


def test_paper_fig4_numbers_sit_beside_the_matching_rows():
    methods = [robust("late", 0.55, {"missing_visual": 0.3, "missing_depth": 0.5}, seed=1),
               robust("cam", 0.57, {"missing_visual": 0.31, "missing_depth": 0.52}, seed=2),
               robust("early", 0.5, {"missing_visual": 0.2, "missing_depth": 0.45}, seed=3),
               robust("amf", 0.601, AMF_VAL, seed=4)]  # fmt: skip
    md = build_report(methods, BP4D_AUS, load_paper_table("bp4d")).to_markdown()
    assert "| Paper Fig. 4 (BP4D, test partitions) |" in md
    assert line(md, "AMF", "clean") == "| AMF | clean | 60.1 | 65.8 (Table 1) |"
    assert line(md, "AMF", "visual missing") == "| AMF | visual missing | 20.1 (-40.0) | 60.7 (-5.1) |"
    assert line(md, "AMF", "depth missing") == "| AMF | depth missing | 51.6 (-8.5) | 60.6 (-5.2) |"
    assert line(md, "late fusion", "clean") == "| late fusion | clean | 55.0 | 61.1 |"
    assert line(md, "late fusion", "visual missing") == "| late fusion | visual missing | 30.0 (-25.0) | 23.6 (-37.5) |"
    assert line(md, "late fusion", "depth missing") == "| late fusion | depth missing | 50.0 (-5.0) | 48.8 (-12.3) |"
    assert line(md, "ResNet-18+CAM", "visual missing").endswith("| 29.8 (-33.9) |")
    assert line(md, "ResNet-18+CAM", "depth missing").endswith("| not stated |")  # the text gives no number
    assert line(md, "early fusion", "visual missing").endswith("| 20.0 (-30.0) | – |")  # not in the figures
    assert "AMF's lowest point with Gaussian noise on one modality" in md and "is F1 61 at σ=0.8" in md
    assert "TEST-partition numbers of the paper; ours are validation-subject numbers" in md


def test_paper_figures_are_placed_only_for_the_same_modalities_and_dataset():
    amf3 = robust("amf", 0.6, {"missing_visual": 0.3}, mods=("visual", "depth", "thermal"))
    report = build_report([amf3], BP4D_AUS, load_paper_table("bp4d"))
    md = report.to_markdown()
    assert line(md, "AMF", "visual missing") == "| AMF | visual missing | 30.0 (-30.0) | – |"
    assert "are not placed beside ours (visual, depth, thermal)" in md and "60.7" not in md
    assert "at σ=0.8" not in md and "Paper clean values" not in md  # the Fig. 5 line goes with a placed row
    plus = build_report([robust("amf", 0.6, AMF_VAL)], BP4D_AUS, load_paper_table("bp4dplus"))
    assert plus.figures is None and "Paper Fig. 4" not in plus.to_markdown()
    assert "robustness study (Fig. 4, 5) on BP4D only" in plus.to_markdown()


def test_paper_figures_hold_only_what_the_text_states():
    figs, t1 = load_paper_robustness("bp4d"), load_paper_table("bp4d")
    rows = {r.fusion: r for r in figs.rows}
    assert set(rows) == {"late", "cam", "amf"} and figs.modalities == ("visual", "depth")
    assert rows["late"].missing == {("visual",): 23.6, ("depth",): 48.8}
    assert rows["cam"].missing == {("visual",): 29.8}  # depth missing is not stated
    assert rows["amf"].missing == {("visual",): 60.7, ("depth",): 60.6}
    for fusion, r in rows.items():  # 61.1 and 63.7 are stated; AMF's clean bar is not: its Table 1 Avg
        assert r.clean == t1.row_for(fusion).avg, fusion
    assert rows["amf"].clean_from == "Table 1" and rows["late"].clean_from == rows["cam"].clean_from == "section 4.4.3"
    # "about 37.1% and 11.8% higher than the corresponding ResNet-18 model" (visual, depth missing)
    gaps = [round(rows["amf"].missing[m] - rows["late"].missing[m], 1) for m in (("visual",), ("depth",))]
    assert gaps == [37.1, 11.8]
    assert rows["amf"].noise_worst == (0.8, 61.0) and rows["late"].noise_worst is None
    assert load_paper_robustness("bp4dplus") is None


def test_a_trial_without_robustness_metrics_reads_not_measured(tmp_path):
    old = method("late", 0.4, 2)  # an older sweep: no cv/val_f1_missing_*, noise_* (nor the clean value read)
    unknown = MethodResult("early", "t_early", "r_early", method("early", 0.4, 3).fold_f1)  # modalities unknown
    report = build_report([old, unknown, robust("amf", 0.601, AMF_VAL)], BP4D_AUS, load_paper_table("bp4d"))
    md = report.to_markdown()
    assert line(md, "late fusion", "clean") == "| late fusion | clean | not measured | 61.1 |"
    assert line(md, "late fusion", "visual missing") == "| late fusion | visual missing | not measured | 23.6 (-37.5) |"
    assert line(md, "late fusion", "depth missing") == "| late fusion | depth missing | not measured | 48.8 (-12.3) |"
    nm = "not measured"
    assert line(md, "late fusion", "–") == f"| late fusion | – | validation | {nm} | {nm} | {nm} |"
    assert line(md, "early fusion", "missing modalities") == "| early fusion | missing modalities | not measured | |"
    assert "- late fusion: not measured (trial trial\\_late logged no cv/val\\_f1\\_missing\\_\\*" in md
    assert line(md, "AMF", "visual missing").startswith("| AMF | visual missing | 20.1 (-40.0) |")
    paths = write_report(report, tmp_path / "out")  # the plot copes with it too
    assert paths["robustness_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with paths["csv"].open() as fh:
        robust_rows = [r for r in csv.DictReader(fh) if r["section"] == "robustness" and r["source"] == "farm"]
    assert {r["fusion"] for r in robust_rows} == {"amf"}  # nothing measured: no rows, not zeros


def test_sentences_say_the_change_and_compare_with_the_single_modality_method():
    amf = robust("amf", 0.601, AMF_VAL)
    depth = robust("single:depth", 0.452, {"noise_depth_0.5": 0.4}, mods=("depth",))
    report = build_report([amf, depth], BP4D_AUS)
    assert report.robustness_sentences() == [
        "ResNet-18 (depth): one modality, no missing-modality condition (clean validation F1 45.2).",
        "AMF (validation F1, clean 60.1): without visual 20.1 (-40.0 points; below ResNet-18 (depth)'s clean "
        "validation F1 of 45.2), without depth 51.6 (-8.5 points).",  # no single:visual in the report: no comparison
    ]
    amf3 = robust("amf", 0.6, {"missing_visual": 0.55, "missing_visual-depth": 0.5, "missing_depth": 0.6},
                  mods=("visual", "depth", "thermal"))  # fmt: skip
    thermal = robust("single:thermal", 0.48, {}, mods=("thermal",))
    (_, s) = build_report([amf3, thermal], BP4D_AUS).robustness_sentences()
    assert s == ("AMF (validation F1, clean 60.0): without visual 55.0 (-5.0 points), without depth 60.0 (unchanged "
                 "at one decimal), without thermal not measured, without visual+depth 50.0 (-10.0 points; above "
                 "ResNet-18 (thermal)'s clean validation F1 of 48.0), without visual+thermal not measured, without "
                 "depth+thermal not measured.")  # fmt: skip


def test_a_test_study_is_its_own_column():
    report = build_report([with_study(robust("amf", 0.601, AMF_VAL)), robust("late", 0.55, {}, seed=1)], BP4D_AUS)
    md = report.to_markdown()
    assert "| Ours: validation F1 (fold mean) | Test study F1 (test subjects) |" in md
    assert line(md, "AMF", "clean") == "| AMF | clean | 60.1 | 58.0 |"
    assert line(md, "AMF", "visual missing") == "| AMF | visual missing | 20.1 (-40.0) | 19.0 (-39.0) |"
    assert line(md, "late fusion", "visual missing") == "| late fusion | visual missing | not measured | no study |"
    noise = [ln for ln in md.splitlines() if ln.startswith("| AMF | visual+depth (all) |")]
    assert noise == ["| AMF | visual+depth (all) | validation | 60.1 | 55.2 | 30.0 |",
                     "| AMF | visual+depth (all) | test study | 58.0 | not measured | 28.0 |"]  # fmt: skip
    assert "- AMF: models:/amf-bp4d/2, promotion run promo1" in md
    assert "- late fusion: none found for trial trial\\_late" in md


def test_robustness_csv_round_trips_and_the_png_is_written(tmp_path):
    amf = with_study(robust("amf", 0.601, AMF_VAL))
    depth = robust("single:depth", 0.452, {"noise_depth_0.5": 0.4}, mods=("depth",), seed=5)
    report = build_report([amf, method("late", 0.4, 2), depth], BP4D_AUS, load_paper_table("bp4d"))
    paths = write_report(report, tmp_path / "out")
    png = paths["robustness_png"]
    assert png.name == "robustness.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000 and png.read_bytes() != paths["png"].read_bytes()
    with paths["csv"].open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["section"] == "robustness"]
    farm = {(r["fusion"], r["split"], r["condition"]): r for r in rows if r["source"] == "farm"}
    expected = {}
    for mr in report.robustness:
        for split in ("val", "test"):
            clean = getattr(mr.clean, split)
            for r in (mr.clean, *mr.missing, *mr.noise):
                if math.isfinite(getattr(r, split)):
                    expected[(mr.method.fusion, split, r.condition.name)] = (getattr(r, split), clean)
    assert set(farm) == set(expected) and len(farm) == len([r for r in rows if r["source"] == "farm"])
    for key, (v, clean) in expected.items():
        assert float(farm[key]["f1"]) == pytest.approx(100 * v, abs=1e-9), key
        assert float(farm[key]["delta"]) == pytest.approx(100 * (v - clean), abs=1e-9), key
    assert not any(k[0] == "late" for k in farm)  # not measured: no row
    mv = farm[("amf", "val", "missing visual")]
    assert (mv["kind"], mv["modalities"], mv["sigma"], float(mv["f1"])) == (
        "missing",
        "visual",
        "",
        pytest.approx(20.13),
    )
    assert mv["run_id"] == "run_amf" and farm[("amf", "test", "missing visual")]["run_id"] == "promo1"
    nz = farm[("amf", "val", "noise visual+depth sigma=0.5")]
    assert (nz["kind"], nz["modalities"], float(nz["sigma"]), float(nz["f1"])) == ("noise", "visual+depth", 0.5, 30.0)
    assert float(farm[("amf", "test", "clean")]["f1"]) == pytest.approx(58.0)
    paper = {(r["fusion"], r["condition"]): r for r in rows if r["source"] == "paper"}
    assert len(paper) == 9 and {r["split"] for r in paper.values()} == {"paper test"}
    assert (float(paper[("amf", "missing visual")]["f1"]), float(paper[("amf", "missing visual")]["delta"])) == (
        60.7, -5.1)  # fmt: skip
    assert float(paper[("late", "missing depth")]["f1"]) == 48.8 and float(paper[("cam", "clean")]["f1"]) == 63.7
    (worst,) = [r for r in paper.values() if r["kind"] == "noise_worst"]
    assert (worst["fusion"], float(worst["sigma"]), float(worst["f1"])) == ("amf", 0.8, 61.0)


def test_a_failed_robustness_plot_leaves_the_previous_files_whole(tmp_path, monkeypatch):
    from farm.evaluate import report_files as report_mod

    first = write_report(build_report([robust("amf", 0.601, AMF_VAL)], BP4D_AUS), tmp_path / "out")
    before = {k: p.read_bytes() for k, p in first.items()}

    def broken(report, path):
        raise RuntimeError("robustness plot failed")

    monkeypatch.setattr(report_mod, "plot_robustness", broken)
    with pytest.raises(RuntimeError, match="robustness plot failed"):
        write_report(build_report([with_study(robust("amf", 0.5, AMF_VAL, seed=9))], BP4D_AUS), tmp_path / "out")
    assert {k: p.read_bytes() for k, p in first.items()} == before  # md, csv and report.png were not replaced
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.csv", "report.md", "report.png",
                                                                    "robustness.png"]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# comparisons: AMF against each baseline, with the promotion bootstrap's interval


def predictions(right, seed, subjects=12, frames=40, aus=BP4D_AUS):
    """Per-frame test predictions over 3 folds (subjects dealt round-robin) with labels shared by every model (drawn
    from seed 0): each known label is predicted right with probability `right`."""
    labels_rng, rng = np.random.default_rng(0), np.random.default_rng(seed)
    subj = np.repeat([f"S{i:02d}" for i in range(subjects)], frames)
    fold = np.repeat([FOLDS[i % 3] for i in range(subjects)], frames)
    labels = (labels_rng.random((len(subj), len(aus))) < 0.35).astype(np.int8)
    labels[labels_rng.random(labels.shape) < 0.03] = -1
    wrong = rng.random(labels.shape) >= right
    probs = np.where((labels == 1) ^ wrong, 0.8, 0.2).astype(np.float32)
    return Predictions(subj.astype(object), np.full(len(subj), "T1", object), np.tile(np.arange(frames), subjects),
                       fold.astype(object), probs, labels, tuple(aus))  # fmt: skip


def with_preds(fusion, level, preds, seed=0, **kw):
    return dataclasses.replace(method(fusion, level, seed), predictions=preds, **kw)


def two_seeds(a, b):
    """One Predictions with a's rows as seed 0 and b's (the same frames) as seed 1."""
    cols = {k: np.concatenate([getattr(a, k), getattr(b, k)]) for k in ("subject", "task", "frame", "fold", "probs",
                                                                         "labels")}  # fmt: skip
    return Predictions(**cols, aus=a.aus, seed=np.repeat([0, 1], len(a.subject)))


def test_the_reports_interval_is_the_promotion_bootstraps():
    amf, late = predictions(0.8, 1), predictions(0.75, 2)
    report = build_report([with_preds("amf", 0.5, amf), with_preds("late", 0.4, late, 2)], BP4D_AUS,
                          n_boot=700, seed=11)  # fmt: skip
    (pair,) = report.pairs
    d = decide(amf, late, n_boot=700, seed=11)
    c = pair.result
    assert (c.ci_low, c.ci_high, c.difference, c.n_subjects, c.n_frames) == (d.ci_low, d.ci_high, d.difference,
                                                                             d.n_subjects, d.n_frames)  # fmt: skip
    assert (c.a_f1, c.b_f1, c.n_boot, c.seed) == (d.candidate_f1, d.champion_f1, 700, 11)
    other = build_report([with_preds("amf", 0.5, amf), with_preds("late", 0.4, late, 2)], BP4D_AUS, n_boot=700,
                         seed=12).pairs[0].result  # fmt: skip
    assert (other.ci_low, other.ci_high) != (c.ci_low, c.ci_high)  # the seed is passed on


def test_a_large_difference_is_significant_and_none_is_not(tmp_path):
    good, poor = predictions(0.9, 1), predictions(0.6, 2)
    win = build_report([with_preds("amf", 0.5, good), with_preds("late", 0.4, poor, 2)], BP4D_AUS, n_boot=500)
    (p,) = win.pairs
    c = p.result
    d, lo, hi, tlo, thi = (100 * v for v in (c.difference, c.ci_low, c.ci_high, c.t_low, c.t_high))
    # the verdict is the corrected t's (one comparison: Holm's p is its own p); both intervals exclude zero here
    assert lo > 0 and tlo > 0 and c.p_value < 0.05 and p.p_holm == c.p_value and p.verdict == "AMF beats late fusion"
    assert p.words == f"AMF beats late fusion by {d:.1f} points (corrected t [{tlo:.1f}, {thi:.1f}] over 3 units, " \
        f"p {c.p_value:.3g})"  # fmt: skip
    loss = build_report([with_preds("amf", 0.5, poor), with_preds("late", 0.4, good, 2)], BP4D_AUS, n_boot=500)
    (q,) = loss.pairs
    d2, hi2, tlo2, thi2 = (100 * v for v in (q.result.difference, q.result.ci_high, q.result.t_low, q.result.t_high))
    assert hi2 < 0 and thi2 < 0 and q.verdict == "late fusion beats AMF"
    assert q.words.startswith(f"late fusion beats AMF by {-d2:.1f} points (corrected t [{tlo2:.1f}, {thi2:.1f}]")
    same = build_report([with_preds("amf", 0.5, good), with_preds("cam", 0.4, good, 2)], BP4D_AUS, n_boot=500)
    (r,) = same.pairs  # the same model twice: every difference is zero, so is the t's variance
    assert r.verdict == "no detectable difference"
    assert r.words.startswith("AMF vs ResNet-18+CAM: no detectable difference: 0.0 points (no corrected t: ")
    # two models of the same quality, their errors drawn independently (label noise flipped symmetrically)
    alike = build_report([with_preds("amf", 0.5, predictions(0.75, 3)), with_preds("early", 0.4, predictions(0.75, 4))],
                         BP4D_AUS, n_boot=500)  # fmt: skip
    (e,) = alike.pairs
    assert e.result.ci_low < 0 < e.result.ci_high and e.verdict == "no detectable difference"
    assert e.words.startswith("AMF vs early fusion: no detectable difference: ") and "beats" not in e.words
    (sentence,) = win.comparisons()
    assert sentence.startswith(f"AMF beats late fusion by {d:.1f} points (corrected t [{tlo:.1f}, {thi:.1f}]")
    assert f"conditional on these trained models, the subject bootstrap's 95% interval of AMF − late fusion is " \
        f"[{lo:.1f}, {hi:.1f}] (AMF " in sentence  # fmt: skip
    assert "on 480 common test frames of 12 subjects, 3 folds x 1 seed, joint protocol)." in sentence


def test_the_verdict_follows_holms_correction_over_the_reports_comparisons():
    import dataclasses

    from farm.evaluate.stats import holm

    good, poor, mid = predictions(0.9, 1), predictions(0.6, 2), predictions(0.62, 3)
    rep = build_report([with_preds("amf", 0.5, good), with_preds("late", 0.4, poor, 2), with_preds("early", 0.4, mid, 3)],
                       BP4D_AUS, n_boot=200)  # fmt: skip
    assert len(rep.pairs) == 2
    raw = [p.result.p_value for p in rep.pairs]
    assert [p.p_holm for p in rep.pairs] == pytest.approx(list(holm(raw)))  # the family: the report's comparisons
    p = rep.pairs[0]
    # the same difference, significant alone, is not claimed once the correction lifts its p above 5 %
    claimed = dataclasses.replace(p, result=dataclasses.replace(p.result, p_value=0.03), p_holm=0.03)
    corrected = dataclasses.replace(claimed, p_holm=0.06)
    assert claimed.verdict.endswith("beats " + p.b.method.label) or claimed.verdict.startswith(p.b.method.label)
    assert corrected.verdict == "no detectable difference" and "p 0.03, Holm p 0.06" in corrected.words


def test_two_seeds_per_fold_widen_the_interval_and_are_named():
    s0, s1, late = predictions(0.9, 1), predictions(0.65, 5), predictions(0.75, 2)
    seeded = build_report([with_preds("amf", 0.5, two_seeds(s0, s1), seeds=2), with_preds("late", 0.4, late, 2)],
                          BP4D_AUS, n_boot=600)  # fmt: skip
    one = build_report([with_preds("amf", 0.5, s0), with_preds("late", 0.4, late, 2)], BP4D_AUS, n_boot=600)
    (p,), (q,) = seeded.pairs, one.pairs
    assert p.result.a_seeds == (2, 2, 2) and p.result.b_seeds == (1, 1, 1) and p.result.n_frames == 480
    assert p.folds_seeds == "AMF 3 folds x 2 seeds vs late fusion 3 folds x 1 seed"
    assert p.result.ci_high - p.result.ci_low > q.result.ci_high - q.result.ci_low  # the seeds' spread counts
    md = seeded.to_markdown()
    assert ("Farm numbers: 3 folds (P1, P2, P3) x 1 seed, joint protocol (late fusion); 3 folds (P1, P2, P3) x 2 "
            "seeds, joint protocol (AMF).") in md  # fmt: skip
    assert "| AMF 3 folds x 2 seeds vs late fusion 3 folds x 1 seed | joint |" in md


def test_not_comparable_comparisons_say_why_and_the_report_is_still_written(tmp_path):
    late = with_preds("late", 0.4, predictions(0.7, 2), 2)
    unread = dataclasses.replace(method("amf", 0.5, 1), predictions_note="ConnectionError: artifact store unreachable")
    elsewhere = predictions(0.8, 1)
    elsewhere = dataclasses.replace(elsewhere, subject=np.array(["X" + s for s in elsewhere.subject], dtype=object))
    cam = with_preds("cam", 0.45, elsewhere, 3)  # another dataset: no frame in common with AMF's
    report = build_report([unread, late], BP4D_AUS)
    (p,) = report.pairs
    assert not p.result.comparable and p.verdict == (
        "not comparable: the test predictions of AMF (trial trial_amf) could not be read: ConnectionError: artifact "
        "store unreachable")  # fmt: skip
    other = build_report([with_preds("amf", 0.5, predictions(0.8, 1)), late, cam], BP4D_AUS, n_boot=200)
    by = {q.b.method.fusion: q for q in other.pairs}
    assert by["late"].result.comparable
    assert by["cam"].verdict == "not comparable: the two models share no test frame (different datasets?)"
    paths = write_report(other, tmp_path / "out")
    md = paths["md"].read_text()
    assert "- AMF vs ResNet-18+CAM: not comparable: the two models share no test frame (different datasets?); the " \
        "table's Avg: AMF " in md  # fmt: skip
    assert "| AMF | ResNet-18+CAM | – | – | – | – | – | – | – | – | – | joint | not comparable: the two models share" in md
    with paths["csv"].open() as fh:
        rows = {r["baseline_fusion"]: r for r in csv.DictReader(fh) if r["section"] == "comparison"}
    assert rows["cam"]["verdict"].startswith("not comparable") and rows["cam"]["diff"] == rows["cam"]["low"] == ""
    assert rows["late"]["diff"] != "" and all(p.exists() for p in paths.values())


def test_csv_markdown_and_png_carry_the_intervals(tmp_path):
    report = build_report([with_preds("amf", 0.5, predictions(0.9, 1), protocol="per-modality"),
                           with_preds("late", 0.4, predictions(0.6, 2), 2, protocol="per-modality"),
                           with_preds("single:depth", 0.3, predictions(0.85, 3), 3, protocol="per-modality")],
                          BP4D_AUS, load_paper_table("bp4d"), n_boot=300, seed=3)  # fmt: skip
    paths = write_report(report, tmp_path / "out")
    with paths["csv"].open() as fh:
        rows = {r["baseline_fusion"]: r for r in csv.DictReader(fh) if r["section"] == "comparison"}
    assert set(rows) == {"late", "single:depth"}
    for p in report.pairs:
        row, c = rows[p.b.method.fusion], p.result
        assert (float(row["diff"]), float(row["low"]), float(row["high"])) == pytest.approx(
            (100 * c.difference, 100 * c.ci_low, 100 * c.ci_high), abs=1e-9)  # fmt: skip
        assert (row["method"], row["baseline"], row["fusion"], row["verdict"]) == ("AMF", p.b.method.label, "amf",
                                                                                   p.verdict)  # fmt: skip
        assert (row["n_subjects"], row["n_frames"], row["n_boot"], row["seed"]) == ("12", "480", "300", "3")
        assert (row["num_folds"], row["seeds"], row["protocol"], row["source"]) == ("3", "1", "per-modality", "farm")
    assert rows["late"]["verdict"] == "AMF beats late fusion"
    md = paths["md"].read_text()
    assert "## Comparisons: AMF against each baseline" in md and "300 paired replicates (random seed 3)" in md
    pair = report.pairs[0]
    c = pair.result
    assert pair.b.method.fusion == "single:depth"  # the paper's row order
    assert (
        f"| AMF | ResNet-18 (depth) | {100 * c.difference:.1f} | [{100 * c.t_low:.1f}, {100 * c.t_high:.1f}] | "
        f"{pair.p_text.removeprefix('p ')} | [{100 * c.ci_low:.1f}, {100 * c.ci_high:.1f}] "
        f"| {100 * c.a_f1:.1f} | {100 * c.b_f1:.1f} | 12 | 480 | 3 folds x 1 seed | per-modality |"
    ) in md
    for row in rows.values():  # the corrected t and Holm's p are in the CSV too
        assert float(row["t_low"]) < float(row["diff"]) < float(row["t_high"]) and row["n_units"] == "3"
        assert float(row["p_value"]) <= float(row["p_holm"]) <= 1
    assert md.count("Every farm number here: 3 folds (P1, P2, P3) x 1 seed, per-modality protocol.") == 2
    assert "per-modality protocol); paper: AMF 65.8 vs 61.1 (+4.7)." in md  # the paper's gap, beside ours
    without = write_report(dataclasses.replace(report, pairs=()), tmp_path / "plain")

    def height(png):  # the PNG header's image height
        return int.from_bytes(png.read_bytes()[20:24], "big")

    assert height(paths["png"]) > height(without["png"])  # the panel of differences with their intervals


def test_build_report_refuses_a_bootstrap_without_replicates():
    with pytest.raises(ReportError, match="at least one replicate"):
        build_report([method("amf", 0.5, 1)], BP4D_AUS, n_boot=0)
