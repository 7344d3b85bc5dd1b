"""`ray up` with the local provider against 127.0.0.1, through a real sshd on loopback, then a job.

The launcher runs as on a lab cluster: SSH to the head, rsync of the repository (file_mounts),
setup commands, MLflow started by `cluster/start_mlflow.sh`, `ray start --head`. The config is
`cluster.local.yaml` with four test substitutions, each for a reason that is not the launcher's:
- head_ip 127.0.0.1 and no workers, our throwaway key;
- setup_commands: this venv instead of a new one (a fresh `pip install` of torch is GBs);
- the start commands lose their `ray stop` (it ends every Ray of the user on the machine) and get
  test-chosen ports and temp dir;
- MLflow's home (its log) in the test's tmp dir.
Everything the test starts is stopped by its own process ids. Needs root (sshd) and sshd + rsync,
installed from Debian's packages when missing; skipped where that is impossible.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from sweep_helpers import free_port, head_ports_args, kill_marked, kill_ray_processes, session_log_tail

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ensure_ssh_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here")
    if shutil.which("sshd") or Path("/usr/sbin/sshd").exists():
        if shutil.which("rsync"):
            return
    if not shutil.which("apt-get"):
        pytest.skip("no sshd/rsync and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = subprocess.run(["apt-get", "install", "-y", "-q", "openssh-server", "rsync"], env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    if r.returncode != 0:
        r = subprocess.run("apt-get update -q && apt-get install -y -q openssh-server rsync", shell=True, env=env,
                           capture_output=True, text=True, timeout=900)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot install openssh-server and rsync: {r.stderr.strip().splitlines()[-1:]}")


@pytest.fixture
def sshd(tmp_path):
    ensure_ssh_tools()
    if port_open(22):
        pytest.skip("port 22 on 127.0.0.1 is taken (Ray's launcher always uses port 22)")
    d = tmp_path / "ssh"
    d.mkdir()
    for key in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-p", "22", "-o", "ListenAddress=127.0.0.1",
         "-o", f"HostKey={d / 'host'}", "-o", f"AuthorizedKeysFile={d / 'authorized_keys'}", "-o", "StrictModes=no",
         "-o", "PermitRootLogin=prohibit-password", "-o", "UsePAM=no", "-o", f"PidFile={d / 'sshd.pid'}"],
        stdout=open(d / "sshd.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(50):
            if port_open(22):
                break
            assert proc.poll() is None, (d / "sshd.log").read_text()
            time.sleep(0.1)
        yield d / "client"
    finally:
        proc.kill()
        proc.wait()


def loopback_config(tmp: Path, key: Path, ports: dict, marker: str, ray_tmp: str) -> Path:
    cfg = yaml.safe_load((ROOT / "cluster.local.yaml").read_text())
    cfg["cluster_name"] = f"farm-loopback-{ports['gcs']}"
    cfg["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    cfg["auth"] = {"ssh_user": "root", "ssh_private_key": str(key)}
    cfg["min_workers"] = cfg["max_workers"] = 0
    cfg["file_mounts"] = {str(tmp / "amf-farm"): str(ROOT)}
    cfg["setup_commands"] = [f"mkdir -p {tmp / 'shared'}"]
    env = f"FARM_TEST_MARKER={marker} PATH={VENV_BIN}:$PATH"
    cfg["head_setup_commands"] = [
        f"{env} HOME={tmp} MLFLOW_PORT={ports['mlflow']} MLFLOW_BACKEND=sqlite:///{tmp / 'mlflow.db'} "
        f"MLFLOW_ARTIFACTS={tmp / 'shared' / 'mlartifacts'} bash {tmp / 'amf-farm' / 'cluster' / 'start_mlflow.sh'}"
    ]
    cfg["head_start_ray_commands"] = [
        f"{env} FARM_RAY_TEMP_DIR={ray_tmp} RAY_USAGE_STATS_ENABLED=0 ray start --head --node-ip-address=127.0.0.1 "
        f"--port={ports['gcs']} --dashboard-host=127.0.0.1 --dashboard-port={ports['dashboard']} "
        f"--ray-client-server-port={ports['client']} --temp-dir={ray_tmp} --num-cpus=2 {' '.join(head_ports_args())} "
        "--autoscaling-config=~/ray_bootstrap_config.yaml"
    ]
    cfg["worker_start_ray_commands"] = []
    path = tmp / "loopback.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_ray_up_on_loopback_then_a_job(sshd, tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="rayu", dir="/tmp")
    marker = f"farm-ray-up-{tmp_path.name}"
    ports = {"gcs": free_port(), "dashboard": free_port(), "mlflow": free_port(), "client": 23000 + os.getpid() % 1000}
    config = loopback_config(tmp_path, sshd, ports, marker, ray_tmp)
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    home_files = [Path.home() / "ray_bootstrap_config.yaml", Path.home() / "ray_bootstrap_key.pem"]
    saved = {p: p.read_bytes() for p in home_files if p.exists()}
    try:
        up = subprocess.run([str(VENV_BIN / "ray"), "up", "-y", "--no-config-cache", str(config)], env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert (tmp_path / "amf-farm" / "cluster.yaml").exists()  # file_mounts rsynced the repository
        shared = tmp_path / "shared"
        subprocess.run([str(VENV_BIN / "farm"), "data", "synth", "--out", str(shared / "data" / "synthetic"),
                        "--subjects", "6", "--tasks", "1", "--frames", "16", "--size", "32", "--difficulty", "easy"],
                       check=True, env=env, capture_output=True)  # fmt: skip
        uri = f"http://127.0.0.1:{ports['mlflow']}"
        job = subprocess.run(
            [str(VENV_BIN / "farm"), "submit", str(ROOT / "jobs" / "smoke.yaml"), "--follow", "--address",
             f"http://127.0.0.1:{ports['dashboard']}", "--env", f"FARM_SHARED={shared}", "--env",
             f"MLFLOW_TRACKING_URI={uri}", "--env", "FARM_SWEEP_NAME=ray-up-smoke"],
            env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert job.returncode == 0 and "SUCCEEDED" in job.stdout, (
            job.stdout[-4000:] + job.stderr[-2000:] + "\n--- agent log ---\n" + session_log_tail(ray_tmp)
        )
        client = MlflowClient(uri)  # the MLflow server that the launcher's head setup started
        runs = client.search_runs([client.get_experiment_by_name("ray-up-smoke").experiment_id])
        assert sum("mlflow.parentRunId" not in r.data.tags for r in runs) == 2 and len(runs) == 2 + 2 * 3
    finally:
        kill_ray_processes(ray_tmp)
        kill_marked(marker)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        for p in home_files:  # what `ray up` wrote to the "head's" home
            if p in saved:
                p.write_bytes(saved[p])
            else:
                p.unlink(missing_ok=True)
        for p in Path("/tmp/ray").glob(f"cluster-farm-loopback-{ports['gcs']}.*"):
            p.unlink(missing_ok=True)
