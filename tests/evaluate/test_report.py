"""farm.evaluate.report: numbers over folds, Markdown / CSV / PNG, and the paper's tables (pure: no MLflow)."""

import csv

import numpy as np
import pytest
import yaml

from farm.config import BP4D_AUS
from farm.evaluate.report import PAPER_FILE, MethodResult, ReportError, build_report, load_paper_table, write_report

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
    assert r.au_mean["AU1"] == pytest.approx(0.3) and r.au_std["AU1"] == pytest.approx(np.std([0.2, 0.4, 0.3]))
    assert r.au_mean["AU2"] == pytest.approx(0.5) and r.au_std["AU2"] == pytest.approx(np.std([0.5, 0.7, 0.3]))
    assert r.fold_avg == pytest.approx({"P1": 0.35, "P2": 0.55, "P3": 0.3})
    assert r.avg_mean == pytest.approx(np.mean([0.35, 0.55, 0.3]))
    assert r.avg_std == pytest.approx(np.std([0.35, 0.55, 0.3]))  # population std, as farm/evaluate/cv.py


def test_avg_is_the_mean_over_folds_of_the_per_fold_au_mean_with_missing_aus_left_out():
    m = method("late", 0.5, seed=3)
    del m.fold_f1["P2"]["AU24"]  # no known label in that fold: the run does not log it
    r = build_report([m], BP4D_AUS).rows[0]
    per_fold = [np.mean([v for v in m.fold_f1[f].values()]) for f in FOLDS]
    assert r.avg_mean == pytest.approx(np.mean(per_fold), abs=1e-12)
    assert r.avg_std == pytest.approx(np.std(per_fold), abs=1e-12)
    assert r.au_mean["AU24"] == pytest.approx(np.mean([m.fold_f1[f]["AU24"] for f in ("P1", "P3")]))


def test_markdown_headers_comparison_and_provenance():
    report = build_report([method("amf", 0.25, 1), method("late", 0.40, 2)], BP4D_AUS, load_paper_table("bp4d"))
    md = report.to_markdown()
    assert "| " + " | ".join(BP4D_AUS) + " | Avg |" in md
    for wrong in WRONG_HEADERS:
        assert wrong not in md, wrong
    assert [r.method.fusion for r in report.rows] == ["late", "amf"]  # the paper's row order
    (sentence,) = report.comparisons()
    a, b = (100 * r.avg_mean for r in reversed(report.rows))
    assert sentence.startswith(f"AMF {a:.1f} vs late fusion {b:.1f}: AMF does not beat late fusion on these data")
    assert "(paper: AMF 65.8 vs 61.1, +4.7)" in sentence
    assert "relabelled" in md and "paper, Table 1 (BP4D)" in md
    assert "`run_amf`" in md and "P1:hP1, P2:hP2, P3:hP3" in md


def test_comparison_says_beats_and_reports_no_amf():
    up = build_report([method("amf", 0.6, 1), method("early", 0.3, 2)], BP4D_AUS)
    assert "AMF beats early fusion on these data" in up.comparisons()[0]
    none = build_report([method("late", 0.6, 1)], BP4D_AUS)
    assert none.comparisons() == ["This report holds no AMF result, so it makes no AMF comparison."]


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
    assert sorted(paths) == ["csv", "md", "png"] and all(p.exists() for p in paths.values())
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 1000
    assert paths["md"].read_text().startswith("# AU detection report")
    with paths["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    ours = {(r["fusion"], r["au"]): r for r in rows if r["source"] == "farm"}
    assert len(ours) == 2 * (len(BP4D_AUS) + 1)
    for r in report.rows:
        for au in BP4D_AUS:
            got = ours[(r.method.fusion, au)]
            assert float(got["f1_mean_pct"]) == pytest.approx(100 * r.au_mean[au], abs=1e-12)
            assert float(got["f1_std_pct"]) == pytest.approx(100 * r.au_std[au], abs=1e-12)
            assert got["run_id"] == r.method.run_id and got["data_hash"] == "d1" and got["num_folds"] == "3"
        assert float(ours[(r.method.fusion, "Avg")]["f1_mean_pct"]) == pytest.approx(100 * r.avg_mean, abs=1e-12)
    assert ours[("amf", "AU24")]["paper_f1_pct"] == "52.0" and ours[("single:visual", "Avg")]["paper_f1_pct"] == "59.6"
    paper = [r for r in rows if r["source"] == "paper"]
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
    from farm.evaluate import report as report_mod

    first = write_report(build_report([method("amf", 0.25, 1)], BP4D_AUS), tmp_path / "out")
    before = {k: p.read_bytes() for k, p in first.items()}

    def broken_plot(report, path):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report_mod, "plot_report", broken_plot)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_report(build_report([method("late", 0.5, 2)], BP4D_AUS), tmp_path / "out")
    assert {k: p.read_bytes() for k, p in first.items()} == before  # md and csv were not replaced either
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.csv", "report.md", "report.png"]
