"""Cross-validation summaries: the folds of one configuration -> the numbers a researcher reports.

Pure NumPy. The objective of a search is `cv/val_f1_mean` (validation subjects carved from each
fold's training subjects); test-partition numbers are reported beside it, never optimised. A fold
trained with several seeds counts once: its seeds are averaged first, their spread reported beside.
With several subject partitions (`sweep.partitions`: a result carries `partition`) a unit is
(partition, fold): every number is the mean over partitions of the fold means of the seed means, and
the spread over partitions is reported beside the spread over folds.

Spreads are sample standard deviations (ddof = 1): over 3 folds or 2-3 seeds the population std would
understate them by a fifth to a third; a spread of one value is NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from farm.metrics import f1_from_counts


def unit_label(result: dict[str, Any], i: int = 0) -> str:
    """A result's fold, or `r<partition>-<fold>` for a result of a repeated-partition trial (one carrying a
    `partition`): the label of its fold group in metric names (fold/<label>/...) and tables."""
    fold = str(result.get("fold", i))
    return f"r{int(result['partition'])}-{fold}" if "partition" in result else fold


def fold_groups(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{unit label: its results}, in first-seen order: one result per training seed of the (partition and) fold."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(results):
        groups.setdefault(unit_label(r, i), []).append(r)
    return groups


def sample_std(values) -> float:
    """The sample standard deviation (ddof = 1) of the finite values; NaN for fewer than two."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


def partition_summary(values: dict[int, list[float]]) -> tuple[float, float, float]:
    """{partition: its fold values} -> (mean over partitions of the fold means, the mean over partitions of the
    sample std over folds, the sample std over partitions of the fold means; NaN with one partition)."""
    means = [float(np.mean(v)) for v in values.values()]
    stds = [sample_std(v) for v in values.values()]
    return float(np.mean(means)), float(np.mean(stds)), sample_std(means)


def _mean(values: list[float]) -> float:
    """Mean of the finite values; NaN when none (an AU without a known label in the fold)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def seed_mean(runs: list[dict[str, Any]], aus: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """One fold's seed results -> one fold result: test / val F1 (per AU too) and robustness averaged over the
    seeds, test counts summed over them (pooled F1 over every prediction); one seed: that result itself."""
    if len(runs) == 1:
        return runs[0]
    robust = [r.get("val_robustness") or {} for r in runs]
    keys = sorted(set.intersection(*(set(r) for r in robust)))
    return {
        **runs[0],
        "val": {"f1_mean": float(np.mean([r["val"]["f1_mean"] for r in runs]))},
        "test": {
            "f1_mean": float(np.mean([r["test"]["f1_mean"] for r in runs])),
            "f1": {au: _mean([r["test"]["f1"][au] for r in runs]) for au in aus},
            "counts": {
                au: {k: sum(int(r["test"]["counts"][au][k]) for r in runs) for k in ("tp", "fp", "fn", "tn")}
                for au in aus
            },
        },  # fmt: skip
        "val_robustness": {k: float(np.mean([r[k] for r in robust])) for k in keys},
        "seeds": [r.get("seed") for r in runs],
    }


def aggregate_folds(folds: list[dict[str, Any]], aus: list[str] | tuple[str, ...]) -> dict[str, float]:
    """Fold results (FoldResult.to_json() dicts, or `fold_summary` dicts) -> flat `cv/...` metrics.

    Several results of one fold (its training seeds, `fold_groups`) are averaged first (`seed_mean`): every
    number below is over folds of the seed mean, and the seed spread is reported beside it.

    - cv/val_f1_mean: mean over folds of the best-epoch validation F1 (the search objective);
    - cv/test_f1_mean, cv/test_f1_std: mean and sample std over folds of the test F1;
    - with several partitions every mean is over partitions of the fold means, the *_std the mean over partitions
      of the std over folds, and cv/val_f1_partition_std, cv/test_f1_partition_std the sample std over partitions
      of their fold means (cv/num_partitions: how many);
    - cv/test_f1_<AU>: per-AU test F1 averaged over folds (NaN folds left out);
    - cv/test_f1_pooled: mean over AUs of F1 from the per-AU counts summed over folds (and seeds);
    - cv/val_f1_<condition> (e.g. cv/val_f1_missing_depth, cv/val_f1_noise_visual-depth_0.5): mean over folds of the
      best epoch's validation F1 under that robustness condition, where the folds measured it;
    - cv/val_f1_missing_worst: the lowest of the cv/val_f1_missing_* (the modality whose loss hurts most);
    - with several seeds per fold: cv/num_seeds, fold/<fold>/test_f1_seed_std and fold/<fold>/val_f1_seed_std (the
      sample std over the fold's seeds), cv/test_f1_seed_std and cv/val_f1_seed_std (their means over folds).
    """
    if not folds:
        raise ValueError("no fold results to aggregate")
    groups = fold_groups(folds)
    seeded = any(len(g) > 1 for g in groups.values())
    part = [int(g[0].get("partition", 0)) for g in groups.values()]  # each group's partition
    folds = [seed_mean(g, aus) for g in groups.values()]
    by_part = lambda key: {p: [f[key]["f1_mean"] for f, q in zip(folds, part) if q == p] for p in dict.fromkeys(part)}  # noqa: E731
    val_mean, val_std, val_pstd = partition_summary(by_part("val"))
    test_mean, test_std, test_pstd = partition_summary(by_part("test"))
    out: dict[str, float] = {
        "cv/val_f1_mean": val_mean,
        "cv/val_f1_std": val_std,
        "cv/test_f1_mean": test_mean,
        "cv/test_f1_std": test_std,
        "cv/num_folds": float(len(folds) // len(set(part))),
    }
    if len(set(part)) > 1:
        out.update({"cv/num_partitions": float(len(set(part))), "cv/val_f1_partition_std": val_pstd,
                    "cv/test_f1_partition_std": test_pstd})  # fmt: skip
    summed = np.zeros((len(aus), 4), np.int64)
    for j, au in enumerate(aus):
        per_au = {p: [v for f, q in zip(folds, part) if q == p and np.isfinite(v := f["test"]["f1"][au])]
                  for p in dict.fromkeys(part)}  # fmt: skip
        with np.errstate(all="ignore"):
            out[f"cv/test_f1_{au}"] = _mean([float(np.mean(v)) if v else float("nan") for v in per_au.values()])
        summed[j] = [sum(f["test"]["counts"][au][k] for f in folds) for k in ("tp", "fp", "fn", "tn")]
    out["cv/test_f1_pooled"] = float(np.nanmean(f1_from_counts(summed)))
    out.update(aggregate_robustness(folds))
    if seeded:
        out.update(seed_spread(groups))
    return out


def seed_spread(groups: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """The seed-to-seed spread: per fold the sample std over its seeds, and its mean over folds."""
    out: dict[str, float] = {"cv/num_seeds": float(min(len(g) for g in groups.values()))}
    for part in ("test", "val"):
        stds = {fold: sample_std([r[part]["f1_mean"] for r in g]) for fold, g in groups.items()}
        out.update({f"fold/{fold}/{part}_f1_seed_std": s for fold, s in stds.items()})
        out[f"cv/{part}_f1_seed_std"] = float(np.mean(list(stds.values())))
    return out


def nested_estimate(selected: dict[str, float], partition: dict[str, int] | None = None) -> dict[str, float]:
    """The nested protocol's outer estimate from {outer fold: test F1 of the configuration its own search selected}:
    cv/test_f1_nested_mean and cv/test_f1_nested_std (sample std over the outer folds). With several subject
    partitions (`partition`: outer fold label -> its partition) the mean is over partitions of the outer-fold
    means, the std the mean over partitions of the std over outer folds, and cv/test_f1_nested_partition_std the
    sample std over partitions."""
    if not selected:
        raise ValueError("no outer fold selected a configuration")
    partition = partition or {}
    by_part: dict[int, list[float]] = {}
    for label, v in selected.items():
        by_part.setdefault(partition.get(label, 0), []).append(float(v))
    mean, std, pstd = partition_summary(by_part)
    out = {"cv/test_f1_nested_mean": mean, "cv/test_f1_nested_std": std,
           "cv/num_folds": float(len(selected) // len(by_part))}  # fmt: skip
    if len(by_part) > 1:
        out.update({"cv/test_f1_nested_partition_std": pstd, "cv/num_partitions": float(len(by_part))})
    return out


def objective_metrics(
    modalities: tuple[str, ...], val_robustness: tuple[str, ...], sigmas: tuple[float, ...]
) -> list[str]:
    """The cv/val_* metrics a trial reports: the names a search may optimise (`sweep.objective`)."""
    from farm.data.perturb import conditions, metric_suffix

    kinds = set(val_robustness)
    names = ["cv/val_f1_mean"]
    conds = [c for c in conditions(modalities, sigmas) if c.kind in kinds]
    names += [f"cv/val_f1_{metric_suffix(c)}" for c in conds]
    if any(c.kind == "missing" for c in conds):
        names.append("cv/val_f1_missing_worst")
    return names


def aggregate_robustness(folds: list[dict[str, Any]]) -> dict[str, float]:
    """cv/val_f1_<condition> means over folds (conditions every fold measured) and cv/val_f1_missing_worst."""
    robust = [f.get("val_robustness") or {} for f in folds]
    keys = sorted(set.intersection(*(set(r) for r in robust))) if robust else []
    part = [int(f.get("partition", 0)) for f in folds]
    mean = lambda k: partition_summary({p: [r[k] for r, q in zip(robust, part) if q == p]  # noqa: E731
                                        for p in dict.fromkeys(part)})[0]  # fmt: skip
    out = {f"cv/{k.removeprefix('val/')}".replace("cv/f1_", "cv/val_f1_"): mean(k) for k in keys}
    missing = [v for k, v in out.items() if k.startswith("cv/val_f1_missing_")]
    if missing:
        out["cv/val_f1_missing_worst"] = float(min(missing))
    return out


def pareto_front(points: list[list[float]]) -> list[int]:
    """Indices of the non-dominated points (every objective maximised; a point with a NaN is never on the front).

    A point is dominated when another is at least as good on every objective and better on one.
    """
    ok = [i for i, p in enumerate(points) if all(np.isfinite(p))]
    front = []
    for i in ok:
        p = points[i]
        dominated = any(
            all(q >= v for q, v in zip(points[j], p)) and any(q > v for q, v in zip(points[j], p)) for j in ok if j != i
        )
        if not dominated:
            front.append(i)
    return front
