"""farm.evaluate.cv: cross-validation summaries, robustness aggregation, objectives and Pareto fronts."""

import numpy as np
import pytest

from farm.evaluate.cv import aggregate_folds, aggregate_robustness, nested_estimate, objective_metrics, pareto_front
from farm.metrics import f1_from_counts, summarize

AUS = ("AU1", "AU2", "AU4")


def unit_results(folds=("P1", "P2", "P3"), seeds=(0,), seed=0, partitions=(None,)):
    """Fold results as FoldResult.to_json() holds them, one per (partition, fold, seed); AU4 has no label in P2."""
    rng = np.random.default_rng(seed)
    out = []
    for part, fold, s in [(p, f, s) for p in partitions for f in folds for s in seeds]:
        counts = rng.integers(0, 30, (len(AUS), 4))
        if fold == "P2":
            counts[2] = 0
        r = {"fold": fold, "test": summarize(counts, AUS), "val": {"f1_mean": float(rng.uniform(0.2, 0.6))},
             "val_robustness": {"val/f1_missing_depth": float(rng.uniform(0.1, 0.5))}}  # fmt: skip
        if len(seeds) > 1:
            r["seed"] = s
        if part is not None:
            r["partition"] = part
        out.append(r)
    return out


def test_pareto_front_keeps_only_non_dominated_finite_points():
    pts = [[0.6, 0.2], [0.5, 0.4], [0.4, 0.3], [0.6, 0.2], [float("nan"), 0.9], [0.3, 0.5]]
    # [0.4, 0.3] is dominated by [0.5, 0.4]; the NaN point is never on the front; ties both stay
    assert pareto_front(pts) == [0, 1, 3, 5]
    assert pareto_front([[1.0]]) == [0] and pareto_front([]) == []


def test_robustness_is_averaged_over_folds_with_the_worst_missing_modality():
    folds = [
        {"val_robustness": {"val/f1_missing_depth": 0.3, "val/f1_missing_visual": 0.1, "val/f1_noise_depth_0.5": 0.2}},
        {"val_robustness": {"val/f1_missing_depth": 0.5, "val/f1_missing_visual": 0.3, "val/f1_noise_depth_0.5": 0.4}},
    ]
    out = aggregate_robustness(folds)
    assert out["cv/val_f1_missing_depth"] == 0.4 and out["cv/val_f1_noise_depth_0.5"] == 0.30000000000000004
    assert out["cv/val_f1_missing_worst"] == out["cv/val_f1_missing_visual"] == 0.2
    assert aggregate_robustness([{"val": {}}, {"val_robustness": {}}]) == {}  # older results: nothing, no crash


def test_objective_metrics_follow_the_modalities_and_the_switches():
    two = objective_metrics(("visual", "depth"), ("missing", "noise"), (0.5,))
    assert two == [
        "cv/val_f1_mean",
        "cv/val_f1_missing_visual",
        "cv/val_f1_missing_depth",
        "cv/val_f1_noise_visual_0.5",
        "cv/val_f1_noise_depth_0.5",
        "cv/val_f1_noise_visual-depth_0.5",
        "cv/val_f1_missing_worst",
    ]
    assert objective_metrics(("visual",), ("missing", "noise"), (0.5,)) == [
        "cv/val_f1_mean",
        "cv/val_f1_noise_visual_0.5",
    ]
    assert objective_metrics(("visual", "depth"), (), (0.5,)) == ["cv/val_f1_mean"]


def test_one_seed_per_fold_gives_the_numbers_of_before_and_no_seed_metrics():
    res = unit_results()
    out = aggregate_folds(res, AUS)
    test = [r["test"]["f1_mean"] for r in res]
    assert out["cv/test_f1_mean"] == np.mean(test) and out["cv/test_f1_std"] == pytest.approx(np.std(test, ddof=1))
    assert out["cv/val_f1_mean"] == np.mean([r["val"]["f1_mean"] for r in res])
    assert not any("seed" in k for k in out) and out["cv/num_folds"] == 3.0


def test_seeds_are_averaged_per_fold_first_and_their_spread_reported():
    res = unit_results(seeds=(0, 1, 2))
    out = aggregate_folds(res, AUS)
    by = {f: [r for r in res if r["fold"] == f] for f in ("P1", "P2", "P3")}
    mean = {f: np.mean([r["test"]["f1_mean"] for r in rs]) for f, rs in by.items()}
    val = {f: np.mean([r["val"]["f1_mean"] for r in rs]) for f, rs in by.items()}
    assert out["cv/num_folds"] == 3.0 and out["cv/num_seeds"] == 3.0
    assert out["cv/test_f1_mean"] == pytest.approx(np.mean(list(mean.values())), abs=1e-12)
    assert out["cv/test_f1_std"] == pytest.approx(np.std(list(mean.values()), ddof=1), abs=1e-12)  # sample std
    assert out["cv/val_f1_mean"] == pytest.approx(np.mean(list(val.values())), abs=1e-12)  # the objective
    for f, rs in by.items():
        sd = np.std([r["test"]["f1_mean"] for r in rs], ddof=1)
        assert out[f"fold/{f}/test_f1_seed_std"] == pytest.approx(sd, abs=1e-12)
        val_sd = np.std([r["val"]["f1_mean"] for r in rs], ddof=1)
        assert out[f"fold/{f}/val_f1_seed_std"] == pytest.approx(val_sd, abs=1e-12)
    assert out["cv/test_f1_seed_std"] == pytest.approx(np.mean([out[f"fold/{f}/test_f1_seed_std"] for f in by]))
    # per AU: the fold mean of the seed means; AU4 (no label in P2) over the folds that have it
    au1 = np.mean([np.mean([r["test"]["f1"]["AU1"] for r in rs]) for rs in by.values()])
    assert out["cv/test_f1_AU1"] == pytest.approx(au1, abs=1e-12)
    au4 = np.mean([np.mean([r["test"]["f1"]["AU4"] for r in by[f]]) for f in ("P1", "P3")])
    assert out["cv/test_f1_AU4"] == pytest.approx(au4, abs=1e-12)
    # pooled: every prediction of every fold and seed
    summed = np.array([[sum(r["test"]["counts"][a][k] for r in res) for k in ("tp", "fp", "fn", "tn")] for a in AUS])
    assert out["cv/test_f1_pooled"] == pytest.approx(np.nanmean(f1_from_counts(summed)), abs=1e-12)
    # robustness: the fold mean of the seed means, too
    rob = np.mean([np.mean([r["val_robustness"]["val/f1_missing_depth"] for r in rs]) for rs in by.values()])
    assert out["cv/val_f1_missing_depth"] == pytest.approx(rob, abs=1e-12)
    assert out["cv/val_f1_missing_worst"] == out["cv/val_f1_missing_depth"]


def test_the_nested_estimate_is_the_mean_and_std_over_outer_folds():
    out = nested_estimate({"P1": 0.3, "P2": 0.5, "P3": 0.4})
    assert out["cv/test_f1_nested_mean"] == pytest.approx(0.4) and out["cv/num_folds"] == 3.0
    assert out["cv/test_f1_nested_std"] == pytest.approx(np.std([0.3, 0.5, 0.4], ddof=1))
    with pytest.raises(ValueError):
        nested_estimate({})
    # two partitions: the mean over partitions of the outer-fold means, and their spread over partitions
    two = nested_estimate({"r0-P1": 0.3, "r0-P2": 0.5, "r1-P1": 0.2, "r1-P2": 0.2},
                          {"r0-P1": 0, "r0-P2": 0, "r1-P1": 1, "r1-P2": 1})  # fmt: skip
    assert two["cv/test_f1_nested_mean"] == pytest.approx(0.3) and two["cv/num_folds"] == 2.0
    assert two["cv/test_f1_nested_partition_std"] == pytest.approx(np.std([0.4, 0.2], ddof=1))
    assert two["cv/test_f1_nested_std"] == pytest.approx(np.mean([np.std([0.3, 0.5], ddof=1), 0.0]))


def test_partitions_average_their_fold_means_and_report_their_spread():
    res = unit_results(seeds=(0, 1), partitions=(0, 1, 2))
    out = aggregate_folds(res, AUS)
    unit = lambda p, f, key: np.mean([r[key]["f1_mean"] for r in res if (r["partition"], r["fold"]) == (p, f)])  # noqa: E731
    folds = ("P1", "P2", "P3")
    per_part = {key: [np.mean([unit(p, f, key) for f in folds]) for p in range(3)] for key in ("test", "val")}
    assert out["cv/num_partitions"] == 3.0 and out["cv/num_folds"] == 3.0 and out["cv/num_seeds"] == 2.0
    assert out["cv/test_f1_mean"] == pytest.approx(np.mean(per_part["test"]), abs=1e-12)
    assert out["cv/val_f1_mean"] == pytest.approx(np.mean(per_part["val"]), abs=1e-12)  # the objective
    assert out["cv/test_f1_partition_std"] == pytest.approx(np.std(per_part["test"], ddof=1), abs=1e-12)
    fold_sd = np.mean([np.std([unit(p, f, "test") for f in folds], ddof=1) for p in range(3)])
    assert out["cv/test_f1_std"] == pytest.approx(fold_sd, abs=1e-12)  # within a partition, averaged
    assert {f"fold/r{p}-{f}/test_f1_seed_std" for p in range(3) for f in folds} <= set(out)
    # per AU: AU4 (no label in any P2) over the folds that have it, then over partitions
    au4 = np.mean([np.mean([np.mean([r["test"]["f1"]["AU4"] for r in res if (r["partition"], r["fold"]) == (p, f)])
                            for f in ("P1", "P3")]) for p in range(3)])  # fmt: skip
    assert out["cv/test_f1_AU4"] == pytest.approx(au4, abs=1e-12)
    # one partition's results alone: no partition metrics
    assert "cv/num_partitions" not in aggregate_folds([r for r in res if r["partition"] == 1], AUS)
