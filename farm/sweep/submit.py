"""`farm submit`: a job spec (farm/sweep/jobs.py) to a Ray cluster through its Jobs API.

The address is the Ray dashboard's HTTP address: `--address`, else `$RAY_API_SERVER_ADDRESS` or an
http(s) `$RAY_ADDRESS`, else http://127.0.0.1:8265, which is where `ray dashboard cluster.yaml`
puts the SSH tunnel to the head. With `--follow` the job's logs stream to the terminal and the
command exits with the job's outcome: 0 SUCCEEDED, 1 FAILED or STOPPED. Ctrl-C stops following,
not the job (the command says how to stop it).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from farm.sweep.jobs import JobSpec, check_job

DEFAULT_ADDRESS = "http://127.0.0.1:8265"


class SubmitError(ValueError):
    """The cluster cannot be reached or refused the job; the message says what to check."""


def resolve_address(address: str = "") -> str:
    if address:
        return address if "://" in address else f"http://{address}"
    for var in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(var, "")
        if value.startswith(("http://", "https://")):
            return value
    return DEFAULT_ADDRESS


TOKEN_HELP = ("the cluster uses Ray's token authentication: put the head's token (`ray get-auth-token` there) in "
              "~/.ray/auth_token here, or set RAY_AUTH_TOKEN")  # fmt: skip


def use_token_auth_if_available() -> None:
    """Ray >= 2.5x heads require a token by default; the client sends one only with RAY_AUTH_MODE=token."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if (
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").exists()
    ):
        os.environ["RAY_AUTH_MODE"] = "token"


def client_for(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # noqa: BLE001 - connection refused, bad URL, auth: one clear line
        if "authentication" in str(e).lower():
            raise SubmitError(f"{address} refused the connection: {TOKEN_HELP}") from None
        raise SubmitError(f"cannot reach the Ray Jobs API at {address} ({type(e).__name__}: {str(e).splitlines()[0]}). "
                          "Is the cluster up and the tunnel open (`ray dashboard cluster.yaml`)?") from None  # fmt: skip


def submit(spec: JobSpec, address: str, follow: bool = False, out: Callable[[str], None] = print,
           poll_s: float = 2.0, agent_wait_s: float = 120.0) -> int:  # fmt: skip
    """Submit; with `follow`, stream logs and return the exit code for the job's final status."""
    use_token_auth_if_available()  # before Ray reads its configuration
    from ray.job_submission import JobStatus

    check_job(spec)  # a bad spec never reaches the cluster
    client = client_for(address)
    deadline = time.time() + agent_wait_s
    while True:
        try:
            job_id = client.submit_job(**spec.submit_kwargs())
            break
        except Exception as e:  # noqa: BLE001
            msg = str(e).splitlines()[0]
            if "try again later" in msg and time.time() < deadline:  # a head that just started: its job agent is not up
                out(f"waiting for the head's job agent ({msg})")
                time.sleep(3)
                continue
            raise SubmitError(f"{address} refused the job from {spec.path}: {msg}") from None
    out(f"submitted {spec.path} as {job_id} to {address}")
    out(f"  logs: ray job logs --address {address} --follow {job_id}   stop: ray job stop --address {address} {job_id}")
    if not follow:
        return 0

    async def stream() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    try:
        asyncio.run(stream())
    except KeyboardInterrupt:
        out(f"\nstopped following; job {job_id} goes on (stop it with: ray job stop --address {address} {job_id})")
        return 130
    except Exception as e:  # noqa: BLE001 - the log stream broke: fall back to polling the status
        out(f"(log stream ended: {type(e).__name__}: {e}; polling the job's status)")
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        time.sleep(poll_s)
        status = client.get_job_status(job_id)
    info = client.get_job_info(job_id)
    out(
        f"job {job_id}: {status.value}"
        + (f" ({info.message})" if info.message and status != JobStatus.SUCCEEDED else "")
    )
    return 0 if status == JobStatus.SUCCEEDED else 1
