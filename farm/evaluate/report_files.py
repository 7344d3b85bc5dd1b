"""A report's files: report.md and report.csv (`Report.to_markdown`, `Report.to_csv`) and its figures
(matplotlib, Agg): per-AU F1 bars beside the paper's with the AMF-vs-baseline intervals (report.png), and the
robustness figure (robustness.png); all four written together or none (`write_report`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from farm.evaluate.paper import NOT_MEASURED
from farm.evaluate.report import LEVEL, Report
from farm.files import atomic_paths


def plot_report(report: Report, path: str | Path) -> Path:
    """Grouped bars per AU (and Avg), one bar per method, error bars = sample std over folds; paper values hollow.
    Below, where the report compares AMF with other methods (or two trials): A − B with its 95% bootstrap interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = (*report.aus, "Avg")
    n = len(report.rows)
    width = 0.8 / n
    x = np.arange(len(groups))
    size = (max(7.0, 0.25 * n * len(groups) + 2), 4.0)
    if report.pairs:
        fig, (ax, cax) = plt.subplots(2, 1, figsize=(size[0], size[1] + 1.0 + 0.4 * len(report.pairs)),
                                      height_ratios=(4.0, 1.0 + 0.4 * len(report.pairs)))  # fmt: skip
        plot_comparisons(report, cax)
    else:
        fig, ax = plt.subplots(figsize=size)
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
    title = "per-AU test F1, mean ± sample std over folds"
    ax.set_title(title + (f"; hollow: paper, Table {report.paper.table}" if report.paper else ""))
    ax.legend(fontsize=7, ncol=min(4, n + 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_comparisons(report: Report, ax) -> None:
    """AMF − baseline (points) with its bootstrap interval as an error bar, one row per baseline; 'not comparable'
    written where there is none. Folds, seeds and protocol in the title (or per row where they differ)."""
    ys = np.arange(len(report.pairs))[::-1]
    for y, p in zip(ys, report.pairs):
        c = p.result
        if c.comparable:
            d, lo, hi = 100 * c.difference, 100 * c.ci_low, 100 * c.ci_high
            color = {"a": "C2", "b": "C3"}.get(c.winner, "0.4")
            ax.errorbar([d], [y], xerr=[[d - lo], [hi - d]], fmt="o", color=color, capsize=4)
            ax.annotate(f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]", (hi, y), xytext=(6, 0), textcoords="offset points",
                        va="center", fontsize=7)  # fmt: skip
        else:
            ax.text(0, y, "not comparable", ha="center", va="center", fontsize=7, color="0.4",
                    bbox={"fc": "white", "ec": "none"})  # fmt: skip
    what = {f"{p.folds_seeds}, {p.protocol} protocol" for p in report.pairs if p.result.comparable}
    labels = [f"{p.a.method.label} − {p.b.method.label}" for p in report.pairs]
    if len(what) > 1:
        labels = [f"{t}\n{p.folds_seeds}, {p.protocol} protocol" if p.result.comparable else t
                  for t, p in zip(labels, report.pairs)]  # fmt: skip
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ys, labels, fontsize=7)
    ax.set_ylim(-0.7, len(report.pairs) - 0.3)
    ax.margins(x=0.25)
    ax.set_xlabel("test F1 difference (points)")
    ax.set_title(f"{'A − B' if report.contrast else 'AMF − baseline'}, {100 * LEVEL:g}% paired subject bootstrap ({report.n_boot} replicates)"
                 + (f"; {next(iter(what))}" if len(what) == 1 else ""), fontsize=9)  # fmt: skip


def plot_robustness(report: Report, path: str | Path) -> Path:
    """Top: clean and missing-modality F1 per method (ours: bars, validation; test study: x; paper: hollow o).
    Bottom: F1 against noise sigma, one panel per method (validation: solid, test study: dashed; the paper's
    stated Fig. 5 point: hollow o). A condition not measured is marked in place of its bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rob = report.robustness
    noisy = [mr for mr in rob if mr.noise or (mr.paper and mr.paper.noise_worst)]
    ncols = max(1, len(noisy))
    bars = [(mr, r) for mr in rob for r in (mr.clean, *mr.missing)]
    fig = plt.figure(figsize=(max(8.0, 0.5 * len(bars) + 2, 3.2 * ncols), 8.0))
    grid = fig.add_gridspec(2, ncols, height_ratios=(1.1, 1.0))
    ax = fig.add_subplot(grid[0, :])
    x = np.arange(len(bars), dtype=float) + np.repeat(np.arange(len(rob)), [1 + len(mr.missing) for mr in rob]) * 0.6
    shown: set[str] = set()

    def once(label: str) -> str:  # each marker kind in the legend once
        out = "_nolegend_" if label in shown else label
        shown.add(label)
        return out

    for i, (_, r) in enumerate(bars):
        color = "#4c72b0" if r.condition.kind == "clean" else "#dd8452"
        if math.isfinite(r.val):
            ax.bar(x[i], 100 * r.val, 0.8, color=color)
        else:
            ax.text(x[i], 2, NOT_MEASURED, rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
        if math.isfinite(r.test):
            ax.plot(x[i], 100 * r.test, "x", color="k", ms=8, mew=2, label=once("test study (test subjects)"))
        if r.paper is not None:
            ax.plot(x[i], r.paper, "o", mfc="none", mec="k", ms=9, mew=1.5, label=once("paper (test partitions)"))
    ax.set_xticks(x, [f"{mr.method.label}\n{r.condition.label}" for mr, r in bars], rotation=45, ha="right",
                  fontsize=7)  # fmt: skip
    ax.set_ylim(0, 100)
    ax.set_ylabel("F1 (%)")
    ax.set_title("missing modality (zeros); bars: ours, validation subjects, mean over folds (blue: clean)")
    if shown:
        ax.legend(fontsize=7, loc="upper right")
    if not noisy:
        ax2 = fig.add_subplot(grid[1, 0])
        ax2.text(0.5, 0.5, f"noise conditions: {NOT_MEASURED} in these trials", ha="center", va="center")
        ax2.set_axis_off()
    for j, mr in enumerate(noisy):
        ax2 = fig.add_subplot(grid[1, j])
        for k, target in enumerate(mr.noise_targets()):
            pts = [r for r in mr.noise if r.condition.modalities == target]
            for attr, style, split in (("val", "o-", "val"), ("test", "s--", "test study")):
                xy = [(0.0, getattr(mr.clean, attr))] + [(r.condition.sigma, getattr(r, attr)) for r in pts]
                xy = [(s, 100 * v) for s, v in xy if math.isfinite(v)]  # a line through the measured points
                if any(s > 0 for s, _ in xy):
                    ax2.plot(*zip(*xy), style, color=f"C{k % 10}", label=f"{'+'.join(target)} ({split})")
        if mr.paper and mr.paper.noise_worst:
            sigma, f1 = mr.paper.noise_worst
            ax2.plot([sigma], [f1], "o", mfc="none", mec="k", ms=9, mew=1.5, label="paper: worst, noise on one")
        if not mr.noise:
            ax2.text(0.5, 0.5, f"{NOT_MEASURED} here", transform=ax2.transAxes, ha="center", va="center")
        ax2.set_ylim(0, 100)
        ax2.set_xlabel("noise σ (on [-1, 1] inputs)")
        ax2.set_ylabel("F1 (%)")
        ax2.set_title(f"{mr.method.label}: noise", fontsize=9)
        ax2.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """report.md, report.csv, report.png and robustness.png in out_dir (created); returns their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "png": out / "report.png",
             "robustness_png": out / "robustness.png"}  # fmt: skip
    with atomic_paths(*paths.values()) as (md, csv_path, png, robust_png):  # all four, or the previous ones
        md.write_text(report.to_markdown() + "\n")
        report.to_csv(csv_path)
        plot_report(report, png)
        plot_robustness(report, robust_png)
    return paths
