"""What the MLflow UI shows of a sweep (issue 15): descriptions, tables, the dataset input, source tags.

The UI renders these without configuration:
- an experiment's or run's description is its `mlflow.note.content` tag (Markdown);
- a run's tables are JSON artifacts in pandas' "split" layout listed in its `mlflow.loggedArtifacts`
  tag (what `mlflow.log_table` writes; written here directly so that a resumed trial replaces its table
  instead of appending rows, and so that the calls go through the tracking relay as any other);
- a run's dataset inputs (`log_inputs`) fill the runs table's Datasets column and filter;
- `mlflow.source.*` and `mlflow.user` fill the Source and User columns.

F1 is on a 0-1 scale everywhere in MLflow (metrics, tables, plots); the terminal prints percent.
"""

from __future__ import annotations

import getpass
import json
import math
import tempfile
from pathlib import Path
from typing import Any

NOTE = "mlflow.note.content"
LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"
BEST_TAG = "best"

F1_CONVENTION = (
    "F1 on a 0-1 scale: per AU from the frames' confusion counts at threshold 0.5, then averaged over the AUs "
    "(the paper's statistic)."
)
TRIAL_METRICS = (
    ("cv/val_f1_mean", "the objective: mean over folds of each fold's best-epoch validation F1 (a fold's seeds "
     "averaged first)"),
    ("cv/val_f1_std", "sample std (ddof 1) over folds of that best-epoch validation F1"),
    ("cv/val_f1_epoch_mean", "per epoch (the step): mean over folds of that epoch's validation F1 (a fold that "
     "stopped early keeps its best value); its maximum is not cv/val_f1_mean, whose folds peak at different epochs"),
    ("cv/test_f1_mean", "mean over folds of each fold's test F1, its model taken at its best validation epoch: "
     "reported, never optimised"),
    ("cv/test_f1_std", "sample std (ddof 1) over folds of the fold test F1"),
    ("cv/test_f1_<AU>", "one AU's test F1, mean over folds (the table per_au_test_f1.json has each fold's)"),
    ("cv/test_f1_pooled", "F1 of each AU's confusion counts summed over folds (and seeds), averaged over AUs"),
    ("fold/<fold>/test_f1", "that fold's test F1 (with seeds: their mean)"),
    ("cv/val_f1_missing_<m>, cv/val_f1_noise_<m>_<sigma>", "mean over folds of the best-epoch model's validation "
     "F1 with modality m all zeros, or with Gaussian noise of std sigma"),
    ("cv/val_f1_missing_worst", "the lowest cv/val_f1_missing_*"),
    ("cv/num_folds", "folds in the mean"),
    ("cv/num_seeds, cv/<part>_f1_seed_std, fold/<fold>/<part>_f1_seed_std", "with sweep.seeds > 1: seeds per fold, "
     "and the sample std over a fold's seeds of its val or test F1 (cv/: its mean over folds)"),
    ("cv/num_partitions, cv/<part>_f1_partition_std", "with sweep.partitions > 1: subject partitions, each fold "
     "trained on each; every cv/ mean is over partitions of the fold means, cv/*_std the mean over partitions of "
     "the std over folds, *_partition_std the sample std over partitions of their fold means; folds are named "
     "r<partition>-<fold>"),
)  # fmt: skip
FOLD_METRICS = (
    ("val/f1_mean", "per epoch (the step): this epoch's validation F1"),
    ("val/f1_best", "per epoch: the best validation F1 so far; the fold keeps the model of its best epoch"),
    ("val/f1_<AU>, val/loss, train/loss", "per epoch"),
    ("test/f1_mean, test/f1_<AU>", "the best-epoch model on the fold's test subjects (once)"),
    ("val/f1_missing_<m>, val/f1_noise_<m>_<sigma>", "the best-epoch model on the validation subjects with a "
     "modality missing or noisy"),
    ("time/fold_s", "the fold's wall time: data, training, evaluation"),
)  # fmt: skip


def _metric_lines(defs: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"- `{name}`: {text}" for name, text in defs]


def experiment_description(sweep: str, space_path: str, space_description: str, command: str, data: str,
                           folds: list[str], protocol: str, seeds: int, objectives: tuple[str, ...]) -> str:  # fmt: skip
    """The experiment's Markdown description: what was searched, on what, how, and how to read the runs."""
    how = ("joint: every trial trains all folds; its objective is their mean" if protocol == "joint" else
           "nested: one search per outer fold (each trial trains only its outer fold); the estimate of the tuned "
           "pipeline is cv/test_f1_nested_mean in run nested-summary")  # fmt: skip
    return "\n".join([
        f"**Sweep {sweep}**: {space_description.strip() or '(the space file has no description)'}",
        "",
        f"- command: `{command}`",
        f"- space: `{space_path}`",
        f"- data: {data}",
        f"- folds: {', '.join(folds)} (subject-exclusive); seeds per fold: {seeds}",
        f"- protocol: {how}",
        f"- objective{'s' * (len(objectives) > 1)}: {', '.join(objectives)} (maximised, validation subjects only)",
        "",
        "Each trial is a parent run (filter `tags.best = 'true'` for the best); its folds are its child runs. "
        + F1_CONVENTION,
    ])  # fmt: skip


def trial_description(trial: str, sweep: str, fusion: str, folds: list[str], seeds: int,
                      searched: dict[str, Any]) -> str:  # fmt: skip
    """A trial (parent) run's Markdown description: its searched values and one line per cv/* metric."""
    values = ", ".join(f"`{k}` = {v}" for k, v in sorted(searched.items())) or "none (a fixed configuration)"
    return "\n".join([
        f"Trial {trial} of sweep {sweep}: {fusion} on folds {', '.join(folds)}"
        + (f", {seeds} seeds each" if seeds > 1 else "") + ".",
        "",
        f"Searched: {values}. The full configuration: artifact `config.yaml`; the searched keys: tag `searched`.",
        "",
        F1_CONVENTION,
        *_metric_lines(TRIAL_METRICS),
    ])  # fmt: skip


def fold_description(trial: str, fold: str, seed: int | None, partition: int | None = None) -> str:
    """A fold (child) run's Markdown description: one line per metric family."""
    unit = (f"subject partition {partition}, " if partition is not None else "") + f"fold {fold}" + (
        f", seed {seed}" if seed is not None else "")  # fmt: skip
    return "\n".join([
        f"Trial {trial}, {unit}: trained on the fold's training subjects, the epoch chosen on its validation "
        "subjects, tested on its test subjects (tags `split.*`). Checkpoint: tag `checkpoint` (its best.pt); "
        "confusion counts per AU: table `test_counts.json`.",
        "",
        F1_CONVENTION,
        *_metric_lines(FOLD_METRICS),
    ])  # fmt: skip


def log_table(client: Any, run_id: str, artifact_file: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A table the UI shows (pandas' "split" JSON, listed in `mlflow.loggedArtifacts`); logging it again replaces it.
    Non-finite numbers (an AU without positives has no F1) are written as null."""
    path = Path(artifact_file)
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / path.name
        clean = [[None if isinstance(v, float) and not math.isfinite(v) else v for v in row] for row in rows]
        local.write_text(json.dumps({"columns": columns, "data": clean}, allow_nan=False))  # NaN: not JSON, null
        client.log_artifact(run_id, str(local), str(path.parent) if str(path.parent) != "." else None)
    listed = json.loads(client.get_run(run_id).data.tags.get(LOGGED_ARTIFACTS, "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in listed:
        client.set_tag(run_id, LOGGED_ARTIFACTS, json.dumps([*listed, entry]))


def read_table(path: str | Path) -> dict[str, list[Any]]:
    """{column: values} of a table written by `log_table` (or mlflow.log_table)."""
    raw = json.loads(Path(path).read_text())
    return {c: [row[i] for row in raw["data"]] for i, c in enumerate(raw["columns"])}


def dataset_input(name: str, data_hash: str, path: str, context: str, profile: dict[str, Any] | None = None,
                  tags: dict[str, str] | None = None):  # fmt: skip
    """The prepared dataset as an MLflow dataset input: digest = its data hash, `context` e.g. "cross-validation"
    (trial) or "train" (fold), more input tags (e.g. the split's subjects) in `tags`."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    ds = Dataset(name=name, digest=(data_hash or "unknown")[:36], source_type="local",
                 source=json.dumps({"uri": str(Path(path).resolve()) if path else ""}),
                 profile=json.dumps(profile or {}))  # fmt: skip
    input_tags = [
        InputTag("mlflow.data.context", context),
        *(InputTag(k, str(v)[:500]) for k, v in (tags or {}).items()),
    ]
    return DatasetInput(ds, input_tags)


def log_dataset(client: Any, run_id: str, data_path: str, context: str, tags: dict[str, str] | None = None) -> None:
    """Log the dataset at `data_path` (its dataset.json) as the run's input; nothing if it cannot be read."""
    from farm.data.store import DatasetError, read_meta

    try:
        meta = read_meta(data_path)
    except (DatasetError, OSError, ValueError):
        return
    profile = {"frames": meta.num_frames, "subjects": len(meta.subjects), "modalities": list(meta.modality_names),
               "aus": list(meta.aus)}  # fmt: skip
    client.log_inputs(run_id, datasets=[dataset_input(meta.name or Path(data_path).name, meta.data_hash, data_path,
                                                      context, profile, tags)])  # fmt: skip


def source_tags(git_sha: str) -> dict[str, str]:
    """MLflow's own source and user tags, so the UI's Source and User columns are filled."""
    tags = {"mlflow.source.name": "farm", "mlflow.source.type": "LOCAL", "mlflow.user": _user()}
    if git_sha and git_sha != "unknown":
        tags["mlflow.source.git.commit"] = git_sha
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _without_best_line(note: str) -> str:
    return note.split("\n\n", 1)[-1] if note.startswith(("**Best", "**Selected")) else note


def mark_best(client: Any, parents: dict[str, str], best: str, line: str, tag: str = BEST_TAG) -> None:
    """Tag the best trial's run `<tag>=true` (and only it: an earlier best loses the tag and its line) and put
    `line` first in its description. `parents`: {trial: run id} of the sweep's (or an outer fold's) trials."""
    for trial, run_id in parents.items():
        tags = client.get_run(run_id).data.tags
        if trial != best and tags.get(tag) == "true":
            client.delete_tag(run_id, tag)
            client.set_tag(run_id, NOTE, _without_best_line(tags.get(NOTE, "")))
    note = _without_best_line(client.get_run(parents[best]).data.tags.get(NOTE, ""))
    client.set_tag(parents[best], tag, "true")
    client.set_tag(parents[best], NOTE, f"**{line}**\n\n{note}")


def run_link(experiment_id: str, run_id: str, label: str) -> str:
    """A Markdown link to a run in the MLflow UI (relative to the UI's root, as its own pages link)."""
    return f"[{label}](#/experiments/{experiment_id}/runs/{run_id})"
