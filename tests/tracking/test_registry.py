"""farm.tracking.registry: which metric `farm promote` picks the best trial by."""

from types import SimpleNamespace

from farm.tracking.registry import selection_metric


class Store:
    """The one call selection_metric makes of an MLflow client."""

    def __init__(self, experiments: dict[str, dict[str, str]]) -> None:
        self.experiments = experiments

    def get_experiment_by_name(self, name):
        return SimpleNamespace(tags=self.experiments[name]) if name in self.experiments else None


def test_promote_picks_by_the_sweeps_first_objective_unless_a_metric_is_given():
    store = Store({"multi": {"objective": "cv/val_f1_missing_worst,cv/val_f1_mean"}, "single": {"objective":
                  "cv/val_f1_mean"}, "old": {}})  # fmt: skip
    assert selection_metric(store, "multi") == "cv/val_f1_missing_worst"  # a Pareto front: its first objective
    assert selection_metric(store, "multi", "cv/val_f1_mean") == "cv/val_f1_mean"  # --metric wins
    assert selection_metric(store, "single") == "cv/val_f1_mean"
    assert selection_metric(store, "old") == "cv/val_f1_mean"  # a sweep from before objectives were recorded
