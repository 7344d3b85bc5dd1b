"""`farm sweep`: Ray Tune + Optuna (TPE) + ASHA over configurations; each trial's folds on Ray Train.

Layout of a sweep named NAME under `--storage` (default `runs/sweeps`):

    NAME/               Tune's experiment (trials, searcher state): what `--resume` restores
    NAME/train/<trial>/ the trial's Ray Train run: per-round checkpoints holding every fold's files
    NAME/optuna.db      Optuna's study (the TPE history), kept across resumes
    NAME/sweep.json     the sweep's options, so `--resume --name NAME` needs nothing else

MLflow: one experiment per sweep, a parent run per trial, a child run per fold (farm/tracking).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from farm.config import flatten
from farm.sweep.space import SearchSpace, load_space, objectives

OBJECTIVE = "cv/val_f1_mean"
TRIAL_CPU = 0.05


@dataclass(frozen=True)
class SweepOptions:
    space: str = "smoke"
    data: str = ""
    """Prepared dataset; empty = data/synthetic, generated if missing."""
    fusion: str = ""
    trials: int = 0
    """0 = the space file's sweep.trials."""
    max_concurrent: int = 0
    address: str = ""
    """Ray cluster to join ('auto' or HOST:PORT); empty = start a local Ray."""
    tracking_uri: str = ""
    """MLflow tracking URI; empty = sqlite:///./mlflow.db (artifacts in ./mlartifacts)."""
    name: str = ""
    storage: str = "runs/sweeps"
    resume: bool = False
    seed: int = 0
    cpus_per_fold: float = 0.0
    """0 = share the node's CPUs among the concurrent folds (GPUs: one per fold when present)."""
    max_failures: int = 2
    """Ray Train retries of a trial's fold group (each restarts from the last epoch checkpoint)."""
    tracking_relay: str = "auto"
    """auto | on | off: workers log through a Ray actor on the driver's node (farm/tracking/relay.py);
    auto = when the cluster has other nodes and the store is sqlite or a loopback server."""


class SweepError(ValueError):
    """The sweep cannot start (bad options, missing data, nothing to resume)."""


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def resolve_options(opts: SweepOptions) -> SweepOptions:
    """Fill the defaults (name, data, tracking URI) and, on --resume, restore the saved options."""
    root = Path(opts.storage).resolve()
    if opts.resume:
        if not opts.name:
            raise SweepError("--resume needs --name NAME (the sweep to continue)")
        saved = root / opts.name / "sweep.json"
        if not saved.exists():
            raise SweepError(f"nothing to resume: {saved} not found")
        stored = SweepOptions(**json.loads(saved.read_text()))
        return replace(stored, resume=True, address=opts.address or stored.address)
    name = opts.name or f"{Path(opts.space).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (root / name / "sweep.json").exists():
        raise SweepError(
            f"sweep {name} exists in {root}: continue it with --resume --name {name}, or pick another --name"
        )
    data = opts.data or "data/synthetic"
    uri = opts.tracking_uri or f"sqlite:///{Path('mlflow.db').resolve()}"
    return replace(opts, name=name, data=str(Path(data).resolve()), tracking_uri=uri, storage=str(root))


def prepare_data(opts: SweepOptions) -> None:
    from farm.data.store import META_FILE

    if (Path(opts.data) / META_FILE).exists():
        return
    if Path(opts.data).name != "synthetic" or (Path(opts.data).exists() and any(Path(opts.data).iterdir())):
        raise SweepError(f"{opts.data} is not a prepared dataset (farm data synth / farm data prepare; a missing "
                         "directory named 'synthetic' is generated with the default settings)")  # fmt: skip
    from farm.data.synth import SynthSpec, generate

    _log(f"generating the synthetic dataset in {opts.data}")
    generate(SynthSpec(), opts.data, progress=sys.stderr.isatty())


def check_plan(space: SearchSpace, opts: SweepOptions) -> tuple[dict[str, Any], list[str]]:
    """The trials' fixed flat config and their folds, checked against the dataset before Ray starts."""
    from farm.data.folds import resolve_partitions
    from farm.data.store import FrameStore

    overrides = {"data.path": opts.data, **({"model.fusion": opts.fusion} if opts.fusion else {})}
    base = space.base_config(overrides)
    store = FrameStore(opts.data)
    parts, _ = resolve_partitions(store.meta, set(store.subjects), base.data.fold_file)
    folds = [str(f) for f in space.sweep.get("folds", list(parts.parts))]
    unknown = [f for f in folds if f not in parts.parts]
    if unknown:
        raise SweepError(f"{space.path}: sweep.folds {unknown} not among the partitions {list(parts.parts)}")
    from farm.models import fusion_modalities

    fusions = next((p.choices for p in space.params if p.key == "model.fusion"), None) or [base.model.fusion]
    from farm.evaluate.cv import objective_metrics
    from farm.sweep.space import SpaceError, check_objectives, objectives

    wanted = objectives(space.sweep, space.path)
    for fusion in fusions:  # e.g. temt on three modalities: refused now, not in a worker an hour later
        try:
            mods = fusion_modalities(str(fusion), base.data.modalities, store.meta.modality_names)
        except (KeyError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) else str(e)
            raise SweepError(f"{space.path}: model.fusion {fusion}: {msg}") from None
        available = objective_metrics(mods, base.train.val_robustness, base.train.val_noise_sigmas)
        try:  # e.g. cv/val_f1_missing_thermal on visual + depth data, or robustness switched off
            check_objectives(wanted, available, space.path + (f" (model.fusion {fusion})" if len(fusions) > 1 else ""))
        except SpaceError as e:
            raise SweepError(str(e)) from None
    return flatten(base), folds


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


def make_trainable(base_flat: dict[str, Any], folds: list[str], opts: SweepOptions, exp_id: str, resources: dict,
                   relay: bool = False, objectives: tuple[str, ...] = (OBJECTIVE,)):  # fmt: skip
    """The Tune function trainable: one Ray Train run whose workers are the folds.

    A DataParallelTrainer with no backend: the folds never communicate, so no torch.distributed process
    group is formed (no TCPStore listening on every address, no NCCL group between folds that may
    share a GPU)."""

    def run_trial(config: dict[str, Any]) -> None:
        from ray import tune
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        from farm.config import unflatten
        from farm.sweep.worker import RESULT_FILE, FoldMeanCallback, failure_reason, fold_worker, trial_flat
        from farm.tracking.mlflow import RunTracker, get_or_create_run, provenance_tags
        from farm.tracking.relay import tracking_client

        trial = tune.get_context().get_trial_id()
        flat = trial_flat(flatten(unflatten(config, unflatten(base_flat))))
        tags = {"sweep": opts.name, "space": opts.space, **provenance_tags()}
        tracking = {"uri": opts.tracking_uri, "relay": relay, "experiment_id": exp_id, "trial": trial, "tags": tags}
        client = tracking_client(tracking)
        parent = get_or_create_run(client, exp_id, trial, tags={"trial": trial, **tags})
        tracking["parent_run_id"] = parent
        RunTracker(client, parent).log_params(flat)
        final_epoch = int(flat["train.epochs"]) + 1
        trainer = DataParallelTrainer(
            fold_worker,
            train_loop_config={"flat": flat, "folds": folds, "threads": resources["threads"], "tracking": tracking},
            scaling_config=ScalingConfig(num_workers=len(folds), use_gpu=resources["gpu"],
                                         resources_per_worker=resources["per_fold"]),
            run_config=RunConfig(name=trial, storage_path=str(Path(opts.storage) / opts.name / "train"),
                                 callbacks=[FoldMeanCallback(flat["data.aus"], final_epoch, tracking, objectives)],
                                 failure_config=FailureConfig(max_failures=opts.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )  # fmt: skip
        result = trainer.fit()
        failures = []
        with result.checkpoint.as_directory() as d:
            for fold in folds:
                r = json.loads((Path(d) / fold / RESULT_FILE).read_text())
                if r.get("diverged"):
                    failures.append(failure_reason(r))
        if failures:  # the parent run is already marked FAILED with the reason
            raise RuntimeError(f"trial {trial} failed: {'; '.join(failures)}")

    return run_trial


def plan_resources(num_folds: int, max_concurrent: int, opts: SweepOptions) -> dict[str, Any]:
    import ray

    total = ray.cluster_resources()
    gpus = int(total.get("GPU", 0))
    cpus = float(total.get("CPU", 1))
    if gpus:
        per_cpu = opts.cpus_per_fold or max(1.0, math.floor(cpus / max(1, gpus)))
        return {"gpu": True, "per_fold": {"CPU": per_cpu, "GPU": 1}, "threads": int(per_cpu)}
    free = cpus - TRIAL_CPU * max_concurrent  # the trial functions mostly wait for their folds
    per_cpu = opts.cpus_per_fold or max(0.1, math.floor(100 * free / (num_folds * max_concurrent)) / 100)
    return {"gpu": False, "per_fold": {"CPU": per_cpu}, "threads": max(1, int(per_cpu))}


class Progress:
    """A Tune callback printing one line per event: trials done / running / stopped / failed, best so far."""

    def __new__(cls, total: int):
        from ray.tune import Callback

        class _Progress(Callback):
            def __init__(self) -> None:
                self.total, self.best, self.best_trial = total, -1.0, ""
                self.done: set[str] = set()
                self.failed: set[str] = set()
                self.last_epoch: dict[str, int] = {}

            def _status(self, trials) -> str:
                running = sum(t.status == "RUNNING" for t in trials)
                stopped = sum(t.status == "TERMINATED" and t.trial_id not in self.done for t in trials)
                best = f"best {self.best:.3f} ({self.best_trial})" if self.best >= 0 else "no result yet"
                return (f"{len(self.done)}/{self.total} done, {running} running, {stopped} stopped early, "
                        f"{len(self.failed)} failed; {best}")  # fmt: skip

            def on_trial_result(self, iteration, trials, trial, result, **info):
                v = result.get(OBJECTIVE, float("nan"))
                if result.get("final") and result.get("failed"):
                    return  # a fold diverged: the trial errors next, and on_trial_error says why
                if result.get("final"):
                    self.done.add(trial.trial_id)
                    if math.isfinite(v) and v > self.best:
                        self.best, self.best_trial = v, trial.trial_id
                    _log(f"trial {trial.trial_id} finished: fold-mean val F1 {v:.3f}, test F1 "
                         f"{result.get('cv/test_f1_mean', float('nan')):.3f} ± {result.get('cv/test_f1_std', float('nan')):.3f}"
                         f" | {self._status(trials)}")  # fmt: skip
                elif self.last_epoch.get(trial.trial_id) != result.get("epoch"):
                    self.last_epoch[trial.trial_id] = result.get("epoch")
                    _log(f"trial {trial.trial_id} epoch {result.get('epoch')}: fold-mean val F1 {v:.3f} "
                         f"({result.get('folds_running', '?')} folds training) | {self._status(trials)}")  # fmt: skip

            def on_trial_error(self, iteration, trials, trial, **info):
                self.failed.add(trial.trial_id)
                why = (trial.last_result or {}).get("failed")  # a divergence: its folds' messages
                _log(f"trial {trial.trial_id} FAILED{f': {why}' if why else ''} "
                     f"({trial.error_file or 'see its error file'}) | {self._status(trials)}")  # fmt: skip

        return _Progress()


def run_sweep(opts: SweepOptions) -> list[dict[str, Any]]:
    """Run (or resume) a sweep; returns the leaderboard rows, best first."""
    opts = resolve_options(opts)
    space = load_space(opts.space)
    prepare_data(opts)
    base_flat, folds = check_plan(space, opts)
    if space.sweep.get("sampler", "tpe") == "grid":
        from farm.sweep.space import grid_size

        trials = opts.trials or int(grid_size(space))
    else:
        trials = opts.trials or int(space.sweep.get("trials", 10))
    max_concurrent = opts.max_concurrent or int(space.sweep.get("max_concurrent", 1))
    sweep_dir = Path(opts.storage) / opts.name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if not opts.resume:
        (sweep_dir / "sweep.json").write_text(json.dumps(asdict(opts), indent=2))

    from farm.tracking.mlflow import ensure_store, experiment_id

    client = ensure_store(opts.tracking_uri)  # once, before any worker starts
    exp_id = experiment_id(client, opts.name, opts.tracking_uri)

    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not ray.is_initialized():
        from farm.sweep.cluster import join_cluster, start_local_ray

        if opts.address:
            join_cluster(opts.address)
        else:  # a new Ray of its own, on 127.0.0.1 only (tests keep its sockets and logs in FARM_RAY_TEMP_DIR)
            start_local_ray(os.environ.get("FARM_RAY_TEMP_DIR"), log=_log)
    resources = plan_resources(len(folds), max_concurrent, opts)
    from farm.tracking.relay import needs_relay, start_relay

    relay = needs_relay(opts.tracking_uri, opts.tracking_relay, sum(n["Alive"] for n in ray.nodes()))
    relay_actor = start_relay(opts.tracking_uri) if relay else None  # held: the relay lives as long as this handle
    if relay:
        _log("MLflow: workers log through the tracking relay on this node (the store is local to it)")
    _log(f"sweep {opts.name}: space {space.path}, {trials} trials x {len(folds)} folds ({', '.join(folds)}), "
         f"{max_concurrent} at a time, {resources['per_fold']} per fold; data {opts.data}")  # fmt: skip
    _log(f"MLflow: {opts.tracking_uri}, experiment {opts.name!r}")
    epochs = int(base_flat["train.epochs"])
    trainable = tune.with_resources(
        make_trainable(base_flat, folds, opts, exp_id, resources, relay, tuple(objectives(space.sweep, space.path))),
        {"CPU": TRIAL_CPU},
    )
    storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / 'optuna.db'}")
    grid = space.sweep.get("sampler", "tpe") == "grid"
    sampler = (optuna.samplers.GridSampler({p.key: list(p.choices) for p in space.params}, seed=opts.seed) if grid
               else optuna.samplers.TPESampler(seed=opts.seed))  # TPE handles one objective or several  # fmt: skip
    objs = objectives(space.sweep, space.path)
    client.set_experiment_tag(exp_id, "objective", ",".join(objs))  # farm promote picks by the first one
    searcher = ConcurrencyLimiter(  # always a list: Optuna sees only each trial's final values (no pruning)
        OptunaSearch(DefineByRun(space), metric=objs, mode=["max"] * len(objs), study_name=opts.name,
                     storage=storage, sampler=sampler),
        max_concurrent=max_concurrent,
    )  # fmt: skip
    # ASHA stops trials per epoch on the first objective, and only if that one is measured every epoch;
    # an ablation grid reports every cell: no early stopping of trials
    asha = not grid and objs[0] == OBJECTIVE
    scheduler = ASHAScheduler(
        time_attr="epoch", metric=objs[0], mode="max", max_t=epochs + 2,
        grace_period=min(epochs, int(space.sweep.get("grace_period", 1))),
        reduction_factor=int(space.sweep.get("reduction_factor", 3))) if asha else None  # fmt: skip
    if len(objs) > 1 or objs[0] != OBJECTIVE:
        stopping = (f"ASHA stops trials on {objs[0]} only" if asha else "no ASHA (grid)" if grid
                    else f"no ASHA: {objs[0]} is measured once per trial, after training")  # fmt: skip
        front = "; Pareto front at the end" if len(objs) > 1 else ""
        _log(f"objective{'s' * (len(objs) > 1)}: {', '.join(objs)} (maximised{front}); {stopping}")

    run_config = tune.RunConfig(name=opts.name, storage_path=opts.storage, verbose=0, callbacks=[Progress(trials)])
    if opts.resume and tune.Tuner.can_restore(str(sweep_dir)):
        _log(f"resuming sweep {opts.name} from {sweep_dir}")
        tuner = tune.Tuner.restore(str(sweep_dir), trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = tune.Tuner(trainable, run_config=run_config,
                           tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=trials))  # fmt: skip
    grid = tuner.fit()
    rows = leaderboard(grid, objs)
    close_stopped_runs(client, exp_id, rows)
    for r in rows:  # the front is visible in MLflow too (a tag the runs table can filter on)
        if r.get("pareto"):
            from farm.tracking.mlflow import find_run

            run = find_run(client, exp_id, r["trial"])
            if run:
                client.set_tag(run, "pareto_front", "true")
    print(format_leaderboard(rows, opts, folds, objs=objs))
    del relay_actor
    return rows


def leaderboard(grid, objs: tuple[str, ...] | list[str] = (OBJECTIVE,)) -> list[dict[str, Any]]:
    """One row per trial, finished first, best by the first objective first; `pareto` marks the front."""
    from farm.evaluate.cv import pareto_front

    rows = []
    for r in grid:
        m = r.metrics or {}
        trial = m.get("trial_id") or (Path(r.path).name if r.path else "?")
        failed = r.error or m.get("failed")
        reason = str(m.get("failed") or "")  # the folds' divergence messages (worker.FoldMeanCallback)
        if failed and not reason:  # another error: the last line of the trial's exception
            err = getattr(r.error, "cause", None) or r.error
            reason = ([s.strip() for s in str(err).splitlines() if s.strip()] or [type(err).__name__])[-1]
        row = {"trial": trial, "status": "failed" if failed else ("finished" if m.get("final") else "stopped"),
               "val": m.get(OBJECTIVE, float("nan")), "test": m.get("cv/test_f1_mean", float("nan")),
               "test_std": m.get("cv/test_f1_std", float("nan")), "epoch": m.get("epoch"), "folds": {},
               "config": dict(r.config or {}), "reason": reason, "pareto": False,
               "objectives": {k: float(m.get(k, float("nan"))) for k in objs}}  # fmt: skip
        if m.get("results"):
            row["folds"] = {f["fold"]: f["test"]["f1_mean"] for f in json.loads(m["results"])}
        rows.append(row)
    first = lambda r: r["objectives"][objs[0]] if math.isfinite(r["objectives"][objs[0]]) else -1  # noqa: E731
    rows.sort(key=lambda r: (r["status"] == "finished", first(r)), reverse=True)
    finished = [r for r in rows if r["status"] == "finished"]
    if len(objs) > 1:
        for i in pareto_front([[r["objectives"][k] for k in objs] for r in finished]):
            finished[i]["pareto"] = True
    return rows


def close_stopped_runs(client, exp_id: str, rows: list[dict[str, Any]]) -> None:
    """Trials stopped by ASHA leave RUNNING MLflow runs: mark them (and their folds) KILLED, with the reason.

    A failed trial whose runs are still RUNNING (an error other than a divergence, which the worker
    records itself: e.g. its fold group failed more than `max_failures` times) is marked FAILED,
    with the error as its `failure` tag.
    """
    from farm.tracking.mlflow import find_run

    for row in rows:
        if row["status"] not in ("stopped", "failed"):
            continue
        parent = find_run(client, exp_id, row["trial"])
        if parent is None:
            continue
        if row["status"] == "failed":
            if client.get_run(parent).info.status != "RUNNING":
                continue  # the worker marked it FAILED with the divergence
            for run in client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"):
                if run.info.status == "RUNNING":
                    client.set_terminated(run.info.run_id, "FAILED")
            client.set_tag(parent, "failure", row.get("reason") or "the trial failed (see its Tune error file)")
            client.set_terminated(parent, "FAILED")
            continue
        for run in client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"):
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
        client.set_tag(parent, "stopped", f"ASHA stopped the trial after epoch {row['epoch']}")
        client.set_terminated(parent, "KILLED")


def short_metric(name: str) -> str:
    """cv/val_f1_missing_worst -> missing_worst (a leaderboard column)."""
    return name.removeprefix("cv/val_f1_").removeprefix("cv/val_") or name


def format_leaderboard(rows: list[dict[str, Any]], opts: SweepOptions, folds: list[str], top: int = 5,
                       objs: tuple[str, ...] | list[str] = (OBJECTIVE,)) -> str:  # fmt: skip
    import re

    extra = [k for k in objs if k != OBJECTIVE]  # objectives other than the clean val F1 get a column each
    multi = len(objs) > 1
    front = [r for r in rows if r.get("pareto")]
    if multi:  # the front first, then the rest; within each, by the first objective
        top = max(top, len(front))
        rows = front + [r for r in rows if not r.get("pareto")]
    by = "fold-mean validation F1" if objs[0] == OBJECTIVE else objs[0]
    head = (f"\nsweep {opts.name}: " + (f"Pareto front on {', '.join(objs)} (*), then the other trials by {objs[0]}"
            if multi else f"top trials by {by} (the objective)") + "; test F1 is reported, never optimised")  # fmt: skip
    lines = [head, f"{'trial':14s} {'status':9s} {'val F1':>7s} " + "".join(f"{short_metric(k)[:13]:>14s}" for k in extra)
             + f" {'test F1 mean ± std':>19s}  " + " ".join(f"{f:>6s}" for f in folds)]  # fmt: skip
    for r in rows[:top]:
        per = " ".join(f"{100 * r['folds'][f]:6.1f}" if f in r["folds"] else f"{'-':>6s}" for f in folds)
        test = f"{100 * r['test']:6.1f} ± {100 * r['test_std']:4.1f}" if math.isfinite(r["test"]) else "-"
        val = f"{100 * r['val']:7.1f}" if math.isfinite(r["val"]) else f"{'-':>7s}"
        more = "".join(f"{100 * r['objectives'][k]:14.1f}" if math.isfinite(r["objectives"].get(k, math.nan))
                       else f"{'-':>14s}" for k in extra)  # fmt: skip
        mark = "*" if r.get("pareto") else " "
        lines.append(f"{r['trial'] + mark:14s} {r['status']:9s} {val} {more} {test:>19s}  {per}")
        if r["status"] == "failed":  # why, in short: the first failing fold (each fold's reason is in MLflow)
            first, *more = re.split(r"; (?=fold )", r.get("reason") or "see the trial's error file")
            short = first if len(first) <= 160 else first[:157] + "..."
            more_folds = f" (and {len(more)} more fold{'s' * (len(more) > 1)})" if more else ""
            lines.append(f"{'':14s} ^ {short}{more_folds}")
    store = opts.tracking_uri
    ui = (f"mlflow ui --backend-store-uri {store} --host 127.0.0.1 --port 5000" if store.startswith("sqlite")
          else f"open {store}")  # fmt: skip
    default_store = store == f"sqlite:///{Path('mlflow.db').resolve()}"
    promote = f"farm promote --sweep {opts.name}" + ("" if default_store else f" --tracking-uri {store}")
    if multi:
        lines.append(f"Pareto front: {len(front)} trial{'s' * (len(front) != 1)} ({', '.join(r['trial'] for r in front)});"
                     f" farm promote takes the front's best by {objs[0]}, or --metric one of {', '.join(objs)}")  # fmt: skip
    lines += [f"results: Tune/Train in {Path(opts.storage) / opts.name}, MLflow experiment {opts.name!r} in {store}",
              f"open them: {ui}", f"register the best: {promote}"]  # fmt: skip
    return "\n".join(lines)
