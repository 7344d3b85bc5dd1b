"""The MLflow side of `farm promote`, `farm predict` and `farm robustness` (a thin layer).

The decision (farm/evaluate/promotion.py), the model (farm/evaluate/inference.py) and the robustness study
(farm/evaluate/robustness.py) are plain Python; this module reads a sweep's runs, packages the chosen
trial's fold models as an MLflow pyfunc model, registers a version with its lineage, moves the
`champion` / `challenger` aliases, and attaches robustness results.

Every promotion is a run of the experiment `promote-<model name>`: its params are the trial's
configuration, its metrics the trial's CV metrics, its artifacts the model, the folds' test
predictions (`evaluation/test_predictions.parquet`, what the next challenger is compared on),
the decision and the robustness study. Nothing already logged is changed: promoting a trial that
is already a version of the model says so and stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from farm.checkpoints import PREDICTIONS_FILE, InputSpec, Predictions, load_checkpoint
from farm.evaluate.inference import FoldEnsemble
from farm.evaluate.promotion import decide
from farm.tracking.mlflow import RunTracker, experiment_id
from farm.tracking.pyfunc import MODEL_ARTIFACTS
from farm.tracking.story import log_table, run_link
from farm.tracking.sweeps import (
    PredictionsUnavailable,
    SweepLookupError,
    best_trial,
    nested_selection,
    open_store,
    prediction_runs,
    record_for_run,
    sweep_protocol,
    trial_runs,
)
from farm.tracking.sweeps import fold_predictions as read_fold_predictions

EVAL_DIR = "evaluation"
ROBUSTNESS_DIR = "robustness"
CHAMPION, CHALLENGER = "champion", "challenger"


class PromoteError(ValueError):
    """The promotion cannot proceed; the message says what is missing and where."""


# ---------------------------------------------------------------------------------------------
# the pyfunc model


def signature_for(spec: InputSpec):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(np.uint8), (-1, spec.height, spec.width, spec.channels[m]), name=m)
                     for m in spec.modalities])  # fmt: skip
    outputs = Schema([ColSpec("float", au) for au in spec.aus])
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("missing", "string", "")]))


def pip_requirements() -> list[str]:
    """Exact versions of what the model imports at load time (inferring them is slow and unreliable)."""
    reqs = []
    for dist in ("mlflow", "torch", "torchvision", "numpy", "pandas", "pyarrow", "PyYAML"):
        try:
            reqs.append(f"{dist}=={metadata.version(dist).split('+')[0]}")  # drop local tags such as +cu132
        except metadata.PackageNotFoundError:
            reqs.append(dist)
    return reqs


# ---------------------------------------------------------------------------------------------
# reading a trial's pieces


def model_folder(fold_run) -> str:
    """A fold run's folder in the trial's checkpoint, which names its model: P1, or P1-s0 with several seeds."""
    return fold_run.tags.get("checkpoint_folder") or fold_run.fold


def fold_models(record) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """{model name: (best.pt, its test subjects)} from the trial's last Ray Train checkpoint (the parent run's
    `checkpoint` tag). A model per fold, named by the fold (P1), or with `sweep.seeds` > 1 a model per fold and
    seed, named by its folder in the checkpoint (P1-s0: the fold run's `checkpoint_folder` tag). A nested
    selection (several trials) reads each fold run's own `checkpoint` tag (its best.pt)."""
    root = record.tags.get("checkpoint", "")
    runs = prediction_runs(record) or list(record.folds)  # per (partition, fold, seed): the latest finished run
    untagged = [f.fold for f in runs if not f.tags.get("checkpoint")]
    if not root and (untagged or not runs):
        raise PromoteError(f"trial {record.trial} (run {record.run_id}) has no checkpoint tag"
                           f"{f' (fold runs {untagged[0]}...)' if record.picks else ''}: did it finish?")  # fmt: skip
    out = {}
    for f in runs:
        folder = model_folder(f)
        path = Path(root) / folder / "best.pt" if root else Path(f.tags["checkpoint"])
        out[folder] = (path, tuple(f.tags.get("split.test", "").split()))
    absent = [str(p) for p, _ in out.values() if not p.is_file()]
    if absent:
        raise PromoteError(f"trial {record.trial}: fold checkpoints not found: {', '.join(absent)} (was the sweep's "
                           "storage moved or deleted? the checkpoint tag of the trial's run says where it was)")  # fmt: skip
    return out


def ensemble_for(record, device: str = "cpu") -> FoldEnsemble:
    """The trial's fold (and seed) models with their input spec and each one's test subjects."""
    models = fold_models(record)
    paths = {name: path for name, (path, _) in models.items()}
    first = load_checkpoint(next(iter(paths.values())))
    if "input" not in first:
        raise PromoteError(f"{next(iter(paths.values()))}: written by an older farm without its input description; "
                           "re-run the trial")  # fmt: skip
    spec = InputSpec.from_dict(first["input"])
    subjects = {name: test for name, (_, test) in models.items()}
    return FoldEnsemble.from_checkpoints(paths, spec, subjects, device)


def fold_predictions(client: MlflowClient, record) -> Predictions:
    """The folds' per-frame test predictions, as their runs logged them (every fold run of the trial)."""
    try:
        return read_fold_predictions(client, record)
    except PredictionsUnavailable as e:
        raise PromoteError(str(e)) from None


def version_by_alias(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_predictions(client: MlflowClient, version) -> Predictions:
    with tempfile.TemporaryDirectory() as d:
        try:
            path = client.download_artifacts(version.run_id, f"{EVAL_DIR}/{PREDICTIONS_FILE}", d)
        except (MlflowException, OSError) as e:
            raise PromoteError(f"version {version.version} of {version.name} (run {version.run_id}) has no "
                               f"{EVAL_DIR}/{PREDICTIONS_FILE} to compare against: {e}") from None  # fmt: skip
        return Predictions.read([path])


def resolve_version(client: MlflowClient, uri: str):
    """models:/NAME@ALIAS or models:/NAME/VERSION -> the ModelVersion."""
    if not uri.startswith("models:/"):
        raise PromoteError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    rest = uri[len("models:/") :]
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, version = rest.rpartition("/")
        return client.get_model_version(name, version)
    except MlflowException as e:
        raise PromoteError(f"{uri}: no such model version in {client.tracking_uri} ({e.message})") from None


# ---------------------------------------------------------------------------------------------
# promote


@dataclass(frozen=True)
class PromoteOptions:
    sweep: str
    tracking_uri: str
    metric: str = ""
    """Selection metric; empty = the sweep's first objective (its experiment's `objective` tag), else cv/val_f1_mean."""
    model_name: str = ""
    """Registered model name; empty = <fusion>-<dataset name>, e.g. amf-bp4d."""
    trial: str = ""
    """Promote this trial (run name) instead of the best by `metric`."""
    force: bool = False
    robustness: bool = True
    data: str = ""
    """Dataset for the robustness study; empty = the trial's data.path."""
    n_boot: int = 2000
    seed: int = 0
    stride: int = 1
    """Robustness on every stride-th test frame (1 = all)."""


def default_model_name(record) -> str:
    data = Path(record.params.get("data.path", "data")).name or "data"
    return f"{record.fusion.replace(':', '-').replace('+', '-')}-{data}"


def lineage_tags(record, sweep: str) -> dict[str, str]:
    tags = {"sweep": sweep, "trial": record.trial, "trial_run_id": record.run_id, "fusion": record.fusion,
            "fold_run_ids": ",".join(f"{f.fold}:{f.run_id}" for f in record.folds)}  # fmt: skip
    for k in ("data_hash", "split_hashes", "partitions_hash", "git_sha", "space", "protocol"):
        if k in record.tags:
            tags[k] = record.tags[k]
    if record.picks:  # a nested selection: the trial each outer fold's search selected
        tags["selected_trials"] = ",".join(f"{n}:{t.trial}" for n, t in record.picks)
        tags["selected_run_ids"] = ",".join(f"{n}:{t.run_id}" for n, t in record.picks)
    for k in ("cv/val_f1_mean", "cv/test_f1_mean", "cv/test_f1_std", "cv/test_f1_pooled"):
        if k in record.metrics:
            tags[k] = f"{record.metrics[k]:.4f}"
    return tags


def selection_metric(client, sweep: str, metric: str = "") -> str:
    """The metric `farm promote` picks the best trial by: `metric` when given, else the sweep's first objective
    (the experiment's `objective` tag that farm sweep writes: a multi-objective sweep is promoted on its first),
    else cv/val_f1_mean (a sweep from before objectives were recorded)."""
    if metric:
        return metric
    exp = client.get_experiment_by_name(sweep)
    return ((exp.tags.get("objective") if exp else "") or "cv/val_f1_mean").split(",")[0]


def promote(opts: PromoteOptions, log=print) -> dict[str, Any]:
    """Register the sweep's best trial as a new model version; move `champion` only if it beats the current one.

    A nested sweep registers its selection: the ensemble of each outer fold's selected trial's fold models (the
    best of that fold's search by the metric), compared with the champion on their pooled test predictions."""
    client = open_store(opts.tracking_uri)
    mlflow.set_tracking_uri(opts.tracking_uri)
    records = trial_runs(client, opts.sweep)
    opts = dataclasses.replace(opts, metric=selection_metric(client, opts.sweep, opts.metric))
    if opts.trial:
        chosen = [r for r in records if opts.trial in (r.trial, r.run_id)]
        if not chosen:
            raise PromoteError(
                f"sweep {opts.sweep} has no trial {opts.trial!r} (trials: {', '.join(r.trial for r in records)})"
            )
        record = chosen[0]
        if record.status != "FINISHED":
            raise PromoteError(
                f"trial {record.trial} is {record.status}, not FINISHED: only finished trials can be promoted"
            )
    elif sweep_protocol(client, opts.sweep) == "nested":
        try:
            record = nested_selection(records, opts.metric)
        except SweepLookupError as e:
            raise PromoteError(f"{e} (or --trial T registers that one trial's fold model)") from None
    else:
        record = best_trial(records, opts.metric)
    name = opts.model_name or default_model_name(record)
    what = f"the nested selection (per outer fold {record.trial})" if record.picks else f"trial {record.trial}"
    log(f"candidate: {what} of sweep {opts.sweep} ({record.fusion}), {opts.metric} "
        f"{record.metrics.get(opts.metric, float('nan')):.4f}{' (mean over outer folds)' if record.picks else ''}")  # fmt: skip

    done = client.search_model_versions(f"name = '{name}'")
    done = [v for v in done if v.tags.get("trial_run_id") == record.run_id]
    if done:
        v = done[0]
        if opts.force and CHAMPION not in v.aliases:
            client.set_registered_model_alias(name, CHAMPION, v.version)
            client.set_model_version_tag(  # a new key: the promotion's own tags are left as they were
                name,
                v.version,
                "forced_champion",
                f"made champion with --force at {time.strftime('%Y-%m-%d %H:%M:%S')}",
            )
            log(f"trial {record.trial} is already version {v.version} of {name}; --force made it champion")
            return {"name": name, "version": v.version, "alias": CHAMPION, "forced": True, "already": True}
        log(f"trial {record.trial} is already version {v.version} of {name}; nothing changed")
        return {"name": name, "version": v.version, "aliases": list(v.aliases), "already": True}

    candidate = fold_predictions(client, record)
    champion = version_by_alias(client, name, CHAMPION)
    decision = decide(candidate, version_predictions(client, champion) if champion else None, opts.n_boot,
                      seed=opts.seed)  # fmt: skip
    ensemble = ensemble_for(record)

    exp = experiment_id(client, f"promote-{name}", opts.tracking_uri)
    tags = lineage_tags(record, opts.sweep)
    run_name = f"{name}<-{record.trial}"
    with mlflow.start_run(experiment_id=exp, run_name=run_name, tags={**tags, "farm.kind": "promotion"}) as run:
        mlflow.log_params(record.params)
        mlflow.log_metrics({k: v for k, v in record.metrics.items() if k.startswith("cv/")})
        with tempfile.TemporaryDirectory() as d:
            import pyarrow.parquet as pq

            pq.write_table(candidate.to_table(), Path(d) / PREDICTIONS_FILE)
            (Path(d) / "decision.json").write_text(json.dumps(
                {**decision.to_dict(), "champion_version": champion.version if champion else None,
                 "forced": opts.force}, indent=2))  # fmt: skip
            mlflow.log_artifacts(d, EVAL_DIR)
        with tempfile.TemporaryDirectory() as d:
            ensemble.save(Path(d) / MODEL_ARTIFACTS, extra={"lineage": tags})
            example = example_input(ensemble, record)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).with_name("model_code.py")), artifacts={MODEL_ARTIFACTS: str(Path(d) / MODEL_ARTIFACTS)},
                code_paths=[str(Path(__file__).resolve().parents[1])], pip_requirements=pip_requirements(),
                signature=signature_for(ensemble.spec), input_example=example,
            )  # fmt: skip
        run_id = run.info.run_id
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered..."; the farm says more
        version = mlflow.register_model(info.model_uri, name, tags={**tags, "promotion_run_id": run_id})
    description = version_description(record, opts.sweep, len(ensemble.models), decision,
                                      champion.version if champion else None, exp, run_id)  # fmt: skip
    client.update_model_version(name, version.version, description=description)
    for k, v in {"decision": decision.reason, "decision.difference": decision.difference, "decision.ci_low": decision.ci_low,
                 "decision.ci_high": decision.ci_high, "forced": opts.force,
                 "compared_with": champion.version if champion else "none"}.items():  # fmt: skip
        client.set_model_version_tag(name, version.version, k, str(v))

    if decision.promote or opts.force:
        client.set_registered_model_alias(name, CHAMPION, version.version)
        alias = CHAMPION
        why = decision.reason if decision.promote else f"--force over the decision ({decision.reason})"
    else:
        client.set_registered_model_alias(name, CHALLENGER, version.version)
        alias = CHALLENGER
        why = decision.reason
    log(f"registered {name} version {version.version} as {alias}: {why}")
    if champion and alias == CHAMPION:
        log(f"previous champion: version {champion.version}")

    summary = {"name": name, "version": version.version, "alias": alias, "decision": decision.to_dict(),
               "forced": opts.force and not decision.promote, "run_id": run_id, "model_uri": f"models:/{name}/{version.version}"}  # fmt: skip
    if opts.robustness:
        data = opts.data or record.params.get("data.path", "")
        later = f"`farm robustness --model models:/{name}/{version.version} --data DIR`"
        if data and Path(data, "dataset.json").exists():
            try:
                rows = robustness_for_run(client, run_id, ensemble, data, title=f"{name} v{version.version}",
                                          stride=opts.stride, seed=opts.seed, log=log)  # fmt: skip
                tag_version_robustness(client, name, version.version, rows)
                client.update_model_version(name, version.version,
                                            description=description + "\n\n" + robustness_markdown(rows))  # fmt: skip
                log_table(client, run_id, f"{ROBUSTNESS_DIR}/robustness_table.json",
                          ["condition", "f1_mean", "f1_std", "delta"],
                          [[r["condition"], r["f1_mean"], r["f1_std"], r["delta"]] for r in rows])  # fmt: skip
                summary["robustness"] = rows
            except Exception as e:  # noqa: BLE001 - the version is registered; the study can be re-run alone
                log(f"robustness study failed ({type(e).__name__}: {e}); the version is registered; run {later}")
        else:
            log(f"robustness skipped: dataset {data or '(none)'} not found here; run {later}")
    return summary


def version_description(record, sweep: str, n_models: int, decision, champion: str | None, promotion_exp: str,
                        promotion_run: str) -> str:  # fmt: skip
    """The registered version's page (Markdown): what it is, the decision with its interval, and links to its
    lineage (the trial, its fold runs, the promotion run) and provenance."""
    folds = {(f.partition, f.fold) for f in record.folds}
    what = (f"{record.fusion} from trial {record.trial} of sweep {sweep}: an ensemble of its {n_models} fold models"
            f"{' (folds x seeds)' if n_models > len(folds) else ''} (probabilities averaged).")  # fmt: skip
    if record.picks:
        what = (f"{record.fusion}: the nested selection of sweep {sweep}, per outer fold the trial its own search "
                f"selected ({', '.join(f'{n} trial {t.trial}' for n, t in record.picks)}): an ensemble of their "
                f"{n_models} fold models (probabilities averaged). Each outer fold's model was selected without its "
                "test subjects; the decision below compares their pooled test predictions.")  # fmt: skip
    against = f"against version {champion}" if champion else "no champion to compare with"
    interval = (f" F1 difference {decision.difference:+.4f}, 95% paired subject-bootstrap interval "
                f"[{decision.ci_low:+.4f}, {decision.ci_high:+.4f}] over {decision.n_subjects} subjects"
                if math.isfinite(decision.difference) else "")  # fmt: skip
    runs = prediction_runs(record) or list(record.folds)
    fold_links = ", ".join(run_link(record.experiment_id, f.run_id, model_folder(f))
                           for f in runs)  # fmt: skip
    trials = ", ".join(run_link(record.experiment_id, t.run_id, f"trial {t.trial} ({n})") for n, t in record.picks) \
        or run_link(record.experiment_id, record.run_id, f"trial {record.trial}")  # fmt: skip
    metrics = ", ".join(f"{k} {record.metrics[k]:.4f}" for k in ("cv/val_f1_mean", "cv/test_f1_mean", "cv/test_f1_std")
                        if k in record.metrics)  # fmt: skip
    return "\n".join([
        what,
        "",
        f"**Decision** ({against}): {decision.reason}.{interval}",
        "",
        f"**Lineage**: {trials}; folds: {fold_links}; "
        f"{run_link(promotion_exp, promotion_run, 'promotion run')} (its `evaluation/` and `robustness/` artifacts).",
        f"**Provenance**: data hash {record.tags.get('data_hash', '?')}, git {record.tags.get('git_sha', '?')[:12]}, "
        f"space {record.tags.get('space', '?')}; {metrics} (F1 0-1).",
    ])  # fmt: skip


def robustness_markdown(rows: list[dict]) -> str:
    """The robustness study as a Markdown table for the version's page (test subjects of each fold)."""
    lines = ["**Robustness** (each fold's model on its test subjects; F1 0-1, mean ± std over folds; the curves: "
             "robustness/ of the promotion run):", "", "| condition | F1 | ± | change |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['condition']} | {r['f1_mean']:.3f} | {r['f1_std']:.3f} | {r['delta']:+.3f} |" for r in rows]
    return "\n".join(lines)


def example_input(ensemble: FoldEnsemble, record) -> dict[str, np.ndarray] | None:
    """One real frame of the training data as the model's input example (None if the data is not here)."""
    from farm.data.store import FrameStore

    path = record.params.get("data.path", "")
    try:
        store = FrameStore(path)
        return {m: store.image(0, m)[None] for m in ensemble.spec.modalities}
    except Exception:  # noqa: BLE001 - the example is optional; the signature still describes the input
        return None


# ---------------------------------------------------------------------------------------------
# robustness attached to a run


def robustness_for_run(
    client: MlflowClient, run_id: str, ensemble: FoldEnsemble, data: str, title: str, stride: int = 1, seed: int = 0,
    batch_size: int = 0, log=print,
) -> list[dict]:  # fmt: skip
    """Run the study (or reuse the one already logged to the run) and log table, CSV and plot to `robustness/`."""
    from farm.data.perturb import conditions
    from farm.data.store import FrameStore
    from farm.evaluate import robustness

    existing = [a.path for a in client.list_artifacts(run_id, ROBUSTNESS_DIR)]
    if f"{ROBUSTNESS_DIR}/robustness.csv" in existing:
        with tempfile.TemporaryDirectory() as d:
            rows = robustness.read_csv(client.download_artifacts(run_id, f"{ROBUSTNESS_DIR}/robustness.csv", d))
        log(f"run {run_id} already has a robustness study; it is kept:")
        log(robustness.to_markdown(rows, title))
        return rows
    store = FrameStore(data)
    conds = conditions(ensemble.spec.modalities)
    t0 = time.time()
    counts = robustness.evaluate(ensemble, store, conds, batch_size=batch_size, seed=seed, stride=stride,
                                 progress=lambda s: log(f"robustness: {s}"))  # fmt: skip
    rows = robustness.summarize(counts, conds)
    RunTracker(client, run_id).log_metrics({f"robustness/{metric_key(r)}/f1_mean": r["f1_mean"] for r in rows})
    with tempfile.TemporaryDirectory() as d:  # last: the table's presence marks a complete study
        robustness.write(rows, d, title)
        client.log_artifacts(run_id, d, ROBUSTNESS_DIR)
    log(robustness.to_markdown(rows, title) + f"({time.time() - t0:.0f} s; data {data})")
    return rows


def metric_key(row: dict) -> str:
    """'noise visual+depth sigma=0.5' -> 'noise_visual_depth_sigma0.5' (MLflow's allowed characters)."""
    parts = [row["kind"], *filter(None, row["modalities"].split("+"))]
    return "_".join(parts) + (f"_sigma{row['sigma']:g}" if row["kind"] == "noise" else "")


def tag_version_robustness(client: MlflowClient, name: str, version: str, rows: list[dict]) -> None:
    for r in rows:
        if r["kind"] != "noise" or r["sigma"] == 0.5:
            client.set_model_version_tag(name, version, f"robustness.{metric_key(r)}", f"{r['f1_mean']:.4f}")


def robustness(tracking_uri: str, model: str = "", run: str = "", data: str = "", stride: int = 1, seed: int = 0,
               log=print) -> list[dict]:  # fmt: skip
    """`farm robustness`: for a registered model version or a trial's run; results logged to that run."""
    client = open_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    if bool(model) == bool(run):
        raise PromoteError("give exactly one of --model models:/NAME@ALIAS and --run RUN_ID")
    if model:
        version = resolve_version(client, model)
        with tempfile.TemporaryDirectory() as d:
            path = mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}", dst_path=d)
            ensemble = FoldEnsemble.load(Path(path) / "artifacts" / MODEL_ARTIFACTS)
        params = client.get_run(version.run_id).data.params
        data = data or params.get("data.path", "")
        rows = robustness_for_run(client, version.run_id, ensemble, _need_data(data), f"{version.name} v{version.version}",
                                  stride, seed, log=log)  # fmt: skip
        tag_version_robustness(client, version.name, version.version, rows)
        return rows
    record = record_for_run(client, run)
    data = data or record.params.get("data.path", "")
    return robustness_for_run(client, record.run_id, ensemble_for(record), _need_data(data), f"trial {record.trial}",
                              stride, seed, log=log)  # fmt: skip


def _need_data(data: str) -> str:
    if not data or not Path(data, "dataset.json").exists():
        raise PromoteError(f"dataset {data or '(none)'} not found: pass --data DIR (a prepared dataset holding the "
                           "folds' test subjects)")  # fmt: skip
    return data
