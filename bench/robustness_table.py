"""The robustness investigation's table (docs/results.md, issue 13), read back from a sweep store.

    python bench/robustness_table.py --tracking-uri sqlite:///mlflow.db \
        --sweep inv-robustness_synthetic --sweep inv-robustness_remedies --sweep inv-robustness_guidance

One row per configuration (fusion, modality dropout, guidance on the backbone or the scorer only),
its finished trials averaged over seeds (`train.seed` is a grid parameter of those spaces): the
fold-mean validation F1 clean and with each modality (and pair) missing, the change against clean,
and the single-modality models' clean validation F1 beside them. Every number is on VALIDATION
subjects (each fold's best epoch), mean over the seeds, with the seeds' range in brackets; the
test-partition F1 (clean) is reported for reference.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from farm.tracking.sweeps import open_store, trial_runs  # noqa: E402


def config_key(params: dict[str, str]) -> tuple[str, float, str]:
    return (params.get("model.fusion", "?"), float(params.get("augment.modality_dropout", 0.0)),
            params.get("amf.guidance_backbone", "True"))  # fmt: skip


def label(key: tuple[str, float, str]) -> str:
    fusion, dropout, guidance = key
    out = fusion + (f" + modality dropout {dropout:g}" if dropout else "")
    if fusion == "amf" and guidance.lower() == "false":
        out += " + guidance on g only"
    return out


def cell(values: list[float], clean: list[float] | None = None) -> str:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "-"
    mean = 100 * sum(vals) / len(vals)
    text = f"{mean:.1f}"
    if clean:
        delta = mean - 100 * sum(clean) / len(clean)
        text += f" ({delta:+.1f})"
    if len(vals) > 1:
        text += f" [{100 * min(vals):.1f}-{100 * max(vals):.1f}]"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--sweep", action="append", required=True)
    args = ap.parse_args(argv)
    client = open_store(args.tracking_uri)
    groups: dict[tuple, list] = defaultdict(list)
    secs: dict[str, list[float]] = defaultdict(list)  # fusion -> seconds of the validation robustness per fold
    for sweep in args.sweep:
        for rec in trial_runs(client, sweep):
            if rec.status == "FINISHED":
                groups[config_key(rec.params)].append(rec.metrics)
                secs[rec.fusion] += [f.metrics["time/val_robustness_s"] for f in rec.folds
                                     if "time/val_robustness_s" in f.metrics]  # fmt: skip
    conditions = sorted({k for ms in groups.values() for m in ms for k in m if k.startswith("cv/val_f1_missing_")
                         and k != "cv/val_f1_missing_worst"})  # fmt: skip
    names = [c.removeprefix("cv/val_f1_missing_") for c in conditions]
    head = ["configuration", "seeds", "clean val F1", *(f"without {n}" for n in names), "worst", "test F1 (clean)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    singles = {}
    for key in sorted(groups, key=lambda k: (k[0].startswith("single"), k)):
        ms = groups[key]
        clean = [m.get("cv/val_f1_mean", math.nan) for m in ms]
        row = [label(key), str(len(ms)), cell(clean)]
        row += [cell([m.get(c, math.nan) for m in ms], clean) for c in conditions]
        row += [cell([m.get("cv/val_f1_missing_worst", math.nan) for m in ms], clean)]
        row += [cell([m.get("cv/test_f1_mean", math.nan) for m in ms])]
        lines.append("| " + " | ".join(row) + " |")
        if key[0].startswith("single:"):
            singles[key[0]] = cell(clean)
    print("\n".join(lines))
    if singles:
        print("\nsingle-modality models, clean validation F1: " + ", ".join(f"{k}: {v}" for k, v in singles.items()))
    for fusion, s in sorted(secs.items()):
        if s:
            print(
                f"validation robustness measures, {fusion}: {sum(s) / len(s):.1f} s per fold on average ({len(s)} folds)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
