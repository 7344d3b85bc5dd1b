"""Small helpers shared by the command modules."""

from __future__ import annotations

import argparse


def csv_list(text: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else None


def tracking_uri(args: argparse.Namespace) -> str:
    from farm.tracking.mlflow import default_tracking_uri

    return args.tracking_uri or default_tracking_uri()


def selection_metric(metric: str) -> str:
    if "test" in metric:
        raise ValueError(f"--metric {metric}: selecting on test-partition metrics would report an optimistic number; "
                         "use a validation metric such as cv/val_f1_mean")  # fmt: skip
    return metric
