"""A trial of a sweep: Optuna's define-by-run space from the YAML file, and the Tune function trainable that
runs the trial's folds (x seeds) as one Ray Train run (farm/sweep/worker.py), with the resources of each worker.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm.config import flatten
from farm.sweep.leaderboard import OBJECTIVE
from farm.sweep.options import SweepOptions
from farm.sweep.space import SearchSpace

TRIAL_CPU = 0.05
"""CPUs of a trial function: it only waits for its Ray Train run."""
HEAD_RESOURCE = "node:__internal_head__"
"""Ray's own resource of the head node (1.0 there, absent elsewhere)."""


def trial_resources(head_cpus: float, max_concurrent: int) -> dict[str, float]:
    """A trial function's resources: on the head node (Ray's `node:__internal_head__`, as Ray Train's own state
    actor asks), because Ray Train attaches a run's controller to the node of the function that calls `fit()`: on
    the head, a lost worker node costs a trial only its fold workers, which Ray Train restarts from the last round
    (`FailureConfig`); on the lost node, the controller would die with it and the trial fail. TRIAL_CPU of the
    head's CPUs when it has them for `max_concurrent` trials; a head with no CPUs for work (`num_cpus=0`) runs them
    on none (they only wait)."""
    return {HEAD_RESOURCE: 0.001, "CPU": TRIAL_CPU if head_cpus >= TRIAL_CPU * max_concurrent else 0.0}


def node_resources() -> list[dict[str, float]]:
    """The alive nodes' total resources (Ray's `ray.nodes()`)."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n["Alive"]]


class DefineByRun:
    """Optuna define-by-run search space from the YAML parameters (a class: the searcher state is pickled)."""

    def __init__(self, space: SearchSpace) -> None:
        self.params = space.params

    def __call__(self, trial) -> None:
        for p in self.params:
            if p.kind == "float":
                trial.suggest_float(p.key, p.low, p.high, log=p.log)
            elif p.kind == "int":
                trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
            else:
                trial.suggest_categorical(p.key, list(p.choices))


@dataclass(frozen=True)
class Search:
    """One Tune experiment of the sweep: the whole joint search, or one outer fold's search (nested)."""

    folds: tuple[str, ...]
    """The folds each trial trains: all of them (joint) or the outer fold (nested)."""
    study: str
    """Optuna study name: the sweep's (joint) or `<sweep>-<fold>` (nested)."""
    storage_path: str
    name: str
    """Tune's experiment lives in storage_path/name."""
    label: str = ""
    """Progress-line prefix (nested: 'outer fold P1: ')."""
    tags: tuple[tuple[str, str], ...] = ()
    """Extra parent-run tags (nested: outer_fold, and partition with several)."""
    partitions: tuple[int, ...] = (0,)
    """The subject partitions each trial trains (`data.partition`): all of the sweep's (joint) or the outer
    fold's one (nested)."""


def make_trainable(base_flat: dict[str, Any], search: Search, opts: SweepOptions, exp_id: str, resources: dict,
                   relay: bool = False, objectives: tuple[str, ...] = (OBJECTIVE,)):  # fmt: skip
    """The Tune function trainable: one Ray Train run whose workers are the trial's (fold, seed) units.

    A DataParallelTrainer with no backend: the units never communicate, so no torch.distributed process
    group is formed (no TCPStore listening on every address, no NCCL group between units that may
    share a GPU)."""
    folds = list(search.folds)

    def run_trial(config: dict[str, Any]) -> None:
        from ray import tune
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        from farm.config import unflatten
        from farm.sweep.worker import (
            RESULT_FILE,
            FoldMeanCallback,
            failure_reason,
            fold_worker,
            trial_flat,
            trial_units,
        )
        from farm.tracking.mlflow import RunTracker, get_or_create_run, provenance_tags
        from farm.tracking.relay import tracking_client

        trial = tune.get_context().get_trial_id()
        flat = trial_flat(flatten(unflatten(config, unflatten(base_flat))))
        units = trial_units(folds, opts.seeds, int(flat["train.seed"]), search.partitions, opts.partitions > 1)
        tags = {"sweep": opts.name, "space": opts.space, "protocol": opts.protocol, **provenance_tags()}
        tracking = {"uri": opts.tracking_uri, "relay": relay, "experiment_id": exp_id, "trial": trial, "tags": tags}
        client = tracking_client(tracking)
        parent = get_or_create_run(client, exp_id, trial, tags={"trial": trial, **tags, "seeds": opts.seeds,
                                                                "partitions": opts.partitions,
                                                                **dict(search.tags)})  # fmt: skip
        tracking["parent_run_id"] = parent
        describe_trial(client, parent, trial, flat, sorted(config), folds, opts)
        RunTracker(client, parent).log_params(
            {**{k: v for k, v in flat.items() if k not in PER_FOLD}, "seeds": opts.seeds, "partitions": opts.partitions}
        )
        final_epoch = int(flat["train.epochs"]) + 1
        trainer = DataParallelTrainer(
            fold_worker,
            train_loop_config={"flat": flat, "units": units, "seeds": opts.seeds, "threads": resources["threads"],
                               "tracking": tracking},
            scaling_config=ScalingConfig(num_workers=len(units), use_gpu=resources["gpu"],
                                         resources_per_worker=resources["per_fold"]),
            run_config=RunConfig(name=trial, storage_path=str(Path(opts.storage) / opts.name / "train"),
                                 callbacks=[FoldMeanCallback(flat["data.aus"], final_epoch, tracking, objectives)],
                                 failure_config=FailureConfig(max_failures=opts.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )  # fmt: skip
        result = trainer.fit()
        failures = []
        with result.checkpoint.as_directory() as d:
            for unit in units:
                r = json.loads((Path(d) / unit["name"] / RESULT_FILE).read_text())
                if r.get("diverged"):
                    failures.append(failure_reason(r))
        if failures:  # the parent run is already marked FAILED with the reason
            raise RuntimeError(f"trial {trial} failed: {'; '.join(failures)}")

    return run_trial


PER_FOLD = ("data.fold", "data.partition")
"""Config keys that belong to a fold run, not to the trial that spans folds (its parent run)."""


def describe_trial(client, run_id: str, trial: str, flat: dict[str, Any], searched: list[str], folds: list[str],
                   opts: SweepOptions) -> None:  # fmt: skip
    """What the MLflow UI shows of a trial besides its metrics: its description (the searched values, one line per
    cv/* metric), tags `searched` and MLflow's source/user tags, the resolved config as `config.yaml`, and the
    dataset as its input."""
    import tempfile

    import yaml

    from farm.config import to_dict, unflatten
    from farm.tracking.mlflow import provenance_tags
    from farm.tracking.story import NOTE, log_dataset, source_tags, trial_description

    note = trial_description(trial, opts.name, str(flat["model.fusion"]), folds, opts.seeds,
                             {k: flat[k] for k in searched})  # fmt: skip
    run = client.get_run(run_id)
    if not run.data.tags.get(NOTE, "").endswith(note):  # a resumed best trial keeps its first line
        client.set_tag(run_id, NOTE, note)
    tags = {"searched": ",".join(searched), "folds": ",".join(folds), **source_tags(provenance_tags()["git_sha"])}
    for k, v in tags.items():
        client.set_tag(run_id, k, v)
    config = to_dict(unflatten(flat))
    for key in PER_FOLD:  # a fold run's, not the trial's
        section, _, name = key.partition(".")
        del config[section][name]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_text(f"# trial {trial} of sweep {opts.name}: the resolved configuration (data.fold: per fold run)\n"
                        + yaml.safe_dump(config, sort_keys=True))  # fmt: skip
        client.log_artifact(run_id, str(path))
    if not run.inputs.dataset_inputs:
        log_dataset(client, run_id, str(flat["data.path"]), "cross-validation", {"folds": ",".join(folds)})


def plan_resources(num_workers: int, max_concurrent: int, opts: SweepOptions, total: dict[str, float] | None = None,
                   nodes: list[dict[str, float]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Resources of one Ray Train worker (a fold and seed of a trial) from the cluster's (`total` and the alive
    `nodes`' own, default Ray's; `total` alone: one node), and of a trial function (`trial`, `trial_resources`).

    GPUs: `opts.gpus_per_fold` when given (e.g. 1/3: three workers share a GPU; no process group is formed
    between them, farm/sweep/trial.py make_trainable), else one per worker when a trial's workers fit on the
    cluster's GPUs (more concurrent trials than fit wait), else the fractional share that lets one trial run
    (folds x seeds workers sharing the GPUs); and the node's CPUs per GPU in use, shared likewise. No GPU: the CPUs divided among the workers of `max_concurrent` trials."""
    if total is None:
        import ray

        total, nodes = ray.cluster_resources(), node_resources()
    nodes = nodes if nodes is not None else [{**total, HEAD_RESOURCE: 1.0}]
    gpus = int(total.get("GPU", 0))
    cpus = float(total.get("CPU", 1))
    head_cpus = sum(n.get("CPU", 0.0) for n in nodes if n.get(HEAD_RESOURCE))
    trial = trial_resources(head_cpus, max_concurrent)
    if opts.gpus_per_fold and not gpus:  # asked for GPUs: hours on CPUs would be a silent surprise
        from farm.sweep.options import SweepError

        have = ", ".join(f"{k} {v:g}" for k, v in sorted(total.items()) if k in ("CPU", "GPU", "memory") or
                         k.startswith("accelerator_type")) or "nothing"  # fmt: skip
        raise SweepError(f"--gpus-per-fold {opts.gpus_per_fold} (or sweep.gpus_per_fold) asks for GPUs, but the Ray "
                         f"cluster has none ({have}); drop it to train on CPUs, or join a cluster with GPUs "
                         "(--address)")  # fmt: skip
    if gpus:
        from farm.sweep.space import gpu_share

        share = 1.0 if num_workers <= gpus else math.floor(100 * gpus / num_workers) / 100
        if opts.gpus_per_fold:  # asked for: e.g. 1/3, a whole trial of 3 folds on one GPU
            share = gpu_share(opts.gpus_per_fold)
        # a fold lands on one node: the CPUs per GPU of the poorest GPU node (less the trial functions' on a head)
        per_gpu = min((n.get("CPU", 0.0) - (trial["CPU"] * max_concurrent if n.get(HEAD_RESOURCE) else 0.0))
                      / n["GPU"] for n in nodes if n.get("GPU", 0) > 0)  # fmt: skip
        per = per_gpu * share
        per_cpu = opts.cpus_per_fold or (float(math.floor(per)) if per >= 1 else max(0.01, math.floor(100 * per) / 100))
        return {"gpu": True, "per_fold": {"CPU": per_cpu, "GPU": share}, "threads": max(1, int(per_cpu)),
                "trial": trial}  # fmt: skip
    free = cpus - trial["CPU"] * max_concurrent  # the trial functions mostly wait for their folds
    per_cpu = opts.cpus_per_fold or max(0.1, math.floor(100 * free / (num_workers * max_concurrent)) / 100)
    return {"gpu": False, "per_fold": {"CPU": per_cpu}, "threads": max(1, int(per_cpu)), "trial": trial}
