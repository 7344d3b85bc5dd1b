"""`farm data synth|prepare|check|folds`: create and inspect datasets (farm/data)."""

from __future__ import annotations

import argparse
import sys

from farm.cli.common import csv_list
from farm.config import BP4D_AUS


def cmd_synth(args: argparse.Namespace) -> int:
    from farm.data.synth import SynthSpec, generate

    modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
    spec = SynthSpec(subjects=args.subjects, tasks=args.tasks, frames=args.frames, size=args.size, seed=args.seed,
                     modalities=modalities, difficulty=args.difficulty)  # fmt: skip
    meta = generate(spec, args.out, progress=sys.stderr.isatty())
    print(f"{args.out}: {meta.num_frames} frames of {len(meta.subjects)} subjects, modalities "
          f"{', '.join(meta.modality_names)}, data hash {meta.data_hash}")  # fmt: skip
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from farm.data.inspect import describe
    from farm.data.prepare import PrepareSpec, prepare

    spec = PrepareSpec(dataset=args.dataset, root=args.root, modalities=csv_list(args.modalities) or (),
                       layout=args.layout, size=args.size, codec=args.codec, frame_offset=args.frame_offset,
                       tasks=csv_list(args.tasks), aus=csv_list(args.aus) or BP4D_AUS)  # fmt: skip

    def progress(results, total):
        return tqdm(results, total=total, desc="prepare", unit="chunk", disable=not sys.stderr.isatty())

    prepare(spec, args.out, workers=args.workers, strict=args.strict, progress=progress,
            log=lambda s: print(s, file=sys.stderr))  # fmt: skip
    print(describe(args.out))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from farm.data.inspect import describe

    print(describe(args.path, all_skips=args.all_skips))
    return 0


def cmd_folds(args: argparse.Namespace) -> int:
    from farm.data.folds import make_split, read_partitions, redraw_partitions, resolve_partitions, standard_partitions

    if args.path:
        from farm.data.store import FrameStore

        store = FrameStore(args.path)
        if args.dataset and args.dataset != store.meta.name:
            raise ValueError(f"{args.path} is a {store.meta.name} dataset, not {args.dataset}")
        parts, notes = resolve_partitions(store.meta, set(store.subjects), args.fold_file)
        family = store.meta.name
    elif args.dataset or args.fold_file:
        parts = read_partitions(args.fold_file) if args.fold_file else standard_partitions(args.dataset)
        notes, family = [], args.dataset or "custom"
    else:
        raise ValueError("give a prepared dataset PATH or --dataset bp4d|bp4dplus|synthetic")
    standard = parts.source_hash or parts.hash
    if args.partition:
        if not args.path and not args.dataset:
            raise ValueError("--partition needs a prepared dataset PATH or --dataset (the subjects' sexes)")
        sexes = store.meta.subjects if args.path else {s: {"sex": s[0]} for s in parts.subjects}
        parts = redraw_partitions(parts, sexes, args.partition)
        standard += f"; partition {args.partition}: hash {parts.hash}"
    print(f"{family} partitions from {parts.source} (partitions hash {standard})")
    for note in notes:
        print(f"  note: {note}")
    for fold in parts.parts:
        split = make_split(parts.parts, fold, args.val_fraction, args.split_seed)
        print(f"fold {fold}: test {fold}, train the rest (split hash {split.hash})")
        for name in ("train", "val", "test"):
            subjects = getattr(split, name)
            print(f"  {name:5s} ({len(subjects):3d}) {' '.join(subjects)}")
    return 0
