"""Reports: the chosen trial of each fusion as per-AU test F1 (mean ± std over folds), beside the AMF paper.

Pure: no MLflow, no Ray. `farm/tracking/sweeps.py` reads the runs into `MethodResult`s; this module
turns them into numbers (`build_report`), Markdown, CSV and a PNG (`write_report`). The paper's
tables live in `paper_tables.yaml`, their columns relabelled with the BP4D AU set (DOMAIN.md
section 2: the paper prints DISFA's headers above BP4D numbers).

Units: `MethodResult.fold_f1` holds F1 in [0, 1] as logged; reports, CSV and plot are in percent.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from farm.files import atomic_paths

PAPER_FILE = Path(__file__).parent / "paper_tables.yaml"
PAPER_TABLES = ("bp4d", "bp4dplus")
FUSION_LABELS = {"amf": "AMF", "late": "late fusion", "early": "early fusion", "cam": "ResNet-18+CAM",
                 "mtut": "MTUT", "temt": "TEMT-Net"}  # fmt: skip
FUSION_ORDER = ("single", "early", "late", "cam", "mtut", "temt", "amf")  # the paper's row order
CSV_FIELDS = ("source", "method", "fusion", "modalities", "au", "f1_mean_pct", "f1_std_pct", "num_folds",
              "paper_f1_pct", "paper_method", "sweep", "trial", "run_id", "data_hash", "split_hashes",
              "partitions_hash")  # fmt: skip


class ReportError(ValueError):
    """A report cannot be built (unknown paper table, no results); the message says what is missing."""


@dataclass(frozen=True)
class PaperRow:
    method: str
    """As printed in the paper ("*" = the authors' re-implementation)."""
    modal: str
    modalities: tuple[str, ...]
    fusion: str | None
    """The farm's fusion spec re-implementing the row; None for the visual-only state of the art."""
    f1: dict[str, float | None]
    """Percent, keyed by the corrected AU labels; None where the paper prints '-'."""
    avg: float | None
    own_implementation: bool = False


@dataclass(frozen=True)
class PaperTable:
    name: str
    table: int
    dataset: str
    title: str
    aus: tuple[str, ...]
    printed_headers: tuple[str, ...]
    rows: tuple[PaperRow, ...]

    def row_for(self, fusion: str) -> PaperRow | None:
        return next((r for r in self.rows if r.fusion == fusion), None)


def load_paper_table(which: str) -> PaperTable:
    """The AMF paper's Table 1 ('bp4d') or Table 2 ('bp4dplus')."""
    if which not in PAPER_TABLES:
        raise ReportError(f"unknown paper table {which!r}; valid: {', '.join(PAPER_TABLES)}")
    doc = yaml.safe_load(PAPER_FILE.read_text())
    t = doc["tables"][which]
    rows = tuple(PaperRow(r["method"], r["modal"], tuple(r["modalities"]), r["fusion"], dict(r["f1"]), r["avg"],
                          bool(r.get("own_implementation", False))) for r in t["rows"])  # fmt: skip
    return PaperTable(which, int(t["table"]), t["dataset"], t["title"], tuple(doc["aus"]),
                      tuple(doc["printed_headers"]), rows)  # fmt: skip


def fusion_label(spec: str) -> str:
    """'amf' -> 'AMF', 'single:depth' -> 'ResNet-18 (depth)'; unknown specs are shown as they are."""
    if spec.startswith("single:"):
        return f"ResNet-18 ({spec.split(':', 1)[1]})"
    return FUSION_LABELS.get(spec, spec)


@dataclass(frozen=True)
class MethodResult:
    """One method's chosen trial: per-fold per-AU test F1 and where it came from."""

    fusion: str
    trial: str
    run_id: str
    fold_f1: dict[str, dict[str, float]]
    """fold -> {AU: test F1 in [0, 1]}; an AU the run did not log (no known label) is left out."""
    data_hash: str = ""
    split_hashes: dict[str, str] = field(default_factory=dict)
    partitions_hash: str = ""
    data_description: str = "not available"
    objective: float = math.nan
    objective_metric: str = "cv/val_f1_mean"
    sweep: str = ""
    modalities: tuple[str, ...] = ()
    aus: tuple[str, ...] = ()
    """The AUs the trial was trained on (data.aus)."""
    logged_test_f1_mean: float = math.nan
    """The parent run's cv/test_f1_mean, to check the report's Avg against."""
    git_sha: str = ""

    @property
    def label(self) -> str:
        return fusion_label(self.fusion)


@dataclass(frozen=True)
class MethodSummary:
    """A method's numbers over folds (fractions): per AU, and the Avg (per-fold AU mean, then over folds)."""

    method: MethodResult
    folds: tuple[str, ...]
    au_mean: dict[str, float]
    au_std: dict[str, float]
    fold_avg: dict[str, float]
    avg_mean: float
    avg_std: float
    paper: PaperRow | None = None


def _nan_stat(fn, a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():  # an all-NaN slice is NaN here, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(a, axis=axis)


def summarize_method(method: MethodResult, aus: tuple[str, ...], paper: PaperTable | None = None) -> MethodSummary:
    if not method.fold_f1:
        raise ReportError(f"{method.label} (trial {method.trial}, run {method.run_id}) has no fold results")
    folds = tuple(sorted(method.fold_f1))
    f1 = np.array([[method.fold_f1[f].get(au, np.nan) for au in aus] for f in folds], dtype=float)  # (F, A)
    au_mean = _nan_stat(np.nanmean, f1, 0)  # (A,) as farm/evaluate/cv.py: NaN folds left out
    au_std = _nan_stat(np.nanstd, f1, 0)  # (A,) population std
    fold_avg = _nan_stat(np.nanmean, f1, 1)  # (F,) = each fold's test/f1_mean when aus = the trained AUs
    return MethodSummary(method, folds, dict(zip(aus, au_mean.tolist())), dict(zip(aus, au_std.tolist())),
                         dict(zip(folds, fold_avg.tolist())), float(fold_avg.mean()), float(fold_avg.std()),
                         paper.row_for(method.fusion) if paper else None)  # fmt: skip


def _order(m: MethodResult) -> int:
    name = m.fusion.split(":", 1)[0]
    return FUSION_ORDER.index(name) if name in FUSION_ORDER else len(FUSION_ORDER)


def build_report(methods: list[MethodResult], aus: list[str] | tuple[str, ...], paper: PaperTable | None = None,
                 *, store: str = "") -> Report:  # fmt: skip
    """Per-AU mean ± std over folds and the Avg column for each method, rows in the paper's order."""
    if not methods:
        raise ReportError("no method results to report")
    if not aus:
        raise ReportError("no AUs to report")
    aus = tuple(aus)
    rows = tuple(summarize_method(m, aus, paper) for m in sorted(methods, key=_order))
    return Report(aus, rows, paper, store)


def _pct(v: float | None, std: float | None = None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{100 * v:.1f}" if std is None or not math.isfinite(std) else f"{100 * v:.1f} ± {100 * std:.1f}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _num(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else repr(float(v))


@dataclass(frozen=True)
class Report:
    aus: tuple[str, ...]
    rows: tuple[MethodSummary, ...]
    paper: PaperTable | None = None
    store: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        """Our AUs, then any AU only the paper has."""
        extra = tuple(a for a in self.paper.aus if a not in self.aus) if self.paper else ()
        return self.aus + extra

    def comparisons(self) -> list[str]:
        """One sentence per (AMF, other method) pair, from this report's Avg values."""
        amf = [r for r in self.rows if r.method.fusion == "amf"]
        if not amf:
            return ["This report holds no AMF result, so it makes no AMF comparison."]
        if len(self.rows) == 1:
            return ["This report holds no baseline to compare AMF with."]
        out = []
        for a in amf:
            for b in (r for r in self.rows if r.method.fusion != "amf"):
                out.append(_compare(a, b))
        return out

    def notes(self) -> list[str]:
        metric = self.rows[0].method.objective_metric
        n = [f"Cells: test F1 (%) of the trial with the best {metric} per fusion, mean ± population std over "
             "folds. Avg: per fold the mean over AUs, then mean ± std over folds (the run's cv/test_f1_mean ± "
             "cv/test_f1_std)."]  # fmt: skip
        if "test" in metric:
            n.append(f"WARNING: {metric} is a test metric: choosing trials by it selects models on the test folds, "
                     "so these test numbers are optimistically biased.")  # fmt: skip
        else:
            n.append(f"{metric} is measured on validation subjects carved from each fold's training subjects: "
                     "test numbers never chose a trial.")  # fmt: skip
        if self.paper:
            n.append(f"Paper rows: {self.paper.title}, as published (no std). The paper's column headers are "
                     "relabelled here: it prints DISFA's AU set above numbers that are the standard BP4D twelve "
                     "(the cited baselines' published BP4D results, e.g. JAA-Net), so its k-th column is shown as "
                     f"the k-th of {', '.join(self.paper.aus)} (DOMAIN.md section 2).")  # fmt: skip
            if set(self.aus) != set(self.paper.aus):
                ours = [a for a in self.aus if a not in self.paper.aus]
                theirs = [a for a in self.paper.aus if a not in self.aus]
                n.append(f"Our AU set differs from the paper's: only ours {', '.join(ours) or 'none'}; only the "
                         f"paper's {', '.join(theirs) or 'none'}. The Avg columns average different AUs and are "
                         "not directly comparable.")  # fmt: skip
            for r in self.rows:
                p = r.paper
                if p and r.method.modalities and set(r.method.modalities) != set(p.modalities):
                    n.append(f"{r.method.label}: ours uses {', '.join(r.method.modalities)}, the paper's row "
                             f"{', '.join(p.modalities)}.")  # fmt: skip
        if len({r.method.aus for r in self.rows if r.method.aus}) > 1:
            n.append("The methods were trained on different AU sets: their Avg columns average different AUs.")
        for what, key in (("datasets (data hash)", "data_hash"), ("folds (partitions hash)", "partitions_hash")):
            values = {getattr(r.method, key) for r in self.rows}
            if len(values) > 1:
                n.append(f"The rows come from different {what}: {', '.join(sorted(v or '?' for v in values))}. "
                         "They are not directly comparable.")  # fmt: skip
        if len({tuple(sorted(r.method.split_hashes.items())) for r in self.rows}) > 1:
            n.append("The rows used different train/val/test splits (split hashes differ): see Provenance.")
        for r in self.rows:
            logged = r.method.logged_test_f1_mean
            if math.isfinite(logged) and abs(logged - r.avg_mean) > 1e-6:
                n.append(f"{r.method.label}: Avg {_pct(r.avg_mean)} differs from the run's cv/test_f1_mean "
                         f"{_pct(logged)} (the report's AUs differ from those the run was trained on).")  # fmt: skip
        return n

    def to_markdown(self) -> str:
        cols = self.columns
        lines = ["# AU detection report", ""]
        if self.store:
            lines += [f"MLflow store: `{self.store}`", ""]
        lines += ["## Test F1 (%)", "", "| Method | Source | Modalities | " + " | ".join(cols) + " | Avg |",
                  "|" + "---|" * (len(cols) + 4)]  # fmt: skip
        for r in self.rows:
            m = r.method
            cells = [_pct(r.au_mean.get(a), r.au_std.get(a)) for a in cols]
            lines.append(f"| {_md(m.label)} | farm: {_md(m.sweep)} / {_md(m.trial)} | {', '.join(m.modalities) or '?'}"
                         f" | {' | '.join(cells)} | {_pct(r.avg_mean, r.avg_std)} |")  # fmt: skip
        if self.paper:
            for p in self.paper.rows:
                cells = [_pct(None if p.f1.get(a) is None else p.f1[a] / 100) for a in cols]
                avg = _pct(None if p.avg is None else p.avg / 100)
                lines.append(f"| {_md(p.method)} | paper, Table {self.paper.table} ({self.paper.dataset}) | "
                             f"{_md(p.modal)} | {' | '.join(cells)} | {avg} |")  # fmt: skip
        lines += ["", "## AMF against the other methods (this report)", ""]
        lines += [f"- {s}" for s in self.comparisons()]
        lines += ["", "## Notes", ""] + [f"- {_md(s)}" for s in self.notes()]
        lines += ["", "## Provenance", ""]
        for r in self.rows:
            m = r.method
            splits = ", ".join(f"{k}:{v}" for k, v in sorted(m.split_hashes.items())) or "not recorded"
            lines += [f"### {_md(m.label)} (`{m.fusion}`)", "",
                      f"- sweep: `{m.sweep}`, trial `{m.trial}`, run id `{m.run_id}`",
                      f"- objective: {m.objective_metric} = {m.objective:.4f}; folds: {', '.join(r.folds)} "
                      f"(per-fold Avg: {', '.join(f'{f} {_pct(v)}' for f, v in r.fold_avg.items())})",
                      f"- data hash: `{m.data_hash or 'not recorded'}`",
                      f"- split hashes: `{splits}`",
                      f"- partitions hash: `{m.partitions_hash or 'not recorded'}`",
                      f"- code: git `{m.git_sha or 'not recorded'}`",
                      f"- data: {m.data_description}", ""]  # fmt: skip
        return "\n".join(lines)

    def to_csv(self, path: str | Path) -> Path:
        """Long format, one row per (method, AU or 'Avg'); source 'farm' (ours) or 'paper' (published).

        Percent. Farm rows carry the matching paper value in paper_f1_pct when the paper has the fusion;
        paper rows carry their value in f1_mean_pct and leave std and folds empty.
        """
        path = Path(path)
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            w.writeheader()
            for r in self.rows:
                m, p = r.method, r.paper
                base = {"source": "farm", "method": m.label, "fusion": m.fusion, "modalities": " ".join(m.modalities),
                        "num_folds": len(r.folds), "paper_method": f"{p.method} {p.modal}" if p else "",
                        "sweep": m.sweep, "trial": m.trial, "run_id": m.run_id, "data_hash": m.data_hash,
                        "split_hashes": ",".join(f"{k}:{v}" for k, v in sorted(m.split_hashes.items())),
                        "partitions_hash": m.partitions_hash}  # fmt: skip
                for au in (*self.aus, "Avg"):
                    mean, std = (r.avg_mean, r.avg_std) if au == "Avg" else (r.au_mean[au], r.au_std[au])
                    paper_v = (p.avg if au == "Avg" else p.f1.get(au)) if p else None
                    w.writerow({**base, "au": au, "f1_mean_pct": _num(100 * mean), "f1_std_pct": _num(100 * std),
                                "paper_f1_pct": _num(paper_v)})  # fmt: skip
            for p in self.paper.rows if self.paper else ():
                for au in (*self.paper.aus, "Avg"):
                    v = p.avg if au == "Avg" else p.f1.get(au)
                    w.writerow({"source": "paper", "method": p.method, "fusion": p.fusion or "",
                                "modalities": " ".join(p.modalities), "au": au, "f1_mean_pct": _num(v),
                                "paper_method": f"{p.method} {p.modal}",
                                "sweep": f"paper Table {self.paper.table} ({self.paper.dataset})"})  # fmt: skip
        return path


def _compare(a: MethodSummary, b: MethodSummary) -> str:
    """'AMF 25.6 vs late fusion 27.0: AMF does not beat late fusion on these data (-1.4 points)...'."""
    va, vb, name = 100 * a.avg_mean, 100 * b.avg_mean, b.method.label
    if not (math.isfinite(va) and math.isfinite(vb)):
        return f"AMF {_pct(a.avg_mean)} vs {name} {_pct(b.avg_mean)}: no finite Avg on both sides, no comparison."
    d = round(va, 1) - round(vb, 1)  # on the printed numbers, so the words match the table
    if abs(d) < 0.05:
        verdict = f"AMF ties with {name} on these data"
    elif d > 0:
        verdict = f"AMF beats {name} on these data (+{d:.1f} points)"
    else:
        verdict = f"AMF does not beat {name} on these data ({d:.1f} points)"
    s = f"AMF {va:.1f} vs {name} {vb:.1f}: {verdict}"
    spread = 100 * max(a.avg_std, b.avg_std)
    if abs(d) >= 0.05 and abs(d) < spread:
        s += f"; the gap is smaller than the spread over folds (std up to {spread:.1f})"
    if a.paper and b.paper and a.paper.avg is not None and b.paper.avg is not None:
        s += f" (paper: AMF {a.paper.avg:.1f} vs {b.paper.avg:.1f}, {a.paper.avg - b.paper.avg:+.1f})"
    return s + "."


def plot_report(report: Report, path: str | Path) -> Path:
    """Grouped bars per AU (and Avg), one bar per method, error bars = std over folds; paper values hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = (*report.aus, "Avg")
    n = len(report.rows)
    width = 0.8 / n
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.25 * n * len(groups) + 2), 4.0))
    paper_label = "paper (hollow)"
    for i, r in enumerate(report.rows):
        mean = 100 * np.array([r.au_mean[a] for a in report.aus] + [r.avg_mean])  # (G,)
        std = 100 * np.array([r.au_std[a] for a in report.aus] + [r.avg_std])  # (G,)
        pos = x - 0.4 + width * (i + 0.5)
        color = f"C{i % 10}"
        ax.bar(pos, np.nan_to_num(mean), width, yerr=np.where(np.isfinite(mean), std, 0), capsize=2, color=color,
               alpha=0.85, label=r.method.label)  # fmt: skip
        if r.paper:
            pv = [r.paper.f1.get(a) for a in report.aus] + [r.paper.avg]
            pv = np.array([np.nan if v is None else v for v in pv], dtype=float)  # (G,)
            ax.plot(pos, pv, "o", mfc="none", mec=color, mew=1.5, ms=6, label=paper_label)
            paper_label = "_nolegend_"
    ax.set_xticks(x, groups, rotation=45)
    ax.set_ylabel("test F1 (%)")
    ax.set_ylim(0, 100)
    title = "per-AU test F1, mean ± std over folds"
    ax.set_title(title + (f"; hollow: paper, Table {report.paper.table}" if report.paper else ""))
    ax.legend(fontsize=7, ncol=min(4, n + 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """report.md, report.csv and report.png in out_dir (created); returns their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "png": out / "report.png"}
    with atomic_paths(*paths.values()) as (md, csv_path, png):  # all three, or the previous ones
        md.write_text(report.to_markdown() + "\n")
        report.to_csv(csv_path)
        plot_report(report, png)
    return paths
