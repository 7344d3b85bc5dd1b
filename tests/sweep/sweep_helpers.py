"""Helpers shared by the end-to-end tests that run `farm sweep` (real Ray, real MLflow, real Optuna)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

FARM = [sys.executable, "-m", "farm.cli"]


def make_env(tmp_path: Path) -> tuple[dict, str]:
    """A tiny synthetic set, and Ray's temp dir (short: socket paths) and TMPDIR owned by the test."""
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {**os.environ, "TMPDIR": str(tmp_path), "FARM_RAY_TEMP_DIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([*FARM, "data", "synth", "--out", str(tmp_path / "data"), "--subjects", "6", "--tasks", "1",
                    "--frames", "16", "--size", "32", "--difficulty", "easy"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    return env, ray_tmp


def kill_marked(marker: str) -> None:
    """Kill every process whose environment holds `marker` (children inherit it): our own, by their ids."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, PermissionError):
            pass


def kill_ray_processes(ray_tmp: str) -> None:
    """Stop this test's Ray processes by their own ids (never `ray stop`: it ends every Ray of the user)."""
    kill_marked(f"FARM_RAY_TEMP_DIR={ray_tmp}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def sweep_args(tmp_path, name, *extra):
    return [*FARM, "sweep", "--data", str(tmp_path / "data"), "--storage", str(tmp_path / "sweeps"),
            "--tracking-uri", tracking_uri(tmp_path), "--name", name, *extra]  # fmt: skip


def runs_by_parent(tmp_path, name):
    client = MlflowClient(tracking_uri(tmp_path))
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {
        p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id] for p in parents
    }
    return client, parents, children


def head_ports_args() -> list[str]:
    """Free ports for every agent port of a `ray start --head`, so two heads in one session never collide."""
    return [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                   "runtime-env-agent-port", "metrics-export-port")]  # fmt: skip


def session_log_tail(ray_tmp: str, name: str = "dashboard_agent.log", lines: int = 30) -> str:
    """The end of a Ray log of this head (for assertion messages)."""
    logs = sorted(Path(ray_tmp).glob(f"session_*/logs/{name}"))
    return (
        "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:]) if logs else f"(no {name} in {ray_tmp})"
    )
