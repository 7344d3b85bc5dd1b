"""Helpers shared by the end-to-end tests that run `farm sweep` (real Ray, real MLflow, real Optuna)."""

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
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


def best_val(client, run) -> float:
    """A fold run's best-epoch validation F1 (what the fold reports as its objective)."""
    return max(m.value for m in client.get_metric_history(run.info.run_id, "val/f1_mean"))


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


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket (or a bound, unconnected UDP one) of a process."""

    pid: int
    proto: str  # tcp, tcp6, udp, udp6
    ip: str
    port: int
    process: str  # its command line; Ray's process titles show what a worker is, e.g. "ray::RayTrainWorker"


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1: an IPv4 loopback bind on a dual-stack socket
    return addr.is_loopback or bool(mapped and mapped.is_loopback)


def descendants(root: int) -> set[int]:
    """`root` and every process below it (from /proc/<pid>/stat's parent ids)."""
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def marked(marker: str) -> set[int]:
    """Processes whose environment holds `marker` (Ray's process titles overwrite some; see `descendants`)."""
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                pids.add(int(pid))
        except OSError:
            pass
    return pids


def _socket_table() -> dict[str, tuple[str, str, int]]:
    """inode -> (proto, ip, port) of every listening TCP and unconnected UDP socket in this network namespace."""
    table = {}
    for proto, listening in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != listening:
                continue
            hexip, hexport = f[1].split(":")
            raw = bytes.fromhex(hexip)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            table[f[9]] = (proto, str(ipaddress.ip_address(raw)), int(hexport, 16))
    return table


def listeners(pids: set[int]) -> set[Listener]:
    """The listening sockets these processes hold (socket inodes of /proc/<pid>/fd matched in /proc/net/*)."""
    table, found = _socket_table(), set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in table:
                found.add(Listener(pid, *table[target[8:-1]], cmd[:120]))
    return found


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
