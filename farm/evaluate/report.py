"""Reports: the chosen trial of each fusion as per-AU test F1 (mean ± sample std over folds), beside the AMF paper.

Pure: no MLflow, no Ray. `farm/tracking/sweeps.py` reads the runs into `MethodResult`s; this module turns them
into numbers (`build_report`), Markdown and CSV (`Report`); `farm/evaluate/report_files.py` writes those with the
figures (`write_report`). The paper's tables are read by `farm/evaluate/paper.py` from `paper_tables.yaml`, their
columns relabelled with the BP4D AU set (DOMAIN.md section 2: the paper prints DISFA's headers above BP4D
numbers).

The robustness section (the paper's Fig. 4 and 5): each trial's validation F1 under the robustness
conditions (`cv/val_f1_<condition>`, measured at each fold's best epoch on its validation subjects),
the test-subject study of a promoted model of that trial where one was logged, and the numbers the
paper's text states (`fig4` / `fig5` in `paper_tables.yaml`); written to robustness.png, and into
report.md and report.csv beside the per-AU tables.

Comparisons: AMF against each other method (each fusion's chosen trial), on the test frames both
predicted (`MethodResult.predictions`, the folds' per-frame test predictions): the difference of the
Avg statistic with its 95% paired, subject-level bootstrap interval (stratified by fold; several
seeds per fold are resampled too), computed by `farm.evaluate.promotion.compare`, the function
`farm promote` decides with; the words follow from the interval only.

Units: `MethodResult.fold_f1` holds F1 in [0, 1] as logged; reports, CSV and plot are in percent.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from farm.data.perturb import Condition
from farm.evaluate.paper import (
    NOT_MEASURED,
    PaperRobustness,
    PaperRobustRow,
    PaperRow,
    PaperTable,
    ReportError,
    condition_from_row,
    load_paper_robustness,
    parse_condition,
)
from farm.evaluate.promotion import Comparison, compare
from farm.evaluate.stats import holm

if TYPE_CHECKING:
    from farm.checkpoints import Predictions

FUSION_LABELS = {"amf": "AMF", "late": "late fusion", "early": "early fusion", "cam": "ResNet-18+CAM",
                 "mtut": "MTUT", "temt": "TEMT-Net"}  # fmt: skip
FUSION_ORDER = ("single", "early", "late", "cam", "mtut", "temt", "amf")  # the paper's row order
CSV_FIELDS = ("section", "source", "method", "fusion", "modalities", "au", "f1_mean_pct", "f1_std_pct", "num_folds",
              "paper_f1_pct", "paper_method", "sweep", "trial", "run_id", "data_hash", "split_hashes",
              "partitions_hash", "condition", "kind", "sigma", "f1", "delta", "split", "protocol", "seeds",
              "baseline", "baseline_fusion", "diff", "low", "high", "n_subjects", "n_frames", "n_boot", "seed",
              "verdict", "num_partitions", "partition_std_pct", "joint_pct", "nested_pct", "nested_sweep",
              "interval", "t_low", "t_high", "p_value", "p_holm", "n_units")  # fmt: skip
LEVEL = 0.95
"""Coverage of the comparisons' bootstrap intervals."""


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
    """fold -> {AU: test F1 in [0, 1]} (a fold's seeds averaged); an AU the run did not log (no known label) is left
    out. With several subject partitions: partition 0's, and `partition_f1` holds them all."""
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
    val_f1_clean: float = math.nan
    """cv/val_f1_mean: the fold mean of the best epoch's clean validation F1, what the conditions change."""
    val_robustness: dict[str, float] = field(default_factory=dict)
    """Metric suffix ('missing_depth', 'noise_visual-depth_0.5', see parse_condition) -> the fold mean of the
    best epoch's validation F1 under that condition, in [0, 1] (the run's cv/val_f1_<suffix>); empty = not
    measured (a sweep from before validation robustness, or train.val_robustness off)."""
    test_robustness: tuple[dict, ...] = ()
    """Rows of a `farm robustness` study of this trial's fold models on their test subjects (robustness.csv:
    kind, modalities, sigma, f1_mean, ...); empty = none found."""
    test_robustness_source: str = ""
    """Where the study was read from (model version, run), shown beside its numbers."""
    test_robustness_run: str = ""
    """The run id holding the study (a promotion run, or the trial's own run)."""
    test_robustness_note: str = ""
    """Why no study is shown when one was looked for and not read (e.g. an unreachable artifact store)."""
    protocol: str = "joint"
    """How the trial trained its folds: the parent run's `protocol` tag ('joint' when it has none)."""
    seeds: int = 1
    """Training seeds per fold: the run's `seeds` param or tag (1 when it has none)."""
    predictions: Predictions | None = field(default=None, compare=False, repr=False)
    """The fold runs' per-frame test predictions (farm.checkpoints.Predictions), for the comparisons; None = not
    read (`predictions_note` says why)."""
    predictions_note: str = ""
    """Why `predictions` is None (e.g. the artifact store cannot be reached from here)."""
    partition_f1: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    """partition -> fold -> {AU: test F1} when the trial ran several subject partitions (`sweep.partitions`);
    empty = one partition, `fold_f1`."""
    selected: tuple[str, ...] = ()
    """Nested protocol: the trial chosen for each outer fold ('P1: trial t_3 (run ...)'), whose fold runs these
    numbers are; empty for a single trial."""
    name: str = ""
    """The label to show instead of the fusion's (two trials of one fusion compared: 'AMF t_1 (lr=0.001)')."""
    test_seen: tuple[int, int] | None = None
    """Joint protocol: (test subjects that were a validation subject of another fold, test subjects), from the fold
    runs' split tags; None = not known (no split tags)."""

    @property
    def label(self) -> str:
        return self.name or fusion_label(self.fusion)

    @property
    def partitions(self) -> dict[int, dict[str, dict[str, float]]]:
        """partition -> fold -> {AU: test F1}: `partition_f1`, or {0: fold_f1}."""
        return self.partition_f1 or {0: self.fold_f1}

    @property
    def provenance(self) -> str:
        """'3 folds (P1, P2, P3) x 1 seed, joint protocol' (' x 2 partitions' with several): what every number of
        this method averages over."""
        folds = sorted(self.fold_f1)
        parts = len(self.partitions)
        return (f"{len(folds)} fold{'s' * (len(folds) != 1)} ({', '.join(folds)})"
                f"{f' x {parts} partitions' if parts > 1 else ''} x {self.seeds} seed{'s' * (self.seeds != 1)}, "
                f"{self.protocol} protocol")  # fmt: skip


@dataclass(frozen=True)
class MethodSummary:
    """A method's numbers over folds (fractions): per AU, and the Avg (per-fold AU mean, then over folds).

    Several partitions: each number is the mean over partitions of that partition's fold mean, each std the mean
    over partitions of the sample std over folds; `partition_std` is the sample std of the partitions' Avg."""

    method: MethodResult
    folds: tuple[str, ...]
    au_mean: dict[str, float]
    au_std: dict[str, float]
    """Sample std (ddof = 1) over folds."""
    fold_avg: dict[str, float]
    """Per fold its AU-mean F1 (several partitions: keys 'r<r>/<fold>')."""
    avg_mean: float
    avg_std: float
    paper: PaperRow | None = None
    partition_avg: dict[int, float] = field(default_factory=dict)
    """Per partition its Avg (mean over folds of the AU-mean F1)."""
    partition_std: float = math.nan
    """Sample std (ddof = 1) of `partition_avg`; NaN with one partition."""


def _nan_stat(fn, a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():  # an all-NaN slice is NaN here, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(a, axis=axis)


def _sample_std(a: np.ndarray, axis: int) -> np.ndarray:
    return np.nanstd(a, axis=axis, ddof=1)


def summarize_method(method: MethodResult, aus: tuple[str, ...], paper: PaperTable | None = None) -> MethodSummary:
    """Per partition: per AU the mean and sample std over folds, per fold the AU mean, and the Avg (mean over folds
    of the fold's AU mean, the statistic the comparisons use); then each of these averaged over partitions."""
    if not method.fold_f1 or not all(method.partitions.values()):
        raise ReportError(f"{method.label} (trial {method.trial}, run {method.run_id}) has no fold results")
    parts = method.partitions
    au_means, au_stds, avgs, stds, fold_avg = [], [], {}, [], {}
    for r in sorted(parts):
        folds = tuple(sorted(parts[r]))
        f1 = np.array([[parts[r][f].get(au, np.nan) for au in aus] for f in folds], dtype=float)  # (F, A)
        au_means.append(_nan_stat(np.nanmean, f1, 0))  # (A,) as farm/evaluate/cv.py: NaN folds left out
        au_stds.append(_nan_stat(_sample_std, f1, 0))  # (A,)
        per_fold = _nan_stat(np.nanmean, f1, 1)  # (F,) = each fold's test/f1_mean when aus = the trained AUs
        fold_avg.update({(f if len(parts) == 1 else f"r{r}/{f}"): float(v) for f, v in zip(folds, per_fold)})
        avgs[r] = float(per_fold.mean())
        stds.append(float(per_fold.std(ddof=1)) if len(per_fold) > 1 else math.nan)
    au_mean, au_std = _nan_stat(np.nanmean, np.stack(au_means), 0), _nan_stat(np.nanmean, np.stack(au_stds), 0)
    values = np.array(list(avgs.values()))  # (R,)
    return MethodSummary(method, tuple(sorted(method.fold_f1)), dict(zip(aus, au_mean.tolist())),
                         dict(zip(aus, au_std.tolist())), fold_avg, float(values.mean()),
                         float(_nan_stat(np.nanmean, np.array(stds), 0)), paper.row_for(method.fusion) if paper else None,
                         avgs, float(values.std(ddof=1)) if len(values) > 1 else math.nan)  # fmt: skip


@dataclass(frozen=True)
class MethodComparison:
    """AMF (`a`) against another method (`b`) on the test frames both predicted (fractions)."""

    a: MethodSummary
    b: MethodSummary
    result: Comparison
    """farm.evaluate.promotion.compare(a's predictions, b's): the difference, its intervals, or why not compared."""
    p_holm: float = math.nan
    """The corrected t's p-value after Holm's correction over the report's comparisons (one comparison: its own)."""

    @property
    def verdict(self) -> str:
        """'AMF beats late fusion', 'late fusion beats AMF', 'no detectable difference' or 'not comparable: ...'.

        A method beats the other only where the Nadeau-Bengio corrected t over the (partition, fold) units rejects
        'no difference' at 5 % after Holm's correction: the claim is about the methods (trained again on other
        subjects), not these trained models. The subject bootstrap, conditional on the trained models, is reported
        beside it and decides nothing here (it decides `farm promote`, which is about these models)."""
        c, na, nb = self.result, self.a.method.label, self.b.method.label
        if not c.comparable:
            return c.reason
        if not c.significant(self.p_holm, 1 - LEVEL):
            return "no detectable difference"
        return f"{na} beats {nb}" if c.difference > 0 else f"{nb} beats {na}"

    @property
    def words(self) -> str:
        """The verdict with the numbers it follows from, in points (A − B): 'late fusion beats AMF by 3.4 points
        (corrected t [1.2, 5.6], Holm p 0.012)' or 'AMF vs late fusion: no detectable difference: -0.8 points
        (corrected t [-6.9, 5.2], Holm p 0.71)'."""
        c, na, nb = self.result, self.a.method.label, self.b.method.label
        if not c.comparable:
            return f"{na} vs {nb}: {c.reason}"
        d, lo, hi = (100 * v for v in (c.difference, c.t_low, c.t_high))
        if math.isfinite(lo):
            t = f"corrected t [{_p1(lo)}, {_p1(hi)}] over {c.n_units} units, {self.p_text}"
        else:
            t = f"no corrected t: {c.t_reason or 'not computed'}"
        verdict = self.verdict
        if verdict == "no detectable difference":
            return f"{na} vs {nb}: no detectable difference: {_p1(d)} points ({t})"
        winner_first = verdict.startswith(na)
        return f"{verdict} by {_p1(d if winner_first else -d)} points ({t})"

    @property
    def p_text(self) -> str:
        """'p 0.012' (one comparison) or 'p 0.004, Holm p 0.012'."""
        c = self.result
        if not math.isfinite(c.p_value):
            return "no p-value"
        if math.isfinite(self.p_holm) and abs(self.p_holm - c.p_value) > 1e-12:
            return f"p {c.p_value:.3g}, Holm p {self.p_holm:.3g}"
        return f"p {c.p_value:.3g}"

    @property
    def folds_seeds(self) -> str:
        """'3 folds x 1 seed' (both) or 'AMF 3 folds x 2 seeds vs late fusion 3 folds x 1 seed', as compared (with
        several partitions: '3 partitions x 3 folds x 2 seeds')."""
        c = self.result
        if not c.comparable:
            return ""
        a, b = c.units_text("a"), c.units_text("b")
        return a if a == b else f"{self.a.method.label} {a} vs {self.b.method.label} {b}"

    @property
    def protocol(self) -> str:
        pa, pb = self.a.method.protocol, self.b.method.protocol
        return pa if pa == pb else f"{self.a.method.label} {pa} vs {self.b.method.label} {pb}"


def _p1(v: float) -> str:
    """One decimal, without a '-0.0'."""
    text = f"{v:.1f}"
    return "0.0" if text == "-0.0" else text


def compare_methods(a: MethodSummary, b: MethodSummary, n_boot: int = 2000, seed: int = 0) -> MethodComparison:
    """`a` against `b` on the test frames both predicted (farm.evaluate.promotion.compare, 95% interval)."""
    absent = [m for m in (a.method, b.method) if m.predictions is None]
    if absent:
        why = "; ".join(f"the test predictions of {m.label} (trial {m.trial}) "
                        f"{'could not be read: ' + m.predictions_note if m.predictions_note else 'were not read'}"
                        for m in absent)  # fmt: skip
        return MethodComparison(a, b, Comparison(f"not comparable: {why}", n_boot=n_boot, seed=seed))
    try:
        result = compare(a.method.predictions, b.method.predictions, n_boot, 1 - LEVEL, seed,
                         names=(a.method.label, b.method.label))  # fmt: skip
    except ValueError as e:  # inconsistent predictions (e.g. a seed covering part of a fold): say so, report the rest
        result = Comparison(f"not comparable: {e}", n_boot=n_boot, seed=seed)
    return MethodComparison(a, b, result)


@dataclass(frozen=True)
class RobustRow:
    """One condition of one method: our validation F1, the test study's F1 (fractions; NaN = none) and the paper's."""

    condition: Condition
    val: float = math.nan
    test: float = math.nan
    paper: float | None = None
    """Percent, as the paper's text states it; None = not stated (or no paper row for this method)."""


@dataclass(frozen=True)
class MethodRobustness:
    """A method's robustness numbers: clean, each missing-modality condition, each noise condition."""

    method: MethodResult
    clean: RobustRow
    missing: tuple[RobustRow, ...]
    noise: tuple[RobustRow, ...]
    paper: PaperRobustRow | None = None
    """The paper's Fig. 4/5 numbers placed beside this method (same fusion and modalities)."""
    paper_not_placed: str = ""
    """Why the paper has the fusion but its numbers are not placed beside ours."""

    @property
    def measured(self) -> bool:
        """Whether the trial logged any validation robustness metric."""
        return any(math.isfinite(r.val) for r in (*self.missing, *self.noise))

    @property
    def has_test_study(self) -> bool:
        return any(math.isfinite(r.test) for r in (self.clean, *self.missing, *self.noise))

    def noise_targets(self) -> tuple[tuple[str, ...], ...]:
        return tuple(dict.fromkeys(r.condition.modalities for r in self.noise))


def _canonical(c: Condition, order: tuple[str, ...]) -> Condition:
    """Modalities in the method's order (known ones first) and sigma rounded, so val, test and paper keys meet."""
    rank = {m: i for i, m in enumerate(order)}
    mods = tuple(sorted(c.modalities, key=lambda m: (rank.get(m, len(rank)), m)))
    return Condition(c.kind, mods, round(float(c.sigma), 6))


def _sort_key(c: Condition, order: tuple[str, ...]) -> tuple:
    rank = {m: i for i, m in enumerate(order)}
    return len(c.modalities), [rank.get(m, len(rank)) for m in c.modalities], c.modalities, c.sigma


def summarize_robustness(method: MethodResult, paper: PaperRobustness | None = None) -> MethodRobustness:
    """Our validation conditions, the test study's and the paper's, on one set of rows (missing: every
    condition any of them has; a multimodal trial that measured none lists each modality missing)."""
    order = tuple(method.modalities)
    val: dict[Condition, float] = {}
    for suffix, v in method.val_robustness.items():
        c = parse_condition(suffix, order)
        if c is not None:
            val[_canonical(c, order)] = float(v)
    test: dict[Condition, float] = {}
    for row in method.test_robustness:
        c = condition_from_row(row)
        try:
            value = float(row.get("f1_mean", math.nan))
        except (TypeError, ValueError):
            value = math.nan
        if c is not None:
            test[_canonical(c, order)] = value
    placed, why = None, ""
    prow = paper.row_for(method.fusion) if paper else None
    if prow is not None:
        if not order or set(order) == set(paper.modalities):
            placed = prow
        else:
            why = (f"{method.label}: the paper's Fig. 4/5 numbers ({', '.join(paper.modalities)}) are not placed "
                   f"beside ours ({', '.join(order)}): other modalities.")  # fmt: skip
    pmiss = {}
    for mods, f1 in placed.missing.items() if placed else ():
        pmiss[_canonical(Condition("missing", mods), order)] = f1
    keys = {c for c in (*val, *test, *pmiss) if c.kind == "missing"}
    if len(order) >= 2:  # what `farm sweep` measures for these modalities: each one (and pair) missing
        keys |= {Condition("missing", (m,)) for m in order}
        if len(order) >= 3:
            keys |= {Condition("missing", (a, b)) for i, a in enumerate(order) for b in order[i + 1 :]}
    missing = tuple(RobustRow(c, val.get(c, math.nan), test.get(c, math.nan), pmiss.get(c))
                    for c in sorted(keys, key=lambda c: _sort_key(c, order)))  # fmt: skip
    noise_keys = sorted({c for c in (*val, *test) if c.kind == "noise"}, key=lambda c: _sort_key(c, order))
    noise = tuple(RobustRow(c, val.get(c, math.nan), test.get(c, math.nan)) for c in noise_keys)
    clean = Condition("clean")
    clean_row = RobustRow(
        clean, float(method.val_f1_clean), test.get(clean, math.nan), placed.clean if placed else None
    )
    return MethodRobustness(method, clean_row, missing, noise, placed, why)


def _order(m: MethodResult) -> int:
    name = m.fusion.split(":", 1)[0]
    return FUSION_ORDER.index(name) if name in FUSION_ORDER else len(FUSION_ORDER)


@dataclass(frozen=True)
class Estimate:
    """One fusion's test F1 under both protocols of one search space (fractions): the joint sweep's chosen trial
    (its cv/test_f1_mean) and the nested sweep's selection per outer fold (mean over outer folds); their difference
    is the joint protocol's optimism. `note` says why there is no nested number."""

    fusion: str
    joint_sweep: str
    joint_trial: str
    joint: float
    nested_sweep: str
    nested: float = math.nan
    nested_trials: str = ""
    note: str = ""

    @property
    def optimism(self) -> float:
        return self.joint - self.nested

    def sentence(self) -> str:
        head = f"{fusion_label(self.fusion)}: joint {_p1(100 * self.joint)} (sweep {self.joint_sweep}, trial {self.joint_trial})"
        if not math.isfinite(self.nested):
            return f"{head}; no nested estimate from sweep {self.nested_sweep}: {self.note}."
        return (f"{head}, nested {_p1(100 * self.nested)} (sweep {self.nested_sweep}, {self.nested_trials}): the "
                f"joint estimate is {_p1(100 * self.optimism)} points {'above' if self.optimism >= 0 else 'below'} "
                "the nested one (its optimism, one run of each: no interval).")  # fmt: skip


def seen_sentence(sweep: str, seen: tuple[int, int] | None, metric: str) -> str:
    """The joint protocol's selection, in words: how many test subjects it saw as validation subjects."""
    count = (f"{seen[0]} of its {seen[1]} test subjects were a validation subject of another fold" if seen
             else "the fold runs record no split tags to count how many")  # fmt: skip
    return (f"Sweep {sweep} used the joint protocol: its selection (each fold's early stopping, and the choice of "
            f"trial by {metric}, the mean over folds of the validation F1) saw the test subjects of other folds as "
            f"validation subjects: {count}, so its test F1 may be optimistic (farm sweep --protocol nested gives an "
            "estimate whose selection never saw its test subjects).")  # fmt: skip


def build_report(methods: list[MethodResult], aus: list[str] | tuple[str, ...], paper: PaperTable | None = None,
                 *, store: str = "", n_boot: int = 2000, seed: int = 0, contrast: bool = False,
                 estimates: tuple[Estimate, ...] = (), extra_notes: tuple[str, ...] = ()) -> Report:  # fmt: skip
    """Per-AU mean ± std over folds and the Avg column for each method, rows in the paper's order; AMF against
    each other method with a 95% paired subject bootstrap of `n_boot` replicates (random seed `seed`).

    contrast: the methods are two trials of one sweep (`farm report --trial A --trial B`): rows in the given
    order, the first compared with the second. estimates: joint against nested per fusion (the Protocol section);
    extra_notes: lines for the Notes (e.g. a fusion left out)."""
    if not methods:
        raise ReportError("no method results to report")
    if not aus:
        raise ReportError("no AUs to report")
    if n_boot < 1:
        raise ReportError(f"the bootstrap needs at least one replicate (got {n_boot})")
    aus = tuple(aus)
    if contrast and len(methods) != 2:
        raise ReportError(f"a contrast compares two trials, got {len(methods)}")
    rows = tuple(summarize_method(m, aus, paper) for m in (methods if contrast else sorted(methods, key=_order)))
    figures = load_paper_robustness(paper.name) if paper else None
    robust = tuple(summarize_robustness(r.method, figures) for r in rows)
    if contrast:
        pairs = (compare_methods(rows[0], rows[1], n_boot, seed),)
    else:
        pairs = tuple(compare_methods(a, b, n_boot, seed) for a in rows if a.method.fusion == "amf"
                      for b in rows if b.method.fusion != "amf")  # fmt: skip
    adjusted = holm([p.result.p_value if p.result.comparable else math.nan for p in pairs])  # NaN: not counted
    pairs = tuple(dataclasses.replace(p, p_holm=float(q)) for p, q in zip(pairs, adjusted))
    return Report(aus, rows, paper, store, robust, figures, pairs, n_boot, seed, contrast, tuple(estimates),
                  tuple(extra_notes))  # fmt: skip


def _pct(v: float | None, std: float | None = None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{100 * v:.1f}" if std is None or not math.isfinite(std) else f"{100 * v:.1f} ± {100 * std:.1f}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _num(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else repr(float(v))


def _round_pct(v: float | None) -> float | None:
    """A fraction as the printed percent (one decimal); None when not finite."""
    return None if v is None or not math.isfinite(v) else round(100 * v, 1)


def _fmt(v: float | None) -> str:
    return NOT_MEASURED if v is None else f"{v:.1f}"


def _cell(v: float, clean: float | None = None, missing: str = NOT_MEASURED) -> str:
    """'51.6 (-8.5)': percent, and the change against `clean` in points on the printed numbers."""
    p = _round_pct(v)
    if p is None:
        return missing
    c = _round_pct(clean)
    return f"{p:.1f}" if c is None else f"{p:.1f} ({p - c:+.1f})"


def _paper_cell(mr: MethodRobustness, r: RobustRow) -> str:
    if mr.paper is None:
        return "–"
    if r.paper is None:
        return "not stated"
    if r is mr.clean:
        return f"{r.paper:.1f}" + (" (Table 1)" if mr.paper.clean_from == "Table 1" else "")
    c = mr.clean.paper
    return f"{r.paper:.1f}" if c is None else f"{r.paper:.1f} ({r.paper - c:+.1f})"


@dataclass(frozen=True)
class Report:
    aus: tuple[str, ...]
    rows: tuple[MethodSummary, ...]
    paper: PaperTable | None = None
    store: str = ""
    robustness: tuple[MethodRobustness, ...] = ()
    """One per row, in the same order."""
    figures: PaperRobustness | None = None
    """The paper's Fig. 4/5 numbers that go with `paper` (None: no paper, or no figures for it)."""
    pairs: tuple[MethodComparison, ...] = ()
    """AMF against each other method (the Comparisons section), or the first trial against the second (contrast)."""
    n_boot: int = 2000
    seed: int = 0
    contrast: bool = False
    """Two trials of one sweep compared (`farm report --trial A --trial B`), not AMF against the baselines."""
    estimates: tuple[Estimate, ...] = ()
    """Joint against nested, per fusion both protocols of the space have (the Protocol section)."""
    extra_notes: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """Our AUs, then any AU only the paper has."""
        extra = tuple(a for a in self.paper.aus if a not in self.aus) if self.paper else ()
        return self.aus + extra

    def comparisons(self) -> list[str]:
        """One sentence per (AMF, other method) pair: the verdict its bootstrap interval supports, and its numbers."""
        if self.contrast:
            return [_compare(p) for p in self.pairs]
        if not any(r.method.fusion == "amf" for r in self.rows):
            return ["This report holds no AMF result, so it makes no AMF comparison."]
        if not self.pairs:
            return ["This report holds no baseline to compare AMF with."]
        return [_compare(p) for p in self.pairs]

    def protocol_line(self) -> str:
        """What every farm number of the report averages over: folds, seeds and protocol (per method if they differ)."""
        groups: dict[str, list[str]] = {}
        for r in self.rows:
            groups.setdefault(r.method.provenance, []).append(r.method.label)
        if len(groups) == 1:
            return f"Every farm number here: {next(iter(groups))}."
        return "Farm numbers: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in groups.items()) + "."

    def protocol_sentences(self) -> list[str]:
        """What the protocol means for the test numbers: per joint sweep how many of its test subjects its selection
        saw as validation subjects; per fusion the joint and nested estimates of one space where both exist."""
        out, seen = [], {}
        for r in self.rows:
            m = r.method
            if m.protocol == "joint" and not m.selected:
                seen.setdefault(m.sweep, m.test_seen)
        out += [seen_sentence(sweep, n, self.rows[0].method.objective_metric) for sweep, n in seen.items()]
        if any(r.method.protocol == "nested" for r in self.rows):
            out.append("Nested protocol: the test numbers of a nested method are the pooled test predictions of each "
                       "outer fold's selected trial (the best of that fusion's trials in that outer fold's search): "
                       "every test subject predicted once, by a model whose selection never saw it.")  # fmt: skip
        if self.estimates:
            out.append("Joint against nested (one search space; the nested number restricts each outer fold's search "
                       "to the fusion's trials):")  # fmt: skip
            out += [e.sentence() for e in self.estimates]
        return out

    @property
    def one_partition(self) -> bool:
        """Whether every comparison ran on one subject partition (or none ran)."""
        return all(len(p.result.partitions) <= 1 for p in self.pairs)

    def comparison_markdown(self) -> list[str]:
        level = f"{100 * LEVEL:g}%"
        if self.contrast:
            a, b = (r.method for r in self.rows)
            head = [f"## Comparison: {_md(a.label)} against {_md(b.label)}", "",
                    f"{_md(a.label)} − {_md(b.label)} in test F1 points (two trials of sweep {_md(a.sweep)}): the Avg "
                    "statistic"]  # fmt: skip
        else:
            head = ["## Comparisons: AMF against each baseline", "", "AMF − baseline in test F1 points: the Avg statistic"]
        family = "" if len(self.pairs) < 2 else f", Holm-corrected over the {len(self.pairs)} comparisons"
        lines = [*head[:-1], head[-1] + " (a unit is one trained fold model, a (partition, fold, seed): its AU-mean "
                 "F1 from its pooled counts; mean over seeds, then folds, then partitions: the table's Avg), "
                 "recomputed from the folds' per-frame test predictions on the test frames both methods predicted.",
                 "",
                 f"- **Corrected t** (decides the verdict): the Nadeau-Bengio corrected resampled t over the "
                 "(partition, fold) units' paired differences, its variance inflated by 1/J + n_test/n_train for the "
                 f"overlap of the training sets; two-sided p{family}. It is about the methods, trained again: a "
                 "method beats the other only where its p is below 5 %." + (
                     " With one partition (J = the folds, e.g. 3: 2 degrees of freedom) it is wide: more "
                     "partitions (`farm sweep --partitions`) narrow it." if self.one_partition else ""),
                 f"- **Subject bootstrap** ({level}, conditional on these trained models): {self.n_boot} paired "
                 f"replicates (random seed {self.seed}) of the test subjects, drawn within the folds (Rao-Wu "
                 "rescaled, with a t quantile: with a few subjects a fold the plain percentile interval is too "
                 "narrow) and applied to every partition, each unit's seeds resampled too. It says whether these "
                 "models differ on subjects like these, not whether the methods do (it is what `farm promote` "
                 "decides with).", ""]  # fmt: skip
        if self.pairs:
            diff = "A − B" if self.contrast else "AMF − baseline"
            first = "A F1 | B F1" if self.contrast else "AMF F1 | Baseline F1"
            lines += [f"| Method | Baseline | {diff} (points) | Corrected t {level} CI | p{' (Holm)' if family else ''} "
                      f"| Subject bootstrap {level} CI (these models) | {first} | Subjects | Frames | Units | "
                      "Protocol | Verdict |", "|" + "---|" * 13]  # fmt: skip
            for p in self.pairs:
                c = p.result
                cells = [p.a.method.label, p.b.method.label]
                if c.comparable:
                    t_ci = f"[{_p1(100 * c.t_low)}, {_p1(100 * c.t_high)}]" if math.isfinite(c.t_low) else "–"
                    cells += [_p1(100 * c.difference), t_ci, p.p_text.removeprefix("p "),
                              f"[{_p1(100 * c.ci_low)}, {_p1(100 * c.ci_high)}]", _p1(100 * c.a_f1), _p1(100 * c.b_f1),
                              str(c.n_subjects), str(c.n_frames), p.folds_seeds]  # fmt: skip
                else:
                    cells += ["–"] * 9
                cells += [p.protocol, p.verdict]
                lines.append("| " + " | ".join(_md(x) for x in cells) + " |")
            lines.append("")
        lines += [f"- {_md(s)}" for s in self.comparisons()]
        return lines

    def notes(self) -> list[str]:
        metric = self.rows[0].method.objective_metric
        folds = sorted({len(r.folds) for r in self.rows})
        what = "the trial" if self.contrast else f"the trial with the best {metric} per fusion"
        n = [f"Cells: test F1 (%) of {what}, mean ± sample std (ddof = 1) over the {'/'.join(map(str, folds))} "
             "folds (a fold's seeds averaged first). Avg: per fold the mean over AUs, then mean ± sample std over "
             "folds (the mean is the run's cv/test_f1_mean)."]  # fmt: skip
        if any(len(r.partition_avg) > 1 for r in self.rows):
            n.append("With several subject partitions (sweep.partitions): every number is the mean over partitions of "
                     "that partition's fold mean, the ± the mean over partitions of the sample std over folds; the "
                     "spread over partitions (sample std of the partitions' Avg, ddof = 1) is under Provenance and in "
                     "report.csv (partition_std_pct).")  # fmt: skip
        if "test" in metric:
            n.append(f"WARNING: {metric} is a test metric: choosing trials by it selects models on the test folds, "
                     "so these test numbers are optimistically biased.")  # fmt: skip
        else:
            n.append(f"{metric} is measured on validation subjects carved from each fold's training subjects: "
                     "test numbers never chose a trial (but under the joint protocol a fold's validation subjects are "
                     "another fold's test subjects: see Protocol).")  # fmt: skip
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
        n += list(self.extra_notes)
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
        lines += ["## Test F1 (%)", "", _md(self.protocol_line()), "",
                  "| Method | Source | Modalities | " + " | ".join(cols) + " | Avg |",
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
        protocol = self.protocol_sentences()
        if protocol:
            lines += ["", "## Protocol", ""] + [f"- {_md(t)}" for t in protocol]
        lines += ["", *self.comparison_markdown()]
        if self.robustness:
            lines += ["", *self.robustness_markdown()]
        lines += ["", "## Notes", ""] + [f"- {_md(s)}" for s in self.notes()]
        lines += ["", "## Provenance", ""]
        for r in self.rows:
            m = r.method
            splits = ", ".join(f"{k}:{v}" for k, v in sorted(m.split_hashes.items())) or "not recorded"
            lines += [f"### {_md(m.label)} (`{m.fusion}`)", "",
                      f"- sweep: `{m.sweep}`, trial `{m.trial}`, run id `{m.run_id}`",
                      f"- objective: {m.objective_metric} = {m.objective:.4f}; folds: {', '.join(r.folds)} "
                      f"(per-fold Avg: {', '.join(f'{f} {_pct(v)}' for f, v in r.fold_avg.items())})",
                      f"- protocol: {m.provenance}",
                      *([f"- partitions: Avg per partition {', '.join(f'r{k} {_pct(v)}' for k, v in r.partition_avg.items())}; "
                         f"sample std over partitions {_pct(r.partition_std)}"] if len(r.partition_avg) > 1 else []),
                      *([f"- nested selection (per outer fold, the trial best by {m.objective_metric} among this "
                         f"fusion's trials of that fold's search): {'; '.join(m.selected)}"] if m.selected else []),
                      f"- data hash: `{m.data_hash or 'not recorded'}`",
                      f"- split hashes: `{splits}`",
                      f"- partitions hash: `{m.partitions_hash or 'not recorded'}`",
                      f"- code: git `{m.git_sha or 'not recorded'}`",
                      f"- data: {m.data_description}", ""]  # fmt: skip
        return "\n".join(lines)

    def to_csv(self, path: str | Path) -> Path:
        """Long format, percent; `section` says which table a row belongs to.

        section 'test_f1': one row per (method, AU or 'Avg'); source 'farm' (ours) or 'paper' (published).
        Farm rows carry the matching paper value in paper_f1_pct when the paper has the fusion; paper rows
        carry their value in f1_mean_pct and leave std and folds empty.
        section 'robustness': the rows of `robustness_csv_rows` (condition, kind, modalities, sigma, f1, delta,
        split); the per-AU columns are empty.
        """
        path = Path(path)
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            w.writeheader()
            for r in self.rows:
                m, p = r.method, r.paper
                base = {"section": "test_f1", "source": "farm", "method": m.label, "fusion": m.fusion,
                        "modalities": " ".join(m.modalities), "num_folds": len(r.folds),
                        "paper_method": f"{p.method} {p.modal}" if p else "",
                        "sweep": m.sweep, "trial": m.trial, "run_id": m.run_id, "data_hash": m.data_hash,
                        "split_hashes": ",".join(f"{k}:{v}" for k, v in sorted(m.split_hashes.items())),
                        "partitions_hash": m.partitions_hash, "protocol": m.protocol, "seeds": m.seeds,
                        "num_partitions": len(m.partitions)}  # fmt: skip
                for au in (*self.aus, "Avg"):
                    mean, std = (r.avg_mean, r.avg_std) if au == "Avg" else (r.au_mean[au], r.au_std[au])
                    paper_v = (p.avg if au == "Avg" else p.f1.get(au)) if p else None
                    w.writerow({**base, "au": au, "f1_mean_pct": _num(100 * mean), "f1_std_pct": _num(100 * std),
                                "paper_f1_pct": _num(paper_v),
                                "partition_std_pct": _num(100 * r.partition_std) if au == "Avg" else ""})  # fmt: skip
            for p in self.paper.rows if self.paper else ():
                for au in (*self.paper.aus, "Avg"):
                    v = p.avg if au == "Avg" else p.f1.get(au)
                    w.writerow({"section": "test_f1", "source": "paper", "method": p.method,
                                "fusion": p.fusion or "", "modalities": " ".join(p.modalities), "au": au,
                                "f1_mean_pct": _num(v),
                                "paper_method": f"{p.method} {p.modal}",
                                "sweep": f"paper Table {self.paper.table} ({self.paper.dataset})"})  # fmt: skip
            for row in self.robustness_csv_rows():
                w.writerow({"section": "robustness", **row})
            for row in self.comparison_csv_rows():
                w.writerow({"section": "comparison", **row})
            for e in self.estimates:  # diff = joint - nested: the joint protocol's optimism, in points
                w.writerow({"section": "optimism", "source": "farm", "method": fusion_label(e.fusion),
                            "fusion": e.fusion, "sweep": e.joint_sweep, "trial": e.joint_trial,
                            "joint_pct": _num(100 * e.joint), "nested_pct": _num(100 * e.nested),
                            "nested_sweep": e.nested_sweep, "diff": _num(100 * e.optimism), "verdict": e.note})  # fmt: skip
        return path

    def comparison_csv_rows(self) -> list[dict[str, str]]:
        """One row per (AMF, baseline) pair: diff = AMF − baseline, low / high its subject-bootstrap interval
        (conditional on the trained models), t_low / t_high the corrected t interval over the n_units (partition,
        fold) units, in points (empty when not comparable); p_value its p, p_holm after Holm over the report's pairs;
        n_subjects, n_frames (common test frames), n_boot, seed (of the bootstrap), num_folds, num_partitions and
        seeds (per fold, 'AMF vs baseline' where they differ) as compared; verdict in words (from p_holm)."""
        out = []
        for p in self.pairs:
            c, a, b = p.result, p.a.method, p.b.method
            row = {"source": "farm", "method": a.label, "fusion": a.fusion, "baseline": b.label,
                   "baseline_fusion": b.fusion, "sweep": a.sweep, "trial": a.trial, "run_id": a.run_id,
                   "protocol": a.protocol if a.protocol == b.protocol else f"{a.protocol} vs {b.protocol}",
                   "n_boot": c.n_boot, "seed": c.seed, "verdict": p.verdict}  # fmt: skip
            if c.comparable:
                sa, sb = (min(x) if min(x) == max(x) else f"{min(x)}-{max(x)}" for x in (c.a_seeds, c.b_seeds))
                row.update(diff=_num(100 * c.difference), low=_num(100 * c.ci_low), high=_num(100 * c.ci_high),
                           n_subjects=c.n_subjects, n_frames=c.n_frames,
                           num_folds=len(c.folds), seeds=sa if sa == sb else f"{sa} vs {sb}",
                           interval=f"subject bootstrap ({c.interval}), conditional on the trained models",
                           t_low=_num(100 * c.t_low), t_high=_num(100 * c.t_high), p_value=_num(c.p_value),
                           p_holm=_num(p.p_holm), n_units=c.n_units,
                           num_partitions=max(len(c.partitions), 1))  # fmt: skip
            out.append(row)
        return out

    # -----------------------------------------------------------------------------------------
    # robustness (the paper's Fig. 4 and 5)

    def robustness_csv_rows(self) -> list[dict[str, str]]:
        """Long format, percent: one row per measured (method, condition, split); split 'val' (our validation
        subjects), 'test' (a test-subject study; run_id = the run holding it) or 'paper test' (source 'paper').
        `modalities` is the condition's target joined with '+'; delta = F1 - clean F1 of the same split and
        source, in points. Conditions not measured have no row."""
        out: list[dict[str, str]] = []
        for mr in self.robustness:
            m = mr.method
            for split, attr, run_id in (("val", "val", m.run_id), ("test", "test", m.test_robustness_run)):
                clean = getattr(mr.clean, attr)
                for r in (mr.clean, *mr.missing, *mr.noise):
                    v = getattr(r, attr)
                    if not math.isfinite(v):
                        continue
                    out.append(self._robust_row("farm", m.label, m.fusion, r.condition, 100 * v, 100 * (v - clean),
                                                split, sweep=m.sweep, trial=m.trial, run_id=run_id,
                                                num_folds=str(len(m.fold_f1)), protocol=m.protocol,
                                                seeds=str(m.seeds)))  # fmt: skip
        if self.figures:
            source = f"paper Fig. 4/5 ({self.paper.dataset if self.paper else self.figures.table})"
            for p in self.figures.rows:
                clean = Condition("clean")
                if p.clean is not None:
                    out.append(self._robust_row("paper", p.method, p.fusion, clean, p.clean, 0.0, "paper test",
                                                sweep=f"{source}; clean from {p.clean_from}"))  # fmt: skip
                for mods, f1 in p.missing.items():
                    delta = round(f1 - p.clean, 1) if p.clean is not None else math.nan  # both printed to 0.1
                    out.append(self._robust_row("paper", p.method, p.fusion, Condition("missing", mods), f1,
                                                delta, "paper test", sweep=source))  # fmt: skip
                if p.noise_worst:
                    sigma, f1 = p.noise_worst
                    row = self._robust_row("paper", p.method, p.fusion, Condition("noise", (), sigma), f1,
                                           round(f1 - p.clean, 1) if p.clean is not None else math.nan, "paper test",
                                           sweep=source)  # fmt: skip
                    mods = "|".join(self.figures.modalities)
                    row.update(kind="noise_worst", modalities=mods,
                               condition=f"noise on one of {mods} (worst) sigma={sigma:g}")  # fmt: skip
                    out.append(row)
        return out

    @staticmethod
    def _robust_row(source: str, method: str, fusion: str, c: Condition, f1: float, delta: float, split: str,
                    **extra: str) -> dict[str, str]:  # fmt: skip
        return {"source": source, "method": method, "fusion": fusion, "condition": c.name, "kind": c.kind,
                "modalities": "+".join(c.modalities), "sigma": _num(c.sigma) if c.kind == "noise" else "",
                "f1": _num(f1), "delta": _num(delta), "split": split, **extra}  # fmt: skip

    def robustness_sentences(self) -> list[str]:
        """One line per method: its validation F1 with each modality missing, against clean and, where the
        single-modality method of the remaining modality is in the report, against that method's clean F1."""
        singles = {mr.method.fusion.split(":", 1)[1]: mr for mr in self.robustness
                   if mr.method.fusion.startswith("single:")}  # fmt: skip
        out = []
        for mr in self.robustness:
            m = mr.method
            order = tuple(m.modalities)
            clean = _round_pct(mr.clean.val)
            if len(order) == 1:
                out.append(f"{m.label}: one modality, no missing-modality condition (clean validation F1 "
                           f"{_fmt(clean)}).")  # fmt: skip
                continue
            if not mr.measured:
                out.append(f"{m.label}: {NOT_MEASURED} (trial {m.trial} logged no cv/val_f1_missing_* or "
                           "cv/val_f1_noise_* metric).")  # fmt: skip
                continue
            if not any(math.isfinite(r.val) for r in mr.missing):
                out.append(f"{m.label}: missing modalities {NOT_MEASURED} (trial {m.trial} logged no "
                           "cv/val_f1_missing_* metric).")  # fmt: skip
                continue
            parts = []
            for r in mr.missing:
                what = f"without {'+'.join(r.condition.modalities)}"
                v = _round_pct(r.val)
                if v is None:
                    parts.append(f"{what} {NOT_MEASURED}")
                    continue
                bits = []
                if clean is not None:
                    d = v - clean  # on the printed numbers, as the table
                    bits.append("unchanged at one decimal" if abs(d) < 0.05 else f"{d:+.1f} points")
                rest = [x for x in order if x not in r.condition.modalities]
                single = singles.get(rest[0]) if len(rest) == 1 else None
                s_clean = _round_pct(single.clean.val) if single else None
                if s_clean is not None:
                    rel = "equal to" if abs(v - s_clean) < 0.05 else ("above" if v > s_clean else "below")
                    bits.append(f"{rel} {single.method.label}'s clean validation F1 of {s_clean:.1f}")
                parts.append(f"{what} {v:.1f}" + (f" ({'; '.join(bits)})" if bits else ""))
            head = f"{m.label} (validation F1, clean {_fmt(clean)})"
            out.append(f"{head}: {', '.join(parts)}.")
        return out

    def robustness_notes(self) -> list[str]:
        n = ["Ours: F1 (%) of each fold's best epoch (chosen on the clean validation F1) on that fold's validation "
             "subjects, which are carved from its training subjects and never its test subjects (so a search may "
             "use these numbers); mean over folds: the trial run's cv/val_f1_mean (clean), cv/val_f1_missing_* "
             "and cv/val_f1_noise_*. In brackets: the change against clean of the same column, in points (on the "
             "printed numbers).",
             "A missing modality is all zeros after [-1, 1] normalisation; noise is Gaussian of std σ added to "
             "the normalised input of the named modalities, not clipped."]  # fmt: skip
        if any(mr.has_test_study for mr in self.robustness):
            n.append("Test study: `farm robustness` of a promoted model of the same trial (its fold models, each "
                     "on its own fold's test subjects), read from the run named under 'Test studies'; it chose "
                     "nothing.")  # fmt: skip
        if self.figures:
            dataset = self.paper.dataset if self.paper else self.figures.table
            n.append(f"Paper column and Fig. 5 line: the AMF paper's Fig. 4 and 5 ({dataset}, "
                     f"{' + '.join(self.figures.modalities)}). They are TEST-partition numbers of the paper; ours "
                     "are validation-subject numbers: not measured on the same subjects (nor on the same data "
                     "unless ours is that dataset). Only the numbers the text of the paper's section 4.4.3 states "
                     "are shown ('not stated': the figure has the bar, the text does not give its value; nothing "
                     "is read off a plot).")  # fmt: skip
            table1 = [mr.paper.method for mr in self.robustness if mr.paper and mr.paper.clean_from == "Table 1"]
            if table1:
                n.append(f"Paper clean values of {', '.join(table1)}: the text does not state them; shown is the "
                         "method's Table 1 Avg (marked 'Table 1').")  # fmt: skip
        elif self.paper:
            n.append(f"The paper reports its robustness study (Fig. 4, 5) on BP4D only: no paper numbers beside "
                     f"the robustness rows for {self.paper.dataset}.")  # fmt: skip
        n += [mr.paper_not_placed for mr in self.robustness if mr.paper_not_placed]
        return n

    def robustness_markdown(self) -> list[str]:
        with_test = any(mr.has_test_study for mr in self.robustness)
        figs = self.figures
        lines = ["## Robustness: missing and noisy modalities (the paper's Fig. 4 and 5)", "",
                 _md(self.protocol_line()), "", "### Missing modality", ""]  # fmt: skip
        head = ["Method", "Condition", "Ours: validation F1 (fold mean)"]
        head += ["Test study F1 (test subjects)"] if with_test else []
        head += [f"Paper Fig. 4 ({self.paper.dataset if self.paper else figs.table}, test partitions)"] if figs else []
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for mr in self.robustness:
            for r in (mr.clean, *mr.missing):
                cells = [_md(mr.method.label), r.condition.label, _cell(r.val, None if r is mr.clean else mr.clean.val)]
                if with_test:
                    cells.append(_cell(r.test, None if r is mr.clean else mr.clean.test,
                                       NOT_MEASURED if mr.has_test_study else "no study"))  # fmt: skip
                if figs:
                    cells.append(_paper_cell(mr, r))
                lines.append("| " + " | ".join(cells) + " |")
            if not mr.missing and len(mr.method.modalities) != 1:
                lines.append(f"| {_md(mr.method.label)} | missing modalities | {NOT_MEASURED} |"
                             + " |" * (len(head) - 3))  # fmt: skip
        sigmas = sorted({r.condition.sigma for mr in self.robustness for r in mr.noise}) or [0.1, 0.2, 0.5, 0.8]
        lines += ["", "### Noisy modality: F1 against σ", "",
                  "| Method | Noise on | Split | clean | " + " | ".join(f"σ={s:g}" for s in sigmas) + " |",
                  "|" + "---|" * (4 + len(sigmas))]  # fmt: skip
        for mr in self.robustness:
            label = _md(mr.method.label)
            if not mr.noise:
                lines.append(f"| {label} | – | validation | {_cell(mr.clean.val)} | "
                             + " | ".join([NOT_MEASURED] * len(sigmas)) + " |")  # fmt: skip
                continue
            splits = [("validation", "val")] + ([("test study", "test")] if mr.has_test_study else [])
            for target in mr.noise_targets():
                by_sigma = {r.condition.sigma: r for r in mr.noise if r.condition.modalities == target}
                name = "+".join(target) + (
                    " (all)" if len(target) > 1 and len(target) == len(mr.method.modalities) else ""
                )
                for split, attr in splits:
                    cells = [_cell(getattr(by_sigma[s], attr)) if s in by_sigma else NOT_MEASURED for s in sigmas]
                    lines.append(f"| {label} | {name} | {split} | {_cell(getattr(mr.clean, attr))} | "
                                 + " | ".join(cells) + " |")  # fmt: skip
        placed = {mr.paper.fusion: mr.paper for mr in self.robustness if mr.paper}
        for p in placed.values():  # the paper's rows beside a method of this report
            if p.noise_worst:
                sigma, f1 = p.noise_worst
                lines += ["", f"Paper, Fig. 5 ({self.paper.dataset if self.paper else figs.table}, test partitions; "
                          f"from the text of section 4.4.3): {_md(p.method)}'s lowest point with Gaussian noise on one "
                          f"modality ({' or '.join(figs.modalities)}; the text does not say which) is F1 {f1:g} at "
                          f"σ={sigma:g}; the text states no other point of the figure."]  # fmt: skip
        lines += ["", "### Missing modality in words (validation subjects)", ""]
        lines += [f"- {_md(s)}" for s in self.robustness_sentences()]
        lines += ["", "### Test studies", ""]
        for mr in self.robustness:
            m = mr.method
            if m.test_robustness:
                lines.append(f"- {_md(m.label)}: {_md(m.test_robustness_source or m.test_robustness_run)}")
            else:
                lines.append(f"- {_md(m.label)}: none found for trial {_md(m.trial)}"
                             + (f" ({_md(m.test_robustness_note)})" if m.test_robustness_note else ""))  # fmt: skip
        lines += ["", "### Robustness notes", ""] + [f"- {_md(s)}" for s in self.robustness_notes()]
        return lines


def _compare(p: MethodComparison) -> str:
    """'AMF beats late fusion by 2.1 [0.4, 3.9] points (95% CI; ...)': the interval's verdict, then what it is on."""
    a, b, c = p.a, p.b, p.result
    na, nb = a.method.label, b.method.label
    if c.comparable:
        boot = f"[{_p1(100 * c.ci_low)}, {_p1(100 * c.ci_high)}]"
        s = (f"{p.words}; conditional on these trained models, the subject bootstrap's {100 * LEVEL:g}% interval "
             f"of {na} − {nb} is {boot} ({na} {_p1(100 * c.a_f1)} vs {nb} {_p1(100 * c.b_f1)} on {c.n_frames} common "
             f"test frames of {c.n_subjects} subjects, {p.folds_seeds}, {p.protocol} protocol)")  # fmt: skip
    else:
        va, vb = 100 * a.avg_mean, 100 * b.avg_mean
        table = (f"the table's Avg: {na} {va:.1f} vs {nb} {vb:.1f} ({round(va, 1) - round(vb, 1):+.1f} points)"
                 if math.isfinite(va) and math.isfinite(vb) else "no finite Avg on both sides")  # fmt: skip
        s = f"{p.words}; {table}, with no interval: no claim either way"
    if a.paper and b.paper and a.paper is not b.paper and a.paper.avg is not None and b.paper.avg is not None:
        s += f"; paper: AMF {a.paper.avg:.1f} vs {b.paper.avg:.1f} ({a.paper.avg - b.paper.avg:+.1f})"
    return s + "."
