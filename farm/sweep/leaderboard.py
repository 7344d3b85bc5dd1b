"""What a sweep prints and leaves in MLflow at its end: the progress lines, the leaderboard, the runs of
trials ASHA stopped, and (nested protocol) each outer fold's selection and the outer estimate.

A row is one trial: its status, objectives, test F1 mean ± std over folds of the seed means, the seed
spread, and its per-fold test F1 (seed means); with several subject partitions, the spread over partitions
and a column per partition (its fold mean) instead of per fold.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

OBJECTIVE = "cv/val_f1_mean"
NESTED_SUMMARY = "nested-summary"
"""Run name of the nested protocol's summary run (the outer estimate) in the sweep's experiment."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Progress:
    """A Tune callback printing one line per event: trials done / running / stopped / failed, best so far.

    `label` prefixes every line (nested protocol: which outer fold's search)."""

    def __new__(cls, total: int, label: str = ""):
        from ray.tune import Callback

        class _Progress(Callback):
            def __init__(self) -> None:
                self.total, self.best, self.best_trial = total, -1.0, ""
                self.done: set[str] = set()
                self.failed: set[str] = set()
                self.stopped: set[str] = set()
                self.last_epoch: dict[str, int] = {}

            def _state(self, t) -> str:
                """done / failed / stopped / running / waiting. This callback's own record first: Tune still
                calls a trial RUNNING while its callbacks see its final result, its ASHA stop or its error."""
                if t.trial_id in self.failed or t.status == "ERROR":
                    return "failed"
                if t.trial_id in self.done or t.trial_id in self.stopped:
                    return "done" if t.trial_id in self.done else "stopped"
                if t.status == "TERMINATED":  # ended before a --resume: finished if its last result was the final one
                    return "done" if (t.last_result or {}).get("final") else "stopped"
                return "running" if t.status == "RUNNING" else "waiting"

            def _status(self, trials) -> str:
                n = Counter(self._state(t) for t in trials)
                best = f"best {self.best:.3f} ({self.best_trial})" if self.best >= 0 else "no result yet"
                return (f"{n['done']}/{self.total} done, {n['running']} running, {n['stopped']} stopped early, "
                        f"{n['failed']} failed; {best}")  # fmt: skip

            def on_trial_result(self, iteration, trials, trial, result, **info):
                v = result.get(OBJECTIVE, float("nan"))
                if result.get("final") and result.get("failed"):
                    return  # a fold diverged: the trial errors next, and on_trial_error says why
                seed_sd = result.get("cv/test_f1_seed_std", float("nan"))
                seeds = f" (seed sd {seed_sd:.3f})" if math.isfinite(seed_sd) else ""
                stop = bool(result.get("done")) and not result.get("final")  # Tune marks a result done on ASHA's stop
                if result.get("final"):
                    self.done.add(trial.trial_id)
                    if math.isfinite(v) and v > self.best:
                        self.best, self.best_trial = v, trial.trial_id
                    sd = result.get("cv/test_f1_std", float("nan"))  # one fold (nested): no spread over folds
                    log(f"{label}trial {trial.trial_id} finished: fold-mean val F1 {v:.3f}, test F1 "
                        f"{result.get('cv/test_f1_mean', float('nan')):.3f}{f' ± {sd:.3f}' if math.isfinite(sd) else ''}"
                        f"{seeds} | {self._status(trials)}")  # fmt: skip
                elif stop or self.last_epoch.get(trial.trial_id) != result.get("epoch"):
                    self.last_epoch[trial.trial_id] = result.get("epoch")
                    if stop:
                        self.stopped.add(trial.trial_id)
                    log(f"{label}trial {trial.trial_id} epoch {result.get('epoch')}: fold-mean val F1 {v:.3f} "
                        f"({result.get('folds_running', '?')} folds training)"
                        f"{', stopped early by ASHA' if stop else ''} | {self._status(trials)}")  # fmt: skip

            def on_trial_complete(self, iteration, trials, trial, **info):
                if trial.trial_id in self.done | self.failed | self.stopped:
                    return  # its final result or its stop was printed
                self.stopped.add(trial.trial_id)  # stopped without a result saying so
                log(f"{label}trial {trial.trial_id} stopped early | {self._status(trials)}")

            def on_trial_error(self, iteration, trials, trial, **info):
                self.failed.add(trial.trial_id)
                why = (trial.last_result or {}).get("failed")  # a divergence: its folds' messages
                log(f"{label}trial {trial.trial_id} FAILED{f': {why}' if why else ''} "
                    f"({trial.error_file or 'see its error file'}) | {self._status(trials)}")  # fmt: skip

        return _Progress()


def fold_means(results: list[dict[str, Any]]) -> dict[str, float]:
    """{fold: mean test F1 over its seeds} from a final result's `results` (one entry per fold and seed); with
    several partitions (results carrying `partition`) {r<p>: the partition's mean over folds of the seed means}."""
    by_fold: dict[tuple[int, str], list[float]] = {}
    for r in results:
        by_fold.setdefault((int(r.get("partition", -1)), r["fold"]), []).append(r["test"]["f1_mean"])
    means = {k: float(sum(v) / len(v)) for k, v in by_fold.items()}
    if all(p < 0 for p, _ in means):
        return {f: v for (_, f), v in means.items()}
    by_part: dict[str, list[float]] = {}
    for (p, _), v in means.items():
        by_part.setdefault(f"r{p}", []).append(v)
    return {p: float(sum(v) / len(v)) for p, v in by_part.items()}


def leaderboard(grid, objs: tuple[str, ...] | list[str] = (OBJECTIVE,)) -> list[dict[str, Any]]:
    """One row per trial, finished first, best by the first objective first; `pareto` marks the front.

    status: finished, failed, stopped (early, by ASHA) or interrupted (cut off before its end: `--resume`
    continues it)."""
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
        # Tune marks the last result `done` when ASHA stops a trial; a trial cut off by Ctrl-C or a crash has none
        status = "failed" if failed else "finished" if m.get("final") else "stopped" if m.get("done") else "interrupted"
        row = {"trial": trial, "status": status,
               "val": m.get(OBJECTIVE, float("nan")), "test": m.get("cv/test_f1_mean", float("nan")),
               "test_std": m.get("cv/test_f1_std", float("nan")), "epoch": m.get("epoch"), "folds": {},
               "seed_std": m.get("cv/test_f1_seed_std", float("nan")),
               "partition_std": m.get("cv/test_f1_partition_std", float("nan")),
               "config": dict(r.config or {}), "reason": reason, "pareto": False,
               "objectives": {k: float(m.get(k, float("nan"))) for k in objs}}  # fmt: skip
        if m.get("results"):
            row["folds"] = fold_means(json.loads(m["results"]))
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
    with the error as its `failure` tag. An interrupted trial's runs stay RUNNING (`--resume` continues them)
    and its run gets the `interrupted` tag saying so (removed when it is resumed).
    """
    from farm.tracking.mlflow import INTERRUPTED_TAG, find_run

    for row in rows:
        if row["status"] not in ("stopped", "failed", "interrupted"):
            continue
        parent = find_run(client, exp_id, row["trial"])
        if parent is None:
            continue
        if row["status"] == "interrupted":
            where = f" after epoch {row['epoch']}" if row.get("epoch") is not None else " before its first epoch"
            client.set_tag(parent, INTERRUPTED_TAG, f"cut off{where} (Ctrl-C or a crash); `farm sweep --resume "
                                                    "--name <sweep>` continues it")  # fmt: skip
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


def tag_pareto_front(client, exp_id: str, rows: list[dict[str, Any]]) -> None:
    """The front is visible in MLflow too (a tag the runs table can filter on)."""
    from farm.tracking.mlflow import find_run

    for r in rows:
        if r.get("pareto"):
            run = find_run(client, exp_id, r["trial"])
            if run:
                client.set_tag(run, "pareto_front", "true")


def tag_best(client, exp_id: str, rows: list[dict[str, Any]], sweep: str, objective: str, tag: str = "best",
             scope: str = "") -> str | None:  # fmt: skip
    """Mark the finished trial best by `objective` in MLflow: tag `tag`=true on its run (only on it) and a first
    line in its description. `scope`: e.g. " for outer fold P1" (nested). Returns the trial, None if none finished."""
    from farm.tracking.mlflow import find_run
    from farm.tracking.story import mark_best

    ok = [r for r in rows if r["status"] == "finished" and math.isfinite(r["objectives"].get(objective, math.nan))]
    if not ok:
        return None
    best = max(ok, key=lambda r: r["objectives"][objective])
    parents = {r["trial"]: run for r in rows if (run := find_run(client, exp_id, r["trial"]))}
    if best["trial"] not in parents:
        return None
    what = "Selected" if tag != "best" else "Best trial"
    mark_best(client, parents, best["trial"], f"{what} of sweep {sweep}{scope} by {objective} "
              f"({best['objectives'][objective]:.4f})", tag=tag)  # fmt: skip
    return best["trial"]


def short_metric(name: str) -> str:
    """cv/val_f1_missing_worst -> missing_worst (a leaderboard column)."""
    return name.removeprefix("cv/val_f1_").removeprefix("cv/val_") or name


def _pct(v: float, width: int) -> str:
    return f"{100 * v:{width}.1f}" if math.isfinite(v) else f"{'-':>{width}s}"


def format_rows(rows: list[dict[str, Any]], folds: list[str], top: int, objs: tuple[str, ...] | list[str],
                seeds: int, partitions: int = 1) -> list[str]:  # fmt: skip
    """The leaderboard's table: a header line and one line per trial (a failed one: its reason under it).

    One fold (a nested search): its test F1, no std over folds and no per-fold columns. Several partitions:
    `folds` are the partitions' columns (r0, r1, ...), and the test F1 carries the partition sd."""
    extra = [k for k in objs if k != OBJECTIVE]  # objectives other than the clean val F1 get a column each
    one = len(folds) == 1
    test_head = ("test F1" if one else "test F1 mean ± std") + (" (seed sd)" if seeds > 1 else "") + (
        " [partition sd]" if partitions > 1 else "")  # fmt: skip
    width = len(test_head) + 1
    sw = max([9] + [len(r["status"]) for r in rows[:top]])  # 'interrupted' is the longest
    lines = [f"{'trial':14s} {'status':{sw}s} {'val F1':>7s} " + "".join(f"{short_metric(k)[:13]:>14s}" for k in extra)
             + f" {test_head:>{width}s}" + ("" if one else "  " + " ".join(f"{f:>6s}" for f in folds))]  # fmt: skip
    for r in rows[:top]:
        per = "" if one else "  " + " ".join(_pct(r["folds"][f], 6) if f in r["folds"] else f"{'-':>6s}" for f in folds)
        test = "-"
        if math.isfinite(r["test"]):
            test = f"{100 * r['test']:6.1f}" + ("" if one else f" ± {100 * r['test_std']:4.1f}")
            test += f" ({_pct(r.get('seed_std', math.nan), 3).strip()})" if seeds > 1 else ""
            test += f" [{_pct(r.get('partition_std', math.nan), 3).strip()}]" if partitions > 1 else ""
        more = "".join(_pct(r["objectives"].get(k, math.nan), 14) for k in extra)
        mark = "*" if r.get("pareto") else " "
        lines.append(f"{r['trial'] + mark:14s} {r['status']:{sw}s} {_pct(r['val'], 7)} {more} {test:>{width}s}{per}")
        if r["status"] == "failed":  # why, in short: the first failing fold (each fold's reason is in MLflow)
            first, *more_folds = re.split(r"; (?=fold )", r.get("reason") or "see the trial's error file")
            short = first if len(first) <= 160 else first[:157] + "..."
            n = len(more_folds)
            lines.append(f"{'':14s} ^ {short}" + (f" (and {n} more fold{'s' * (n > 1)})" if n else ""))
    return lines


def footer(opts, nested: bool = False, finished: bool = True) -> list[str]:
    store = opts.tracking_uri
    ui = (f"mlflow ui --backend-store-uri {store} --host 127.0.0.1 --port 5000" if store.startswith("sqlite")
          else f"open {store}")  # fmt: skip
    default_store = store == f"sqlite:///{Path('mlflow.db').resolve()}"
    promote = f"farm promote --sweep {opts.name}" + ("" if default_store else f" --tracking-uri {store}")
    last = (f"register the best: {promote}" if not nested else f"register the selection: {promote} (the fold "
            "models of each outer fold's selected trial, one ensemble)")  # fmt: skip
    if not finished and not nested:
        last = "register the best: nothing to register yet (no trial finished)"
    return [f"results: Tune/Train in {Path(opts.storage) / opts.name}, MLflow experiment {opts.name!r} in {store}",
            f"open them: {ui}", last]  # fmt: skip


def format_leaderboard(rows: list[dict[str, Any]], opts, folds: list[str], top: int = 5,
                       objs: tuple[str, ...] | list[str] = (OBJECTIVE,), seeds: int = 1,
                       partitions: int = 1) -> str:  # fmt: skip
    multi = len(objs) > 1
    front = [r for r in rows if r.get("pareto")]
    if multi:  # the front first, then the rest; within each, by the first objective
        top = max(top, len(front))
        rows = front + [r for r in rows if not r.get("pareto")]
    by = "fold-mean validation F1" if objs[0] == OBJECTIVE else objs[0]
    head = (f"\nsweep {opts.name}: " + (f"Pareto front on {', '.join(objs)} (*), then the other trials by {objs[0]}"
            if multi else f"top trials by {by} (the objective)") + "; test F1 is reported, never optimised")  # fmt: skip
    if seeds > 1:
        head += f"\n{seeds} seeds per fold: every F1 is the mean over folds of the seed means; seed sd = the std over a fold's seeds, averaged over folds"  # fmt: skip
    if partitions > 1:
        head += (f"\n{partitions} subject partitions (r0 the standard folds, r1.. sex-balanced redraws), each fold of "
                 "each trained: every F1 is the mean over partitions of the fold means; ± = the std over folds "
                 "within a partition (averaged), partition sd = the std over partitions; columns r<p>: each "
                 "partition's fold mean (stds: sample, ddof 1)")  # fmt: skip
        folds = [f"r{p}" for p in range(partitions)]
    lines = [head, *format_rows(rows, folds, top, objs, seeds, partitions)]
    if multi:
        lines.append(f"Pareto front: {len(front)} trial{'s' * (len(front) != 1)} ({', '.join(r['trial'] for r in front)});"
                     f" farm promote takes the front's best by {objs[0]}, or --metric one of {', '.join(objs)}")  # fmt: skip
    return "\n".join(lines + footer(opts, finished=any(r["status"] == "finished" for r in rows)))


def select_per_fold(rows_by_fold: dict[str, list[dict[str, Any]]], objective: str) -> dict[str, dict[str, Any]]:
    """{outer fold: its search's selected row}: the finished trial best by `objective` (that fold's validation
    F1 under the nested protocol); a fold without a finished trial with a finite objective is left out."""
    out = {}
    for fold, rows in rows_by_fold.items():
        ok = [r for r in rows if r["status"] == "finished" and math.isfinite(r["objectives"].get(objective, math.nan))]
        if ok:
            out[fold] = max(ok, key=lambda r: r["objectives"][objective])
    return out


def format_nested(rows_by_fold: dict[str, list[dict[str, Any]]], selected: dict[str, dict[str, Any]],
                  summary: dict[str, float], opts, top: int = 5, objs: tuple[str, ...] | list[str] = (OBJECTIVE,),
                  seeds: int = 1) -> str:  # fmt: skip
    """The nested protocol's leaderboard: each outer fold's search (its trials train that fold only), then the
    selected configuration per fold and the outer estimate (the mean of their test F1)."""
    lines = [f"\nsweep {opts.name} (nested: one search per outer fold): each fold's trials by that fold's validation "
             f"F1 ({objs[0]}, the objective); test F1 is reported, never optimised"]  # fmt: skip
    if seeds > 1:
        lines.append(f"{seeds} seeds per trial: F1 = the mean over seeds; seed sd = their std")
    for fold, rows in rows_by_fold.items():
        lines += [f"outer fold {fold}: {len(rows)} trials (Optuna study {opts.name}-{fold}), selected "
                  f"{selected[fold]['trial'] if fold in selected else 'none (no finished trial)'}",
                  *format_rows(rows, [fold], top, objs, seeds)]  # fmt: skip
    picks = ", ".join(
        f"{f} {r['trial']} val {100 * r['val']:.1f} test {100 * r['test']:.1f}" for f, r in selected.items()
    )
    if summary:
        parts = int(summary.get("cv/num_partitions", 1))
        spread = (f" (sd over folds, sample), partition sd {100 * summary['cv/test_f1_nested_partition_std']:.1f}, over "
                  f"{parts} partitions x {len(selected) // parts}" if parts > 1 else " over " + str(len(selected)))
        lines.append(f"nested estimate: test F1 {100 * summary['cv/test_f1_nested_mean']:.1f} ± "
                     f"{100 * summary['cv/test_f1_nested_std']:.1f}{spread} outer folds, each the "
                     f"configuration its own search selected ({picks}); MLflow run {NESTED_SUMMARY!r}")  # fmt: skip
    else:
        missing = [f for f in rows_by_fold if f not in selected]
        lines.append(f"nested estimate: none: outer fold{'s' * (len(missing) > 1)} {', '.join(missing)} selected no "
                     "configuration (no finished trial)")  # fmt: skip
    return "\n".join(lines + footer(opts, nested=True))


def log_nested_summary(client, exp_id: str, selected: dict[str, dict[str, Any]], tags: dict[str, str],
                       seeds: int, partition_of: dict[str, int] | None = None) -> dict[str, float]:  # fmt: skip
    """The outer estimate in the sweep's experiment: run `nested-summary` (tag protocol=nested; the selected
    trial and its run per outer fold as params and tags; cv/test_f1_nested_mean and _std; per fold the
    selected trial's test and validation F1). Returns the estimate."""
    from farm.evaluate.cv import nested_estimate
    from farm.tracking.mlflow import RunTracker, find_run, get_or_create_run

    summary = nested_estimate({f: r["test"] for f, r in selected.items()}, partition_of)
    runs = {f: find_run(client, exp_id, r["trial"]) or "" for f, r in selected.items()}
    run = get_or_create_run(client, exp_id, NESTED_SUMMARY, tags={**tags, "protocol": "nested",
                                                                  "farm.kind": NESTED_SUMMARY})  # fmt: skip
    tracker = RunTracker(client, run)
    tracker.log_params({**{f"selected.{f}": r["trial"] for f, r in selected.items()}, "seeds": seeds})
    tracker.set_tags({**{f"selected.{f}": r["trial"] for f, r in selected.items()},
                      **{f"selected.{f}.run_id": rid for f, rid in runs.items()}})  # fmt: skip
    if "cv/test_f1_nested_mean" not in client.get_run(run).data.metrics:  # a resumed sweep logs it once
        per_fold = {f"fold/{f}/test_f1": r["test"] for f, r in selected.items()}
        per_fold.update({f"fold/{f}/val_f1": r["val"] for f, r in selected.items()})
        if seeds > 1:
            per_fold.update({f"fold/{f}/test_f1_seed_std": r["seed_std"] for f, r in selected.items()})
        tracker.log_metrics({**summary, **per_fold})
    tracker.finish()
    return summary
