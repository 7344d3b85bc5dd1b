"""One trial = one Ray Train run whose workers are its (fold, seed) units (no DDP).

World rank i trains unit i of `trial_units(folds, seeds, partitions)`: a (partition, fold, seed), partitions
outermost, seeds innermost, with `train.seed` = the trial's seed + the seed index (model init, data order,
augmentation, AMF sampling; the subject split, `data.split_seed`, is the same for every seed) and
`data.partition` = the partition (the subject split of the folds: 0 the standard one, r >= 1 a redraw).
With one seed and one partition a unit is just a fold.

Every unit reports once per epoch (a "round"): Ray Train needs every worker to report the same
number of times, so a unit that early-stopped keeps reporting its frozen best values until the
last round, then all report their test results in a final round. `FoldMeanCallback` sees the
reports of all units together and sends Tune the fold mean of the seed means (for ASHA) and, at the
end, the cross-validation summary. Each round's checkpoint holds every unit's files under
`<fold>/` (one seed) or `<fold>-s<seed>/`, so a failed worker group restarts from the last round
(Ray Train `FailureConfig`) and each unit resumes from its own `last.pt`.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
from ray.train.v2.api.callback import UserCallback

from farm.config import resolve_num_workers, unflatten
from farm.evaluate.cv import aggregate_folds, fold_groups, sample_std, seed_mean, unit_label
from farm.files import link_tree, write_text

RESULT_FILE = "result.json"
ROUND_FILE = "round.json"
EPOCH_KEY = "train/loss"
"""Logged with every epoch (always finite: the engine raises on a non-finite loss before logging it)."""


class FoldTracker:
    """A fold run's tracker that writes each epoch once, whatever the worker restarts.

    When a worker dies, Ray Train restarts the whole fold group from the last round checkpoint
    its controller registered, so a fold that had trained further trains those epochs again. An
    epoch's metrics are therefore held until the fold's report of that round returned (every fold
    reached the round and stored its files), then written, unless the run already has that epoch:
    the controller registers a round only when it next polls the workers (every 2 s), so a group
    can still restart from an earlier round than the last one every fold reported. Metrics without
    a step (test results) are written once per key. A skipped epoch's values are those the
    retrained epoch gets: training on the CPU is deterministic, and a fold resumed from `last.pt`
    retrains bit-exactly once `last.pt` holds the training loader's shuffling generator
    (`loader_rng`, farm/engine.py; tests/sweep/test_faults_e2e.py checks it). An attempt stopped after its round
    was registered but before it wrote that epoch (Ctrl-C, SIGTERM: the group stops at any point) leaves the held
    epochs in the round's `round.json` (`held`); the restart from that round writes them (tests/sweep/
    test_signals_e2e.py: every epoch once).
    """

    def __init__(self, tracker: Any, client: Any, run_id: str) -> None:
        self.tracker = tracker
        self.steps = {m.step for m in client.get_metric_history(run_id, EPOCH_KEY)}
        self.keys = set(client.get_run(run_id).data.metrics)
        self.pending: list[tuple[dict[str, float], int]] = []

    def log_params(self, params: dict[str, Any]) -> None:
        self.tracker.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if step is not None:
            self.pending.append((dict(metrics), int(step)))
            return
        new = {k: v for k, v in metrics.items() if k not in self.keys}
        if new:
            self.tracker.log_metrics(new)
            self.keys.update(new)

    def held(self) -> list[list[Any]]:
        """The epochs not written yet, as JSON: saved with each round, so a restart from that round (registered:
        every fold reached it) writes them even when the attempt that trained them died before its flush."""
        return [[metrics, step] for metrics, step in self.pending]

    def flush(self) -> None:
        """Write the held epochs (called once their round's report returned)."""
        for metrics, step in self.pending:
            if step not in self.steps:
                self.tracker.log_metrics(metrics, step=step)
                self.steps.add(step)
        self.pending.clear()

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.tracker.set_tags(tags)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.tracker.log_artifact(path, artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        self.tracker.finish(status)


def failure_reason(result: dict[str, Any]) -> str:
    """A diverged fold's reason, naming its fold (and seed, with several) once (the engine's message usually
    starts with the fold)."""
    msg = str(result.get("diverged", ""))
    prefix = f"fold {result.get('fold', '?')}"
    msg = msg if msg.startswith(prefix) else f"{prefix}: {msg}"
    return msg if "seed" not in result else f"{prefix} seed {result['seed']}{msg[len(prefix) :]}"


def unit_name(fold: str, seed: int | None, partition: int | None = None) -> str:
    """A unit's checkpoint folder and run-name suffix: the fold, `r<partition>-` before it with several partitions
    (`partition` None: one) and `-s<seed>` after it with several seeds (`seed` None: one)."""
    return ("" if partition is None else f"r{partition}-") + fold + ("" if seed is None else f"-s{seed}")


def trial_units(folds: list[str], seeds: int, base_seed: int, partitions: tuple[int, ...] = (0,),
                repeated: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """The trial's Ray Train workers in rank order: {fold, seed, name[, partition]} per (partition, fold, seed),
    partitions outer, seeds inner (`unit_name`). `repeated`: the sweep has several partitions (a nested search may
    train one of them): each unit then carries its `partition`, which its name, tags and results record."""
    return [{"fold": f, "seed": base_seed + s, **({"partition": p} if repeated else {}),
             "name": unit_name(f, base_seed + s if seeds > 1 else None, p if repeated else None)}
            for p in partitions for f in folds for s in range(seeds)]  # fmt: skip


def fold_config(config: dict[str, Any], unit: dict[str, Any]):
    """The Config a trial's unit trains: the trial's flat config with the unit's fold and seed, and
    `data.num_workers: -1` (auto) resolved from the unit's CPU share (`threads`), not the node's cores."""
    flat = {**config["flat"], "data.fold": unit["fold"], "train.seed": unit["seed"],
            "data.partition": unit.get("partition", 0)}
    flat["data.num_workers"] = resolve_num_workers(int(flat.get("data.num_workers", 0)), int(config.get("threads", 1)))
    return unflatten(flat)


def fold_worker(config: dict[str, Any]) -> None:
    """Ray Train worker function. config: flat (the trial's flat config), units (`trial_units`), seeds,
    threads, tracking (or None)."""
    import torch  # here, not at the top: Tune's trial actor and Train's controller import this module too

    from farm.engine import TrainingDiverged, fit_fold

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    unit = config["units"][rank]
    fold, name, seeded = unit["fold"], unit["name"], int(config.get("seeds", 1)) > 1
    cfg = fold_config(config, unit)
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    local = Path(tempfile.mkdtemp(prefix=f"farm-{name}-"))
    fold_dir = local / name
    state: dict[str, Any] = {"round": 0, "best_val_f1": -1.0}  # saved with every round's checkpoint
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            if (Path(d) / name).is_dir():
                shutil.copytree(Path(d) / name, fold_dir, dirs_exist_ok=True)
                state.update(json.loads((fold_dir / ROUND_FILE).read_text()))
    fold_dir.mkdir(parents=True, exist_ok=True)

    tracker = None
    if config.get("tracking"):
        from farm.tracking.mlflow import RunTracker, get_or_create_run
        from farm.tracking.relay import tracking_client

        t = config["tracking"]
        client = tracking_client(t)
        run_id = get_or_create_run(client, t["experiment_id"], f"{t['trial']}-{name}", t["parent_run_id"],
                                   {"fold": fold, "trial": t["trial"], **t["tags"],
                                    **({"seed": unit["seed"]} if seeded else {}),
                                    **({"partition": unit["partition"]} if "partition" in unit else {})})  # fmt: skip
        tracker = FoldTracker(RunTracker(client, run_id), client, run_id)
        for metrics, step in state.pop("held", []):  # the restored round's epochs a dead attempt did not write
            tracker.log_metrics(metrics, step=step)
        tracker.flush()
        describe_fold(client, run_id, t["trial"], fold, unit["seed"] if seeded else None, unit.get("partition"))
        tag_node(client, run_id)

    uploaded = {"s": 0.0}  # seconds this unit spent putting its round checkpoints into storage

    def upload(checkpoint: ray.train.Checkpoint, dir_name: str) -> ray.train.Checkpoint:
        t0 = time.time()
        try:
            return persist_round(checkpoint, dir_name)
        finally:
            uploaded["s"] += time.time() - t0

    def send(metrics: dict[str, Any], final: bool = False) -> None:
        state["round"] = state["round"] + (0 if final else 1)
        state["held"] = tracker.held() if tracker is not None else []
        write_text(fold_dir / ROUND_FILE, json.dumps(state))
        round_dir = f"round_{state['round']:04d}{'_final' if final else ''}"
        where = {"fold": fold, "seed": unit["seed"], **({"partition": unit["partition"]} if "partition" in unit else {})}
        ray.train.report({**metrics, **where, "round": state["round"], "final": int(final)},
                         checkpoint=ray.train.Checkpoint.from_directory(str(local)), checkpoint_dir_name=round_dir,
                         delete_local_checkpoint_after_upload=False, checkpoint_upload_fn=upload)  # fmt: skip

    def report(metrics: dict[str, float], checkpoint: str | None = None) -> None:
        state["best_val_f1"] = max(state["best_val_f1"], metrics["val/f1_mean"])
        send({"epoch": int(metrics["epoch"]), "val_f1": metrics["val/f1_mean"], "best_val_f1": state["best_val_f1"],
              "train_loss": metrics["train/loss"], "stopped": 0, "diverged": 0})  # fmt: skip
        if tracker is not None:  # the round is stored: its epoch goes to MLflow now, once
            tracker.flush()

    result_path = fold_dir / RESULT_FILE
    diverged = ""
    restored = result_path.exists()
    if restored:  # finished before a restart: nothing to train again
        result = json.loads(result_path.read_text())
    else:
        try:
            res = fit_fold(cfg, report=report, tracker=tracker, checkpoint_dir=fold_dir, log=lambda s: None)
            result = json.loads(res.to_json())
        except TrainingDiverged as e:
            diverged = str(e)
            result = {"diverged": diverged, "fold": fold}
        if seeded:  # which seed: the parent's seed spread and a diverged seed's reason name it
            result["seed"] = unit["seed"]
        if "partition" in unit:  # which partition: the parent's averages group by (partition, fold)
            result["partition"] = unit["partition"]
        write_text(result_path, json.dumps(result))
        (fold_dir / "last.pt").unlink(missing_ok=True)  # finished: keep best.pt only
    if tracker is not None and "test" in result:
        # now, not after the frozen rounds: a restart during them restores this fold as finished, and logs
        # again what a dead attempt may not have logged (FoldTracker writes each metric once)
        log_fold_result(tracker, result, fold_dir, name)
    frozen = result.get("val", {}).get("f1_mean", float("nan")) if not diverged else float("nan")
    while state["round"] < cfg.train.epochs:  # keep step with the folds still training
        send({"epoch": state["round"], "val_f1": frozen, "best_val_f1": frozen, "train_loss": float("nan"),
              "stopped": 1, "diverged": int(bool(result.get("diverged")))})  # fmt: skip
    if tracker is not None and "test" in result:
        tracker.log_metrics({"time/checkpoint_s": uploaded["s"]})  # this attempt's round checkpoints, to the end
        tracker.finish()
    elif tracker is not None:
        tracker.set_tags({"failure": failure_reason(result)})
        tracker.finish("FAILED")
    send({"result": json.dumps(result), "diverged": int(bool(result.get("diverged")))}, final=True)
    shutil.rmtree(local, ignore_errors=True)  # uploaded: the trial's checkpoints live in the sweep's storage


def persist_round(checkpoint: ray.train.Checkpoint, dir_name: str) -> ray.train.Checkpoint:
    """A round's checkpoint into the trial's storage (Ray Train's `checkpoint_upload_fn`): hard links where the
    storage is a local path, so a round costs no copy of last.pt and best.pt (every file of a unit folder is
    replaced by a rename, never rewritten in place, so a link keeps the round's version), a copy where linking
    fails (a network mount), Ray's own upload for remote storage (s3://, gs://)."""
    import pyarrow.fs

    storage = ray.train.get_context().get_storage()
    if not isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        return storage.persist_current_checkpoint(checkpoint, dir_name)
    dest = storage.build_checkpoint_path_from_name(dir_name)
    link_tree(checkpoint.path, dest)
    return ray.train.Checkpoint(dest, filesystem=storage.storage_filesystem)


def describe_fold(client: Any, run_id: str, trial: str, fold: str, seed: int | None,
                  partition: int | None = None) -> None:  # fmt: skip
    """A fold run's description (one line per metric family), MLflow's source/user tags (once)."""
    from farm.tracking.mlflow import provenance_tags
    from farm.tracking.story import NOTE, fold_description, source_tags

    if NOTE not in client.get_run(run_id).data.tags:
        tags = {NOTE: fold_description(trial, fold, seed, partition), **source_tags(provenance_tags()["git_sha"])}
        for k, v in tags.items():
            client.set_tag(run_id, k, v)


NODE_TAG = "ray_node"
"""A fold run's tags naming where it trained: `ray_node` (the Ray node id of its latest attempt), `ray_node_ip`,
`ray_gpu_ids` (the GPUs Ray assigned it on that node, empty without) and `ray_node_first` (the node of its first
attempt: a fold restarted on another node after a node loss has both)."""


def tag_node(client: Any, run_id: str) -> None:
    """Tag the fold run with the Ray node (and GPUs) this attempt runs on; the first attempt's node is kept."""
    ctx = ray.get_runtime_context()
    node = ctx.get_node_id()
    gpus = ",".join(str(g) for g in ctx.get_accelerator_ids().get("GPU", []))
    tags = {NODE_TAG: node, f"{NODE_TAG}_ip": ray.util.get_node_ip_address(), "ray_gpu_ids": gpus}
    if f"{NODE_TAG}_first" not in client.get_run(run_id).data.tags:
        tags[f"{NODE_TAG}_first"] = node
    for k, v in tags.items():
        client.set_tag(run_id, k, v)


def log_fold_result(tracker: FoldTracker, result: dict[str, Any], fold_dir: Path, name: str) -> None:
    """A finished unit's per-AU test confusion counts (one table), wall time, split and lineage tags, its dataset
    input (the split's subjects as input tags) and test predictions."""
    from farm.checkpoints import PREDICTIONS_DIR, PREDICTIONS_FILE
    from farm.tracking.story import log_dataset, log_table

    client, run_id = tracker.tracker.client, tracker.tracker.run_id
    counts = result["test"]["counts"]
    log_table(client, run_id, "test_counts.json", ["AU", "tp", "fp", "fn", "tn", "f1"],
              [[au, *(int(c.get(k, 0)) for k in ("tp", "fp", "fn", "tn")), result["test"]["f1"].get(au)]
               for au, c in counts.items()])  # fmt: skip
    tracker.log_metrics({"time/fold_s": result["seconds"]})  # fit_fold's own wall time: data, train, eval
    split = {f"split.{k}": " ".join(result["split"][k]) for k in ("train", "val", "test")}
    tracker.set_tags({**split, "split_hash": result["split"]["hash"], "data_hash": result["data_hash"],
                      **({"partition_hash": result["split"]["partition_hash"]} if "partition_hash" in result["split"]
                         else {}),
                      "best_epoch": result["best_epoch"], "checkpoint_folder": name})  # fmt: skip
    if not client.get_run(run_id).inputs.dataset_inputs:
        log_dataset(client, run_id, str(result["config"]["data"]["path"]), "train",
                    {"split_hash": result["split"]["hash"], **split})  # fmt: skip
    if (fold_dir / PREDICTIONS_FILE).exists():  # per-frame test predictions, for `farm promote`
        tracker.log_artifact(fold_dir / PREDICTIONS_FILE, PREDICTIONS_DIR)


class FoldMeanCallback(UserCallback):
    """Runs beside the Ray Train controller: aggregates all folds' reports and forwards them to Tune.

    On the final round it first writes the trial's summary to its MLflow parent run, then sends
    Tune the last result (epoch = train.epochs + 1), so a scheduler stopping the trial on that
    result cannot cut the summary short.
    """

    def __init__(self, aus: list[str], final_epoch: int, tracking: dict[str, Any] | None = None,
                 objectives: tuple[str, ...] = ("cv/val_f1_mean",)) -> None:  # fmt: skip
        from ray.train._internal.session import get_session

        self.aus, self.final_epoch, self.tracking = list(aus), final_epoch, tracking
        self.objectives = tuple(objectives)  # every result carries them (NaN until measured: Tune checks names)
        self._queue = get_session()._get_or_create_inter_actor_queue()

    def _send(self, out: dict[str, Any]) -> None:
        from ray.util.queue import Full

        try:  # never block the controller forever: a trial stopped by the scheduler no longer reads
            self._queue.put(out, timeout=120)
        except Full:
            pass

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        out: dict[str, Any] = {"epoch": int(max(m.get("round", 0) for m in metrics))}
        if checkpoint is not None:
            out["checkpoint_path"] = checkpoint.path
        if not metrics[0].get("final"):
            out["cv/val_f1_mean"] = fold_seed_mean(metrics, "best_val_f1")
            out["cv/val_f1_epoch_mean"] = fold_seed_mean(metrics, "val_f1")
            # a fold trains while any of its seeds does
            out["folds_running"] = sum(any(not m["stopped"] for m in g) for g in fold_groups(metrics).values())
            out["final"] = 0
            out.update({k: float("nan") for k in self.objectives if k not in out})  # robustness: after training
            self._send(out)
            return
        results = [json.loads(m["result"]) for m in metrics]
        failed = [r for r in results if r.get("diverged")]
        out.update(epoch=self.final_epoch, final=1)
        if failed:
            out["failed"] = "; ".join(failure_reason(r) for r in failed)
            out["cv/val_f1_mean"] = float("nan")
        else:
            out.update(aggregate_folds(results, self.aus))
            out["results"] = json.dumps(
                [{k: r[k] for k in ("fold", "seed", "partition", "test", "val", "best_epoch", "split") if k in r}
                 for r in results]  # fmt: skip
            )
        out.update({k: float("nan") for k in self.objectives if k not in out})
        if self.tracking:
            log_parent(self.tracking, results, self.aus, checkpoint.path if checkpoint else "", out.get("failed"))
        self._send(out)


def fold_seed_mean(metrics: list[dict[str, Any]], key: str) -> float:
    """A round's `key` averaged over each fold's seeds, then over folds; NaN unless every unit's is finite."""
    if not all(math.isfinite(m[key]) for m in metrics):
        return float("nan")
    means = [sum(m[key] for m in g) / len(g) for g in fold_groups(metrics).values()]
    return float(sum(means) / len(means))


def fold_mean_curve(results: list[dict[str, Any]]) -> list[float]:
    """Per-epoch mean over folds (of the mean over each fold's seeds) of the validation F1 (a unit that stopped
    carries its last value)."""
    groups = fold_groups(results)
    n = max(len(r["history"]) for r in results)
    at = lambda r, e: r["history"][min(e, len(r["history"]) - 1)]["val/f1_mean"]  # noqa: E731
    return [float(sum(sum(at(r, e) for r in g) / len(g) for g in groups.values()) / len(groups)) for e in range(n)]


def log_parent(tracking: dict[str, Any], results: list[dict[str, Any]], aus: list[str], checkpoint_path: str,
               failure: str | None) -> None:  # fmt: skip
    """The trial's parent run: CV summary, per-epoch fold-mean curve, per-fold test F1, lineage tags."""
    from farm.tracking.mlflow import RunTracker
    from farm.tracking.relay import tracking_client

    client = tracking_client(tracking)
    tracker = RunTracker(client, tracking["parent_run_id"])
    if not failure and "cv/test_f1_mean" in client.get_run(tracking["parent_run_id"]).data.metrics:
        tracker.finish()  # a resumed trial that had finished: its summary is already there
        return
    if failure:
        tracker.set_tags({"failure": failure})
        tracker.finish("FAILED")
        return
    tracker.log_metrics(aggregate_folds(results, aus))
    for e, v in enumerate(fold_mean_curve(results)):
        tracker.log_metrics({"cv/val_f1_epoch_mean": v}, step=e)
    per_fold = [seed_mean(g, aus) for g in fold_groups(results).values()]  # one seed: the results themselves
    tracker.log_metrics({f"fold/{unit_label(r)}/test_f1": r["test"]["f1_mean"] for r in per_fold})
    log_per_au_table(client, tracking["parent_run_id"], per_fold, aus)
    try:
        with tempfile.TemporaryDirectory() as d:
            png = plot_per_au(per_fold, aus, Path(d) / "per_au_test_f1.png", tracking.get("trial", ""))
            client.log_artifact(tracking["parent_run_id"], png)
    except Exception as e:  # noqa: BLE001 - a plot must never fail a trial
        tracker.set_tags({"plot_error": f"{type(e).__name__}: {e}"})
    if checkpoint_path:  # each fold run names its own best.pt, in the trial's final checkpoint
        from farm.tracking.mlflow import find_run

        for r in results:
            name = unit_name(r["fold"], r.get("seed"), r.get("partition"))  # carried only with several
            run = find_run(client, tracking["experiment_id"], f"{tracking['trial']}-{name}")
            if run:
                client.set_tag(run, "checkpoint", f"{checkpoint_path.rstrip('/')}/{name}/best.pt")
    tracker.set_tags({"data_hash": results[0]["data_hash"],
                      "split_hashes": ",".join(f"{unit_label(r)}:{r['split']['hash']}" for r in per_fold),
                      "partitions_hash": results[0]["split"].get("partitions_hash", ""),
                      "checkpoint": checkpoint_path})  # fmt: skip
    tracker.finish()


def trial_flat(flat: dict[str, Any]) -> dict[str, Any]:
    """Tuples to lists so the flat config travels through Ray and JSON unchanged."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}


def log_per_au_table(client: Any, run_id: str, per_fold: list[dict[str, Any]], aus: list[str]) -> None:
    """Per-AU x fold test F1 (0-1) as the trial's table `per_au_test_f1.json`: a row per AU, a column per fold,
    their mean and sample std (NaN folds left out), and a last row with the AU means. Several partitions: a
    column per (partition, fold), `r<p>-<fold>`, and the mean and std over all of them."""
    import numpy as np

    from farm.tracking.story import log_table

    folds = [unit_label(r) for r in per_fold]
    f1 = np.array([[r["test"]["f1"].get(au, np.nan) for r in per_fold] for au in aus], dtype=float)  # (AUs, folds)
    with np.errstate(all="ignore"):
        rows = [[au, *map(float, f1[i]), float(np.nanmean(f1[i])), sample_std(f1[i])] for i, au in enumerate(aus)]
        means = [float(r["test"]["f1_mean"]) for r in per_fold]
        rows.append(["mean", *means, float(np.mean(means)), sample_std(means)])
    log_table(client, run_id, "per_au_test_f1.json", ["AU", *folds, "mean", "std"], rows)


def plot_per_au(results: list[dict[str, Any]], aus: list[str], path: Path, trial: str = "") -> str:
    """Bar chart of per-AU test F1 (0-1, the metrics' scale), mean and std over folds, with each fold's value (its
    seed mean) as a dot; the title names the trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    f1 = np.array([[r["test"]["f1"][au] for au in aus] for r in results], dtype=float)  # (folds, AUs), 0-1
    x = np.arange(len(aus))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(aus)), 3.5))
    sd = np.nanstd(f1, 0, ddof=1) if len(results) > 1 else np.zeros(len(aus))
    ax.bar(x, np.nanmean(f1, 0), yerr=sd, capsize=3, color="#4c72b0", alpha=0.8, label="mean ± sample std")
    for row, r in zip(f1, results):
        ax.plot(x, row, "o", ms=3, label=f"fold {unit_label(r)}")
    ax.set_xticks(x, aus, rotation=45)
    ax.set_ylabel("test F1")
    ax.set_ylim(0, 1)
    ax.set_title(f"{f'trial {trial}: ' if trial else ''}per-AU test F1 over {len(results)} folds "
                 f"(mean {np.nanmean(f1):.3f})")  # fmt: skip
    ax.legend(fontsize=7, ncol=min(len(results) + 1, 7))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
