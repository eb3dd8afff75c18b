"""CL4SRec against our SASRec trained with the same next-item loss, on Beauty (S3-Rec form).

Data: ``dataset=beauty`` (``amazon-beauty/s3rec/Beauty.txt``: 22,363 users, 12,101 items,
198,502 interactions), leave-one-out (last = test, second-last = valid), full ranking over all
items with the history masked, HR/NDCG@{5,10,20}; early stopping on validation NDCG@10.

Variants (one ``python -m seq.train`` run each, the same seed, batches and encoder):

- ``sasrec-ce``: SASRec (official TF layout, d 64, 2 blocks, 1 head, dropout 0.2, L 50) with the
  full-softmax cross-entropy of CL4SRec's paper, batch 256, lr 1e-3.
- ``cl4srec``: the same plus crop/mask/reorder views and NT-Xent (eta 0.6, gamma 0.3, beta 0.6,
  lambda 0.1, dot similarity, tau 1: RecBole-DA's defaults).

Published (full ranking, Beauty): CL4SRec HR@10 0.0681 / NDCG@10 0.0299 (one of several
figures in the literature); S3-Rec's SASRec 0.0605 / 0.0318.

``--epochs`` bounds each run (the full run is up to 200 epochs with patience 10); a variant
already in the JSON is not re-run (``--force``). Resumable from ``runs/bench-cl4srec/<variant>``.
``--extra`` adds keys to every variant; with ``--tag T`` its rows are ``<variant>+T`` (and their
run folders too), next to the untagged ones, e.g. DuoRec's Beauty dropout:
``--extra hidden_dropout_prob=0.5,attn_dropout_prob=0.5 --tag drop0.5``.

    GCF_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_cl4srec.py --epochs 3

Writes ``benchmarks/results/cl4srec_beauty.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import seq.models  # noqa: E402,F401  (registers the sequence models)
from gcf.train import run  # noqa: E402

COMMON = ["loss=ce", "max_len=50", "hidden_size=64", "batch_size=256", "learning_rate=0.001", "stopping_step=10"]
VARIANTS = {"sasrec-ce": ("sasrec", COMMON), "cl4srec": ("cl4srec", COMMON)}
PUBLISHED = {"cl4srec": (0.0681, 0.0299), "sasrec-ce": (0.0605, 0.0318)}


def table(results: dict) -> None:
    print("\nBeauty (S3-Rec form), leave-one-out, full ranking over 12,101 items, history masked\n")
    print("| variant | epochs (best) | HR@10 | NDCG@10 | HR@20 | NDCG@20 | published HR@10 / NDCG@10 | s/epoch | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        t = r["test"]
        pub = PUBLISHED.get(name.split("+")[0])
        print(f"| {name} | {r['epochs']} ({r['best_epoch']}) | {t['hit@10']:.4f} | {t['ndcg@10']:.4f} | "
              f"{t['hit@20']:.4f} | {t['ndcg@20']:.4f} | {'%.4f / %.4f' % pub if pub else ''} | "
              f"{r['sec_per_epoch']:.0f} | {r['train_sec']:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="sasrec-ce,cl4srec")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--extra", default="", help="extra key=value overrides for every variant, comma-separated")
    p.add_argument("--force", action="store_true")
    p.add_argument("--tag", default="", help="a name for --extra's setting: rows and run folders become "
                                             "VARIANT+TAG (so a run with other keys never resumes another's)")
    p.add_argument("--out", default=str(HERE / "results" / "cl4srec_beauty.json"))
    args = p.parse_args()
    data_dir = os.environ.get("GCF_DATA_DIR", str(HERE.parents[1] / "shared" / "data"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        model, overrides = VARIANTS[name]
        if args.tag:
            name = f"{name}+{args.tag}"
        if name in results and not args.force:
            continue
        extra = [e for e in args.extra.split(",") if e]
        overrides = [*overrides, f"epochs={args.epochs}", *extra]
        m = run(model, ["dataset=beauty", f"data_dir={data_dir}", f"seed={args.seed}", "progress=false",
                        "resume=true", f"out_dir=runs/bench-cl4srec/{name}", *overrides], family="seq")
        results[name] = {k: m[k] for k in ("test", "valid", "sec_per_epoch", "epochs", "best_epoch", "train_sec",
                                           "history")}
        results[name]["overrides"] = overrides
        results[name]["threads"] = os.environ.get("OMP_NUM_THREADS")
        out.write_text(json.dumps(results, indent=2))
    table(results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
