"""One cornac Experiment on ml-100k: cornac's own VAECF, BiVAECF and BPR next to gcf's wrapped
VAECF, BiVAE, LightGCN, EASE and DiffRec, for seeds 123, 456, 789 (cornac's example protocol).

Protocol (../shared/benchmarks-peers.md): every rating one interaction for training,
``RatioSplit(test_size=0.2, rating_threshold=4.0, exclude_unknowns=True, seed=s)``, full
ranking minus training items, Recall@20 and NDCG@20; cornac's models with their example
hyper-parameters; ours with their shipped defaults and a fixed number of epochs (the
experiment has no validation split to stop on).

    python benchmarks/bench_cornac.py --data-dir ../shared/data [--seeds 123,456,789]

Writes ``benchmarks/results/cornac_ml-100k.json`` and prints a Markdown table (mean over
seeds, min-max in brackets).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import cornac  # noqa: E402
from cornac.eval_methods import RatioSplit  # noqa: E402

import gcf.cornac as gc  # noqa: E402

# fixed epochs for our models (no validation split in this protocol)
OURS = {
    "VAECF": lambda s: gc.VAECF(epochs=150, seed=s),
    "BiVAE": lambda s: gc.BiVAE(epochs=500, seed=s),
    "LightGCN": lambda s: gc.LightGCN(epochs=100, seed=s),
    "EASE": lambda s: gc.EASE(seed=s),
    "DiffRec": lambda s: gc.DiffRec(epochs=100, seed=s),
}
CORNAC = {
    "VAECF": lambda s: cornac.models.VAECF(k=10, autoencoder_structure=[20], act_fn="tanh", likelihood="mult",
                                           n_epochs=100, batch_size=100, learning_rate=0.001, beta=1.0, seed=s,
                                           use_gpu=False),
    "BiVAECF": lambda s: cornac.models.BiVAECF(k=50, encoder_structure=[100], act_fn="tanh", likelihood="pois",
                                               n_epochs=500, batch_size=128, learning_rate=0.001, seed=s,
                                               use_gpu=False),
    "BPR": lambda s: cornac.models.BPR(k=10, max_iter=200, learning_rate=0.001, lambda_reg=0.01, seed=s),
}


def load_ml100k(data_dir: Path):
    rows = []
    with open(data_dir / "ml-100k" / "ml-100k.inter") as f:
        next(f)
        for line in f:
            u, i, r, _ = line.rstrip("\n").split("\t")
            rows.append((u, i, float(r)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("GCF_DATA_DIR", str(HERE.parents[1] / "shared" / "data")))
    p.add_argument("--seeds", default="123,456,789")
    p.add_argument("--models", default=",".join([f"cornac:{m}" for m in CORNAC] + [f"gcf:{m}" for m in OURS]))
    p.add_argument("--out", default=str(HERE / "results" / "cornac_ml-100k.json"))
    args = p.parse_args()
    data = load_ml100k(Path(args.data_dir))
    results: dict[str, dict[str, list]] = {}
    for seed in map(int, args.seeds.split(",")):
        split = RatioSplit(data, test_size=0.2, rating_threshold=4.0, exclude_unknowns=True, seed=seed,
                           verbose=False)
        models = []
        for spec in args.models.split(","):
            impl, name = spec.split(":")
            models.append((CORNAC if impl == "cornac" else OURS)[name](seed))
        exp = cornac.Experiment(split, models, [cornac.metrics.Recall(20), cornac.metrics.NDCG(20)], verbose=False,
                                save_dir=None)
        exp.run()
        for r in exp.result:
            row = results.setdefault(r.model_name, {"recall@20": [], "ndcg@20": [], "train_sec": [], "test_sec": []})
            row["recall@20"].append(r.metric_avg_results["Recall@20"])
            row["ndcg@20"].append(r.metric_avg_results["NDCG@20"])
            row["train_sec"].append(r.metric_avg_results["Train (s)"])
            row["test_sec"].append(r.metric_avg_results["Test (s)"])
            print(f"seed {seed} {r.model_name}: {r.metric_avg_results}", file=sys.stderr)
    fmt = lambda xs: f"{np.mean(xs):.4f} ({min(xs):.3f}-{max(xs):.3f})"  # noqa: E731
    print(f"\nml-100k, RatioSplit(test_size=0.2, rating_threshold=4.0), seeds {args.seeds}\n")
    print("| model | Recall@20 | NDCG@20 | train s | test s |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {fmt(r['recall@20'])} | {fmt(r['ndcg@20'])} | {np.mean(r['train_sec']):.1f} | "
              f"{np.mean(r['test_sec']):.1f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seeds": args.seeds, "results": results}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
