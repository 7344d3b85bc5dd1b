"""A real multi-node Ray cluster on this machine (issue 23): a head with no CPUs for work and three worker nodes
that declare one logical GPU each, every node a `ray start` of its own on 127.0.0.1 with its own temp dir, plus an
`mlflow server` on the head's loopback. The folds train on the CPU (`train.device: cpu` in the test spaces: there
is no CUDA here) while Ray schedules them by GPU.

One cluster serves the module, in this order: the fold layout with one GPU per fold and with `--gpus-per-fold 1/3`
(2 concurrent trials, `farm sweep --address auto` as run on the head), `farm submit` of the smoke job to the head's
Jobs API, then a worker node killed mid-trial (last: the cluster loses that node). Every process is stopped by its
own id, found by the environment marker its node was started with (never `ray stop`).
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sweep_helpers import FARM, free_port, head_ports_args, kill_marked, marked, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SPACES = Path(__file__).parent / "spaces"
WORKERS = ("w1", "w2", "w3")
NODE_VAR = "FARM_TEST_NODE"
"""Environment marker of a node's processes: its raylet and agents, and the workers its raylet starts."""
FOLDS = ["P1", "P2", "P3"]


def ray_start(env: dict, name: str, args: list[str]) -> None:
    proc = subprocess.run([str(BIN / "ray"), "start", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                           "--labels", f"farm-node={name}", *head_ports_args(), *args],
                          env={**env, NODE_VAR: name}, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, f"ray start ({name}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multinode")
    root = tempfile.mkdtemp(prefix="raym", dir="/tmp")  # short: Ray's socket paths
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1: Ray's local-only mode (what `farm sweep` uses alone) refuses worker nodes
    env = {**os.environ, "TMPDIR": str(tmp), "FARM_RAY_TEMP_DIR": root, "PYTHONUNBUFFERED": "1",
           "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
           # the cluster's own token (Ray's token authentication): every node, driver and `farm submit` sends it
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    ports = {k: free_port() for k in ("gcs", "dashboard", "client", "mlflow")}
    mlflow_log = tmp / "mlflow.log"
    mlflow_srv = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(ports["mlflow"]), "--backend-store-uri",
         f"sqlite:///{tmp / 'mlflow.db'}", "--artifacts-destination", str(tmp / "mlartifacts"), "--workers", "1"],
        env=env, stdout=open(mlflow_log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        ray_start(env, "head", ["--head", "--port", str(ports["gcs"]), "--dashboard-host", "127.0.0.1",
                                "--dashboard-port", str(ports["dashboard"]), "--ray-client-server-port",
                                str(ports["client"]), "--num-cpus", "0", "--num-gpus", "0",
                                "--temp-dir", f"{root}/head"])  # fmt: skip
        for name in WORKERS:  # 2 logical CPUs and 1 logical GPU each
            ray_start(env, name, ["--address", f"127.0.0.1:{ports['gcs']}", "--num-cpus", "2", "--num-gpus", "1",
                                  "--temp-dir", f"{root}/{name}"])  # fmt: skip
        wait_for(f"http://127.0.0.1:{ports['mlflow']}/health", 300, "mlflow server", mlflow_log)
        wait_for(f"http://127.0.0.1:{ports['dashboard']}/api/version", 300, "the Ray dashboard", Path(root) / "x")
        subprocess.run([*FARM, "data", "synth", "--out", str(tmp / "data"), "--subjects", "6", "--tasks", "1",
                        "--frames", "16", "--size", "32", "--difficulty", "easy"], check=True, env=env,
                       capture_output=True)  # fmt: skip
        env["RAY_ADDRESS"] = f"127.0.0.1:{ports['gcs']}"  # what `--address auto` joins, as on the head
        yield {"env": env, "ports": ports, "tmp": tmp, "root": root, "uri": f"http://127.0.0.1:{ports['mlflow']}"}
    finally:
        kill_marked(f"FARM_RAY_TEMP_DIR={root}")  # every node's processes and the jobs' drivers, by their ids
        os.killpg(mlflow_srv.pid, 15)
        mlflow_srv.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def nodes(c) -> list[dict]:
    """The cluster's nodes as Ray's GCS lists them (NodeID, Alive, Labels: farm-node), from a short driver."""
    code = "import json, ray; ray.init(address='auto', log_to_driver=False); print(json.dumps(ray.nodes()))"
    out = subprocess.run([sys.executable, "-c", code], env=c["env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def node_names(c) -> dict[str, str]:
    return {n["NodeID"]: n.get("Labels", {}).get("farm-node", "?") for n in nodes(c)}


def sweep(c, name: str, space: str, *extra: str, wait: bool = True):
    args = [*FARM, "sweep", "--address", "auto", "--space", str(SPACES / space), "--data", str(c["tmp"] / "data"),
            "--storage", str(c["tmp"] / "sweeps"), "--tracking-uri", c["uri"], "--name", name,
            "--tracking-relay", "on", *extra]  # fmt: skip
    log = c["tmp"] / f"{name}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(args, env=c["env"], stdout=f, stderr=subprocess.STDOUT, cwd=c["tmp"])
    if wait:
        try:
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, log.read_text()[-4000:]
    return proc, log


def fold_runs(c, name: str) -> tuple[MlflowClient, list, dict]:
    """The sweep's parent runs and, per parent, its fold runs, as the server shows them."""
    client = MlflowClient(c["uri"])
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    kids = {p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
            for p in parents}  # fmt: skip
    assert len(parents) + sum(map(len, kids.values())) == len(runs), "a fold run outside its trial"
    for p in parents:  # every fold run present once, nested under its trial, finished
        assert p.info.status == "FINISHED", p.data.tags
        assert sorted(k.data.tags["fold"] for k in kids[p.info.run_id]) == FOLDS
        assert all(k.info.status == "FINISHED" and "test/f1_mean" in k.data.metrics for k in kids[p.info.run_id])
    return client, parents, kids


def layout(c, name: str) -> list[list[str]]:
    """Per trial, the node (farm-node label) each fold ran on, in fold order."""
    _, parents, kids = fold_runs(c, name)
    names = node_names(c)
    return [[names[k.data.tags["ray_node"]] for k in sorted(kids[p.info.run_id], key=lambda k: k.data.tags["fold"])]
            for p in parents]  # fmt: skip


def test_one_gpu_per_fold_spreads_a_trial_over_three_nodes(cluster):
    start = time.time()
    _, log = sweep(cluster, "gpu1", "multinode.yaml", "--gpus-per-fold", "1", "--trials", "1")  # 3 GPUs: one at a time
    out = log.read_text()
    assert "'GPU': 1.0} per fold" in out and "through the tracking relay" in out, out[-3000:]
    trials = layout(cluster, "gpu1")
    print(f"\none GPU per fold: {trials}; {time.time() - start:.0f} s")
    assert len(trials) == 1
    for folds in trials:  # 3 nodes of 1 GPU: the trial's folds on all three
        assert sorted(folds) == list(WORKERS), trials
    _, parents, kids = fold_runs(cluster, "gpu1")
    gpu_ids = {k.data.tags["ray_gpu_ids"] for p in parents for k in kids[p.info.run_id]}
    assert gpu_ids == {"0"}, gpu_ids  # Ray assigned each fold its node's GPU 0 (CUDA_VISIBLE_DEVICES=0)


def test_a_third_of_a_gpu_per_fold_keeps_a_trial_on_one_node(cluster):
    start = time.time()
    _, log = sweep(cluster, "gpu3", "multinode.yaml", "--gpus-per-fold", "1/3")
    out = log.read_text()
    assert "'GPU': 0.33} per fold" in out, out[-3000:]
    trials = layout(cluster, "gpu3")
    print(f"\n1/3 GPU per fold: {trials}; {time.time() - start:.0f} s")
    assert len(trials) == 2
    for folds in trials:  # the whole trial shares one node's GPU
        assert len(set(folds)) == 1 and folds[0] in WORKERS, trials


def test_farm_submit_runs_the_smoke_job_on_the_cluster(cluster):
    start = time.time()
    c, shared = cluster, cluster["tmp"] / "shared"
    (shared / "data").mkdir(parents=True, exist_ok=True)
    shutil.copytree(c["tmp"] / "data", shared / "data" / "synthetic")
    proc = subprocess.run(
        [*FARM, "submit", str(ROOT / "jobs" / "smoke.yaml"), "--address", f"http://127.0.0.1:{c['ports']['dashboard']}",
         "--follow", "--env", f"FARM_SHARED={shared}", "--env", f"MLFLOW_TRACKING_URI={c['uri']}",
         "--env", "FARM_SWEEP_NAME=mn-smoke", "--env", "FARM_TRACKING_RELAY=auto"],
        env={k: v for k, v in c["env"].items() if k != "RAY_ADDRESS"}, capture_output=True, text=True, timeout=600,
        cwd=c["tmp"],
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "SUCCEEDED" in out, out[-4000:]
    assert "through the tracking relay" in out and "0 failed" in out, out[-4000:]  # auto: 4 nodes, loopback server
    _, parents, kids = fold_runs(c, "mn-smoke")
    names = node_names(c)
    used = {names[k.data.tags["ray_node"]] for p in parents for k in kids[p.info.run_id]}
    print(f"\nfarm submit: smoke job's folds on {sorted(used)}; {time.time() - start:.0f} s")
    assert len(parents) == 2 and used <= set(WORKERS) and "head" not in used
    assert "top trials by fold-mean validation F1" in out
    client = MlflowClient(c["uri"])  # the server's view, as the UI shows it
    for p in parents:
        assert p.info.status == "FINISHED"
        assert sorted(k.data.tags["fold"] for k in kids[p.info.run_id]) == FOLDS
        assert all(k.info.status == "FINISHED" and "test/f1_mean" in k.data.metrics for k in kids[p.info.run_id])
    # artifacts went through the relay (bytes) into the server's artifact store
    first = kids[parents[0].info.run_id][0]
    assert [a.path for a in client.list_artifacts(first.info.run_id, "predictions")] == [
        "predictions/test_predictions.parquet"
    ]
    assert (shared / "sweeps" / "mn-smoke" / "sweep.json").exists()  # Tune/Train state on "shared storage"


def test_a_worker_node_lost_mid_trial_resumes_on_the_others(cluster):
    c = cluster
    start = time.time()
    proc, log = sweep(c, "loss", "multinode_loss.yaml", "--gpus-per-fold", "1/3", wait=False)
    deadline, victim = time.time() + 400, None
    try:
        while victim is None:  # Tune saw round 1: the folds are in their second epoch
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-4000:]
            if re.search(r"trial \w+ epoch 1:", log.read_text()):
                # the node the trial is on: its Ray Train workers carry that node's marker
                nodes_of = {Path(f"/proc/{p}/environ").read_bytes().split(f"{NODE_VAR}=".encode())[1].split(b"\0")[0]
                            for p in marked(f"FARM_RAY_TEMP_DIR={c['root']}")
                            if Path(f"/proc/{p}/cmdline").exists()
                            and Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"ray::RayTrainWorker")}  # fmt: skip
                assert len(nodes_of) == 1, nodes_of
                victim = nodes_of.pop().decode()
                killed_at = time.time()
                kill_marked(f"{NODE_VAR}={victim}")  # its raylet, agents and workers, SIGKILL, by their ids
            time.sleep(0.2)
        proc.wait(timeout=max(1, deadline - time.time()))
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert proc.returncode == 0 and "finished:" in out, out[-4000:]
    finished_at = time.time()

    client, parents, kids = fold_runs(c, "loss")  # no fold run duplicated, none left RUNNING
    names = node_names(c)
    assert len(parents) == 1
    folds = sorted(kids[parents[0].info.run_id], key=lambda k: k.data.tags["fold"])
    before = {names[k.data.tags["ray_node_first"]] for k in folds}
    after = {names[k.data.tags["ray_node"]] for k in folds}
    epochs = {k.data.tags["fold"]: sorted(m.step for m in client.get_metric_history(k.info.run_id, "train/loss"))
              for k in folds}  # fmt: skip
    restarts = re.findall(r"restart|Restarting|failure", (c["tmp"] / "sweeps" / "loss" / "ray.log").read_text())
    print(f"\nnode loss: trial on {before}, killed {victim} in epoch 2, finished on {after}; epochs logged {epochs}; "
          f"{finished_at - killed_at:.0f} s from the kill to the end, test {time.time() - start:.0f} s; "
          f"ray.log restart lines: {len(restarts)}")  # fmt: skip
    assert before == {victim}, (before, victim)  # the trial was on the killed node ...
    assert len(after) == 1 and after.pop() in set(WORKERS) - {victim}  # ... and finished, whole, on another
    assert not next(n for n in nodes(c) if n.get("Labels", {}).get("farm-node") == victim)["Alive"]
    for fold, steps in epochs.items():  # each resumed fold's history holds every epoch exactly once
        assert steps == [0, 1, 2, 3], (fold, steps)
