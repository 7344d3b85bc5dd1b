"""The options of `farm sweep` (saved as NAME/sweep.json, so `--resume --name NAME` needs nothing else)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SweepOptions:
    space: str = ""
    """Search-space file or shipped name; empty = smoke (a new sweep) or the sweep's own (--resume)."""
    data: str = ""
    """Prepared dataset; empty = data/synthetic, generated if missing."""
    fusion: str = ""
    trials: int = 0
    """0 = the space file's sweep.trials."""
    max_concurrent: int = 0
    address: str = ""
    """Ray cluster to join ('auto' or HOST:PORT); empty = start a local Ray."""
    tracking_uri: str = ""
    """MLflow tracking URI; empty = sqlite:///./mlflow.db (artifacts in ./mlartifacts)."""
    name: str = ""
    storage: str = "runs/sweeps"
    resume: bool = False
    seed: int = 0
    """Seed of the Optuna sampler (not of training: that is train.seed)."""
    seeds: int = 0
    """Training seeds per fold; 0 = the space file's sweep.seeds (default 1)."""
    partitions: int = 0
    """Subject partitions; 0 = the space file's sweep.partitions (default 1: the standard folds). With N > 1 every
    trial trains every fold of partitions r = 0..N-1 (r >= 1: a fresh sex-balanced split, `data.partition`)."""
    protocol: str = ""
    """joint | nested; empty = the space file's sweep.protocol (default joint)."""
    cpus_per_fold: float = 0.0
    """0 = share the node's CPUs among the concurrent workers, folds x seeds (GPUs: one per worker when present)."""
    gpus_per_fold: str = ""
    """GPUs per worker (fold x seed): "1/3" lets a 3-fold trial share one GPU; empty = the space file's
    sweep.gpus_per_fold, else one GPU per worker when a trial fits on the cluster's GPUs, else an equal share."""
    max_failures: int = 2
    """Ray Train retries of a trial's fold group (each restarts from the last epoch checkpoint)."""
    tracking_relay: str = "auto"
    """auto | on | off: workers log through a Ray actor on the driver's node (farm/tracking/relay.py);
    auto = when the cluster has other nodes and the store is sqlite or a loopback server."""


class SweepError(ValueError):
    """The sweep cannot start (bad options, missing data, nothing to resume)."""
