"""The cluster path on loopback: `ray start --head` on 127.0.0.1, an `mlflow server` on 127.0.0.1,
`farm submit jobs/smoke.yaml --follow` through Ray's Jobs API, the sweep's runs found in MLflow.

The head is stopped by its own process ids (never `ray stop`, which ends every Ray of the user).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sweep_helpers import free_port, head_ports_args, kill_ray_processes, session_log_tail

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def wait_for(url: str, seconds: float, what: str, log: Path) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:  # it answers (e.g. 401: Ray's token authentication is on)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(
        f"{what} did not answer at {url} within {seconds:.0f} s:\n{log.read_text()[-3000:] if log.exists() else ''}"
    )


@pytest.fixture
def head(tmp_path):
    """A Ray head and an MLflow server, both on 127.0.0.1, owned by this test."""
    ray_tmp = tempfile.mkdtemp(prefix="rayh", dir="/tmp")  # short: Ray's socket paths
    # PATH: the head runs job entrypoints in a shell, which finds `farm` as on a cluster node whose venv is active
    env = {**os.environ, "TMPDIR": str(tmp_path), "FARM_RAY_TEMP_DIR": ray_tmp, "PYTHONUNBUFFERED": "1",
           "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else Ray on Linux swaps 127.0.0.1 for the machine's address
    ports = {k: free_port() for k in ("gcs", "dashboard", "client", "mlflow")}
    mlflow_log = tmp_path / "mlflow.log"
    mlflow_srv = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(ports["mlflow"]), "--backend-store-uri",
         f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-destination", str(tmp_path / "mlartifacts"),
         "--workers", "1"],
        env=env, stdout=open(mlflow_log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    start = subprocess.run(
        [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(ports["dashboard"]), "--ray-client-server-port",
         str(ports["client"]), "--num-cpus", "2", "--temp-dir", ray_tmp, "--disable-usage-stats", *head_ports_args()],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    try:
        assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:]
        wait_for(f"http://127.0.0.1:{ports['mlflow']}/health", 90, "mlflow server", mlflow_log)
        wait_for(f"http://127.0.0.1:{ports['dashboard']}/api/version", 90, "the Ray dashboard", Path(ray_tmp) / "x")
        yield {"env": env, "ports": ports, "tmp": tmp_path, "ray_tmp": ray_tmp}
    finally:
        kill_ray_processes(ray_tmp)  # the head's processes and the jobs' drivers, by their environment marker
        os.killpg(mlflow_srv.pid, signal.SIGTERM)
        mlflow_srv.wait(timeout=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_submit_the_smoke_job_to_a_local_head_and_find_its_runs(head):
    env, ports, tmp = head["env"], head["ports"], head["tmp"]
    shared = tmp / "shared"
    subprocess.run([str(BIN / "farm"), "data", "synth", "--out", str(shared / "data" / "synthetic"), "--subjects", "6",
                    "--tasks", "1", "--frames", "16", "--size", "32", "--difficulty", "easy"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    uri = f"http://127.0.0.1:{ports['mlflow']}"
    proc = subprocess.run(
        [str(BIN / "farm"), "submit", str(ROOT / "jobs" / "smoke.yaml"), "--address", f"http://127.0.0.1:{ports['dashboard']}",
         "--follow", "--env", f"FARM_SHARED={shared}", "--env", f"MLFLOW_TRACKING_URI={uri}",
         "--env", "FARM_SWEEP_NAME=cluster-smoke", "--env", "FARM_TRACKING_RELAY=on"],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:] + "\n--- agent log ---\n" + session_log_tail(head["ray_tmp"])
    assert "SUCCEEDED" in out and "through the tracking relay" in out, out[-4000:]
    assert "top trials by fold-mean validation F1" in out and "0 failed" in out, out[-4000:]

    client = MlflowClient(uri)  # the server's view, as the UI shows it
    exp = client.get_experiment_by_name("cluster-smoke")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    for p in parents:
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
        assert sorted(k.data.tags["fold"] for k in kids) == ["P1", "P2", "P3"]
        assert all(k.info.status == "FINISHED" and "test/f1_mean" in k.data.metrics for k in kids)
        # artifacts went through the relay (bytes) into the server's artifact store
        assert [a.path for a in client.list_artifacts(kids[0].info.run_id, "predictions")] == [
            "predictions/test_predictions.parquet"
        ]
    assert (shared / "sweeps" / "cluster-smoke" / "sweep.json").exists()  # Tune/Train state on "shared storage"


def test_submit_says_clearly_when_no_cluster_answers(tmp_path):
    proc = subprocess.run([str(BIN / "farm"), "submit", str(ROOT / "jobs" / "smoke.yaml"), "--address",
                           f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot reach the Ray Jobs API" in proc.stderr and "ray dashboard cluster.yaml" in proc.stderr
