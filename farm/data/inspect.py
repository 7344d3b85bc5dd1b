"""`farm data check`: what a prepared dataset holds, everything that was left out of it and every image converted."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from farm.data.store import SKIPS_FILE, FrameStore, is_conversion, read_skips


def describe(root: str | Path, all_skips: bool = False, examples: int = 3) -> str:
    """Counts of subjects, tasks, frames (per modality), AU label rates, the skipped frames and the converted
    images (kept, but their files did not match the modality) by reason."""
    store = FrameStore(root)
    meta = store.meta
    tasks = Counter(store.manifest.column("task").to_pylist())
    subjects = Counter(store.subjects.tolist())
    src = meta.source
    made = f"{src.get('layout', '')} layout from {src['root']}" if "root" in src else "generated"
    lines = [
        f"{root}: {meta.name} ({made}), {len(subjects)} subjects, {len(tasks)} tasks, {len(store)} frames, "
        f"data hash {meta.data_hash}",
        "  tasks: " + " ".join(f"{t} ({n})" for t, n in sorted(tasks.items())),
        f"  frames per subject: min {min(subjects.values())}, median {int(np.median(list(subjects.values())))}, "
        f"max {max(subjects.values())}",
    ]
    table = read_skips(root)
    rows = table.to_pylist() if table is not None else []
    skips = [r for r in rows if not is_conversion(r["reason"])]
    converted = [r for r in rows if is_conversion(r["reason"])]
    per_mod = Counter(s["modality"] for s in skips)
    conv_mod = Counter(s["modality"] for s in converted)
    lines.append(f"  {'modality':9s} {'ch':>2s} {'size':>9s} {'frames':>8s} {'skipped':>8s} {'converted':>9s}  "
                 f"codec {meta.codec}")  # fmt: skip
    for m in meta.modalities:
        lines.append(f"  {m.name:9s} {m.channels:2d} {f'{m.height}x{m.width}':>9s} {len(store):8d} "
                     f"{per_mod.get(m.name, 0):8d} {conv_mod.get(m.name, 0):9d}")  # fmt: skip
    labels = store.labels()
    lines.append(f"  {'AU':6s} {'present':>8s} {'absent':>8s} {'unknown':>8s}")
    for j, au in enumerate(meta.aus):
        col = labels[:, j]
        lines.append(f"  {au:6s} {(col == 1).mean():8.3f} {(col == 0).mean():8.3f} {(col == -1).mean():8.3f}")
    where = Path(root) / SKIPS_FILE
    if skips:
        lines.append(f"  skipped: {len(skips)} (frame, modality) entries; every one is listed in {where}")
        lines += _groups(skips, all_skips, examples)
    else:
        lines.append("  skipped frames: none")
    if converted:
        lines.append(f"  converted: {len(converted)} (frame, modality) entries, kept in the dataset: their files did "
                     f"not match the modality's format or size; every one is listed in {where}")  # fmt: skip
        lines += _groups(converted, all_skips, examples)
    return "\n".join(lines)


def _groups(rows: list[dict], all_rows: bool, examples: int) -> list[str]:
    """Report rows grouped by (reason, modality), with a few examples each (all with `all_rows`)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for s in rows:
        groups.setdefault((s["reason"], s["modality"]), []).append(s)
    lines = []
    for (reason, modality), group in sorted(groups.items()):
        lines.append(f"    {len(group):7d}  {reason}{f' ({modality})' if modality else ''}")
        for s in group if all_rows else group[:examples]:
            detail = f"  [{s['detail']}]" if s["detail"] else ""
            lines.append(f"             {s['subject']}/{s['task']} frame {s['frame']}: {s['path']}{detail}")
        if not all_rows and len(group) > examples:
            lines.append(f"             ... {len(group) - examples} more (--all-skips lists them)")
    return lines
