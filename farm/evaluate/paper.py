"""The AMF paper's numbers: Tables 1 and 2 (per-AU F1 on BP4D and BP4D+) and what section 4.4.3 states of Fig. 4
and 5 (robustness), from `paper_tables.yaml` (its columns relabelled with the BP4D AU set: DOMAIN.md section 2);
and the robustness conditions named in metric suffixes and CSV rows. Pure: numbers and names only."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from farm.data.perturb import Condition

PAPER_FILE = Path(__file__).parent / "paper_tables.yaml"
PAPER_TABLES = ("bp4d", "bp4dplus")
NOT_MEASURED = "not measured"
"""What a report shows where a number was not measured (ours) or not stated (the paper's)."""


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


def parse_condition(suffix: str, modalities: tuple[str, ...] = ()) -> Condition | None:
    """A metric suffix of farm.data.perturb.metric_suffix -> the condition; None for other names.

    'missing_depth', 'missing_depth-thermal', 'noise_visual_0.5', 'noise_visual-depth_0.5' (the target
    is the modalities joined with '-'); 'noise_all_0.5' (an older name) is noise on `modalities`.
    'missing_worst' (a derived minimum, not a condition) gives None.
    """
    kind, _, rest = suffix.partition("_")
    if kind == "missing" and rest and rest != "worst":
        return Condition("missing", tuple(rest.split("-")))
    if kind == "noise":
        target, _, sigma = rest.rpartition("_")
        try:
            value = float(sigma)
        except ValueError:
            return None
        if target and math.isfinite(value):
            mods = tuple(modalities) if target == "all" and modalities else tuple(target.split("-"))
            return Condition("noise", mods, value)
    return None


def condition_from_row(row: dict) -> Condition | None:
    """A row of farm robustness's robustness.csv (kind, modalities joined with '+', sigma) -> the condition."""
    kind = str(row.get("kind", ""))
    if kind not in ("clean", "missing", "noise"):
        return None
    mods = tuple(m for m in str(row.get("modalities", "")).split("+") if m)
    try:
        sigma = float(row.get("sigma", 0.0) or 0.0) if kind == "noise" else 0.0
    except ValueError:
        return None
    return Condition(kind, () if kind == "clean" else mods, sigma)


@dataclass(frozen=True)
class PaperRobustRow:
    """One method of the paper's Fig. 4 / Fig. 5 as section 4.4.3 states it (percent; absent = not stated)."""

    method: str
    fusion: str
    clean: float | None
    clean_from: str
    missing: dict[tuple[str, ...], float]
    """missing modalities -> F1 (%)."""
    noise_worst: tuple[float, float] | None = None
    """(sigma, F1 %) of the lowest point with noise on one modality (Fig. 5), where the text states it."""


@dataclass(frozen=True)
class PaperRobustness:
    table: str
    """The --paper table these figures go with ('bp4d')."""
    fig4_title: str
    fig5_title: str
    modalities: tuple[str, ...]
    rows: tuple[PaperRobustRow, ...]

    def row_for(self, fusion: str) -> PaperRobustRow | None:
        return next((r for r in self.rows if r.fusion == fusion), None)


def load_paper_robustness(which: str) -> PaperRobustness | None:
    """The paper's Fig. 4 and 5 numbers for table `which` ('bp4d'); None where the paper has none (BP4D+)."""
    if which not in PAPER_TABLES:
        raise ReportError(f"unknown paper table {which!r}; valid: {', '.join(PAPER_TABLES)}")
    doc = yaml.safe_load(PAPER_FILE.read_text())
    fig4, fig5 = doc.get("fig4") or {}, doc.get("fig5") or {}
    if fig4.get("table") != which:
        return None
    worst = {r["fusion"]: r["worst_single_modality_noise"] for r in fig5.get("rows", ())
             if fig5.get("table") == which and r.get("worst_single_modality_noise")}  # fmt: skip
    rows = []
    for r in fig4["rows"]:
        w = worst.pop(r["fusion"], None)
        rows.append(PaperRobustRow(r["method"], r["fusion"], r.get("clean"), r.get("clean_from", ""),
                                   {tuple(m["modalities"]): float(m["f1"]) for m in r.get("missing", ())},
                                   (float(w["sigma"]), float(w["f1"])) if w else None))  # fmt: skip
    for r in fig5.get("rows", ()):  # a Fig. 5 method the text gives no Fig. 4 number for
        if r["fusion"] in worst:
            w = worst[r["fusion"]]
            rows.append(PaperRobustRow(r["method"], r["fusion"], None, "", {}, (float(w["sigma"]), float(w["f1"]))))
    return PaperRobustness(which, fig4["title"], fig5.get("title", ""), tuple(fig4["modalities"]), tuple(rows))
