"""`farm sweep`: Ray Tune + Optuna (TPE) + ASHA over configurations; each trial's folds on Ray Train.

Two protocols (`sweep.protocol`, `--protocol`):
- joint (the default): one search; a trial trains every fold, its objective is the fold mean of the
  validation F1;
- nested: one independent search per outer fold, one after the other; a trial trains only its outer
  fold, its objective is that fold's validation F1; the outer estimate is the mean over folds of the
  test F1 of the configuration each fold's search selected. `trials` is per outer fold, so both
  protocols train the same number of folds.
With `sweep.seeds` / `--seeds` N, a trial trains each of its folds N times (train.seed + 0..N-1).

Layout of a sweep named NAME under `--storage` (default `runs/sweeps`):

    NAME/               joint: Tune's experiment (trials, searcher state): what `--resume` restores
    NAME/nested/<fold>/ nested: outer fold <fold>'s Tune experiment; <fold>.done.json once it finished
    NAME/train/<trial>/ the trial's Ray Train run: per-round checkpoints holding every fold's (and seed's) files
    NAME/optuna.db      Optuna's studies (the TPE history; nested: one per outer fold, NAME-<fold>), kept across resumes
    NAME/sweep.json     the sweep's options, so `--resume --name NAME` needs nothing else

MLflow: one experiment per sweep, a parent run per trial, a child run per fold and seed (farm/tracking);
nested: a summary run `nested-summary` with the outer estimate.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from farm.config import flatten
from farm.sweep.leaderboard import OBJECTIVE
from farm.sweep.leaderboard import log as _log
from farm.sweep.options import SweepError, SweepOptions
from farm.sweep.space import PROTOCOLS, SearchSpace, load_space, objectives
from farm.sweep.trial import DefineByRun, Search, make_trainable, plan_resources

__all__ = ["SweepError", "SweepOptions", "check_plan", "plan_resources", "resolve_options", "run_sweep"]


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
        check_resume_options(opts, stored)
        return replace(stored, resume=True, address=opts.address or stored.address)
    if opts.seeds < 0:
        raise SweepError(f"--seeds must be >= 1 (0 = the space file's sweep.seeds), got {opts.seeds}")
    if opts.partitions < 0:
        raise SweepError(f"--partitions must be >= 1 (0 = the space file's sweep.partitions), got {opts.partitions}")
    if opts.protocol and opts.protocol not in PROTOCOLS:
        raise SweepError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {opts.protocol!r}")
    opts = replace(opts, space=opts.space or "smoke")
    name = opts.name or f"{Path(opts.space).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (root / name / "sweep.json").exists():
        raise SweepError(
            f"sweep {name} exists in {root}: continue it with --resume --name {name}, or pick another --name"
        )
    data = opts.data or "data/synthetic"
    uri = opts.tracking_uri or f"sqlite:///{Path('mlflow.db').resolve()}"
    return replace(opts, name=name, data=str(Path(data).resolve()), tracking_uri=uri, storage=str(root))


RESUMABLE = ("resume", "name", "storage", "address")
"""Options a --resume may give: which sweep, where it lives, which cluster runs it. Every other option was fixed
when the sweep started (sweep.json); Tune restores the sweep with those, whatever the command line says."""


def check_resume_options(given: SweepOptions, stored: SweepOptions) -> None:
    """A --resume that names a sweep-defining option (space, data, seeds, ...) other than the sweep's own is
    refused, naming the sweep's value: silently resuming with the old one would run what the user did not ask."""
    default = SweepOptions()
    for key in SweepOptions.__dataclass_fields__:
        new, kept = getattr(given, key), getattr(stored, key)
        if key in RESUMABLE or new == getattr(default, key) or new == kept:
            continue
        if key == "data" and Path(new).resolve() == Path(kept).resolve():
            continue
        if key == "space":
            from farm.sweep.space import SpaceError, resolve_space_path

            try:
                if resolve_space_path(new).resolve() == resolve_space_path(kept).resolve():
                    continue
            except SpaceError:
                pass
        flag = "--" + key.replace("_", "-")
        raise SweepError(f"sweep {given.name} runs with {flag} {kept}; --resume cannot change it to {new} (give no "
                         f"{flag} to continue it, or start a new sweep with another --name)")  # fmt: skip


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
    from farm.models import check_modality_options, fusion_modalities

    fusions = next((p.choices for p in space.params if p.key == "model.fusion"), None) or [base.model.fusion]
    from farm.evaluate.cv import objective_metrics
    from farm.sweep.space import SpaceError, check_objectives, objectives

    wanted = objectives(space.sweep, space.path)
    for fusion in fusions:  # e.g. temt on three modalities: refused now, not in a worker an hour later
        try:
            mods = fusion_modalities(str(fusion), base.data.modalities, store.meta.modality_names)
            check_modality_options(replace(base, model=replace(base.model, fusion=str(fusion))), mods,
                                   store.meta.modality_names)  # fmt: skip
        except (KeyError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) else str(e)
            raise SweepError(f"{space.path}: model.fusion {fusion}: {msg}") from None
        available = objective_metrics(mods, base.train.val_robustness, base.train.val_noise_sigmas)
        try:  # e.g. cv/val_f1_missing_thermal on visual + depth data, or robustness switched off
            check_objectives(wanted, available, space.path + (f" (model.fusion {fusion})" if len(fusions) > 1 else ""))
        except SpaceError as e:
            raise SweepError(str(e)) from None
    return flatten(base), folds


def describe_experiment(client, exp_id: str, space: SearchSpace, opts: SweepOptions, folds: list[str],
                        objs: tuple[str, ...]) -> None:  # fmt: skip
    """The experiment's description (what the MLflow UI shows first) and its space, dataset and data-hash tags."""
    import shlex

    from farm.data.store import DatasetError, read_meta
    from farm.tracking.story import NOTE, experiment_description
    from farm.tracking.sweeps import describe_dataset

    try:
        meta = read_meta(opts.data)
        data_tags = {"dataset": meta.name, "data_hash": meta.data_hash}
    except (DatasetError, OSError, ValueError):
        data_tags = {}
    command = " ".join(shlex.quote(a) for a in ["farm", *sys.argv[1:]]) if sys.argv[0].endswith("farm") else (
        f"farm sweep --space {opts.space} --data {opts.data}")  # fmt: skip
    text = experiment_description(opts.name, str(space.path), space.description, command,
                                  describe_dataset(opts.data), folds, opts.protocol, opts.seeds, objs)  # fmt: skip
    kind = {"mlflow.experimentKind": "custom_model_development"}  # the UI opens on the runs table, not GenAI traces
    for k, v in {NOTE: text, "space": opts.space, **data_tags, **kind}.items():
        client.set_experiment_tag(exp_id, k, v)


def resume_hint(opts: SweepOptions, rows: list[dict[str, Any]], trials: int, label: str = "") -> str | None:
    """What to do when Tune returned before every trial ended (Ctrl-C: Tune's own message is in ray.log), or
    None: a trial ended if it finished, failed or was stopped by ASHA; one cut off mid-way is `interrupted`."""
    ended = sum(r["status"] != "interrupted" for r in rows)
    if ended >= trials:
        return None
    cut = sum(r["status"] == "interrupted" for r in rows)
    return (f"{label}{ended} of {trials} trials ended{f' ({cut} interrupted mid-way)' if cut else ''}; continue "
            f"with: farm sweep --resume --name {opts.name}"
            + (f" --storage {opts.storage}" if opts.storage != "runs/sweeps" else ""))  # fmt: skip


def ui_address(tracking_uri: str, exp_id: str, protocol: str = "joint") -> str:
    """The line that says where the sweep's MLflow view opens (after `mlflow ui`, or on the tracking server)."""
    root = "http://127.0.0.1:5000" if tracking_uri.startswith("sqlite") else tracking_uri.rstrip("/")
    best = "tags.selected = 'true'" if protocol == "nested" else "tags.best = 'true'"
    return (f"in the browser: {root}/#/experiments/{exp_id}/runs?workflowType=machine_learning (trials with their "
            f"folds nested; the best: filter {best})")  # fmt: skip


def sweep_size(space: SearchSpace, opts: SweepOptions) -> tuple[int, int]:
    """(trials per search, trials at a time): the command line, else the space file's sweep section."""
    if space.sweep.get("sampler", "tpe") == "grid":
        from farm.sweep.space import grid_size

        trials = opts.trials or int(grid_size(space))
    else:
        trials = opts.trials or int(space.sweep.get("trials", 10))
    return trials, opts.max_concurrent or int(space.sweep.get("max_concurrent", 1))


def run_sweep(opts: SweepOptions) -> list[dict[str, Any]]:
    """Run (or resume) a sweep; returns the leaderboard rows, best first (nested: every outer fold's rows)."""
    opts = resolve_options(opts)
    space = load_space(opts.space)
    opts = replace(opts, seeds=opts.seeds or int(space.sweep.get("seeds", 1)),
                   partitions=opts.partitions or int(space.sweep.get("partitions", 1)),
                   protocol=opts.protocol or str(space.sweep.get("protocol", "joint")),
                   gpus_per_fold=opts.gpus_per_fold or str(space.sweep.get("gpus_per_fold", "")))  # fmt: skip
    if opts.gpus_per_fold:
        from farm.sweep.space import gpu_share

        try:
            gpu_share(opts.gpus_per_fold)
        except ValueError as e:
            raise SweepError(f"--gpus-per-fold: {e}") from None
    prepare_data(opts)
    base_flat, folds = check_plan(space, opts)
    trials, max_concurrent = sweep_size(space, opts)
    sweep_dir = Path(opts.storage) / opts.name
    sweep_dir.mkdir(parents=True, exist_ok=True)

    from farm.tracking.mlflow import ensure_store, experiment_id

    client = ensure_store(opts.tracking_uri)  # once, before any worker starts
    exp_id = experiment_id(client, opts.name, opts.tracking_uri)
    objs = tuple(objectives(space.sweep, space.path))
    client.set_experiment_tag(exp_id, "objective", ",".join(objs))  # farm promote picks by the first one
    client.set_experiment_tag(exp_id, "protocol", opts.protocol)
    client.set_experiment_tag(exp_id, "seeds", str(opts.seeds))
    client.set_experiment_tag(exp_id, "partitions", str(opts.partitions))
    describe_experiment(client, exp_id, space, opts, folds, objs)

    import ray

    from farm.sweep.cluster import RAY_LOG, log_ray_to_file

    _log(f"Ray's own log (start-up, Tune, Train, trial errors): {log_ray_to_file(sweep_dir / RAY_LOG)}")
    if not ray.is_initialized():
        from farm.sweep.cluster import join_cluster, start_local_ray

        if opts.address:
            join_cluster(opts.address)
        else:  # a new Ray of its own, on 127.0.0.1 only (tests keep its sockets and logs in FARM_RAY_TEMP_DIR)
            start_local_ray(os.environ.get("FARM_RAY_TEMP_DIR"), log=_log)
    from farm.sweep.cluster import forward_termination

    forward_termination()  # SIGTERM / SIGHUP: as Ctrl-C, not Ray's crash dump
    per_trial = 1 if opts.protocol == "nested" else len(folds) * opts.partitions
    if opts.gpus_per_fold and opts.address:  # an autoscaling cluster may have no GPU node up yet: ask for one
        from farm.sweep.cluster import await_gpus
        from farm.sweep.space import gpu_share

        await_gpus(gpu_share(opts.gpus_per_fold), per_trial * opts.seeds, log=_log)
    resources = plan_resources(per_trial * opts.seeds, max_concurrent, opts)
    if not opts.resume:  # once the plan is accepted: a refused one leaves no sweep to --resume
        (sweep_dir / "sweep.json").write_text(json.dumps(asdict(opts), indent=2))
    from farm.tracking.relay import needs_relay, start_relay

    relay = needs_relay(opts.tracking_uri, opts.tracking_relay, sum(n["Alive"] for n in ray.nodes()))
    relay_actor = start_relay(opts.tracking_uri) if relay else None  # held: the relay lives as long as this handle
    if relay:
        _log("MLflow: workers log through the tracking relay on this node (the store is local to it)")
    seeds = f" x {opts.seeds} seeds" if opts.seeds > 1 else ""
    parts = f" x {opts.partitions} subject partitions" if opts.partitions > 1 else ""
    if opts.protocol == "nested":
        per = f" of each of {opts.partitions} subject partitions" if parts else ""
        what = (f"nested: one search per outer fold ({', '.join(folds)}){per}, {trials} trials each, a trial "
                f"training its outer fold{seeds} only")  # fmt: skip
    else:
        what = f"{trials} trials x {len(folds)} folds ({', '.join(folds)}){parts}{seeds}"
    _log(f"sweep {opts.name}: space {space.path}, {what}, {max_concurrent} at a time, {resources['per_fold']} per "
         f"fold{' and seed' if seeds else ''}; data {opts.data}")  # fmt: skip
    _log(f"MLflow: {opts.tracking_uri}, experiment {opts.name!r}")
    common = dict(space=space, opts=opts, base_flat=base_flat, exp_id=exp_id, resources=resources, relay=relay,
                  objs=objs, trials=trials, max_concurrent=max_concurrent)  # fmt: skip
    from farm.sweep.leaderboard import close_stopped_runs, format_leaderboard, tag_best, tag_pareto_front

    if opts.protocol == "nested":
        rows = run_nested(folds, client, **common)
    else:
        search = Search(tuple(folds), opts.name, opts.storage, opts.name, partitions=tuple(range(opts.partitions)))
        rows = run_search(search, **common)
        close_stopped_runs(client, exp_id, rows)
        tag_pareto_front(client, exp_id, rows)
        tag_best(client, exp_id, rows, opts.name, objs[0])
        print(format_leaderboard(rows, opts, folds, objs=objs, seeds=opts.seeds, partitions=opts.partitions))
        if hint := resume_hint(opts, rows, trials):
            _log(hint)
    print(ui_address(opts.tracking_uri, exp_id, opts.protocol))
    del relay_actor
    return rows


def use_asha(objs: tuple[str, ...], grid: bool) -> bool:
    """Whether ASHA stops trials: only for a single objective measured every epoch (`cv/val_f1_mean`) and a
    search that is not a grid. With several objectives no trial is stopped on one alone: the others (robustness)
    are measured after training, so a trial trading clean F1 for robustness would be cut before its trade
    exists, and a stopped trial is on no Pareto front. An ablation grid reports every cell."""
    return not grid and tuple(objs) == (OBJECTIVE,)


def run_search(search: Search, *, space: SearchSpace, opts: SweepOptions, base_flat: dict[str, Any], exp_id: str,
               resources: dict[str, Any], relay: bool, objs: tuple[str, ...], trials: int,
               max_concurrent: int) -> list[dict[str, Any]]:  # fmt: skip
    """Run (or resume) one Tune experiment: Optuna (its own study) + ASHA over `trials` trials; its rows."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from farm.sweep.leaderboard import Progress, leaderboard

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep_dir = Path(opts.storage) / opts.name
    epochs = int(base_flat["train.epochs"])
    trainable = tune.with_resources(make_trainable(base_flat, search, opts, exp_id, resources, relay, objs),
                                    resources["trial"])  # on the head (farm/sweep/trial.py trial_resources)  # fmt: skip
    storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / 'optuna.db'}")
    grid = space.sweep.get("sampler", "tpe") == "grid"
    sampler = (optuna.samplers.GridSampler({p.key: list(p.choices) for p in space.params}, seed=opts.seed) if grid
               else optuna.samplers.TPESampler(seed=opts.seed))  # TPE handles one objective or several  # fmt: skip
    searcher = ConcurrencyLimiter(  # always a list: Optuna sees only each trial's final values (no pruning)
        OptunaSearch(DefineByRun(space), metric=list(objs), mode=["max"] * len(objs), study_name=search.study,
                     storage=storage, sampler=sampler),
        max_concurrent=max_concurrent,
    )  # fmt: skip
    asha = use_asha(objs, grid)
    scheduler = ASHAScheduler(
        time_attr="epoch", metric=objs[0], mode="max", max_t=epochs + 2,
        grace_period=min(epochs, int(space.sweep.get("grace_period", 1))),
        reduction_factor=int(space.sweep.get("reduction_factor", 3))) if asha else None  # fmt: skip
    if len(objs) > 1 or objs[0] != OBJECTIVE:
        stopping = ("no ASHA (grid)" if grid else "no ASHA: a trial stopped on one objective would leave the front "
                    "before its other objectives are measured" if len(objs) > 1
                    else f"no ASHA: {objs[0]} is measured once per trial, after training")  # fmt: skip
        front = "; Pareto front at the end" if len(objs) > 1 else ""
        _log(f"{search.label}objective{'s' * (len(objs) > 1)}: {', '.join(objs)} (maximised{front}); {stopping}")

    exp_dir = Path(search.storage_path) / search.name
    run_config = tune.RunConfig(name=search.name, storage_path=search.storage_path, verbose=0,
                                callbacks=[Progress(trials, search.label)])  # fmt: skip
    if opts.resume and tune.Tuner.can_restore(str(exp_dir)):
        _log(f"{search.label}resuming {exp_dir}")
        tuner = tune.Tuner.restore(str(exp_dir), trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = tune.Tuner(trainable, run_config=run_config,
                           tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=trials))  # fmt: skip
    return leaderboard(tuner.fit(), objs)


def run_nested(folds: list[str], client, **common) -> list[dict[str, Any]]:
    """The nested protocol: one search per outer fold, one after the other (each its own Optuna study
    `<sweep>-<fold>` and ASHA; a trial trains only that fold), then the outer estimate. With several subject
    partitions: one search per (partition, outer fold), labelled `r<p>-<fold>` (study `<sweep>-r<p>-<fold>`,
    parent-run tags outer_fold and partition), and the estimate averages the partitions.

    A finished outer fold leaves `nested/<label>.done.json` (its rows); a resumed sweep reads it and does not
    search that fold again, and restores the unfinished fold's Tune experiment."""
    from farm.sweep.leaderboard import (
        close_stopped_runs,
        format_nested,
        log_nested_summary,
        select_per_fold,
        tag_best,
        tag_pareto_front,
    )

    opts, exp_id, objs = common["opts"], common["exp_id"], common["objs"]
    root = Path(opts.storage) / opts.name / "nested"
    rows_by_fold: dict[str, list[dict[str, Any]]] = {}
    repeated = opts.partitions > 1
    outer = [(p, f, f"r{p}-{f}" if repeated else f) for p in range(opts.partitions) for f in folds]
    for part, fold, label in outer:
        done = root / f"{label}.done.json"
        if opts.resume and done.exists():
            _log(f"outer fold {label}: finished before, not searched again")
            rows_by_fold[label] = json.loads(done.read_text())
            continue
        _log(f"outer fold {label}: {common['trials']} trials, Optuna study {opts.name}-{label}")
        tags = (("outer_fold", fold),) + ((("partition", str(part)),) if repeated else ())
        search = Search((fold,), f"{opts.name}-{label}", str(root), label, f"outer fold {label}: ", tags, (part,))
        rows = run_search(search, **common)
        close_stopped_runs(client, exp_id, rows)
        if hint := resume_hint(opts, rows, common["trials"], f"outer fold {label}: "):
            _log(hint)  # interrupted: the next outer fold must not start, nor this one count as done
            return [r for done_rows in rows_by_fold.values() for r in done_rows] + rows
        tag_pareto_front(client, exp_id, rows)
        tag_best(client, exp_id, rows, opts.name, objs[0], tag="selected", scope=f" for outer fold {label}")
        done.write_text(json.dumps(rows))
        rows_by_fold[label] = rows
    selected = select_per_fold(rows_by_fold, objs[0])
    summary = {}
    if len(selected) == len(outer):
        from farm.tracking.mlflow import provenance_tags

        tags = {"sweep": opts.name, "space": opts.space, "seeds": str(opts.seeds), "partitions": str(opts.partitions),
                **provenance_tags()}  # fmt: skip
        partition_of = {label: part for part, _, label in outer}
        summary = log_nested_summary(client, exp_id, selected, tags, opts.seeds, partition_of)
    print(format_nested(rows_by_fold, selected, summary, opts, objs=objs, seeds=opts.seeds))
    return [r for rows in rows_by_fold.values() for r in rows]
