"""Why AMF loses its F1 when a modality is missing (issue 13): what its selection does with a zeroed modality.

    python bench/amf_selection.py --checkpoint SWEEP/train/TRIAL/round_NNNN_final/P1/best.pt [...] \
        --out runs/bench/amf_selection.json

For each AMF fold checkpoint (`best.pt`, as the engine writes it), on that fold's VALIDATION subjects, clean and
with each modality missing (zeros after normalisation, `farm.data.perturb`, as the robustness study does):

- `share/<m>`: the fraction of the fused feature's dimensions taken from modality m (the model's `selection`,
  averaged over frames, dimensions and the K samples): does AMF stop picking a modality that is all zeros?
- `alpha/<m>`: the mean sigmoid score alpha^m = sigmoid(g^m(a^m)) of each modality's features;
- `f1_fused`: the AU-mean F1 of the fused prediction (Eq. 9); `f1_branch/<m>`: the AU-mean F1 of each
  modality's own classifier C^m (Eq. 8) on the same frames, the single-modality answer AMF carries inside it.

Plain PyTorch: the engine's builders (config, split, loaders, model), no Ray, MLflow or Optuna.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from farm.checkpoints import InputSpec, load_checkpoint  # noqa: E402
from farm.config import from_dict  # noqa: E402
from farm.data.perturb import Condition, metric_suffix, perturb  # noqa: E402
from farm.data.store import FrameStore  # noqa: E402
from farm.engine import build_loaders, fold_split, to_device_inputs  # noqa: E402
from farm.evaluate.inference import rebuild_model  # noqa: E402
from farm.metrics import au_counts, summarize  # noqa: E402
from farm.models import fusion_modalities  # noqa: E402


def analyse(path: Path, data: str | None, max_batches: int) -> dict:
    state = load_checkpoint(path, "cpu", ("model", "config", "input"))
    cfg = from_dict(state["config"], {"data.num_workers": 0, **({"data.path": data} if data else {})})
    if cfg.model.fusion != "amf":
        raise SystemExit(f"{path}: model.fusion is {cfg.model.fusion!r}; this analysis reads AMF's selection")
    store = FrameStore(cfg.data.path)
    mods = fusion_modalities(cfg.model.fusion, cfg.data.modalities, store.meta.modality_names)
    split, _ = fold_split(cfg, store)
    loader = build_loaders(cfg, store, split, mods)["val"]
    model = rebuild_model(state["config"], InputSpec.from_dict(state["input"]))  # no weights downloaded
    model.load_state_dict(state["model"])
    model.eval()
    conds = [Condition("clean", (), 0.0)] + [Condition("missing", (m,), 0.0) for m in mods]
    aus = tuple(cfg.data.aus)
    acc = {c: {"share": np.zeros(len(mods)), "alpha": np.zeros(len(mods)), "n": 0,
               "fused": np.zeros((len(aus), 4), np.int64),
               "branch": {m: np.zeros((len(aus), 4), np.int64) for m in mods}} for c in conds}  # fmt: skip
    with torch.no_grad():
        for b, (x, y, *aug) in enumerate(loader):
            if max_batches and b >= max_batches:
                break
            xd, labels = to_device_inputs(x, torch.device("cpu"), *aug), y.numpy()
            for c in conds:
                out, a = model(perturb(xd, c)), acc[c]
                n = len(labels)
                a["share"] += out["selection"].float().mean(dim=(0, 1)).numpy() * n  # (B, D, M) -> (M,)
                a["alpha"] += np.array([out[f"alpha/{m}"].float().mean().item() for m in mods]) * n
                a["n"] += n
                a["fused"] += au_counts(out["probs"].float().numpy(), labels)
                for m in mods:
                    a["branch"][m] += au_counts(torch.sigmoid(out[f"logits/{m}"]).float().numpy(), labels)
    rows = {}
    for c, a in acc.items():
        rows[metric_suffix(c)] = {
            **{f"share/{m}": float(a["share"][i] / a["n"]) for i, m in enumerate(mods)},
            **{f"alpha/{m}": float(a["alpha"][i] / a["n"]) for i, m in enumerate(mods)},
            "f1_fused": summarize(a["fused"], aus)["f1_mean"],
            **{f"f1_branch/{m}": summarize(a["branch"][m], aus)["f1_mean"] for m in mods},
            "frames": a["n"],
        }
    return {"checkpoint": str(path), "fold": split.fold, "modalities": list(mods), "conditions": rows,
            "eval_mode": cfg.amf.eval_mode, "modality_dropout": cfg.augment.modality_dropout}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True, help="an AMF fold's best.pt (repeatable)")
    ap.add_argument("--data", default="", help="the dataset (default: the checkpoint's data.path)")
    ap.add_argument("--max-batches", type=int, default=0, help="validation batches per checkpoint (0 = all)")
    ap.add_argument("--out", default="runs/bench/amf_selection.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = []
    for ckpt in args.checkpoint:
        r = analyse(Path(ckpt), args.data or None, args.max_batches)
        results.append(r)
        mods = r["modalities"]
        print(f"\n{ckpt} (fold {r['fold']}, eval {r['eval_mode']}, modality dropout {r['modality_dropout']}), "
              f"validation subjects, {r['conditions']['clean']['frames']} frames:")  # fmt: skip
        print(f"  {'condition':18s} " + " ".join(f"{'share ' + m:>14s}" for m in mods) + " " +
              " ".join(f"{'alpha ' + m:>14s}" for m in mods) + f" {'F1 fused':>9s} " +
              " ".join(f"{'F1 C^' + m:>12s}" for m in mods))  # fmt: skip
        for cond, row in r["conditions"].items():
            print(f"  {cond:18s} " + " ".join(f"{row[f'share/{m}']:14.3f}" for m in mods) + " " +
                  " ".join(f"{row[f'alpha/{m}']:14.3f}" for m in mods) + f" {100 * row['f1_fused']:9.1f} " +
                  " ".join(f"{100 * row[f'f1_branch/{m}']:12.1f}" for m in mods))  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
