"""`farm train`: one fold with the engine (farm/engine.py), its per-AU table and result JSON."""

from __future__ import annotations

import argparse

from farm.config import load_config, parse_overrides


def format_result(result) -> str:
    """Per-AU table of one fold's result."""
    lines = [f"fusion {result.fusion}  fold {result.fold}  epochs {result.epochs_run} (best {result.best_epoch})",
             f"{'AU':6s} {'test F1':>8s} {'val F1':>8s} {'test pos':>9s}"]  # fmt: skip
    for au, f1 in result.test["f1"].items():
        c = result.test["counts"][au]
        n = c["tp"] + c["fp"] + c["fn"] + c["tn"]
        lines.append(
            f"{au:6s} {100 * f1:8.1f} {100 * result.val['f1'][au]:8.1f} {(c['tp'] + c['fn']) / max(n, 1):9.2f}"
        )
    lines.append(f"{'mean':6s} {100 * result.test['f1_mean']:8.1f} {100 * result.val['f1_mean']:8.1f}")
    lines.append(f"all-positive predictor on the same test frames: {100 * result.baseline_all_positive:.1f}")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    from farm.engine import fit_fold
    from farm.files import check_writable, write_text

    overrides = {"data.path": args.data}
    if args.fusion:
        overrides["model.fusion"] = args.fusion
    if args.fold:
        overrides["data.fold"] = args.fold
    if args.epochs is not None:  # --epochs 0 is refused by the config (train.epochs must be >= 1), not ignored
        overrides["train.epochs"] = args.epochs
    overrides.update(parse_overrides(args.set))
    cfg = load_config(args.config, overrides)
    if args.out:
        check_writable(args.out)  # before training, not after
    result = fit_fold(cfg, checkpoint_dir=args.checkpoint_dir, log=lambda s: print(s, flush=True))
    print(format_result(result))
    if args.out:
        write_text(args.out, result.to_json())  # a temporary name, then renamed: a failure keeps the old file
        print(f"result written to {args.out}")
    return 0
