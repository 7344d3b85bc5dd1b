"""farm.evaluate.cv: cross-validation summaries, robustness aggregation, objectives and Pareto fronts."""

from farm.evaluate.cv import aggregate_robustness, objective_metrics, pareto_front


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
