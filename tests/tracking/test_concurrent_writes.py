"""12 processes writing one sqlite MLflow store at once, as a sweep of 4 concurrent trials x 3 folds does.

Every writer goes through the workers' own client code (`tracking_client`, `get_or_create_run`,
`RunTracker`): params, per-epoch metrics with steps, tags, an artifact, then FINISHED. All start
together (a barrier, once every interpreter has imported MLflow), so their writes contend; afterwards every point is counted through MlflowClient.
"""

import multiprocessing as mp
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NUM_WRITERS = 12  # 4 concurrent trials x 3 folds
NUM_STEPS = 30  # epochs
METRICS = ("train/loss", "val/f1_mean", "val/f1_AU1", "val/f1_AU2", "val/f1_AU4", "val/f1_AU6", "val/f1_AU12",
           "time/epoch_s")  # fmt: skip
NUM_PARAMS = 40


def value(writer: int, step: int, k: int) -> float:
    return writer + step / 100 + k / 10_000


def write_fold(uri: str, exp_id: str, parent: str, writer: int, start, out) -> None:
    """One fold worker's MLflow traffic, through the farm's client code."""
    from farm.tracking.mlflow import RunTracker, get_or_create_run
    from farm.tracking.relay import tracking_client

    client = tracking_client({"uri": uri})
    start.wait(timeout=300)
    t0 = time.perf_counter()
    run_id = get_or_create_run(client, exp_id, f"trial-{writer // 3}-P{writer % 3 + 1}", parent,
                               {"fold": f"P{writer % 3 + 1}", "writer": str(writer)})  # fmt: skip
    tracker = RunTracker(client, run_id)
    tracker.log_params({f"param.{i:02d}": f"{writer}-{i}" for i in range(NUM_PARAMS)})
    for step in range(1, NUM_STEPS + 1):
        tracker.log_metrics({m: value(writer, step, k) for k, m in enumerate(METRICS)}, step=step)
    tracker.set_tags({"best_epoch": NUM_STEPS, "split_hash": f"h{writer}"})
    artifact = Path(out) / f"predictions-{writer}.txt"
    artifact.write_text(f"writer {writer}\n" * 100)
    tracker.log_artifact(artifact, "predictions")
    tracker.finish()
    (Path(out) / f"done-{writer}").write_text(f"{time.perf_counter() - t0:.3f}")


def test_twelve_concurrent_writers_lose_nothing(tmp_path):
    from farm.tracking.mlflow import ensure_store, experiment_id, get_or_create_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = ensure_store(uri)  # once, before any writer starts, as the sweep's driver does
    exp_id = experiment_id(client, "load", uri)
    parent = get_or_create_run(client, exp_id, "trial-parent")
    ctx = mp.get_context("spawn")  # fresh interpreters, like Ray's worker processes
    start = ctx.Barrier(NUM_WRITERS + 1)
    procs = [ctx.Process(target=write_fold, args=(uri, exp_id, parent, w, start, str(tmp_path)))
             for w in range(NUM_WRITERS)]  # fmt: skip
    for p in procs:
        p.start()
    start.wait(timeout=300)  # every writer has imported MLflow and opened the store
    t0 = time.perf_counter()
    for p in procs:
        p.join(timeout=300)
    wall = time.perf_counter() - t0
    codes = [p.exitcode for p in procs]
    assert codes == [0] * NUM_WRITERS, f"writers' exit codes {codes} (see their tracebacks above)"

    runs = client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", max_results=100)
    assert len(runs) == NUM_WRITERS
    points = 0
    for run in runs:
        w = int(run.data.tags["writer"])
        assert run.info.status == "FINISHED"
        assert len(run.data.params) == NUM_PARAMS and run.data.params["param.07"] == f"{w}-7"
        assert run.data.tags["best_epoch"] == str(NUM_STEPS) and run.data.tags["split_hash"] == f"h{w}"
        for k, m in enumerate(METRICS):
            history = sorted((h.step, h.value) for h in client.get_metric_history(run.info.run_id, m))
            assert history == [(s, pytest.approx(value(w, s, k))) for s in range(1, NUM_STEPS + 1)], (w, m)
            points += len(history)
        assert [a.path for a in client.list_artifacts(run.info.run_id, "predictions")] == [
            f"predictions/predictions-{w}.txt"
        ]
    assert points == NUM_WRITERS * NUM_STEPS * len(METRICS)
    per_writer = sorted(float((tmp_path / f"done-{w}").read_text()) for w in range(NUM_WRITERS))
    print(f"\n{NUM_WRITERS} writers, {points} metric points, {NUM_WRITERS * NUM_PARAMS} params: all there; "
          f"{wall:.1f} s wall, per writer {per_writer[0]:.1f}-{per_writer[-1]:.1f} s")  # fmt: skip
