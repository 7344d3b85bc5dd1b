"""The autoscaler brings worker nodes up for a sweep (issue 23): Ray's fake multi-node provider on this machine,
with the node types of the repository's own `cluster.yaml`, scaled down.

Ray's `ray.cluster_utils.AutoscalingCluster` is not used: its `start()` and `shutdown()` run `ray stop --force`
(every Ray of the user on the machine), and its constructor reads `fake_multi_node/example.yaml`, which the
installed Ray wheel does not ship. The test does what `start()` does by hand: `RAY_FAKE_CLUSTER=1 ray start --head
--autoscaling-config FILE`, the file being cluster.yaml's node types under the `fake_multinode` provider. Each
node the autoscaler launches is a raylet started by the head's autoscaler process, so it carries the head's
environment marker, by which the test stops every process.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from sweep_helpers import FARM, free_port, head_ports_args, kill_marked, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SPACES = Path(__file__).parent / "spaces"
SCALED = {"CPU": 2, "GPU": 1}
"""A worker of cluster.yaml's GPU type, scaled down: g5.2xlarge's 8 CPUs and 1 A10G -> 2 logical CPUs, 1 logical
GPU (the folds train on the CPU: `train.device: cpu` in the test space)."""
MAX_WORKERS = 2
FAKE_HEAD = "ray.head.default"
"""The fake multi-node provider's own name for the head node type (its FAKE_HEAD_NODE_TYPE)."""


def fake_config(gcs: str) -> dict:
    """cluster.yaml's node types, scaled down, under Ray's fake multi-node provider."""
    real = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    head = real["head_node_type"]
    # the fake provider calls its head type ray.head.default: under another name the autoscaler finds no head and
    # launches cluster.yaml's head type again and again (seen: "Missing entry for node_type ray.head.default")
    types = {FAKE_HEAD if name == head else name: {
        "node_config": {}, "resources": {"CPU": 0} if name == head else dict(SCALED),
        "min_workers": t.get("min_workers", 0), "max_workers": min(t.get("max_workers", 0), MAX_WORKERS)}
        for name, t in real["available_node_types"].items()}  # fmt: skip
    assert types[FAKE_HEAD]["max_workers"] == 0 and any(t["max_workers"] for t in types.values())
    head = FAKE_HEAD
    commands = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands")  # fmt: skip
    return {"cluster_name": real["cluster_name"], "max_workers": MAX_WORKERS, "upscaling_speed": 1.0,
            "idle_timeout_minutes": real["idle_timeout_minutes"],
            "provider": {"type": "fake_multinode", "gcs_address": gcs, "use_node_id_as_ip": True,
                         "disable_node_updaters": True, "disable_launch_config_check": True},
            "auth": {"ssh_user": "ubuntu"}, "available_node_types": types, "head_node_type": head,
            "docker": {}, "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "rsync_exclude": [], "rsync_filter": [], **{c: [] for c in commands}}  # fmt: skip


def test_the_autoscaler_brings_up_cluster_yaml_workers_for_a_sweep(tmp_path):
    start = time.time()
    root = tempfile.mkdtemp(prefix="raya", dir="/tmp")
    env = {**os.environ, "TMPDIR": str(tmp_path), "FARM_RAY_TEMP_DIR": root, "PYTHONUNBUFFERED": "1",
           "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    ports = {k: free_port() for k in ("gcs", "dashboard", "client")}
    config = tmp_path / "autoscaling.json"
    config.write_text(json.dumps(fake_config(f"127.0.0.1:{ports['gcs']}")))
    try:
        up = subprocess.run(
            [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(ports["dashboard"]), "--ray-client-server-port",
             str(ports["client"]), "--num-cpus", "0", "--num-gpus", "0", "--temp-dir", root, "--disable-usage-stats",
             f"--autoscaling-config={config}", *head_ports_args()],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        wait_for(f"http://127.0.0.1:{ports['dashboard']}/api/version", 300, "the Ray dashboard", Path(root) / "x")
        subprocess.run([*FARM, "data", "synth", "--out", str(tmp_path / "data"), "--subjects", "6", "--tasks", "1",
                        "--frames", "16", "--size", "32", "--difficulty", "easy"], check=True, env=env,
                       capture_output=True)  # fmt: skip
        env["RAY_ADDRESS"] = f"127.0.0.1:{ports['gcs']}"
        count = "import json, ray; ray.init(address='auto', log_to_driver=False); print(json.dumps(ray.nodes()))"
        before = json.loads(subprocess.run([sys.executable, "-c", count], env=env, capture_output=True, text=True,
                                           timeout=120).stdout.strip().splitlines()[-1])  # fmt: skip
        assert [n["Alive"] for n in before] == [True], "the cluster must start with the head alone"
        proc = subprocess.run(
            [*FARM, "sweep", "--address", "auto", "--space", str(SPACES / "multinode.yaml"), "--trials", "1",
             "--gpus-per-fold", "1/3", "--data", str(tmp_path / "data"), "--storage", str(tmp_path / "sweeps"),
             "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--name", "autoscale"],
            env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        after = json.loads(subprocess.run([sys.executable, "-c", count], env=env, capture_output=True, text=True,
                                          timeout=120).stdout.strip().splitlines()[-1])  # fmt: skip
        monitor = sorted(Path(root).glob("session_*/logs/monitor.log"))
        launched = monitor[-1].read_text(errors="replace").count("Launching") if monitor else -1
        print(f"\nautoscaling: {len(after) - 1} worker node(s) launched (monitor.log 'Launching' lines: {launched}); "
              f"test {time.time() - start:.0f} s")  # fmt: skip
        assert proc.returncode == 0 and "finished:" in out, out[-4000:]
        assert "no GPU node is up: asking the autoscaler" in out and "GPU node up after" in out, out[-3000:]
        workers = [n for n in after if "node:__internal_head__" not in n["Resources"]]
        assert workers and all(n["Resources"].get("GPU") == 1 for n in workers), after  # cluster.yaml's GPU type
    finally:
        kill_marked(f"FARM_RAY_TEMP_DIR={root}")
        shutil.rmtree(root, ignore_errors=True)
