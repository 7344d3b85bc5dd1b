"""`farm sweep` and `farm submit`: the farm on Ray (farm/sweep)."""

from __future__ import annotations

import argparse
import sys

from farm.config import parse_overrides


def cmd_sweep(args: argparse.Namespace) -> int:
    from farm.sweep.run import SweepOptions, run_sweep

    opts = SweepOptions(space=args.space, data=args.data, fusion=args.fusion, trials=args.trials,
                        max_concurrent=args.max_concurrent, address=args.address, tracking_uri=args.tracking_uri,
                        name=args.name, storage=args.storage, resume=args.resume, seed=args.seed, seeds=args.seeds,
                        partitions=args.partitions,
                        protocol=args.protocol, tracking_relay=args.tracking_relay,
                        gpus_per_fold=args.gpus_per_fold, cpus_per_fold=args.cpus_per_fold)  # fmt: skip
    from farm.sweep.cluster import TERMINATION

    try:
        rows = run_sweep(opts)
    except KeyboardInterrupt:  # before Tune ran (or a second signal while it stopped)
        if TERMINATION["signal"]:
            print(f"farm: ended by signal {TERMINATION['signal']}; continue with farm sweep --resume --name "
                  f"{opts.name or '<sweep>'}", file=sys.stderr)  # fmt: skip
            return 128 + TERMINATION["signal"]
        raise
    finished = any(r["status"] == "finished" for r in rows)
    if TERMINATION["signal"]:  # SIGTERM / SIGHUP: the trials were cut as by Ctrl-C; the --resume line is above
        import signal

        name = signal.Signals(TERMINATION["signal"]).name
        print(f"farm: stopped by {name}; continue with the --resume command above", file=sys.stderr)
        return 128 + TERMINATION["signal"]
    if not finished and any(r["status"] == "interrupted" for r in rows):
        print("farm: interrupted; continue with the --resume command above", file=sys.stderr)
        return 130
    if rows and not finished:
        print(f"farm: error: no trial of the sweep finished ({len(rows)} failed or stopped); see the trial errors above",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from farm.sweep.jobs import check_job, load_job

    spec = load_job(args.job).with_env(parse_overrides(args.env))
    argv = check_job(spec)
    if args.check:
        print(f"{args.job}: ok: {' '.join(argv)}")
        return 0
    from farm.sweep.submit import resolve_address, submit

    return submit(spec, resolve_address(args.address), follow=args.follow, out=lambda s: print(s, flush=True))
