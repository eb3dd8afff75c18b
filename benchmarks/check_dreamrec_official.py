"""Where the official DreamRec code's Zhihu hits come from (a check, not a model of ours).

Runs the official implementation (YangZhengyi98/DreamRec, a checkout given by ``--repo``; nothing
of it is copied here: its modules are imported from the checkout) with its README's Zhihu command
(T 500, lr 0.01, linear betas, w 4, AdamW, mlp1, seed 100), its training loop (random batches of
256, ``rows / 256`` per epoch) and its evaluation (test rows in batches of 100, the remainder
dropped, dropout left on, every item row scored including the padding row). Every
``--eval-every`` epochs it prints test HR@20 / NDCG@20 and splits them by whether the row's
target is ever a training target, with the share of never-trained items in the top-20 lists, and
the HR@20 / NDCG@20 of the same scores with the never-trained rows left out of the ranking (what
our DreamRec does by default).

The training rows come from ``../shared/data/zhihu-dreamrec`` (the official snapshot lacks
``train_data.df``; its validation and test files equal ours row for row), with the columns
renamed to the official ones in a temporary folder.

    git clone https://github.com/YangZhengyi98/DreamRec /tmp/DreamRec
    OMP_NUM_THREADS=1 python benchmarks/check_dreamrec_official.py --repo /tmp/DreamRec --epochs 50

Writes ``benchmarks/results/dreamrec_official_zhihu.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
README_ARGS = ["--data", "zhihu", "--timesteps", "500", "--lr", "0.01", "--beta_sche", "linear", "--w", "4",
               "--optimizer", "adamw", "--diffuser_type", "mlp1", "--random_seed", "100"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", required=True, help="a checkout of YangZhengyi98/DreamRec")
    p.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--out", default=str(HERE / "results" / "dreamrec_official_zhihu.json"))
    args = p.parse_args()
    repo = Path(args.repo)
    if not (repo / "DreamRec.py").is_file():
        raise SystemExit(f"--repo {repo}: no DreamRec.py there (a checkout of YangZhengyi98/DreamRec)")
    src = Path(args.data_dir) / "zhihu-dreamrec"
    rename = {"seq_len": "len_seq", "tgt": "next"}
    tmp = Path(tempfile.mkdtemp(prefix="dreamrec-zhihu-"))
    for part in ("train_data", "val_data", "test_data"):
        pd.read_pickle(src / f"{part}.df").rename(columns=rename).to_pickle(tmp / f"{part}.df")
    n_items = int(pd.read_pickle(src / "data_statis.df")["item_num"].iloc[0])

    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    sys.argv = ["DreamRec.py", *README_ARGS]  # the official module parses its arguments on import
    sys.path.insert(0, str(repo))
    import DreamRec as official  # noqa: E402  (the checkout's module)
    official.device = torch.device("cpu")  # set in its __main__ block, used by its sampler
    a = official.args
    model = official.Tenc(a.hidden_factor, n_items, 10, a.dropout_rate, a.diffuser_type, official.device)
    diff = official.diffusion(a.timesteps, a.beta_start, a.beta_end, a.w)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, eps=1e-8, weight_decay=a.l2_decay)
    train, test = pd.read_pickle(tmp / "train_data.df"), pd.read_pickle(tmp / "test_data.df")
    never = np.ones(n_items + 1, dtype=bool)  # + the padding row, which the official code scores too
    never[train["next"].unique()] = False
    cold = never[test["next"].values]
    print(f"{int(never[:n_items].sum())} items are never a training target; {cold.mean():.2%} of the test targets",
          flush=True)
    log = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        for _ in range(len(train) // a.batch_size):
            b = train.sample(n=a.batch_size)
            seq, len_seq = torch.LongTensor(np.stack(b["seq"].values)), torch.LongTensor(b["len_seq"].values.copy())
            x0, h = model.cacu_x(torch.LongTensor(b["next"].values.copy())), model.cacu_h(seq, len_seq, a.p)
            n = torch.randint(0, a.timesteps, (a.batch_size,)).long()
            loss, _ = diff.p_losses(model, x0, h, n, loss_type="l2")
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch} loss {loss.item():.4f} {time.time() - t0:.1f}s", flush=True)
        if epoch % args.eval_every:
            continue
        hit, gain, top_cold, hit_x, gain_x = [], [], [], [], []
        with torch.no_grad():
            for i in range(len(test) // 100):
                rows = test.iloc[i * 100:(i + 1) * 100]
                scores = model.predict(torch.LongTensor(np.stack(rows["seq"].values)), rows["len_seq"].values, diff)
                top = scores.topk(20, dim=1).indices.numpy()
                # the same scores with the never-trained rows (and the padding row) left out: our default
                top_x = scores.masked_fill(torch.from_numpy(never), float("-inf")).topk(20, dim=1).indices.numpy()
                for row, row_x, target in zip(top, top_x, rows["next"].values):
                    at, at_x = np.flatnonzero(row == target), np.flatnonzero(row_x == target)
                    hit.append(len(at) > 0)
                    gain.append(1 / np.log2(at[0] + 2) if len(at) else 0.0)
                    hit_x.append(len(at_x) > 0)
                    gain_x.append(1 / np.log2(at_x[0] + 2) if len(at_x) else 0.0)
                    top_cold.append(never[row].mean())
        hit, gain, c = np.array(hit), np.array(gain), cold[:len(hit)]
        r = {"epoch": epoch, "hit@20": hit.mean(), "ndcg@20": gain.mean(), "hit@20 trained-target rows": hit[~c].mean(),
             "hit@20 untrained-target rows": hit[c].mean(), "share of hits on untrained targets":
             hit[c].sum() / max(hit.sum(), 1), "share of top-20 slots holding untrained items": float(np.mean(top_cold)),
             "hit@20 untrained items not ranked": np.mean(hit_x), "ndcg@20 untrained items not ranked": np.mean(gain_x)}
        log.append({k: float(v) for k, v in r.items()})
        print(json.dumps({k: round(v, 4) for k, v in log[-1].items()}), flush=True)
        Path(args.out).write_text(json.dumps({"command": README_ARGS, "test_rows": int(len(hit)),
                                              "untrained_items": int(never[:n_items].sum()),
                                              "untrained_share_of_test_targets": float(cold.mean()),
                                              "evaluations": log}, indent=2))


if __name__ == "__main__":
    main()
