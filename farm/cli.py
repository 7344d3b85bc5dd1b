"""`farm`: command-line entry point. Thin: parses arguments, builds the typed config, calls the core."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from farm.config import BP4D_AUS, ConfigError, load_config, parse_overrides, valid_keys

EPILOG = """\
examples:
  farm data synth --out data/synthetic
  farm train --data data/synthetic --fusion amf --fold P1 --config cpu --out runs/amf_P1.json
  farm train --data data/synthetic --fusion single:depth --fold P2 --set train.epochs=5
"""


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="generate the synthetic multimodal AU dataset (the embedded default)",
        description="Render a synthetic visual + depth + thermal AU dataset with subjects, tasks and AU episodes. "
        "Re-running with the same arguments reuses the existing dataset; different arguments on an existing "
        "directory are refused.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--subjects", type=int, default=12, help="number of subjects, alternating F/M (default 12)")
    p.add_argument("--tasks", type=int, default=4, help="tasks (sequences) per subject (default 4)")
    p.add_argument("--frames", type=int, default=60, help="frames per task (default 60)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64; the paper uses 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--modalities", default="visual,depth,thermal", help="comma list from visual,depth,thermal")
    p.add_argument("--difficulty", default="default", choices=("easy", "default", "hard"),
                   help="AU effect strength vs nuisances; 'easy' trains in seconds (tests)")  # fmt: skip
    p.set_defaults(func=cmd_synth)


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="summarise a prepared dataset: subjects, tasks, frames, AU base rates",
                       description="Print counts of subjects, tasks and frames, the modalities and the rate of each AU "
                       "(1 / 0 / unknown) of a prepared dataset.")  # fmt: skip
    p.add_argument("path", help="dataset directory")
    p.set_defaults(func=cmd_check)


def _add_folds(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("folds", help="print the subject-exclusive folds of a dataset",
                       description="Folds are named by their TEST partition: fold P3 trains on P1+P2 and tests on P3 "
                       "(ME-GraphAU's fold1 is our P3). Validation subjects are carved from the training subjects.")  # fmt: skip
    p.add_argument("path", help="dataset directory")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of training subjects used for validation")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the validation carve-out")
    p.set_defaults(func=cmd_folds)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train and test one subject-exclusive fold",
        description="Train one fold with early stopping on validation subjects carved from the training subjects, "
        "then evaluate the best epoch once on the test partition and print per-AU F1. Config precedence: "
        "dataclass defaults (the paper's) < --config FILE|PRESET < --fusion/--fold/--epochs < --set.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys for --set:\n  " + "\n  ".join(valid_keys()),
    )
    p.add_argument("--data", required=True, help="prepared dataset directory")
    p.add_argument("--fusion", help="amf, late, early, cam or single:<modality> (default amf)")
    p.add_argument("--fold", help="fold, named by its test partition (default P1)")
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--config", help="YAML config file or preset name (presets: cpu, paper)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--checkpoint-dir", help="save last/best checkpoints here and resume from them")
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farm",
        description="Cross-validation farm for multimodal facial action unit detection with Adaptive Multimodal "
        "Fusion (AMF, ACM MM 2020): synthetic and prepared datasets, subject-exclusive folds, AMF and baselines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    data = sub.add_parser("data", help="create and inspect datasets (synth, check, folds)",
                          description="Create and inspect prepared datasets.")  # fmt: skip
    data_sub = data.add_subparsers(title="data commands", metavar="COMMAND", required=True)
    _add_synth(data_sub)
    _add_check(data_sub)
    _add_folds(data_sub)
    _add_train(sub)
    return parser


def cmd_synth(args: argparse.Namespace) -> int:
    from farm.data.synth import SynthSpec, generate

    modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
    spec = SynthSpec(subjects=args.subjects, tasks=args.tasks, frames=args.frames, size=args.size, seed=args.seed,
                     modalities=modalities, difficulty=args.difficulty)  # fmt: skip
    meta = generate(spec, args.out, progress=sys.stderr.isatty())
    print(f"{args.out}: {meta.num_frames} frames of {len(meta.subjects)} subjects, modalities "
          f"{', '.join(meta.modality_names)}, data hash {meta.data_hash}")  # fmt: skip
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from farm.data.store import FrameStore

    store = FrameStore(args.path)
    meta = store.meta
    tasks = sorted(set(store.manifest.column("task").to_pylist()))
    print(f"{args.path}: {meta.name}, {len(set(store.subjects))} subjects, {len(tasks)} tasks, {len(store)} frames")
    for m in meta.modalities:
        print(f"  {m.name:8s} {m.channels} ch  {m.height}x{m.width}  ({meta.codec})")
    labels = store.labels()
    print(f"  {'AU':6s} {'present':>8s} {'absent':>8s} {'unknown':>8s}")
    for j, au in enumerate(meta.aus):
        col = labels[:, j]
        print(f"  {au:6s} {(col == 1).mean():8.3f} {(col == 0).mean():8.3f} {(col == -1).mean():8.3f}")
    print(f"  data hash {meta.data_hash}")
    return 0


def cmd_folds(args: argparse.Namespace) -> int:
    from farm.data.folds import check_partitions, dataset_partitions, make_split
    from farm.data.store import FrameStore

    store = FrameStore(args.path)
    parts = dataset_partitions(store.meta)
    check_partitions(parts, set(store.subjects))
    for fold in parts:
        split = make_split(parts, fold, args.val_fraction, args.split_seed)
        print(f"fold {fold} (split hash {split.hash})")
        for name in ("train", "val", "test"):
            subjects = getattr(split, name)
            print(f"  {name:5s} ({len(subjects):2d}) {' '.join(subjects)}")
    return 0


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

    overrides = {"data.path": args.data}
    if args.fusion:
        overrides["model.fusion"] = args.fusion
    if args.fold:
        overrides["data.fold"] = args.fold
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    overrides.update(parse_overrides(args.set))
    cfg = load_config(args.config, overrides)
    result = fit_fold(cfg, checkpoint_dir=args.checkpoint_dir, log=lambda s: print(s, flush=True))
    print(format_result(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(result.to_json())
        print(f"result written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"farm: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("farm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["BP4D_AUS", "build_parser", "main"]
