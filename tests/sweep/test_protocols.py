"""Seeds and the nested protocol (issue 14) without Ray: the units a trial trains, their reproducibility,
the per-round aggregation, resources, options and the leaderboards."""

import json
import math
from pathlib import Path

import pytest
import torch

from farm.config import unflatten
from farm.engine import fit_fold
from farm.sweep.leaderboard import format_leaderboard, format_nested, select_per_fold
from farm.sweep.options import SweepError, SweepOptions
from farm.sweep.run import resolve_options, use_asha
from farm.sweep.space import SpaceError, load_space
from farm.sweep.trial import plan_resources
from farm.sweep.worker import failure_reason, fold_config, fold_mean_curve, fold_seed_mean, trial_units

FAST = {"model.backbone": "resnet10", "amf.num_samples": 3, "train.batch_size": 8, "train.eval_batch_size": 16,
        "train.device": "cpu", "data.val_fraction": 0.25, "train.epochs": 2, "train.val_robustness": []}  # fmt: skip


def test_a_trial_trains_each_fold_with_each_seed_and_one_seed_is_the_fold_alone():
    units = trial_units(["P1", "P2"], 2, 5)
    assert [(u["fold"], u["seed"], u["name"]) for u in units] == [
        ("P1", 5, "P1-s5"), ("P1", 6, "P1-s6"), ("P2", 5, "P2-s5"), ("P2", 6, "P2-s6")
    ]  # fmt: skip
    assert [(u["fold"], u["seed"], u["name"]) for u in trial_units(["P1", "P3"], 1, 0)] == [
        ("P1", 0, "P1"), ("P3", 0, "P3")
    ]  # fmt: skip


def test_partitions_are_the_outermost_unit_and_name_their_runs():
    units = trial_units(["P1", "P2"], 2, 0, (0, 1), repeated=True)
    assert [u["name"] for u in units] == ["r0-P1-s0", "r0-P1-s1", "r0-P2-s0", "r0-P2-s1",
                                          "r1-P1-s0", "r1-P1-s1", "r1-P2-s0", "r1-P2-s1"]  # fmt: skip
    assert [u["partition"] for u in units] == [0] * 4 + [1] * 4
    # a nested search of partition 1's outer fold P2, one seed
    assert trial_units(["P2"], 1, 0, (1,), repeated=True) == [{"fold": "P2", "seed": 0, "partition": 1, "name": "r1-P2"}]
    # one partition: no partition anywhere (the names and results of before)
    assert all("partition" not in u for u in trial_units(["P1"], 2, 0))
    cfg = fold_config({"flat": {"data.path": "x", "data.num_workers": 0}, "threads": 1}, units[5])
    assert (cfg.data.partition, cfg.data.fold, cfg.train.seed) == (1, "P1", 1)


def test_asha_only_for_the_one_objective_measured_every_epoch():
    assert use_asha(("cv/val_f1_mean",), grid=False)
    assert not use_asha(("cv/val_f1_mean",), grid=True)  # an ablation grid: every cell runs out
    assert not use_asha(("cv/val_f1_missing_worst",), grid=False)  # measured after training only
    # several objectives: a trial trading clean F1 for robustness must not be stopped on clean F1
    assert not use_asha(("cv/val_f1_mean", "cv/val_f1_missing_worst"), grid=False)


def test_a_fixed_seed_trains_identically_and_another_seed_differently_on_the_same_split(tiny_dataset):
    """Two folds x two seeds, each trained twice in-process: the same val/f1_mean and loss history."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a sweep's fold worker on a CPU node (and 10x faster on a busy 2-core machine)
    try:
        check_seeds_reproduce(tiny_dataset)
    finally:
        torch.set_num_threads(threads)


def check_seeds_reproduce(tiny_dataset):
    histories = {}
    for unit in trial_units(["P1", "P2"], 2, 0):
        cfg = unflatten({**FAST, "data.path": str(tiny_dataset), "data.fold": unit["fold"], "train.seed": unit["seed"]})
        runs = [fit_fold(cfg, log=lambda s: None) for _ in range(2)]
        curves = [[(h["val/f1_mean"], h["train/loss"]) for h in r.history] for r in runs]
        assert curves[0] == curves[1] and len(curves[0]) == 2, unit  # bit for bit
        assert runs[0].test == runs[1].test
        histories[unit["name"]] = (curves[0], runs[0].split)
    for fold in ("P1", "P2"):
        (a, split_a), (b, split_b) = histories[f"{fold}-s0"], histories[f"{fold}-s1"]
        assert [x[1] for x in a] != [x[1] for x in b]  # init, order, augmentation, AMF sampling: another seed
        assert (split_a["train"], split_a["val"], split_a["test"]) == (
            split_b["train"],
            split_b["val"],
            split_b["test"],
        )


def test_a_round_averages_each_folds_seeds_before_the_folds():
    # fold P1 with two seeds, fold P2 with two: the plain mean over units would weigh them alike anyway, so
    # make P1's seeds unequal in number to see the fold-first mean
    m = [{"fold": "P1", "v": 0.2}, {"fold": "P1", "v": 0.4}, {"fold": "P1", "v": 0.6}, {"fold": "P2", "v": 0.8}]
    assert fold_seed_mean(m, "v") == pytest.approx((0.4 + 0.8) / 2)
    assert math.isnan(fold_seed_mean([*m, {"fold": "P2", "v": float("nan")}], "v"))
    hist = lambda *v: [{"val/f1_mean": x} for x in v]  # noqa: E731
    results = [{"fold": "P1", "history": hist(0.1, 0.3)}, {"fold": "P1", "history": hist(0.3)},
               {"fold": "P2", "history": hist(0.5, 0.7)}]  # fmt: skip
    # epoch 1: P1 = mean(0.3, 0.3 carried), P2 = 0.7
    assert fold_mean_curve(results) == pytest.approx([(0.2 + 0.5) / 2, (0.3 + 0.7) / 2])


def test_a_diverged_seed_is_named_in_its_reason():
    assert failure_reason({"fold": "P2", "diverged": "fold P2: training diverged in epoch 1: x"}) == (
        "fold P2: training diverged in epoch 1: x"
    )
    assert failure_reason({"fold": "P2", "seed": 3, "diverged": "fold P2: training diverged in epoch 1: x"}) == (
        "fold P2 seed 3: training diverged in epoch 1: x"
    )


def test_resources_are_shared_by_folds_times_seeds():
    opts = SweepOptions()
    cpu = plan_resources(6, 1, opts, {"CPU": 2.0})  # 3 folds x 2 seeds on 2 CPUs
    on_head = {"node:__internal_head__": 0.001, "CPU": 0.05}  # the trial function: on the head, 0.05 of its CPUs
    assert cpu == {"gpu": False, "per_fold": {"CPU": 0.32}, "threads": 1, "trial": on_head}
    assert plan_resources(3, 2, opts, {"CPU": 16.0})["per_fold"] == {"CPU": 2.65}
    # 8 folds x 4 CPUs would leave nothing of 32 for the trial function: 3 each
    assert plan_resources(6, 1, opts, {"CPU": 32.0, "GPU": 8.0}) == {"gpu": True, "per_fold": {"CPU": 3, "GPU": 1.0},
                                                                     "threads": 3, "trial": on_head}  # fmt: skip
    shared = plan_resources(6, 1, opts, {"CPU": 16.0, "GPU": 4.0})  # one trial fits only by sharing the GPUs
    assert shared["per_fold"] == {"CPU": 2, "GPU": 0.66} and 6 * 0.66 <= 4


def test_gpus_per_fold_lets_a_whole_trial_share_one_gpu(tmp_path):
    from dataclasses import replace

    from farm.sweep.space import SpaceError, gpu_share

    opts = replace(SweepOptions(), gpus_per_fold="1/3")
    one = plan_resources(3, 1, opts, {"CPU": 16.0, "GPU": 1.0})  # 3 folds on one GPU, 5 CPUs each
    assert one["per_fold"] == {"CPU": 5, "GPU": 0.33} and one["threads"] == 5 and 3 * 0.33 <= 1
    assert plan_resources(3, 1, SweepOptions(), {"CPU": 16.0, "GPU": 1.0})["per_fold"]["GPU"] == 0.33  # the default
    assert plan_resources(3, 1, SweepOptions(), {"CPU": 16.0, "GPU": 4.0})["per_fold"]["GPU"] == 1.0
    assert plan_resources(3, 1, replace(opts, gpus_per_fold="0.5"), {"CPU": 16.0, "GPU": 4.0})["per_fold"]["GPU"] == 0.5
    assert plan_resources(3, 1, SweepOptions(), {"CPU": 2.0})["gpu"] is False  # no GPU, none asked: CPUs
    with pytest.raises(SweepError, match=r"--gpus-per-fold 1/3 .*asks for GPUs, but the Ray cluster has none \(CPU 2\)"):
        plan_resources(3, 1, opts, {"CPU": 2.0})  # asked for GPUs on a cluster without: refused, not ignored
    assert (gpu_share("1/3"), gpu_share(0.25), gpu_share(2)) == (0.33, 0.25, 2.0)
    for bad in ("0", "1/0", "x", "1.5", -1):
        with pytest.raises(ValueError, match="expected"):
            gpu_share(bad)
    space = tmp_path / "g.yaml"
    space.write_text("config: cpu\nspace:\n  train.lr: {choice: [0.001]}\nsweep:\n  gpus_per_fold: 3/2\n")
    with pytest.raises(SpaceError, match=r"g.yaml: sweep.gpus_per_fold: expected a share of one GPU"):
        load_space(space)


def test_seeds_and_protocol_keys_are_checked(tmp_path):
    def space(body):
        p = tmp_path / "s.yaml"
        p.write_text("space:\n  train.lr: {float: [1.0e-4, 1.0e-3]}\nsweep:\n" + body)
        return p

    assert load_space(space("  seeds: 3\n  protocol: nested\n")).sweep == {"seeds": 3, "protocol": "nested"}
    with pytest.raises(SpaceError, match=r"s.yaml: sweep.seeds must be >= 1, got 0"):
        load_space(space("  seeds: 0\n"))
    with pytest.raises(SpaceError, match=r"sweep.protocol must be one of joint, nested, got 'inner'"):
        load_space(space("  protocol: inner\n"))
    with pytest.raises(SpaceError, match=r"sweep.seeds must be int"):
        load_space(space("  seeds: two\n"))
    with pytest.raises(SweepError, match=r"--seeds must be >= 1"):
        resolve_options(SweepOptions(seeds=-1, storage=str(tmp_path)))
    with pytest.raises(SweepError, match=r"--protocol must be one of joint, nested"):
        resolve_options(SweepOptions(protocol="outer", storage=str(tmp_path)))
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "sweep.json").write_text(json.dumps({"name": "s1", "seeds": 2, "protocol": "nested"}))
    with pytest.raises(SweepError, match=r"sweep s1 runs with --seeds 2; --resume cannot change it to 3"):
        resolve_options(SweepOptions(name="s1", resume=True, seeds=3, storage=str(tmp_path)))
    kept = resolve_options(SweepOptions(name="s1", resume=True, storage=str(tmp_path)))
    assert (kept.seeds, kept.protocol) == (2, "nested")
    assert load_space(space("  partitions: 3\n")).sweep == {"partitions": 3}
    with pytest.raises(SpaceError, match=r"sweep.partitions must be >= 1, got 0"):
        load_space(space("  partitions: 0\n"))
    with pytest.raises(SweepError, match=r"--partitions must be >= 1"):
        resolve_options(SweepOptions(partitions=-2, storage=str(tmp_path)))
    (tmp_path / "s2").mkdir()
    (tmp_path / "s2" / "sweep.json").write_text(json.dumps({"name": "s2", "partitions": 3}))
    with pytest.raises(SweepError, match=r"sweep s2 runs with --partitions 3; --resume cannot change it to 2"):
        resolve_options(SweepOptions(name="s2", resume=True, partitions=2, storage=str(tmp_path)))


def test_resume_refuses_another_space_or_data_and_takes_the_same_ones(tmp_path):
    (tmp_path / "s").mkdir()
    stored = {"name": "s", "space": "smoke", "data": str(tmp_path / "data"), "tracking_uri": "sqlite:////x.db"}
    (tmp_path / "s" / "sweep.json").write_text(json.dumps(stored))
    resume = lambda **kw: resolve_options(SweepOptions(name="s", resume=True, storage=str(tmp_path), **kw))  # noqa: E731
    with pytest.raises(SweepError, match=r"sweep s runs with --space smoke; --resume cannot change it to baselines"):
        resume(space="baselines")
    with pytest.raises(SweepError, match=r"runs with --data .*data; --resume cannot change it to elsewhere"):
        resume(data="elsewhere")
    with pytest.raises(SweepError, match=r"runs with --tracking-uri sqlite:////x.db"):
        resume(tracking_uri="sqlite:////y.db")
    with pytest.raises(SweepError, match=r"runs with --trials 0; --resume cannot change it to 7"):
        resume(trials=7)
    # the sweep's own values, however spelt, and what a resume may change, pass
    kept = resume(space=str(Path(__file__).parents[2] / "search_spaces" / "smoke.yaml"), data=str(tmp_path / "data"),
                  address="127.0.0.1:6379")  # fmt: skip
    assert (kept.space, kept.address, kept.resume) == ("smoke", "127.0.0.1:6379", True)


def row(trial, val, test, status="finished", seed_std=math.nan, folds=None):
    return {"trial": trial, "status": status, "val": val, "test": test, "test_std": 0.01, "seed_std": seed_std,
            "epoch": 3, "folds": folds or {}, "reason": "", "pareto": False, "objectives": {"cv/val_f1_mean": val}}  # fmt: skip


def test_the_leaderboard_shows_the_seed_spread():
    opts = SweepOptions(name="sw", tracking_uri="sqlite:////x/mlflow.db", storage="/x")
    rows = [row("t1", 0.5, 0.42, seed_std=0.013, folds={"P1": 0.4, "P2": 0.44}), row("t2", 0.3, math.nan, "stopped")]
    board = format_leaderboard(rows, opts, ["P1", "P2"], seeds=3)
    lines = board.splitlines()
    assert "3 seeds per fold" in board and "test F1 mean ± std (seed sd)" in board
    assert lines[4].split() == ["t1", "finished", "50.0", "42.0", "±", "1.0", "(1.3)", "40.0", "44.0"]
    one = format_leaderboard(rows, opts, ["P1", "P2"])  # one seed: the leaderboard of before
    assert "seed" not in one and one.splitlines()[3].split()[:4] == ["t1", "finished", "50.0", "42.0"]


def test_the_leaderboard_shows_the_partition_spread_and_a_column_per_partition():
    from farm.sweep.leaderboard import fold_means

    results = [{"fold": f, "partition": p, "test": {"f1_mean": v}}
               for p, f, v in [(0, "P1", 0.4), (0, "P2", 0.2), (1, "P1", 0.5), (1, "P2", 0.5)]]  # fmt: skip
    assert fold_means(results) == pytest.approx({"r0": 0.3, "r1": 0.5})
    assert fold_means([{k: v for k, v in r.items() if k != "partition"} for r in results[:2]]) == {"P1": 0.4, "P2": 0.2}
    opts = SweepOptions(name="sw", tracking_uri="sqlite:////x/mlflow.db", storage="/x")
    r = {**row("t1", 0.5, 0.4, folds=fold_means(results)), "partition_std": 0.1414}
    board = format_leaderboard([r], opts, ["P1", "P2"], partitions=2)
    assert "2 subject partitions" in board and "test F1 mean ± std [partition sd]" in board
    assert next(x for x in board.splitlines() if x.startswith("t1")).split()[-3:] == ["[14.1]", "30.0", "50.0"]


def test_the_nested_leaderboard_names_its_protocol_selection_and_estimate():
    opts = SweepOptions(name="sw", tracking_uri="sqlite:////x/mlflow.db", storage="/x")
    by_fold = {"P1": [row("a", 0.6, 0.5), row("b", 0.7, 0.2, status="stopped")],
               "P2": [row("c", 0.4, 0.3), row("d", 0.5, 0.1), row("e", 0.9, 0.9, status="failed")]}  # fmt: skip
    selected = select_per_fold(by_fold, "cv/val_f1_mean")
    assert {f: r["trial"] for f, r in selected.items()} == {"P1": "a", "P2": "d"}  # finished only, by validation
    summary = {"cv/test_f1_nested_mean": 0.3, "cv/test_f1_nested_std": 0.2}
    board = format_nested(by_fold, selected, summary, opts)
    assert "nested: one search per outer fold" in board
    assert "outer fold P1: 2 trials (Optuna study sw-P1), selected a" in board
    assert "nested estimate: test F1 30.0 ± 20.0 over 2 outer folds" in board and "P2 d val 50.0 test 10.0" in board
    row_a = next(line for line in board.splitlines() if line.startswith("a "))
    assert row_a.split() == ["a", "finished", "60.0", "50.0"]  # one fold: its test F1, no std over folds
    assert "register the selection: farm promote --sweep sw" in board  # each outer fold's selected trial
    none = format_nested({**by_fold, "P3": [row("f", 0.1, 0.1, "stopped")]}, selected, {}, opts)
    assert "nested estimate: none: outer fold P3 selected no configuration" in none


def test_shipped_spaces_default_to_one_seed_and_the_joint_protocol():
    for p in sorted(Path(load_space("smoke").path).parent.glob("*.yaml")):
        if p.name in ("protocols_synthetic.yaml", "partitions_synthetic.yaml", "partitions_dropout.yaml"):
            continue  # docs/results.md's seeds and partitions experiments: several seeds on purpose
        sweep = load_space(p).sweep
        assert sweep.get("seeds", 1) == 1 and sweep.get("protocol", "joint") == "joint", p.name


def test_resources_on_a_multi_node_cluster_fit_one_node():
    """A head with no CPUs for work and GPU workers of 2 CPUs: a fold's CPUs are those of one GPU node (not the
    cluster's CPUs per GPU), and the trial functions run on the head with no CPU."""
    from dataclasses import replace

    head = {"node:__internal_head__": 1.0, "memory": 1e9}
    workers = [{"CPU": 2.0, "GPU": 1.0}] * 3
    big = {"node:__internal_head__": 1.0, "CPU": 8.0}  # a CPU head like cluster.yaml's m5.2xlarge
    total = {"CPU": 6.0, "GPU": 3.0}
    one = plan_resources(3, 2, SweepOptions(), total, [head, *workers])
    assert one == {"gpu": True, "per_fold": {"CPU": 2.0, "GPU": 1.0}, "threads": 2,
                   "trial": {"node:__internal_head__": 0.001, "CPU": 0.0}}  # fmt: skip
    shared = plan_resources(3, 2, replace(SweepOptions(), gpus_per_fold="1/3"), total, [head, *workers])
    assert shared["per_fold"] == {"CPU": 0.66, "GPU": 0.33} and 3 * 0.66 <= 2 and shared["threads"] == 1
    # the head's own CPUs never make a GPU node's fold bigger than that node
    mixed = plan_resources(3, 2, SweepOptions(), {"CPU": 14.0, "GPU": 3.0}, [big, *workers])
    assert mixed["per_fold"] == {"CPU": 2.0, "GPU": 1.0} and mixed["trial"]["CPU"] == 0.05


def test_held_epochs_travel_with_the_round_and_are_written_once_on_restart(tmp_path):
    """A fold's epoch is held until its round returns; the round file keeps what is held, so a restart from that
    round writes it (the attempt that trained it may have died before writing), and never twice."""
    from mlflow.tracking import MlflowClient

    from farm.sweep.worker import FoldTracker
    from farm.tracking.mlflow import RunTracker, ensure_store, get_or_create_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_store(uri)
    client = MlflowClient(uri)
    run = get_or_create_run(client, client.create_experiment("e"), "t-P1")
    first = FoldTracker(RunTracker(client, run), client, run)
    first.log_metrics({"train/loss": 0.9, "val/f1_mean": 0.2}, step=0)
    first.flush()  # round 1 returned
    first.log_metrics({"train/loss": 0.8, "val/f1_mean": 0.3}, step=1)
    saved = json.loads(json.dumps(first.held()))  # what round 2's round.json holds; the attempt dies unflushed
    for _ in range(2):  # two restarts from round 2: the epoch is written once
        again = FoldTracker(RunTracker(client, run), client, run)
        for metrics, step in saved:
            again.log_metrics(metrics, step=step)
        again.flush()
    steps = [m.step for m in client.get_metric_history(run, "val/f1_mean")]
    assert sorted(steps) == [0, 1]
