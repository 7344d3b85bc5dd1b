"""`farm promote|predict|robustness|report`: after a sweep (farm/evaluate, farm/tracking)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from farm.cli.common import csv_list, selection_metric, tracking_uri


def cmd_promote(args: argparse.Namespace) -> int:
    from farm.tracking.registry import PromoteOptions, promote

    opts = PromoteOptions(sweep=args.sweep, tracking_uri=tracking_uri(args), metric=selection_metric(args.metric),
                          model_name=args.model_name, trial=args.trial, force=args.force,
                          robustness=not args.no_robustness, data=args.data, n_boot=args.bootstrap, seed=args.seed,
                          stride=args.stride)  # fmt: skip
    promote(opts, log=lambda s: print(s, flush=True))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import mlflow

    from farm.evaluate import predict
    from farm.files import check_writable

    check_writable(args.out)  # before any input is read; the file itself is replaced only on success
    mlflow.set_tracking_uri(tracking_uri(args))
    where = Path(args.model).resolve() if Path(args.model).exists() else args.model
    # MLflow "model from code": loading runs the model's own Python, from a directory or from the artifact store
    print(f"loading model code from {where} (its model_code.py and code/ run as you; load only models from stores "
          "you and your team control; docs/registry.md)", flush=True)  # fmt: skip
    model = mlflow.pyfunc.load_model(args.model)
    spec = model.unwrap_python_model().ensemble.spec
    if args.data:
        n, absent, batches = predict.dataset_batches(args.data, spec, csv_list(args.subjects), args.batch_size)
    else:
        n, absent, batches = predict.tree_batches(args.input, spec, args.batch_size)
    print(f"{n} frames; the model reads {', '.join(spec.modalities)}"
          + (f"; missing for every frame: {', '.join(absent)} (filled with zeros, as the robustness study does)"
             if absent else ""), flush=True)  # fmt: skip

    def call(images, missing):
        return model.predict(images, params={"missing": ",".join(missing)}).to_numpy()

    from tqdm import tqdm

    with tqdm(total=n, unit="frame", disable=not sys.stderr.isatty()) as bar:
        result = predict.run(call, batches, spec, args.out, progress=bar.update)
    partial = {k: v for k, v in result["missing"].items() if k and k not in ("+".join(absent),)}
    if partial:
        print("frames with a modality filled: " + ", ".join(f"{v} without {k}" for k, v in partial.items()))
    if "f1" in result:
        print(f"F1 against the dataset's labels: {100 * result['f1']['f1_mean']:.1f} (frames of subjects the model "
              "was trained on are not a test of it)")  # fmt: skip
    print(f"{result['frames']} predictions written to {result['out']}")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from farm.tracking.registry import robustness

    robustness(tracking_uri(args), model=args.model, run=args.run, data=args.data, stride=args.stride, seed=args.seed,
               log=lambda s: print(s, flush=True))  # fmt: skip
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from farm.tracking.reports import report_sweeps, report_trials

    out = args.out or str(Path("reports") / args.sweep[0])
    common = {"metric": selection_metric(args.metric), "n_boot": args.bootstrap, "seed": args.seed}
    if args.trial:
        if len(args.sweep) != 1 or len(args.trial) != 2:
            raise ValueError(f"--trial compares two trials of one sweep: expected one --sweep and two "
                             f"--trial, got {len(args.sweep)} and {len(args.trial)}")  # fmt: skip
        report, paths = report_trials(tracking_uri(args), args.sweep[0], args.trial, args.paper, out, **common)
    else:
        report, paths = report_sweeps(tracking_uri(args), args.sweep, args.paper, out, **common)
    print(report.to_markdown())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
