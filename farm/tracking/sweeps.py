"""Reading a sweep back from MLflow: its trials (parent runs) with their folds (child runs).

The layout is the one `farm sweep` writes (farm/tracking/mlflow.py, farm/sweep/worker.py): one
experiment per sweep, named after it; a parent run per Tune trial (run name = trial id; params =
the flat config; metrics `cv/...`; tags data_hash, split_hashes, partitions_hash, git_sha, ...);
a child run per fold (tag `mlflow.parentRunId`, tag `fold`; metrics `test/f1_<AU>`, ...).
Parent status: FINISHED, KILLED (stopped by ASHA) or FAILED.

`trial_runs` and `best_trial` are general (reports, promotion), and so is `fold_predictions` (the fold runs'
per-frame test predictions, `predictions/test_predictions.parquet`); `method_result`, `trial_test_study` and
`trial_predictions` feed farm/tracking/reports.py (`farm report`).

Seeds, partitions and protocol: a trial may train each fold with several seeds (a fold run per seed, tag `seed`;
the parent run's param or tag `seeds`) on several subject partitions (`sweep.partitions`: tag `partition` on each fold
run, none = 0) under a protocol (parent-run tag `protocol`); a run without them is one seed, partition 0, protocol
"joint". Nested: a trial trains one outer fold (tag `outer_fold`, and `partition`), and each outer fold's search
tags the trial it selected `selected=true`; `nested_selection` reads them as one record.

Robustness: a trial's parent run carries the fold means of its validation robustness
(`cv/val_f1_missing_<m>`, `cv/val_f1_noise_<target>_<sigma>`, farm/evaluate/cv.py); a test-subject
study (`farm robustness`) is the artifact `robustness/robustness.csv` of a promotion run of the
trial (experiment `promote-<model>`, tag `trial_run_id`, farm/tracking/registry.py) or of the
trial's own run (`farm robustness --run`).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.tracking import MlflowClient

from farm.evaluate.report import MethodResult
from farm.tracking.mlflow import PARENT_TAG

if TYPE_CHECKING:
    from farm.checkpoints import Predictions

OBJECTIVE = "cv/val_f1_mean"
VAL_ROBUSTNESS_PREFIX = "cv/val_f1_"
ROBUSTNESS_CSV = "robustness/robustness.csv"
"""Where `farm robustness` puts its table on a run (farm/tracking/registry.py: ROBUSTNESS_DIR)."""
PROMOTE_PREFIX = "promote-"
"""Promotion runs live in the experiment `promote-<model name>` (farm/tracking/registry.py)."""


class SweepLookupError(ValueError):
    """A sweep, trial or fold cannot be found in the store; the message names the sweep and the store."""


class PredictionsUnavailable(SweepLookupError):
    """A fold run's test predictions cannot be downloaded (not logged, or an artifact store not reachable)."""


@dataclass(frozen=True)
class FoldRun:
    """A trial's child run for one fold (named by its test partition)."""

    fold: str
    run_id: str
    status: str
    metrics: dict[str, float]
    tags: dict[str, str]
    start_time: int

    @property
    def partition(self) -> int:
        """The subject partition of the run's fold (tag `partition`, `sweep.partitions` > 1); none = 0."""
        return int(self.tags.get("partition") or 0)


@dataclass(frozen=True)
class TrialRecord:
    """A trial's parent run and its fold runs (sorted by fold); times in ms since the epoch."""

    run_id: str
    trial: str
    sweep: str
    experiment_id: str
    fusion: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    start_time: int
    end_time: int | None
    folds: tuple[FoldRun, ...]
    store: str = ""
    picks: tuple[tuple[str, TrialRecord], ...] = ()
    """A nested selection (`nested_selection`): (outer fold, the trial chosen for it) per outer fold; its `folds` are
    those trials' runs of their outer fold, its metrics their means. Empty for a trial."""

    def metric(self, name: str) -> float:
        """The metric's last value, NaN when the run has none."""
        return float(self.metrics.get(name, math.nan))


def _all_runs(client: MlflowClient, exp_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def trial_runs(client: MlflowClient, sweep: str) -> list[TrialRecord]:
    """Every trial of the sweep (any status), oldest first, each with its fold runs.

    Raises SweepLookupError if the sweep has no experiment in the store or no FINISHED trial.
    """
    store = client.tracking_uri
    exp = client.get_experiment_by_name(sweep)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments(max_results=100))
        raise SweepLookupError(f"no sweep {sweep!r} in the MLflow store {store} (experiments: {', '.join(names)})")
    runs = _all_runs(client, exp.experiment_id)
    children: dict[str, list[FoldRun]] = {}
    for r in runs:
        parent = r.data.tags.get(PARENT_TAG)
        if parent:
            fold = r.data.tags.get("fold") or r.info.run_name.rsplit("-", 1)[-1]
            children.setdefault(parent, []).append(FoldRun(fold, r.info.run_id, r.info.status, dict(r.data.metrics),
                                                           dict(r.data.tags), r.info.start_time))  # fmt: skip
    records = [
        TrialRecord(r.info.run_id, r.info.run_name, sweep, exp.experiment_id, r.data.params.get("model.fusion", "?"),
                    r.info.status, dict(r.data.metrics), dict(r.data.params), dict(r.data.tags), r.info.start_time,
                    r.info.end_time, tuple(sorted(children.get(r.info.run_id, []), key=lambda f: f.fold)), store)
        for r in runs if PARENT_TAG not in r.data.tags and "farm.kind" not in r.data.tags  # a trial, not a summary
    ]  # fmt: skip
    records.sort(key=lambda t: t.start_time)
    if not any(t.status == "FINISHED" for t in records):
        counts = {s: sum(t.status == s for t in records) for s in sorted({t.status for t in records})}
        held = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
        raise SweepLookupError(f"sweep {sweep!r} in the MLflow store {store} has no FINISHED trial (trials: {held})")
    return records


def sweep_protocol(client: MlflowClient, sweep: str) -> str:
    """The sweep's protocol as `farm sweep` tagged its experiment: joint (also for sweeps older than the tag) or nested."""
    exp = client.get_experiment_by_name(sweep)
    return (exp.tags.get("protocol") if exp else "") or "joint"


def outer_unit(record: TrialRecord) -> tuple[int, str]:
    """(partition, outer fold) of a nested sweep's trial: the search it belongs to (tags `partition`, `outer_fold`)."""
    return int(record.tags.get("partition") or 0), record.tags.get("outer_fold", "")


def nested_selection(records: list[TrialRecord], metric: str = OBJECTIVE, fusion: str | None = None) -> TrialRecord:
    """A nested sweep's selection as one record: per (partition, outer fold) search, its FINISHED trial best by
    `metric` (only trials of `fusion` when given; with the sweep's objective and no fusion: the trial the search
    tagged selected=true), with that trial's fold runs of the outer fold (`TrialRecord.picks`).

    Raises SweepLookupError naming the outer folds whose search did not finish (no trial tagged selected=true), or
    those with no finished trial of `fusion`."""
    sweep, store = (records[0].sweep, records[0].store) if records else ("?", "?")
    units: dict[tuple[int, str], list[TrialRecord]] = {}
    for t in records:
        units.setdefault(outer_unit(t), []).append(t)
    parts, folds = sorted({r for r, _ in units}), sorted({f for _, f in units})
    name = {u: (f"r{u[0]}/{u[1]}" if len(parts) > 1 else u[1]) for u in product(parts, folds)}
    done = {u for u, ts in units.items() if any(t.tags.get("selected") == "true" for t in ts)}
    missing = [name[u] for u in product(parts, folds) if u not in done]
    if missing:
        raise SweepLookupError(f"nested sweep {sweep!r} in {store}: outer fold{'s' * (len(missing) > 1)} "
                               f"{', '.join(missing)} did not finish (no trial of its search is tagged selected=true);"
                               f" finish it: farm sweep --resume --name {sweep}")  # fmt: skip
    picks, lacking = {}, []
    for u in product(parts, folds):
        pool = [t for t in units[u] if t.status == "FINISHED" and math.isfinite(t.metric(metric))
                and (fusion is None or t.fusion == fusion)]  # fmt: skip
        if pool:
            picks[name[u]] = max(pool, key=lambda t: (t.metric(metric), -t.start_time))
        else:
            lacking.append(name[u])
    if lacking:
        raise SweepLookupError(f"nested sweep {sweep!r}: outer fold{'s' * (len(lacking) > 1)} {', '.join(lacking)} "
                               f"{'have' if len(lacking) > 1 else 'has'} no FINISHED trial"
                               f"{f' of fusion {fusion!r}' if fusion else ''} with a finite {metric}")  # fmt: skip
    return _selection_record(picks)


def _selection_record(picks: dict[str, TrialRecord]) -> TrialRecord:
    """The picks as one record: their fold runs of their own outer fold; params and tags they share; cv/ metrics
    averaged over outer folds (cv/num_folds: outer folds per partition)."""
    recs = list(picks.values())
    units = {name: outer_unit(t) for name, t in picks.items()}
    folds = tuple(f for name, t in picks.items() for f in t.folds if (f.partition, f.fold) == units[name])

    def shared(dicts: list[dict[str, str]]) -> dict[str, str]:
        return {k: v for k, v in dicts[0].items() if all(d.get(k) == v for d in dicts[1:])}

    metrics = {k: float(np.mean([t.metrics[k] for t in recs])) for k in recs[0].metrics
               if k.startswith("cv/") and not k.endswith("_std") and all(k in t.metrics for t in recs)}  # fmt: skip
    metrics["cv/num_folds"] = float(len({f for _, f in units.values()}))
    tags = {k: v for k, v in shared([t.tags for t in recs]).items()
            if k not in ("selected", "best", "outer_fold", "partition", "checkpoint", "trial") and not k.startswith("mlflow.")}  # fmt: skip
    tags["protocol"] = "nested"
    tags["split_hashes"] = ",".join(t.tags["split_hashes"] for t in recs if t.tags.get("split_hashes"))
    first = recs[0]
    return TrialRecord(",".join(t.run_id for t in recs), ", ".join(f"{n}:{t.trial}" for n, t in picks.items()),
                       first.sweep, first.experiment_id, "+".join(dict.fromkeys(t.fusion for t in recs)), "FINISHED",
                       metrics, shared([t.params for t in recs]), tags, min(t.start_time for t in recs),
                       max((t.end_time or 0 for t in recs), default=None), folds, first.store,
                       tuple(picks.items()))  # fmt: skip


def best_trial(records: list[TrialRecord], metric: str = OBJECTIVE, fusion: str | None = None) -> TrialRecord:
    """The FINISHED trial with the highest finite `metric` (optionally of one fusion spec); ties: earliest start."""
    pool = [t for t in records if t.status == "FINISHED" and math.isfinite(t.metric(metric))]
    if fusion is not None:
        pool = [t for t in pool if t.fusion == fusion]
    if not pool:
        where = f"sweep {records[0].sweep!r} in {records[0].store}" if records else "no trials"
        raise SweepLookupError(f"no FINISHED trial with a finite {metric}{f' and fusion {fusion!r}' if fusion else ''}"
                               f" ({where}, {len(records)} trials)")  # fmt: skip
    return max(pool, key=lambda t: (t.metric(metric), -t.start_time))


def best_per_fusion(records: list[TrialRecord], metric: str = OBJECTIVE) -> dict[str, TrialRecord]:
    """fusion spec -> its best FINISHED trial by `metric`, for every fusion with one (first-seen order)."""
    fusions = dict.fromkeys(t.fusion for t in records if t.status == "FINISHED" and math.isfinite(t.metric(metric)))
    return {f: best_trial(records, metric, f) for f in fusions}


def record_for_run(client: MlflowClient, run_id: str) -> TrialRecord:
    """The trial whose parent run is `run_id` (a fold run's id is refused with its trial's id)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise SweepLookupError(f"no run {run_id!r} in the MLflow store {client.tracking_uri}") from None
    parent = run.data.tags.get(PARENT_TAG)
    if parent:
        raise SweepLookupError(f"run {run_id} is the fold run {run.info.run_name}; pass its trial's run id {parent}")
    sweep = client.get_experiment(run.info.experiment_id).name
    for rec in trial_runs(client, sweep):
        if rec.run_id == run_id:
            return rec
    raise SweepLookupError(f"run {run_id} is not a trial of sweep {sweep!r}")  # pragma: no cover


def describe_dataset(path: str, run_hash: str = "") -> str:
    """One line from `<path>/dataset.json`, or 'not available' when the dataset is not on this machine."""
    from farm.data.store import DatasetError, read_meta

    if not path:
        return "not available (the run records no data.path)"
    try:
        meta = read_meta(path)
    except (DatasetError, OSError) as e:
        return f"not available ({path} cannot be read here: {str(e).split(':')[0]})"
    mods = ", ".join(f"{m.name} {m.channels}x{m.height}x{m.width}" for m in meta.modalities)
    source = json.dumps(meta.source, sort_keys=True, default=str)
    source = source if len(source) <= 300 else source[:297] + "..."
    text = (f"{meta.name} at {path}: {len(meta.subjects)} subjects, {meta.num_frames} frames, {meta.codec} images "
            f"({mods}); AUs {', '.join(meta.aus)}; source {source}; data hash {meta.data_hash}")  # fmt: skip
    if run_hash and meta.data_hash != run_hash:
        text += f". WARNING: the run used data hash {run_hash}: the dataset at this path has changed since"
    return text


def _fold_runs(record: TrialRecord) -> list[FoldRun]:
    """One run per (partition, fold): the latest FINISHED one holding test metrics."""
    chosen: dict[tuple[int, str], FoldRun] = {}
    for f in sorted(record.folds, key=lambda f: f.start_time):
        if f.status == "FINISHED" and "test/f1_mean" in f.metrics:
            chosen[(f.partition, f.fold)] = f
    return [chosen[k] for k in sorted(chosen)]


def test_subjects_seen(runs: list[FoldRun]) -> tuple[int, int] | None:
    """(test subjects that were a validation subject of another fold, test subjects) over the fold runs' split tags
    (each (partition, fold) once); None when a run has no split tags. A joint trial's objective averages every fold's
    validation F1, so those test subjects took part in choosing the trial."""
    units: dict[tuple[int, str], tuple[set[str], set[str]]] = {}
    for f in runs:
        if "split.val" not in f.tags or "split.test" not in f.tags:
            return None
        units[(f.partition, f.fold)] = (set(f.tags["split.val"].split()), set(f.tags["split.test"].split()))
    test = set().union(*(t for _, t in units.values()))
    seen = {s for u, (_, t) in units.items() for s in t if any(s in v for w, (v, _) in units.items() if w != u)}
    return len(seen), len(test)


def method_result(record: TrialRecord, metric: str = OBJECTIVE) -> MethodResult:
    """The trial as farm.evaluate.report's MethodResult: per-fold per-AU test F1 from its fold runs, and its lineage."""
    where = f"trial {record.trial} (run {record.run_id}) of sweep {record.sweep!r} in {record.store}"
    folds = _fold_runs(record)
    if not folds:
        raise SweepLookupError(f"{where} is {record.status} but has no finished fold run with test metrics")
    expected = record.metric("cv/num_folds")  # folds per partition, or over all partitions
    counts = {part: sum(f.partition == part for f in folds) for part in sorted({f.partition for f in folds})}
    if math.isfinite(expected) and len(folds) != int(expected) and set(counts.values()) != {int(expected)}:
        per = ", ".join(f"{n} in partition {part}" for part, n in counts.items())
        raise SweepLookupError(f"{where}: {len(folds)} finished fold runs{f' ({per})' if len(counts) > 1 else ''}, "
                               f"the trial logged cv/num_folds = {int(expected)}")  # fmt: skip
    aus = tuple(a for a in record.params.get("data.aus", "").split(",") if a)
    if not aus:  # older runs without the param: the AUs the folds logged
        aus = tuple(dict.fromkeys(k[len("test/f1_") :] for f in folds for k in f.metrics
                                  if k.startswith("test/f1_") and k != "test/f1_mean"))  # fmt: skip
    runs = prediction_runs(record)
    by_part = {r: seed_mean_f1([f for f in runs if f.partition == r], aus) for r in sorted({f.partition for f in runs})}
    split_tag = record.tags.get("split_hashes", "")
    splits = dict(s.split(":", 1) for s in split_tag.split(",") if ":" in s) if split_tag else {}
    splits = splits or {f.fold: f.tags["split_hash"] for f in folds if f.tags.get("split_hash")}
    data_hash = record.tags.get("data_hash") or next((f.tags["data_hash"] for f in folds if "data_hash" in f.tags), "")
    mods = tuple(m for m in record.params.get("data.modalities", "").split(",") if m)
    if record.fusion.startswith("single:"):
        mods = (record.fusion.split(":", 1)[1],)
    elif not mods:
        mods = _dataset_modalities(record.params.get("data.path", ""))
    return MethodResult(
        fusion=record.fusion, trial=record.trial, run_id=record.run_id, fold_f1=by_part[min(by_part)],
        partition_f1=by_part if len(by_part) > 1 else {}, test_seen=test_subjects_seen(runs), data_hash=data_hash,
        selected=tuple(f"{n}: trial {t.trial} (run {t.run_id})" for n, t in record.picks),
        split_hashes=splits, partitions_hash=record.tags.get("partitions_hash", ""),
        data_description=describe_dataset(record.params.get("data.path", ""), data_hash),
        objective=record.metric(metric), objective_metric=metric, sweep=record.sweep, modalities=mods, aus=aus,
        logged_test_f1_mean=record.metric("cv/test_f1_mean"), git_sha=record.tags.get("git_sha", ""),
        val_f1_clean=record.metric(OBJECTIVE), val_robustness=val_robustness(record),
        protocol=record.tags.get("protocol") or "joint", seeds=trial_seeds(record),
    )  # fmt: skip


def seed_mean_f1(runs: list[FoldRun], aus: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """{fold: {AU: test F1}} from fold runs, a fold's seed runs averaged (one run per fold: its values as logged)."""
    by_fold: dict[str, list[FoldRun]] = {}
    for f in runs:
        by_fold.setdefault(f.fold, []).append(f)
    out = {}
    for fold, seeds in by_fold.items():
        out[fold] = {}
        for a in aus:
            values = [f.metrics[f"test/f1_{a}"] for f in seeds if f"test/f1_{a}" in f.metrics]
            if values:  # an AU without a known label in the fold is logged by no seed
                out[fold][a] = values[0] if len(values) == 1 else float(np.mean(values))
    return out


def trial_seeds(record: TrialRecord) -> int:
    """Training seeds per fold: the parent run's `seeds` param (or tag), a count ('3') or a list ('0,1,2'); 1 if absent."""
    raw = (record.params.get("seeds") or record.tags.get("seeds") or "").strip()
    try:
        return max(1, int(raw)) if raw else 1
    except ValueError:
        return max(1, len(raw.replace(",", " ").strip("[]() ").split()))


def prediction_runs(record: TrialRecord) -> list[FoldRun]:
    """The fold runs whose test predictions a report compares: per (partition, fold, `seed` tag), the latest
    FINISHED one holding test metrics (without seed and partition tags: one per fold, the runs of the report's
    table)."""
    chosen: dict[tuple[int, str, str], FoldRun] = {}
    for f in sorted(record.folds, key=lambda f: f.start_time):
        if f.status == "FINISHED" and "test/f1_mean" in f.metrics:
            chosen[(f.partition, f.fold, f.tags.get("seed", ""))] = f
    return [chosen[k] for k in sorted(chosen)]


def fold_predictions(client: MlflowClient, record: TrialRecord, folds: Iterable[FoldRun] | None = None) -> Predictions:
    """The per-frame test predictions (predictions/test_predictions.parquet) of the trial's fold runs `folds`
    (default: every fold run of the trial, what `farm promote` compares), as one Predictions. A run with a `seed`
    (or `partition`) tag whose file has no such column gets that value on its rows (files without either: 0).

    Raises PredictionsUnavailable when a run's file cannot be downloaded, ValueError when one cannot be read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mlflow.exceptions import MlflowException

    from farm.checkpoints import PREDICTIONS_DIR, PREDICTIONS_FILE, Predictions

    folds = list(record.folds if folds is None else folds)
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, f in enumerate(folds):
            try:
                paths.append(client.download_artifacts(f.run_id, f"{PREDICTIONS_DIR}/{PREDICTIONS_FILE}",
                                                       f"{d}/{i}-{f.fold}"))  # fmt: skip
            except (MlflowException, OSError) as e:
                raise PredictionsUnavailable(f"fold {f.fold} of trial {record.trial} (run {f.run_id}) has no test "
                                             f"predictions ({PREDICTIONS_DIR}/{PREDICTIONS_FILE}): {e}") from None  # fmt: skip
        if not any(k in f.tags for f in folds for k in ("seed", "partition")):
            return Predictions.read(paths)
        parts = []
        for f, path in zip(folds, paths):
            part = Predictions.read([path])
            names = pq.read_schema(path).names
            for key in ("seed", "partition"):  # the run's tag where the file has no column
                if key in f.tags and key not in names:
                    try:
                        setattr(part, key, np.full(len(part.subject), int(f.tags[key]), dtype=np.int64))
                    except ValueError:
                        raise ValueError(f"fold run {f.run_id} of trial {record.trial}: {key} tag {f.tags[key]!r} "
                                         "is not an integer") from None  # fmt: skip
            parts.append(part.to_table())
        try:
            return Predictions.from_table(pa.concat_tables(parts, promote_options="default"), ", ".join(map(str, paths)))
        except pa.ArrowException as e:
            raise ValueError(f"the test predictions of trial {record.trial} do not share one schema ({e})") from None


def trial_predictions(client: MlflowClient, record: TrialRecord) -> tuple[Predictions | None, str]:
    """(the test predictions of `prediction_runs`, '') or (None, why not): never raises, so an artifact store
    that is not reachable from here, a fold without the file or a damaged file leaves the rest of a report."""
    runs = prediction_runs(record)
    if not runs:
        return None, "no finished fold run with test metrics"
    try:
        return fold_predictions(client, record, runs), ""
    except PredictionsUnavailable as e:
        return None, first_line(e)
    except Exception as e:  # noqa: BLE001 - e.g. S3 without credentials here: the comparison says so
        return None, f"{type(e).__name__}: {first_line(e)}"


def val_robustness(record: TrialRecord) -> dict[str, float]:
    """{metric suffix: fold-mean validation F1} from the trial's cv/val_f1_missing_* and cv/val_f1_noise_* metrics.

    cv/val_f1_missing_worst (the minimum of the others) is left out; an older trial has none: {}.
    """
    out = {}
    for k, v in record.metrics.items():
        suffix = k[len(VAL_ROBUSTNESS_PREFIX) :] if k.startswith(VAL_ROBUSTNESS_PREFIX) else ""
        if suffix.startswith(("missing_", "noise_")) and suffix != "missing_worst" and math.isfinite(v):
            out[suffix] = float(v)
    return out


@dataclass(frozen=True)
class RobustnessStudy:
    """A `farm robustness` study of a trial's fold models on their test subjects, as robustness.csv holds it."""

    rows: tuple[dict, ...] = ()
    source: str = ""
    """Where it was read from: the model version(s) and the run."""
    run_id: str = ""
    note: str = ""
    """Why none is given although one may exist (an artifact that could not be read)."""


def _promotion_runs(client: MlflowClient, record: TrialRecord) -> list[Any]:
    """Runs of the `promote-*` experiments whose trial_run_id tag is the trial's run, newest first."""
    exp_ids, token = [], None
    while True:
        page = client.search_experiments(filter_string=f"name LIKE '{PROMOTE_PREFIX}%'", max_results=1000,
                                         page_token=token)  # fmt: skip
        exp_ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            break
    if not exp_ids:
        return []
    runs = client.search_runs(exp_ids, filter_string=f"tags.trial_run_id = '{record.run_id}'",
                              order_by=["attributes.start_time DESC"], max_results=1000)  # fmt: skip
    return [r for r in runs if r.data.tags.get("farm.kind", "promotion") == "promotion"]


def _versions_of_run(client: MlflowClient, run_id: str) -> str:
    """'models:/NAME/VERSION, ...' registered from the run; '' when none (or the store has no registry)."""
    try:
        versions = client.search_model_versions(f"run_id = '{run_id}'")
    except Exception:  # noqa: BLE001 - the label is optional; the run id is given anyway
        return ""
    return ", ".join(f"models:/{v.name}/{v.version}" for v in sorted(versions, key=lambda v: (v.name, int(v.version))))


def first_line(e: BaseException) -> str:
    """The message's first line ('' when empty)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def trial_test_study(client: MlflowClient, record: TrialRecord) -> RobustnessStudy:
    """The trial's test-subject robustness study, if one was logged: on a promotion run of the trial (the
    newest with a study), else on the trial's own run. None found: RobustnessStudy() (with a note if one could
    not be read). Never raises for a missing or unreadable study (an artifact store that is not reachable from
    here, a damaged file): the report shows "no study" and the note says why."""
    notes = []
    try:
        promotions = _promotion_runs(client, record)
    except Exception as e:  # noqa: BLE001 - a report without the test column, not no report
        promotions = []
        notes.append(f"promotion runs could not be searched: {type(e).__name__}: {first_line(e)}")
    own = [] if record.picks else [(record.run_id, False)]  # a nested selection has no run of its own
    for run_id, is_promotion in [(r.info.run_id, True) for r in promotions] + own:
        folder = ROBUSTNESS_CSV.rsplit("/", 1)[0]
        try:
            if ROBUSTNESS_CSV not in {a.path for a in client.list_artifacts(run_id, folder)}:
                continue
            from farm.evaluate.robustness import read_csv

            with tempfile.TemporaryDirectory() as d:
                rows = tuple(read_csv(client.download_artifacts(run_id, ROBUSTNESS_CSV, d)))
        except Exception as e:  # noqa: BLE001 - e.g. S3 without credentials here; the next run may have one
            notes.append(f"{ROBUSTNESS_CSV} of run {run_id} could not be read: {type(e).__name__}: {first_line(e)}")
            continue
        if is_promotion:
            versions = _versions_of_run(client, run_id)
            source = f"{versions + ', ' if versions else ''}promotion run {run_id}, {ROBUSTNESS_CSV}"
        else:
            source = f"the trial's own run {run_id} (farm robustness --run), {ROBUSTNESS_CSV}"
        return RobustnessStudy(rows, source, run_id, "; ".join(notes))
    return RobustnessStudy(note="; ".join(notes))


def _dataset_modalities(path: str) -> tuple[str, ...]:
    """data.modalities empty = every modality of the dataset, known only where the dataset is."""
    from farm.data.store import DatasetError, read_meta

    try:
        return read_meta(path).modality_names if path else ()
    except (DatasetError, OSError):
        return ()


def open_store(tracking_uri: str) -> MlflowClient:
    """A client on an existing store (a sqlite path that does not exist is an error, not a new empty store)."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///") :]).exists():
        raise SweepLookupError(f"no MLflow store at {tracking_uri[len('sqlite:///') :]} ({tracking_uri})")
    return MlflowClient(tracking_uri)
