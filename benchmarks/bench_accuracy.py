"""Accuracy of every gcf model on ml-100k with RecBole's protocol, next to RecBole 1.2.1.

Protocol: every rating one implicit interaction, random 8:1:1 per user (seed 2020), full
ranking with train (and valid) items masked, test split; each model with its shipped
defaults (``python -m gcf.train MODEL dataset=ml-100k``: early stopping on valid NDCG@20).
RecBole's numbers were measured on this kind of machine (../shared/benchmarks-peers.md: 50
epochs at its defaults, seed 2020).

    GCF_DATA_DIR=../shared/data python benchmarks/bench_accuracy.py [--models pop,bpr,...]

Writes ``benchmarks/results/accuracy_ml-100k.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gcf.train import run  # noqa: E402

# RecBole 1.2.1, ml-100k, RS 8:1:1, 50 epochs at its defaults: (Recall@20, NDCG@20, Recall@10, NDCG@10, s/epoch)
RECBOLE = {
    "pop": (0.1811, 0.1507, 0.1277, 0.1405, 0.19),
    "bpr": (0.3602, 0.3109, 0.2436, 0.2924, 0.22),
    "ease": (0.3998, 0.3465, 0.2805, 0.3295, 0.19),
    "ngcf": (0.3529, 0.2989, 0.2359, 0.2798, 2.55),
    "lightgcn": (0.2897, 0.2421, 0.1871, 0.2245, 1.93),
    "vaecf": (0.3381, 0.2819, 0.2251, 0.2606, 0.12),
    "diffrec": (0.3770, 0.3222, 0.2593, 0.3049, 0.12),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="pop,bpr,ease,ngcf,lightgcn,vaecf,bivae,diffrec,ldiffrec")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--out-root", default="runs/bench-accuracy")
    p.add_argument("--out", default=None)
    p.add_argument("extra", nargs="*", help="key=value overrides for every model (e.g. device=cpu)")
    args = p.parse_args()
    data_dir = os.environ.get("GCF_DATA_DIR", str(HERE.parents[1] / "shared" / "data"))
    rows = {}
    for model in args.models.split(","):
        m = run(model, [f"dataset={args.dataset}", f"data_dir={data_dir}", "progress=false",
                        f"out_dir={args.out_root}/{model}-{args.dataset}", *args.extra], quiet=True)
        rows[model] = {k: m[k] for k in ("test", "valid", "sec_per_epoch", "eval_sec", "epochs", "best_epoch",
                                         "train_sec")}
        t = m["test"]
        print(f"{model}: recall@20 {t['recall@20']:.4f} ndcg@20 {t['ndcg@20']:.4f} "
              f"({m['epochs']} epochs, {m['sec_per_epoch']:.2f} s/epoch)", file=sys.stderr)
    print(f"\n{args.dataset}, RS 8:1:1 seed 2020, full ranking, test split\n")
    print("| model | Recall@20 | NDCG@20 | Recall@10 | NDCG@10 | epochs (best) | s/epoch | "
          "RecBole Recall@20 | RecBole NDCG@20 | RecBole s/epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model, r in rows.items():
        t = r["test"]
        peer = RECBOLE.get(model) if args.dataset == "ml-100k" else None
        peer_cols = f"{peer[0]:.4f} | {peer[1]:.4f} | {peer[4]:.2f}" if peer else "- | - | -"
        print(f"| {model} | {t['recall@20']:.4f} | {t['ndcg@20']:.4f} | {t['recall@10']:.4f} | {t['ndcg@10']:.4f} | "
              f"{r['epochs']} ({r['best_epoch']}) | {r['sec_per_epoch']:.2f} | {peer_cols} |")
    out = Path(args.out or HERE / "results" / f"accuracy_{args.dataset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update(rows)
    out.write_text(json.dumps(previous, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
