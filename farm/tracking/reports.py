"""`farm report` over MLflow: what each sweep chose per fusion (joint: its best trial; nested: per outer fold the
best of the fusion's trials in that fold's search), or two trials of one sweep (`--trial A --trial B`), read with
farm/tracking/sweeps.py and reported by farm/evaluate/report.py; and, for a joint sweep, the nested sweeps of the same
search space in the store, whose estimates stand beside its own (the joint protocol's optimism).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mlflow.tracking import MlflowClient

from farm.evaluate.paper import load_paper_table
from farm.evaluate.report import Estimate, MethodResult, Report, build_report, fusion_label
from farm.evaluate.report_files import write_report
from farm.tracking.sweeps import (
    OBJECTIVE,
    SweepLookupError,
    TrialRecord,
    best_per_fusion,
    best_trial,
    first_line,
    method_result,
    nested_selection,
    open_store,
    sweep_protocol,
    trial_predictions,
    trial_runs,
    trial_test_study,
)


def _with_study(client: MlflowClient, rec: TrialRecord, m: MethodResult) -> MethodResult:
    study = trial_test_study(client, rec)
    return replace(m, test_robustness=study.rows, test_robustness_source=study.source,
                   test_robustness_run=study.run_id, test_robustness_note=study.note)  # fmt: skip


def sweep_choices(client: MlflowClient, sweep: str, metric: str = OBJECTIVE) -> tuple[dict[str, TrialRecord], list[str]]:
    """fusion -> what the sweep chose for it, and notes on fusions left out. Joint: the best trial by `metric`.
    Nested: per outer fold the best of the fusion's trials of that fold's search (`nested_selection`); a sweep whose
    outer folds did not all finish raises SweepLookupError naming them."""
    records = trial_runs(client, sweep)
    if sweep_protocol(client, sweep) != "nested":
        return best_per_fusion(records, metric), []
    nested_selection(records, metric)  # every outer fold's search finished, or a one-line error naming the others
    chosen, notes = {}, []
    for fusion in dict.fromkeys(t.fusion for t in records if t.status == "FINISHED"):
        try:
            chosen[fusion] = nested_selection(records, metric, fusion)
        except SweepLookupError as e:
            notes.append(f"{fusion_label(fusion)} of nested sweep {sweep} is left out: {e}")
    return chosen, notes


def nested_twins(client: MlflowClient, sweep: str) -> list[str]:
    """The nested sweeps of the joint sweep's search space in the store: experiment tag `space` equal, `protocol`
    nested, the same `data_hash` where both record one."""
    exp = client.get_experiment_by_name(sweep)
    space = exp.tags.get("space", "") if exp else ""
    if not space:
        return []
    data_hash = exp.tags.get("data_hash", "")
    out = []
    for e in client.search_experiments(filter_string="tags.protocol = 'nested'", max_results=1000):
        other = e.tags.get("data_hash", "")
        if e.name != sweep and e.tags.get("space") == space and (not data_hash or not other or other == data_hash):
            out.append(e.name)
    return sorted(out)


def joint_vs_nested(client: MlflowClient, joint: dict[str, TrialRecord], metric: str = OBJECTIVE) -> list[Estimate]:
    """Per joint-chosen fusion and nested sweep of the same space: the joint trial's cv/test_f1_mean beside the
    nested selection's (mean over outer folds of the selected trials' test F1)."""
    out = []
    for fusion, rec in joint.items():
        if rec.picks or rec.tags.get("protocol", "joint") != "joint":
            continue
        for nested in nested_twins(client, rec.sweep):
            e = Estimate(fusion, rec.sweep, rec.trial, rec.metric("cv/test_f1_mean"), nested)
            try:
                sel = nested_selection(trial_runs(client, nested), metric, fusion)
                out.append(replace(e, nested=sel.metric("cv/test_f1_mean"), nested_trials=f"trials {sel.trial}"))
            except SweepLookupError as err:
                out.append(replace(e, note=first_line(err)))
    return out


def report_sweeps(tracking_uri: str, sweeps: list[str], paper: str | None, out: str | Path,
                  metric: str = OBJECTIVE, n_boot: int = 2000, seed: int = 0) -> tuple[Report, dict[str, Path]]:  # fmt: skip
    """`farm report`: per fusion what the sweeps chose (by `metric`), reported into `out`.

    A joint sweep chooses its best trial per fusion; a nested sweep, per outer fold, the best of the fusion's trials
    in that fold's search (its method is those trials' fold runs: every subject predicted once, by a model whose
    selection never saw it). A fusion present in several sweeps is represented by the best choice (by `metric`)
    across them; the report's notes say when the rows come from different datasets or folds. With AMF and another
    fusion, their fold runs' test predictions are read and AMF is compared with each other method: a 95% paired
    subject bootstrap of `n_boot` replicates (random seed `seed`); predictions that cannot be read make that
    comparison "not comparable", not the report fail. A joint sweep's Protocol section counts the test subjects its
    selection saw as validation subjects and, where the store holds a nested sweep of the same space, gives both
    estimates per fusion.
    """
    table = load_paper_table(paper) if paper else None  # a bad name fails before the store is read
    if not sweeps:
        raise SweepLookupError("name at least one sweep")
    client = open_store(tracking_uri)
    best: dict[str, TrialRecord] = {}
    notes: list[str] = []
    for sweep in sweeps:
        chosen, left_out = sweep_choices(client, sweep, metric)
        notes += left_out
        for fusion, rec in chosen.items():
            if fusion not in best or rec.metric(metric) > best[fusion].metric(metric):
                best[fusion] = rec
    if not best:
        raise SweepLookupError(f"no FINISHED trial with a finite {metric} in {', '.join(sweeps)} ({tracking_uri})")
    compared = "amf" in best and len(best) > 1  # the report compares AMF with the others, nothing else
    methods = []
    for rec in best.values():
        preds, note = trial_predictions(client, rec) if compared else (None, "")
        methods.append(replace(_with_study(client, rec, method_result(rec, metric)), predictions=preds,
                               predictions_note=note))  # fmt: skip
    aus = tuple(dict.fromkeys(a for m in methods for a in m.aus))
    report = build_report(methods, aus, table, store=tracking_uri, n_boot=n_boot, seed=seed,
                          estimates=tuple(joint_vs_nested(client, best, metric)), extra_notes=tuple(notes))  # fmt: skip
    return report, write_report(report, out)


def find_trial(records: list[TrialRecord], spec: str, metric: str = OBJECTIVE) -> TrialRecord:
    """The trial `spec` names: its trial id (the parent run's name, as the leaderboard shows it) or run id, or
    `tag:KEY=VALUE` (the best by `metric` of the trials with that tag, e.g. tag:best=true)."""
    sweep = records[0].sweep if records else "?"
    if spec.startswith("tag:"):
        key, sep, value = spec[len("tag:") :].partition("=")
        if not key or not sep:
            raise SweepLookupError(f"--trial {spec}: expected a trial id, a run id or tag:KEY=VALUE")
        pool = [t for t in records if t.tags.get(key) == value]
        if not pool:
            raise SweepLookupError(f"no trial of sweep {sweep!r} has the tag {key}={value}")
        return pool[0] if len(pool) == 1 else best_trial(pool, metric)
    found = [t for t in records if spec in (t.trial, t.run_id)]
    if not found:
        raise SweepLookupError(f"sweep {sweep!r} has no trial {spec!r} (trials: {', '.join(t.trial for t in records)})")
    return found[0]


def differing_params(a: TrialRecord, b: TrialRecord) -> dict[str, tuple[str, str]]:
    """The searched params (tag `searched`; without it, every param) whose values differ: key -> (a's, b's)."""
    keys = [k for t in (a, b) for k in t.tags.get("searched", "").split(",") if k]
    keys = list(dict.fromkeys(keys)) or sorted(set(a.params) | set(b.params))
    return {k: (a.params.get(k, "-"), b.params.get(k, "-")) for k in keys if a.params.get(k) != b.params.get(k)}


def report_trials(tracking_uri: str, sweep: str, trials: list[str], paper: str | None, out: str | Path,
                  metric: str = OBJECTIVE, n_boot: int = 2000, seed: int = 0) -> tuple[Report, dict[str, Path]]:  # fmt: skip
    """`farm report --sweep S --trial A --trial B`: the two trials' per-AU test F1 and A against B on the test frames
    both predicted (the paired subject bootstrap of the AMF comparisons), each labelled by its trial and the
    searched values in which the two differ."""
    table = load_paper_table(paper) if paper else None
    if len(trials) != 2:
        raise SweepLookupError(f"--trial: give two trials to compare, got {len(trials)}")
    client = open_store(tracking_uri)
    records = trial_runs(client, sweep)
    a, b = (find_trial(records, spec, metric) for spec in trials)
    if a.run_id == b.run_id:
        raise SweepLookupError(f"--trial {trials[0]} and --trial {trials[1]} are the same trial {a.trial}")
    diff = differing_params(a, b)
    methods = []
    for rec, side in ((a, 0), (b, 1)):
        if rec.status != "FINISHED":
            raise SweepLookupError(f"trial {rec.trial} of sweep {sweep!r} is {rec.status}, not FINISHED")
        preds, why = trial_predictions(client, rec)
        if preds is None:
            raise SweepLookupError(f"trial {rec.trial} of sweep {sweep!r} has no test predictions to compare: {why}")
        values = ", ".join(f"{k.rsplit('.', 1)[-1]}={v[side]}" for k, v in diff.items())
        name = f"{fusion_label(rec.fusion)} {rec.trial}" + (f" ({values})" if values else "")
        methods.append(replace(_with_study(client, rec, method_result(rec, metric)), predictions=preds, name=name))
    what = ("; ".join(f"{k}: {va} vs {vb}" for k, (va, vb) in diff.items()) if diff
            else "none of the searched values (the trials differ only by chance)")  # fmt: skip
    note = f"The two trials differ in {what} (trial {a.trial} vs trial {b.trial})."
    aus = tuple(dict.fromkeys(x for m in methods for x in m.aus))
    report = build_report(methods, aus, table, store=tracking_uri, n_boot=n_boot, seed=seed, contrast=True,
                          extra_notes=(note,))  # fmt: skip
    return report, write_report(report, out)
