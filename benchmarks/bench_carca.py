"""CARCA against our SASRec on the same leave-one-out split, and CARCA's ablation.

Every variant trains through ``python -m seq.train`` defaults (``gcf.train.run``: early stopping
on validation NDCG@10 under full ranking), then its best checkpoint ranks the test items twice:
among all items (history masked) and among 100 uniform negatives outside the history
(``uni100``, the CARCA/SASRec papers' protocol; labelled). Variants:

- ``sasrec``: our SASRec, shipped defaults (BCE, one negative per position);
- ``carca``: shipped defaults (attributes ``auto``, context ``auto``, cross-attention);
- ``no_attr`` (``item_features=none``), ``no_ctx`` (``context=off``), ``no_ca``
  (``cross_attention=false``, the paper's "w/o CA"), ``ids_only`` (no attributes, no context);
- ``official_attn`` (``official_attention=true``: the official code's leaking attention),
  ``cand_last`` (``candidate_time=last``), ``pos`` (``positions=right``: SASRec's learned
  positions, not in the paper), ``pos_add`` (and ``residual=add``), ``no_ca_pos``, ``no_ca_pos_add``: name them in
  ``--variants``.

    GCF_DATA_DIR=../shared/data python benchmarks/bench_carca.py --dataset ml-100k --seeds 1
    GCF_DATA_DIR=../shared/data python benchmarks/bench_carca.py --dataset beauty \
        --variants sasrec,carca,no_ca_pos_add --extra length_buckets=true --sasrec-extra length_buckets=true

Writes ``benchmarks/results/carca_<dataset>.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import seq.models  # noqa: E402,F401  (registers the sequence models)
from gcf.evaluate import evaluate  # noqa: E402
from gcf.runs import load_trained  # noqa: E402
from gcf.train import run  # noqa: E402

VARIANTS = {
    "sasrec": ("sasrec", []),
    "carca": ("carca", []),
    "no_attr": ("carca", ["item_features=none"]),
    "no_ctx": ("carca", ["context=off"]),
    "no_ca": ("carca", ["cross_attention=false"]),
    "ids_only": ("carca", ["item_features=none", "context=off"]),
    "official_attn": ("carca", ["official_attention=true"]),
    "cand_last": ("carca", ["candidate_time=last"]),
    "pos": ("carca", ["positions=right"]),
    "pos_add": ("carca", ["positions=right", "residual=add"]),
    "no_ca_pos": ("carca", ["cross_attention=false", "positions=right"]),
    "no_ca_pos_add": ("carca", ["cross_attention=false", "positions=right", "residual=add"]),
}
DEFAULT = "sasrec,carca,no_attr,no_ctx,no_ca,ids_only"
KS = (10,)


def one(variant: str, dataset: str, seed: int, epochs: int | None, out_root: Path, extra: list, tag: str = "") -> dict:
    model, keys = VARIANTS[variant]
    variant = f"{variant}+{tag}" if tag else variant
    out_dir = out_root / f"{variant}-{dataset}-s{seed}"
    args = [f"dataset={dataset}", f"seed={seed}", f"out_dir={out_dir}", "progress=false", "device=cpu", *keys,
            *extra]
    if os.environ.get("GCF_DATA_DIR"):
        args.append(f"data_dir={os.environ['GCF_DATA_DIR']}")
    if epochs:
        args.append(f"epochs={epochs}")
    t0 = time.time()
    m = run(model, args, quiet=True, family="seq")
    train_s = time.time() - t0
    if "resume=true" in extra:  # a run continued (or capped) from its checkpoint: the epochs' own times
        train_s = sum(h["sec"] + h.get("eval_sec", 0.0) for h in m["history"])
    net, split = load_trained(out_dir)
    t0 = time.time()
    uni = evaluate(net, split, "test", ks=KS, metrics=("hit", "ndcg"), sampled="uni100", seed=seed)
    eval_s = time.time() - t0
    epochs_run = len(m["history"])
    return {"variant": variant, "model": model, "keys": keys + extra, "seed": seed,
            "hit@10": m["test"]["hit@10"], "ndcg@10": m["test"]["ndcg@10"],
            "hit@10[uni100]": uni["hit@10[uni100]"], "ndcg@10[uni100]": uni["ndcg@10[uni100]"],
            "best_epoch": m["best_epoch"], "epochs": epochs_run, "train_s": round(train_s, 1),
            "s_per_epoch": round(train_s / max(epochs_run, 1), 2), "uni100_eval_s": round(eval_s, 1)}


def fmt(xs):
    return f"{xs[0]:.4f}" if len(xs) == 1 else f"{statistics.mean(xs):.4f} +- {statistics.stdev(xs):.4f}"


def table(rows: list, dataset: str) -> str:
    lines = [f"CARCA vs SASRec, {dataset}, leave-one-out, test; full ranking (history masked) and uni100 "
             "(100 uniform negatives outside the history)", "",
             "| variant | keys | HR@10 | NDCG@10 | HR@10 uni100 | NDCG@10 uni100 | epochs (best) | s/epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for v in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == v]
        cols = [fmt([r[k] for r in rs]) for k in ("hit@10", "ndcg@10", "hit@10[uni100]", "ndcg@10[uni100]")]
        lines.append(f"| {v} | {' '.join(rs[0]['keys']) or '-'} | {' | '.join(cols)} | "
                     f"{statistics.median(r['epochs'] for r in rs):.0f} ({statistics.median(r['best_epoch'] for r in rs):.0f}) | "
                     f"{statistics.median(r['s_per_epoch'] for r in rs):.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--variants", default=DEFAULT, help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="1")
    p.add_argument("--epochs", type=int, default=None, help="cap on epochs (default: the model's config)")
    p.add_argument("--extra", default="", help="space-separated key=value added to every CARCA variant")
    p.add_argument("--sasrec-extra", default="", help="space-separated key=value added to the SASRec variant")
    p.add_argument("--tag", default="", help="rows named VARIANT+TAG (runs with other --extra keys beside the plain ones)")
    p.add_argument("--out", default=None)
    p.add_argument("--runs", default="runs/bench_carca")
    a = p.parse_args(argv)
    names = [v for v in a.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    out = Path(a.out or HERE / "results" / f"carca_{a.dataset}.json")
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    done = {(r["variant"], r["seed"]) for r in rows}
    for seed in [int(s) for s in a.seeds.split(",")]:
        for v in names:
            if (f"{v}+{a.tag}" if a.tag else v, seed) in done:
                continue
            extra = (a.extra if VARIANTS[v][0] == "carca" else a.sasrec_extra).split()
            r = one(v, a.dataset, seed, a.epochs, Path(a.runs), extra, a.tag)
            print(json.dumps(r), flush=True)
            rows.append(r)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"dataset": a.dataset, "epochs_cap": a.epochs, "rows": rows}, indent=1))
    print(table(rows, a.dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
