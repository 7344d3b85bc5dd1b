"""Cross-validation summaries: the folds of one configuration -> the numbers a researcher reports.

Pure NumPy. The objective of a search is `cv/val_f1_mean` (validation subjects carved from each
fold's training subjects); test-partition numbers are reported beside it, never optimised. A fold
trained with several seeds counts once: its seeds are averaged first, their spread reported beside.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from farm.metrics import f1_from_counts


def fold_groups(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{fold: its results}, folds in first-seen order: one result per training seed of the fold."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(results):
        groups.setdefault(str(r.get("fold", i)), []).append(r)
    return groups


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
    - cv/test_f1_mean, cv/test_f1_std: mean and population std over folds of the test F1;
    - cv/test_f1_<AU>: per-AU test F1 averaged over folds;
    - cv/test_f1_pooled: mean over AUs of F1 from the per-AU counts summed over folds (and seeds);
    - cv/val_f1_<condition> (e.g. cv/val_f1_missing_depth, cv/val_f1_noise_visual-depth_0.5): mean over folds of the
      best epoch's validation F1 under that robustness condition, where the folds measured it;
    - cv/val_f1_missing_worst: the lowest of the cv/val_f1_missing_* (the modality whose loss hurts most);
    - with several seeds per fold: cv/num_seeds, fold/<fold>/test_f1_seed_std and fold/<fold>/val_f1_seed_std (the
      population std over the fold's seeds), cv/test_f1_seed_std and cv/val_f1_seed_std (their means over folds).
    """
    if not folds:
        raise ValueError("no fold results to aggregate")
    groups = fold_groups(folds)
    seeded = any(len(g) > 1 for g in groups.values())
    folds = [seed_mean(g, aus) for g in groups.values()]
    val = np.array([f["val"]["f1_mean"] for f in folds], dtype=float)
    test = np.array([f["test"]["f1_mean"] for f in folds], dtype=float)
    out: dict[str, float] = {
        "cv/val_f1_mean": float(val.mean()),
        "cv/val_f1_std": float(val.std()),
        "cv/test_f1_mean": float(test.mean()),
        "cv/test_f1_std": float(test.std()),
        "cv/num_folds": float(len(folds)),
    }
    summed = np.zeros((len(aus), 4), np.int64)
    for j, au in enumerate(aus):
        out[f"cv/test_f1_{au}"] = float(np.nanmean([f["test"]["f1"][au] for f in folds]))
        summed[j] = [sum(f["test"]["counts"][au][k] for f in folds) for k in ("tp", "fp", "fn", "tn")]
    out["cv/test_f1_pooled"] = float(np.nanmean(f1_from_counts(summed)))
    out.update(aggregate_robustness(folds))
    if seeded:
        out.update(seed_spread(groups))
    return out


def seed_spread(groups: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """The seed-to-seed spread: per fold the population std over its seeds, and its mean over folds."""
    out: dict[str, float] = {"cv/num_seeds": float(min(len(g) for g in groups.values()))}
    for part in ("test", "val"):
        stds = {fold: float(np.std([r[part]["f1_mean"] for r in g])) for fold, g in groups.items()}
        out.update({f"fold/{fold}/{part}_f1_seed_std": s for fold, s in stds.items()})
        out[f"cv/{part}_f1_seed_std"] = float(np.mean(list(stds.values())))
    return out


def nested_estimate(selected: dict[str, float]) -> dict[str, float]:
    """The nested protocol's outer estimate from {outer fold: test F1 of the configuration its own search selected}:
    cv/test_f1_nested_mean and cv/test_f1_nested_std (population std over the outer folds)."""
    if not selected:
        raise ValueError("no outer fold selected a configuration")
    test = np.array(list(selected.values()), dtype=float)
    return {"cv/test_f1_nested_mean": float(test.mean()), "cv/test_f1_nested_std": float(test.std()),
            "cv/num_folds": float(len(test))}  # fmt: skip


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
    out = {f"cv/{k.removeprefix('val/')}".replace("cv/f1_", "cv/val_f1_"): float(np.mean([r[k] for r in robust]))
           for k in keys}  # fmt: skip
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
