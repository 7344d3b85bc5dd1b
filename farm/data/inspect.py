"""`farm data check`: what a prepared dataset holds and everything that was left out of it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from farm.data.store import SKIPS_FILE, FrameStore, read_skips


def describe(root: str | Path, all_skips: bool = False, examples: int = 3) -> str:
    """Counts of subjects, tasks, frames (per modality), AU label rates and the skipped frames by reason."""
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
    skips = table.to_pylist() if table is not None else []
    per_mod = Counter(s["modality"] for s in skips)
    lines.append(f"  {'modality':9s} {'ch':>2s} {'size':>9s} {'frames':>8s} {'skipped':>8s}  codec {meta.codec}")
    for m in meta.modalities:
        lines.append(
            f"  {m.name:9s} {m.channels:2d} {f'{m.height}x{m.width}':>9s} {len(store):8d} {per_mod.get(m.name, 0):8d}"
        )
    labels = store.labels()
    lines.append(f"  {'AU':6s} {'present':>8s} {'absent':>8s} {'unknown':>8s}")
    for j, au in enumerate(meta.aus):
        col = labels[:, j]
        lines.append(f"  {au:6s} {(col == 1).mean():8.3f} {(col == 0).mean():8.3f} {(col == -1).mean():8.3f}")
    if not skips:
        lines.append("  skipped frames: none")
        return "\n".join(lines)
    groups: dict[tuple[str, str], list[dict]] = {}
    for s in skips:
        groups.setdefault((s["reason"], s["modality"]), []).append(s)
    lines.append(f"  skipped: {len(skips)} (frame, modality) entries; every one is listed in {Path(root) / SKIPS_FILE}")
    for (reason, modality), rows in sorted(groups.items()):
        lines.append(f"    {len(rows):7d}  {reason}{f' ({modality})' if modality else ''}")
        for s in rows if all_skips else rows[:examples]:
            detail = f"  [{s['detail']}]" if s["detail"] else ""
            lines.append(f"             {s['subject']}/{s['task']} frame {s['frame']}: {s['path']}{detail}")
        if not all_skips and len(rows) > examples:
            lines.append(f"             ... {len(rows) - examples} more (--all-skips lists them)")
    return "\n".join(lines)
