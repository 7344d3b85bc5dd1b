"""MLflow for the farm: one experiment per sweep, a parent run per trial, a child run per fold.

Runs are found again by name (derived from the Tune trial id), so a resumed trial reuses its runs
instead of duplicating them. Workers in other processes log through `MlflowClient` with explicit
run ids (`nested=True` only works within one process). The sqlite store is created once, by the
driver, before any worker starts (concurrent first-time creation corrupts it).
"""

from __future__ import annotations

import functools
import math
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
NAME_TAG = "mlflow.runName"


def default_tracking_uri(root: str | Path = ".") -> str:
    return f"sqlite:///{(Path(root) / 'mlflow.db').resolve()}"


def artifact_root_for(tracking_uri: str) -> str | None:
    """Artifacts beside a sqlite store (`mlartifacts/` next to `mlflow.db`); None = the server decides."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None


def ensure_store(tracking_uri: str) -> MlflowClient:
    """Create or upgrade the store now, in this one process."""
    client = MlflowClient(tracking_uri)
    client.search_experiments(max_results=1)
    return client


def experiment_id(client: MlflowClient, name: str, tracking_uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = artifact_root_for(tracking_uri)
    return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)


def find_run(client: MlflowClient, exp_id: str, run_name: str) -> str | None:
    runs = client.search_runs([exp_id], filter_string=f"tags.`{NAME_TAG}` = '{run_name}'", max_results=2)
    return runs[0].info.run_id if runs else None


INTERRUPTED_TAG = "interrupted"
"""Tag of a trial run cut off mid-way (Ctrl-C, a crash) and left RUNNING for `farm sweep --resume`; removed when
the run is reopened."""


def get_or_create_run(
    client: MlflowClient,
    exp_id: str,
    run_name: str,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """The run named `run_name` in the experiment (reopened if it exists), else a new one."""
    run_id = find_run(client, exp_id, run_name)
    tags = {k: str(v) for k, v in (tags or {}).items()}  # a REST store wants strings (sqlite converts them itself)
    if run_id is None:
        all_tags = {**tags, **({PARENT_TAG: parent_run_id} if parent_run_id else {})}
        run_id = client.create_run(exp_id, run_name=run_name, tags=all_tags).info.run_id
    else:
        client.update_run(run_id, status="RUNNING")
        if INTERRUPTED_TAG in client.get_run(run_id).data.tags:  # resumed: no longer cut off
            client.delete_tag(run_id, INTERRUPTED_TAG)
        if tags:
            client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return run_id


@functools.cache
def provenance_tags() -> dict[str, str]:
    """git SHA of the farm's checkout and the versions of the packages that shape results."""
    tags = {}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5).stdout.strip()  # fmt: skip
        tags["git_sha"] = sha or "unknown"
    except (OSError, subprocess.SubprocessError):
        tags["git_sha"] = "unknown"
    for pkg in ("amf-farm", "torch", "torchvision", "numpy", "ray", "optuna", "mlflow"):
        try:
            tags[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return tags


class RunTracker:
    """The engine's Tracker protocol on one MLflow run (batched calls; no per-batch logging)."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log_params(self, params: dict[str, Any]) -> None:
        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, _param_value(v)) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if _finite(v)]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i : i + 500])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def _param_value(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    return str(v)


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
