"""Where the SASRec-CE epoch on ML-1M went: one training epoch and one full validation ranking,
timed with each speed-up of the sequence core switched off in turn (same data, same model).

- ``softmax``: ``autograd`` is ``F.cross_entropy`` on the ``[N, n_items]`` logits (the loss before
  :func:`seq.losses.softmax_ce`); ``fused`` computes the gradient in the forward, in row chunks.
- ``batches``: ``shuffled`` (one row per user, ``max_len`` wide) or ``buckets``
  (``length_buckets=true``: similar lengths per batch, about the same number of positions per
  batch, each batch cut to its longest row).
- ``ranking``: ``full width`` (every history padded to ``max_len``) or ``cut`` (histories sorted by
  length and scored in chunks cut to their longest row, ``SeqRecommender.trim_padding``).

ML-1M leave-one-out (6,040 users, 3,416 items), SASRec max_len 200, d 64, 2 blocks, dropout 0.1,
batch 64, CE. Run alone on the machine (timings), ``OMP_NUM_THREADS`` threads (2 by default):

    GCF_DATA_DIR=../shared/data python benchmarks/bench_seq_epoch.py

Prints a Markdown table, writes ``benchmarks/results/seq_epoch_ml-1m.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import seq.losses  # noqa: E402
import seq.models  # noqa: E402,F401  (registers the sequence models)
from gcf.config import resolve_config  # noqa: E402
from gcf.data.prepare import load_split  # noqa: E402
from gcf.data.train_data import TrainData  # noqa: E402
from gcf.evaluate import evaluate  # noqa: E402
from gcf.models import build_model  # noqa: E402

FUSED = seq.losses.softmax_ce


def autograd_ce(hidden, weight, targets, bias=None, rows=None):
    logits = hidden @ weight.T
    return F.cross_entropy(logits if bias is None else logits + bias, targets)


def one_epoch(split, kwargs, data, softmax: str, buckets: bool, seed: int):
    seq.losses.softmax_ce = FUSED if softmax == "fused" else autograd_ce
    torch.manual_seed(seed)
    net = build_model("sasrec", {**kwargs, "length_buckets": buckets}, split, seed)
    opt = torch.optim.Adam(net.param_groups(), lr=1e-3)
    net.train()
    builder = net.batches(data, 64)
    t0 = time.perf_counter()
    for batch in builder.epoch(np.random.default_rng(seed)):
        loss = net.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seq.losses.softmax_ce = FUSED
    return time.perf_counter() - t0, len(builder), net


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results" / "seq_epoch_ml-1m.json"))
    args = p.parse_args()
    data_dir = os.environ.get("GCF_DATA_DIR", str(HERE.parents[1] / "shared" / "data"))
    cfg, kwargs = resolve_config("sasrec", ["dataset=ml-1m", f"data_dir={data_dir}", "loss=ce", "max_len=200",
                                            "hidden_dropout_prob=0.1", "attn_dropout_prob=0.1"], family="seq")
    split = load_split(cfg)
    data = TrainData.from_split(split)
    rows = []
    net = None
    for softmax, buckets in (("autograd", False), ("fused", False), ("fused", True)):
        sec, steps, net = one_epoch(split, kwargs, data, softmax, buckets, args.seed)
        rows.append({"what": "train epoch", "softmax": softmax, "batches": "buckets" if buckets else "shuffled",
                     "sec": sec, "steps": steps})
        print(rows[-1], file=sys.stderr)
    net.eval()
    for trim in (False, True):
        net.trim_padding = trim
        t0 = time.perf_counter()
        m = evaluate(net, split, "valid", ks=(10,), metrics=("ndcg",), batch_size=1024)
        rows.append({"what": "validation ranking", "ranking": "cut" if trim else "full width",
                     "sec": time.perf_counter() - t0, "ndcg@10": m["ndcg@10"]})
        print(rows[-1], file=sys.stderr)
    base_train, base_eval = rows[0]["sec"], rows[3]["sec"]
    print(f"\nSASRec-CE, ML-1M, max_len 200, batch 64, {torch.get_num_threads()} threads\n")
    print("| what | softmax | batches / ranking | seconds | speed-up |\n|---|---|---|---|---|")
    for r in rows:
        base = base_train if r["what"] == "train epoch" else base_eval
        print(f"| {r['what']} | {r.get('softmax', '')} | {r.get('batches', r.get('ranking'))} | {r['sec']:.1f} | "
              f"{base / r['sec']:.1f}x |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "seed": args.seed, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
