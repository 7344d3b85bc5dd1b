"""Sweeps laid out in a real sqlite MLflow store as `farm sweep` writes them (parent run per trial, fold runs with
per-AU test metrics, split tags and per-frame test predictions), for the tests of farm/tracking."""

import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from farm.checkpoints import Predictions
from farm.config import BP4D_AUS
from farm.evaluate.cv import aggregate_folds
from farm.metrics import summarize
from farm.tracking.mlflow import PARENT_TAG, RunTracker

FOLDS = ("P1", "P2", "P3")
T0 = 1_700_000_000_000  # ms
# the validation robustness conditions of a visual + depth fold (farm.data.perturb.metric_suffix), two sigmas
VAL_CONDITIONS = ("missing_visual", "missing_depth", "noise_visual_0.1", "noise_visual_0.5", "noise_depth_0.1",
                  "noise_depth_0.5", "noise_visual-depth_0.1", "noise_visual-depth_0.5")  # fmt: skip


def fold_results(seed, robust=False):
    """FoldResult-like dicts with per-AU counts; AU24 has no known label in fold P2 (F1 NaN, not logged).

    robust: each fold also measured its best epoch on its validation subjects under VAL_CONDITIONS (an older
    sweep did not)."""
    rng = np.random.default_rng(seed)
    rng_robust = np.random.default_rng(seed + 1000)  # the other numbers stay what they were without
    out = []
    for i, fold in enumerate(FOLDS):
        counts = rng.integers(0, 40, (len(BP4D_AUS), 4))  # (A, 4) tp fp fn tn
        if fold == "P2":
            counts[-1] = 0
        out.append({"fold": fold, "test": summarize(counts, BP4D_AUS), "val": {"f1_mean": float(rng.uniform(0.3, 0.6))},
                    "split": {"hash": f"s{seed}{i}", "partitions_hash": "parts1"}, "data_hash": "data1"})  # fmt: skip
        if robust:
            out[-1]["val_robustness"] = {f"val/f1_{c}": float(rng_robust.uniform(0.05, 0.6)) for c in VAL_CONDITIONS}
    return out


def fold_preds(right, seed, subjects=12, frames=30):
    """{fold: per-frame test predictions of that fold's subjects} (4 per fold), as the engine writes them: labels
    shared by every model (drawn from seed 0), each known label predicted right with probability `right`."""
    labels_rng, rng = np.random.default_rng(0), np.random.default_rng(seed)
    subj = np.repeat([f"S{i:02d}" for i in range(subjects)], frames)
    fold = np.repeat([FOLDS[i % 3] for i in range(subjects)], frames)
    labels = (labels_rng.random((len(subj), len(BP4D_AUS))) < 0.35).astype(np.int8)
    labels[labels_rng.random(labels.shape) < 0.03] = -1
    probs = np.where((labels == 1) ^ (rng.random(labels.shape) >= right), 0.8, 0.2).astype(np.float32)
    p = Predictions(subj.astype(object), np.full(len(subj), "T1", object), np.tile(np.arange(frames), subjects),
                    fold.astype(object), probs, labels, BP4D_AUS)  # fmt: skip
    return {f: p.select(np.flatnonzero(p.fold == f)) for f in FOLDS}


SUBJECTS = tuple(f"S{i:02d}" for i in range(12))


def subject_splits(val_per_fold=2):
    """{fold: (train, val, test) subject lists} of fold_preds' subjects (fold Pk tests subjects k-1, k+2, ...): the
    validation subjects are the first `val_per_fold` of the fold's training subjects, so each is another fold's test
    subject (what the joint protocol's selection sees)."""
    out = {}
    for k, fold in enumerate(FOLDS):
        test = [s for i, s in enumerate(SUBJECTS) if i % 3 == k]
        rest = [s for s in SUBJECTS if s not in test]
        out[fold] = (rest[val_per_fold:], rest[:val_per_fold], test)
    return out


def add_trial(client, exp_id, trial, fusion, seed, start, status="FINISHED", val=None, data_path="/nonexistent/data",
              folds=True, robust=False, preds=None, params=None, tags=None, train=FOLDS, partitions=(0,),
              splits=None, checkpoint="/ckpt"):  # fmt: skip
    """A parent run and its fold runs, logged the way farm/sweep/worker.py logs them (RunTracker).

    preds: {fold: Predictions} logged as each fold run's predictions/test_predictions.parquet (without a seed
    column, as the engine writes it); a list of them: one fold run per seed, tagged `seed` 0, 1, ...
    train: the folds the trial trains (nested: its outer fold). partitions: with several, the folds of each
    partition r (fold runs `<trial>-r<r>-<fold>` tagged `partition`, results drawn with seed + 100 r, preds a
    {r: preds} dict, files without a partition column). splits: {fold: (train, val, test)} for the split tags.
    checkpoint: the parent's checkpoint tag; each fold run gets `<checkpoint>/<fold>/best.pt`."""
    several = len(partitions) > 1
    results = [{**r, "partition": p} for p in partitions for r in fold_results(seed + 100 * p, robust)
               if r["fold"] in train]  # fmt: skip
    parent = client.create_run(exp_id, run_name=trial, start_time=start,
                               tags={"trial": trial, "sweep": "sw", "git_sha": "abc123", **(tags or {})}).info.run_id  # fmt: skip
    pt = RunTracker(client, parent)
    pt.log_params({"model.fusion": fusion, "data.aus": BP4D_AUS, "data.path": data_path,
                   "data.modalities": "visual,depth" if robust else "", **(params or {})})  # fmt: skip
    by_part = preds if several and isinstance(preds, dict) else {p: preds for p in partitions}
    seeded = isinstance(preds, list)
    for r, i in [(res, i) for res in results for i in range(len(preds) if seeded else 1)] if folds else []:
        per_seed = by_part[r["partition"]] if seeded else [by_part[r["partition"]]]
        seed_tag = {"seed": str(i)} if isinstance(preds, list) else {}
        unit = f"r{r['partition']}-{r['fold']}" if several else r["fold"]
        part_tag = {"partition": str(r["partition"])} if several else {}
        kid = client.create_run(exp_id, run_name=f"{trial}-{unit}", start_time=start + 1,
                                tags={PARENT_TAG: parent, "fold": r["fold"], "trial": trial, **seed_tag,
                                      **part_tag}).info.run_id  # fmt: skip
        if per_seed[i] is not None:
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / "test_predictions.parquet"
                table = per_seed[i][r["fold"]].to_table()
                pq.write_table(table.drop_columns([c for c in ("seed", "partition") if c in table.column_names]), path)
                client.log_artifact(kid, str(path), "predictions")
        kt = RunTracker(client, kid)
        for e in range(2):
            kt.log_metrics({"val/f1_mean": r["val"]["f1_mean"] - 0.1 * (1 - e)}, step=e)
        kt.log_metrics(
            {"test/f1_mean": r["test"]["f1_mean"], **{f"test/f1_{a}": v for a, v in r["test"]["f1"].items()}}
        )
        kt.log_metrics({f"test/count_{k}_{a}": c[k] for a, c in r["test"]["counts"].items() for k in c})
        if r.get("val_robustness"):
            kt.log_metrics(r["val_robustness"])  # the engine logs them once, at the end of the fold
        train_s, val_s, test_s = splits[r["fold"]] if splits else (["F001", "M001"], ["F002"], ["M002"])
        kt.set_tags({"split.train": " ".join(train_s), "split.val": " ".join(val_s), "split.test": " ".join(test_s),
                     "best_epoch": 1, "split_hash": r["split"]["hash"], "data_hash": r["data_hash"],
                     "checkpoint_folder": unit, "checkpoint": f"{checkpoint}/{unit}/best.pt"})  # fmt: skip
        kt.finish("FINISHED" if status == "FINISHED" else "KILLED")
    if status == "FINISHED":
        cv = aggregate_folds(results, BP4D_AUS)
        cv["cv/val_f1_mean"] = cv["cv/val_f1_mean"] if val is None else val
        pt.log_metrics(cv)
        pt.log_metrics({f"fold/{r['fold']}/test_f1": r["test"]["f1_mean"] for r in results})
        pt.set_tags({"data_hash": "data1", "split_hashes": ",".join(f"{r['fold']}:{r['split']['hash']}" for r in results),
                     "partitions_hash": "parts1", "checkpoint": checkpoint})  # fmt: skip
    else:
        pt.log_metrics({"cv/val_f1_mean": 0.99})  # the ASHA-stopped trial looked best mid-way
    pt.finish(status)
    return parent


