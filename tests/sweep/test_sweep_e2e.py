"""`farm sweep` end to end: a real local Ray, a real sqlite MLflow store, real Optuna, as a user runs it."""

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from sweep_helpers import FARM, kill_ray_processes, runs_by_parent, sweep_args

pytestmark = pytest.mark.slow


def test_smoke_sweep_logs_one_parent_per_trial_and_one_child_per_fold(smoke_sweep):
    tmp_path, name, proc = smoke_sweep.root, smoke_sweep.name, smoke_sweep.proc
    assert "top trials by fold-mean validation F1" in proc.stdout and "mlflow ui --backend-store-uri" in proc.stdout
    # the terminal shows the farm's lines; Ray's, Tune's and Train's own go to a file the output names (issue 15)
    ray_log = (tmp_path / "sweeps" / name / "ray.log").resolve()
    assert f"Ray's own log (start-up, Tune, Train, trial errors): {ray_log}" in proc.stdout
    assert ray_log.is_file() and ray_log.stat().st_size > 0
    out = proc.stdout + proc.stderr
    assert "tensorboard" not in out.lower() and "Configuration for experiment" not in out
    assert "Add type hints" not in out

    client, parents, children = runs_by_parent(tmp_path, name)
    assert len(parents) == 2 and len({p.info.run_name for p in parents}) == 2
    subjects = {f"{s}{i:03d}" for i in range(1, 4) for s in "FM"}
    for p in parents:
        kids = children[p.info.run_id]
        assert sorted(k.data.tags["fold"] for k in kids) == ["P1", "P2", "P3"]
        assert p.info.status == "FINISHED" and all(k.info.status == "FINISHED" for k in kids)
        tests = [k.data.metrics["test/f1_mean"] for k in kids]
        assert p.data.metrics["cv/test_f1_mean"] == pytest.approx(np.mean(tests), abs=1e-12)
        assert p.data.metrics["cv/test_f1_std"] == pytest.approx(np.std(tests, ddof=1), abs=1e-12)
        assert "cv/val_f1_mean" in p.data.metrics and "cv/test_f1_pooled" in p.data.metrics
        assert len(client.get_metric_history(p.info.run_id, "cv/val_f1_epoch_mean")) == 2  # per-epoch curve
        test_sets = []
        for k in kids:
            train, val, test = (set(k.data.tags[f"split.{s}"].split()) for s in ("train", "val", "test"))
            assert not (test & train) and not (test & val) and not (train & val)
            assert train | val | test == subjects
            test_sets.append(test)
            assert len(client.get_metric_history(k.info.run_id, "val/f1_mean")) == 2  # once per epoch
        assert set().union(*test_sets) == subjects and sum(map(len, test_sets)) == 6  # folds partition subjects
        for tag in ("git_sha", "version.torch", "data_hash", "split_hashes", "partitions_hash"):
            assert p.data.tags.get(tag), tag
        assert "plot_error" not in p.data.tags
        assert [a.path for a in client.list_artifacts(p.info.run_id)] == ["config.yaml", "per_au_test_f1.json",
                                                                          "per_au_test_f1.png"]  # fmt: skip
        for k in kids:  # each fold's per-frame test predictions, for the champion bootstrap
            assert [a.path for a in client.list_artifacts(k.info.run_id, "predictions")] == [
                "predictions/test_predictions.parquet"
            ]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'sweeps' / name / 'optuna.db'}")
    assert len(study.trials) == 2


def test_validation_robustness_on_folds_and_trials_equals_a_direct_computation(smoke_sweep):
    """Issue 13: every fold measures its best epoch on its validation subjects; the parent logs the fold means."""
    import torch

    from farm.checkpoints import BEST_FILE, InputSpec, load_checkpoint
    from farm.config import unflatten
    from farm.data.perturb import Condition
    from farm.data.store import FrameStore
    from farm.engine import build_loaders, robustness_f1
    from farm.evaluate.inference import rebuild_model
    from farm.tracking.sweeps import best_trial, trial_runs  # noqa: F401 - the reader the report uses

    client, parents, children = runs_by_parent(smoke_sweep.root, smoke_sweep.name)
    mods = ("visual", "depth", "thermal")
    for p in parents:
        kids = children[p.info.run_id]
        for m in mods:
            per_fold = [k.data.metrics[f"val/f1_missing_{m}"] for k in kids]
            assert p.data.metrics[f"cv/val_f1_missing_{m}"] == pytest.approx(np.mean(per_fold), abs=1e-12)
        worst = min(p.data.metrics[f"cv/val_f1_missing_{m}"] for m in mods + ("visual-depth", "visual-thermal",
                                                                              "depth-thermal"))  # fmt: skip
        assert p.data.metrics["cv/val_f1_missing_worst"] == pytest.approx(worst, abs=1e-12)
        assert "cv/val_f1_noise_visual-depth-thermal_0.8" in p.data.metrics
        assert not any(k.startswith("cv/test") and "missing" in k for k in p.data.metrics)  # never test subjects
    # a direct computation with fold P1's best checkpoint of the first trial, on that fold's validation subjects
    p = parents[0]
    kid = next(k for k in children[p.info.run_id] if k.data.tags["fold"] == "P1")
    ckpt_dir = Path(p.data.tags["checkpoint"]) / "P1"
    best = load_checkpoint(ckpt_dir / BEST_FILE)
    spec = InputSpec.from_dict(best["input"])
    model = rebuild_model(best["config"], spec)
    model.load_state_dict(best["model"])
    cfg = unflatten({f"{s}.{k}": v for s, sec in best["config"].items() for k, v in sec.items()})
    store = FrameStore(smoke_sweep.root / "data")
    from farm.engine import fold_split

    split, _ = fold_split(cfg, store)
    assert " ".join(split.val) == kid.data.tags["split.val"]
    loader = build_loaders(cfg, store, split, spec.modalities)["val"]
    from farm.engine import val_conditions

    conds = val_conditions(cfg, spec.modalities)
    direct = robustness_f1(model, loader, torch.device("cpu"), conds, cfg.data.aus, cfg.amf.eval_seed)
    for c in (Condition("missing", ("depth",)), Condition("missing", ("visual", "thermal"))):
        key = f"val/f1_missing_{'-'.join(c.modalities)}"
        assert direct[key] == pytest.approx(kid.data.metrics[key], abs=1e-9), key


def test_resume_after_kill_9_finishes_without_duplicates(farm_env):
    env, tmp_path = farm_env
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(sweep_args(tmp_path, "resume", "--trials", "3"), env=env, stdout=log,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 600
    while "finished:" not in (tmp_path / "first.log").read_text():
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.time() < deadline, "the first trial did not finish in time"
        time.sleep(1)
    first.send_signal(signal.SIGKILL)  # the driver dies without any cleanup
    first.wait()
    kill_ray_processes(env["FARM_RAY_TEMP_DIR"])  # and its local Ray with it, as a reboot would
    _, parents, _ = runs_by_parent(tmp_path, "resume")
    done_before = {p.info.run_name for p in parents if p.info.status == "FINISHED"}
    assert done_before

    again = subprocess.run([*FARM, "sweep", "--storage", str(tmp_path / "sweeps"), "--name", "resume", "--resume"],
                           env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    client, parents, children = runs_by_parent(tmp_path, "resume")
    names = [p.info.run_name for p in parents]
    assert len(names) == len(set(names)) == 3  # no trial lost, none duplicated
    assert all(len(children[p.info.run_id]) == 3 for p in parents)
    for p in parents:
        if p.info.run_name in done_before:  # finished before the kill: not trained or logged again
            assert len(client.get_metric_history(p.info.run_id, "cv/test_f1_mean")) == 1
            for k in children[p.info.run_id]:
                assert len(client.get_metric_history(k.info.run_id, "val/f1_mean")) == 2
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{tmp_path / 'sweeps' / 'resume' / 'optuna.db'}")
    assert len(study.trials) == 3


def test_multi_objective_sweep_prints_a_pareto_front_and_optuna_holds_both_values(farm_env):
    env, tmp_path = farm_env
    space = Path(__file__).parent / "spaces" / "multi_objective.yaml"
    out = subprocess.run(sweep_args(tmp_path, "mo", "--space", str(space)), env=env, capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "objectives: cv/val_f1_mean, cv/val_f1_missing_worst" in out.stdout
    # issue 20: with two objectives no trial is stopped on the first alone (the second exists only after training)
    assert "no ASHA: a trial stopped on one objective would leave the front" in out.stdout
    assert "Pareto front on cv/val_f1_mean, cv/val_f1_missing_worst" in out.stdout and "Pareto front: " in out.stdout
    client, parents, children = runs_by_parent(tmp_path, "mo")
    on_front = [p for p in parents if p.data.tags.get("pareto_front") == "true"]
    assert len(on_front) >= 1 and len(parents) == 2
    assert all(p.info.status == "FINISHED" and "stopped" not in p.data.tags for p in parents)  # every trial ran out
    for p in parents:
        for k in children[p.info.run_id]:
            assert len(client.get_metric_history(k.info.run_id, "val/f1_mean")) == 2
    points = [(p.data.metrics["cv/val_f1_mean"], p.data.metrics["cv/val_f1_missing_worst"]) for p in parents]
    dominated = [any(q[0] >= v[0] and q[1] >= v[1] and q != v for q in points) for v in points]
    assert [p.data.tags.get("pareto_front") == "true" for p in parents] == [not d for d in dominated]
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{tmp_path / 'sweeps' / 'mo' / 'optuna.db'}")
    assert len(study.directions) == 2
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(len(t.values) == 2 for t in done)
    by_run = {p.info.run_name: p for p in parents}
    for t in done:  # Optuna's values are the parent runs' logged objectives
        assert any(
            abs(p.data.metrics["cv/val_f1_mean"] - t.values[0]) < 1e-9
            and abs(p.data.metrics["cv/val_f1_missing_worst"] - t.values[1]) < 1e-9
            for p in by_run.values()
        )
    front_values = {tuple(t.values) for t in study.best_trials}  # Optuna's own Pareto front agrees with ours
    assert front_values == {(p.data.metrics["cv/val_f1_mean"], p.data.metrics["cv/val_f1_missing_worst"])
                            for p in on_front}  # fmt: skip
    assert client.get_experiment_by_name("mo").tags["objective"] == "cv/val_f1_mean,cv/val_f1_missing_worst"
