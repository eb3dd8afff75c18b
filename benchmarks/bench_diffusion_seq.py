"""The diffusion sequence models against our SASRec (and GRU4Rec) on the same splits.

- ``zhihu``: DreamRec's own Zhihu rows (``../shared/data/zhihu-dreamrec``, 8:1:1 by sequence,
  each row = last-10 history + target; :mod:`seq.rows`): DreamRec, SASRec, GRU4Rec and Pop
  trained on the training sequences, early-stopped on the validation rows, the test rows
  ranked over all 4,838 items (full ranking). DreamRec's guidance sweep w = 0, 2, 4, 6, 8, 10
  re-samples the *same* trained model (w only acts at sampling), each over ``--sample-seeds``
  sampling seeds (mean, std, min-max). HR@20 / NDCG@20 as the paper (2.26% / 0.79%; users of the
  official code report <= 2.0% / 0.70%, its issue #6). Reported without masking the history
  (DreamRec's protocol; on Zhihu no test target is in its own history) and with it.
- ``beauty`` / ``ml-1m``: DiffuRec next to SASRec on leave-one-out, full ranking, HR/NDCG@5/10/20,
  with and without the history masked (DiffuRec's protocol does not mask), over sampling seeds.
  ML-1M with all 3,706 items (``item_k=0``, DiffuRec's dataset.pkl as is).

Epoch budgets are arguments (``--epochs``); each row records epochs run, s/epoch, training
time and the inference time for all test users. Each fit checkpoints in ``--runs`` and resumes
from there when the benchmark was interrupted; the JSON is written after every model and a
re-run skips the models it holds (``--force``: re-run them; rows of models not selected with
``--models`` are kept). ``--extra k=v,...`` adds keys to every model (after the plan's own, so
they win); with ``--tag T`` its rows are ``<model>+T`` (run folders too), next to the untagged
ones, e.g. DreamRec trained for longer at its shipped validation cadence:
``zhihu --models dreamrec --epochs 300 --extra eval_step=10,stopping_step=10 --tag long``.
Epoch lines go to stderr. Writes ``benchmarks/results/diffusion_seq_<dataset>.json``
(and ``diffusion_seq_zhihu.png``, the guidance sweep) and prints Markdown tables.

    OMP_NUM_THREADS=1 python benchmarks/bench_diffusion_seq.py zhihu --epochs 40
    OMP_NUM_THREADS=1 python benchmarks/bench_diffusion_seq.py beauty --data-dir ../shared/data --epochs 20 \
        --eval-step 10 --sasrec-epochs 200 --sample-seeds 0 1
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import seq.models  # noqa: E402,F401  (registers the sequence models)
from gcf.config import resolve_config  # noqa: E402
from gcf.data.prepare import load_split  # noqa: E402
from gcf.evaluate import evaluate  # noqa: E402
from seq.rows import fit_rows, load_row_split  # noqa: E402

KS = (5, 10, 20)
# DiffuRec, TOIS 2023 (arXiv 2304.00686), Table 2 (as fractions): full ranking over all items,
# history not masked (the official trainer ranks every item), leave-one-out. The paper's page was
# not readable from this machine: these are as quoted by a third-party copy of the table; the
# DiffuRec rows agree with the paper's stated gains over its best baselines (Beauty HR@5 +57.26%,
# NDCG@5 +56.72%; ML-1M +10.78% / +11.36%). The SASRec rows rest on that copy alone.
_KEYS = [f"{m}@{k}" for m in ("hit", "ndcg") for k in KS]
PAPER = {
    "beauty": {"diffurec": dict(zip(_KEYS, [0.055758, 0.079068, 0.111098, 0.040047, 0.047494, 0.055566])),
               "sasrec": dict(zip(_KEYS, [0.032688, 0.062648, 0.089791, 0.023989, 0.032305, 0.036563]))},
    "ml-1m": {"diffurec": dict(zip(_KEYS, [0.179659, 0.262647, 0.367870, 0.121150, 0.147909, 0.174386])),
              "sasrec": dict(zip(_KEYS, [0.093812, 0.168941, 0.28318, 0.053165, 0.077277, 0.105946]))},
}


def test_metrics(model, split, mask_seen: bool, batch: int = 1024) -> tuple[dict, float]:
    t0 = time.perf_counter()
    m = evaluate(model, split, "test", ks=KS, metrics=("hit", "ndcg"), batch_size=batch, device=model.device,
                 mask_seen=mask_seen)
    return m, time.perf_counter() - t0


def share_reverse_process(model) -> None:
    """Memoise ``model.generate`` by (sampling seed, guidance, users): the masked and unmasked
    rankings of one sampling seed then rank the same generated embeddings, and the reverse
    process (the whole inference cost) runs once for both."""
    generate, memo = model.generate, {}

    def cached(users, items):
        key = (model.sample_seed, getattr(model, "w", None), users.cpu().numpy().tobytes(), items.shape)
        if key not in memo:
            memo[key] = generate(users, items)
        return memo[key]

    model.generate = cached


def over_seeds(model, split, seeds, mask_seen: bool, w: float | None = None) -> dict:
    """Test metrics of a stochastic model over sampling seeds: mean/std/min/max per metric
    (``infer_sec`` of the second masking is only the ranking when :func:`share_reverse_process`)."""
    runs, secs = [], []
    for s in seeds:
        model.sample_seed = int(s)
        if w is not None:
            model.w = float(w)
        m, sec = test_metrics(model, split, mask_seen)
        runs.append(m)
        secs.append(sec)
    out = {}
    for k in runs[0]:
        v = np.array([r[k] for r in runs])
        out[k] = {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}
    out["infer_sec"] = float(np.mean(secs))
    return out


def untrained_items(split) -> np.ndarray:
    """Items that are never a training target: a model trained only on targets, as DreamRec's
    x0-MSE, never learns their rows (:func:`seq.data.never_targets`)."""
    from gcf.data.sequences import Sequences
    from seq.data import never_targets
    return never_targets(Sequences.from_interactions(split.train), first_target=True)  # DreamRec's rows


def by_rows(model, split, groups: dict, seeds=None) -> dict:
    """Test HR/NDCG without masking on each group of test rows (``name -> bool mask``; over sampling
    seeds for a stochastic model)."""
    import dataclasses
    out = {}
    for name, rows in groups.items():
        sub = dataclasses.replace(split, test=split.test.subset(rows))  # a fresh cache (Split._csr is init=False)
        m = over_seeds(model, sub, seeds, False) if seeds is not None else test_metrics(model, sub, False)[0]
        out[name] = {"rows": int(rows.sum()), **m}
    return out


def row_groups(split, untrained: np.ndarray) -> dict:
    """The test rows by target (a training target or not) and by history (empty or not)."""
    cold = untrained[np.asarray(split.test.items)]
    empty = split.history("test").lengths[np.asarray(split.test.users)] == 0
    return {"by_target": {"trained_target": ~cold, "untrained_target": cold},
            "by_history": {"history": ~empty, "empty_history": empty}}


def random_untrained_first(split, untrained: np.ndarray, k: int = 20) -> dict:
    """Expected HR@k / NDCG@k of a ranking that puts the never-trained items first in random order
    (every row's target among them has probability k / n of sitting in the top k, uniform rank)."""
    n = int(untrained.sum())
    share = float(untrained[np.asarray(split.test.items)].mean())
    gains = 1.0 / np.log2(np.arange(2, min(k, n) + 2))
    return {"n_untrained": n, "share_of_test_targets": share, f"hit@{k}": share * min(k, n) / n,
            f"ndcg@{k}": share * float(gains.sum()) / n}


def fit(model, split, overrides, out_dir: Path | None = None):
    """Train (checkpointed in ``out_dir`` and resumed from it when a run was interrupted)."""
    # test=false: the trainer does not rank the test split; over_seeds ranks it per sampling seed
    # (for a diffusion model the ranking is the reverse process, the costly part: run it once)
    extra = ["progress=false", "test=false"] + (["resume=true"] if out_dir is not None else [])
    m = fit_rows(model, split, [*extra, *overrides], out_dir=out_dir)
    net = m.pop("_model")
    m.pop("_trainer")
    return net, {"epochs": m["epochs"], "best_epoch": m["best_epoch"], "sec_per_epoch": m["sec_per_epoch"],
                 "train_sec": m["train_sec"], "valid": m["valid"], "overrides": overrides}


def fmt(v) -> str:
    return f"{v['mean']:.4f} ± {v['std']:.4f}" if isinstance(v, dict) else f"{v:.4f}"


def run_zhihu(args, res: dict) -> dict:
    split = load_row_split(Path(args.data_dir) / "zhihu-dreamrec")
    res.update({"split": split.summary(), "protocol": "full ranking over 4,838 items, test rows of DreamRec's Zhihu"})
    untrained = untrained_items(split)
    res["random_untrained_first"] = random_untrained_first(split, untrained)
    groups = row_groups(split, untrained)
    res.setdefault("models", {})
    ep = f"epochs={args.epochs}"
    plans = [("pop", []), ("sasrec", [ep, "max_len=10", "loss=ce"]), ("gru4rec", [ep, "max_len=10"]),
             ("dreamrec", [ep, "eval_step=5", "stopping_step=4"])]
    for name, ov in plans:
        key = row_key(args, name)
        if (args.models and name not in args.models.split(",")) or (key in res["models"] and not args.force):
            continue
        net, info = fit(name, split, [*ov, *extra_overrides(args)], run_dir(args, key))
        stochastic = hasattr(net, "sample_seed")
        if stochastic:
            share_reverse_process(net)
        for mask in (False, True):
            masking = "unmasked" if not mask else "masked"
            if stochastic:  # the sweep without masking (DreamRec's protocol); masked at the configured w only
                default_w = info["default_w"] = net.w
                ws = args.w if not mask else [default_w]
                info[masking] = {f"w={w:g}": over_seeds(net, split, args.sample_seeds, mask, w) for w in ws}
                net.w = default_w
            else:
                m, sec = test_metrics(net, split, mask)
                info[masking] = {**m, "infer_sec": sec}
        seeds = args.sample_seeds if stochastic else None
        info.update({k: by_rows(net, split, g, seeds) for k, g in groups.items()})
        if hasattr(net, "rank_untrained"):  # the official ranking too (every item scored), at the default w
            net.rank_untrained = True
            info["official_ranking"] = {"unmasked": over_seeds(net, split, seeds, False),
                                        **{k: by_rows(net, split, g, seeds) for k, g in groups.items()}}
            net.rank_untrained = False
        res["models"][key] = info
        save(args, res)
        print(f"{key}: {info['epochs']} epochs, {info['sec_per_epoch']:.1f} s/epoch", flush=True)
    return res


def run_dir(args, key: str) -> Path:
    return Path(args.runs) / f"{args.dataset}-{key}"


def row_key(args, name: str) -> str:
    """The results row (and run folder) of ``name``: ``name+tag`` with ``--tag``."""
    return f"{name}+{args.tag}" if args.tag else name


def extra_overrides(args) -> list[str]:
    return [e for e in args.extra.split(",") if e]


def result_path(args) -> Path:
    return Path(args.out) / f"diffusion_seq_{args.dataset}.json"


def save(args, res: dict) -> None:
    """Written after every model, so an interrupted benchmark keeps what it finished."""
    path = result_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    res["torch_threads"] = torch.get_num_threads()
    path.write_text(json.dumps(res, indent=2, default=float))


def run_loo(args, res: dict) -> dict:
    over = ["split=loo", f"data_dir={args.data_dir}", f"dataset={args.dataset}"]
    if args.dataset == "ml-1m":
        over.append("item_k=0")  # DiffuRec keeps all 3,706 items
    cfg, _ = resolve_config("sasrec", over, family="seq")
    split = load_split(cfg)
    res.update({"split": split.summary(), "protocol": "leave-one-out, full ranking", "paper": PAPER[args.dataset]})
    res.setdefault("models", {})
    ep = f"epochs={args.epochs}"
    plans = [("sasrec", [f"epochs={args.sasrec_epochs or args.epochs}", "loss=ce", "eval_step=1", "length_buckets=true"]),
             ("diffurec", [ep, f"eval_step={args.eval_step or args.epochs}"])]
    for name, ov in plans:
        key = row_key(args, name)
        if (args.models and name not in args.models.split(",")) or (key in res["models"] and not args.force):
            continue
        net, info = fit(name, split, [*ov, *extra_overrides(args)], run_dir(args, key))
        if hasattr(net, "sample_seed"):
            share_reverse_process(net)
        for mask in (False, True):
            masking = "unmasked" if not mask else "masked"
            if hasattr(net, "sample_seed"):
                info[masking] = over_seeds(net, split, args.sample_seeds, mask)
            else:
                m, sec = test_metrics(net, split, mask)
                info[masking] = {**m, "infer_sec": sec}
        res["models"][key] = info
        save(args, res)
        print(f"{key}: {info['epochs']} epochs, {info['sec_per_epoch']:.1f} s/epoch", flush=True)
    return res


def tables(res: dict, zhihu: bool) -> str:
    lines = [f"split: {res['split']}; {res['protocol']}"]
    keys = ["hit@20", "ndcg@20"] if zhihu else [f"{m}@{k}" for m in ("hit", "ndcg") for k in KS]
    for masking in ("unmasked", "masked"):
        lines += ["", f"history {masking}", "", "| model | " + " | ".join(keys) + " | epochs | s/epoch | train s | infer s |",
                  "|---" * (len(keys) + 5) + "|"]
        for name, info in res["models"].items():
            blocks = info[masking]
            rows = blocks.items() if "infer_sec" not in blocks else [("", blocks)]
            for tag, m in rows:
                label = f"{name} {tag}".strip()
                lines.append(f"| {label} | " + " | ".join(fmt(m[k]) for k in keys) +
                             f" | {info['epochs']} | {info['sec_per_epoch']:.1f} | {info['train_sec']:.0f} | "
                             f"{m['infer_sec']:.1f} |")
    if zhihu and "random_untrained_first" in res:
        ref = res["random_untrained_first"]
        heads = {"by_target": (f"test rows by target: {ref['n_untrained']} items never occur in training, "
                               f"{ref['share_of_test_targets']:.2%} of the test targets are among them",
                               "trained_target", "untrained_target"),
                 "by_history": ("test rows by history: empty (the row's first item) or not", "history",
                                "empty_history")}
        for group, (title, a, b) in heads.items():
            lines += ["", f"history unmasked, {title}", "",
                      f"| model | all rows HR@20 | NDCG@20 | {a} rows HR@20 | NDCG@20 | {b} rows HR@20 | NDCG@20 |",
                      "|---" * 7 + "|"]
            for name, info in res["models"].items():
                variants = [(name, info)] + ([(f"{name}, official ranking", info["official_ranking"])]
                                             if "official_ranking" in info else [])
                for label, block in variants:
                    if group not in block:
                        continue
                    full = block["unmasked"]
                    if "hit@20" not in full:  # a guidance sweep: its default w's row
                        full = full[f"w={info['default_w']:g}"]
                    g = block[group]
                    lines.append(f"| {label} | {fmt(full['hit@20'])} | {fmt(full['ndcg@20'])} | "
                                 f"{fmt(g[a]['hit@20'])} | {fmt(g[a]['ndcg@20'])} | "
                                 f"{fmt(g[b]['hit@20'])} | {fmt(g[b]['ndcg@20'])} |")
            if group == "by_target":
                lines.append(f"| untrained items first, random order (expected) | {ref['hit@20']:.4f} | "
                             f"{ref['ndcg@20']:.4f} | 0 | 0 | | |")
    if res.get("paper"):
        lines += ["", "paper (DiffuRec Table 2, history not masked)", "", "| model | " + " | ".join(keys) + " |",
                  "|---" * (len(keys) + 1) + "|"]
        lines += [f"| {name} (paper) | " + " | ".join(f"{m[k]:.4f}" for k in keys) + " |"
                  for name, m in res["paper"].items()]
    return "\n".join(lines)


def plot_sweep(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = {k: v for k, v in res["models"].items() if k.split("+")[0] == "dreamrec"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, key, paper in zip(axes, ("hit@20", "ndcg@20"), (0.0226, 0.0079)):
        for row, info in rows.items():
            sweep = info["unmasked"]
            ws = [float(k.split("=")[1]) for k in sweep]
            mean = np.array([v[key]["mean"] for v in sweep.values()])
            std = np.array([v[key]["std"] for v in sweep.values()])
            line = ax.errorbar(ws, mean, yerr=std, marker="o", label=f"{row} (ours, best epoch {info['best_epoch']} of {info['epochs']})")
            if "official_ranking" in info:  # the same model with every item row scored, at its default w
                ax.plot([info["default_w"]], [info["official_ranking"]["unmasked"][key]["mean"]], marker="x", ls="",
                        ms=9, c=line[0].get_color(), label=f"{row}, official ranking (untrained items scored)")
        ax.axhline(paper, ls="--", c="gray", label="paper")
        for other, color in (("sasrec", "C2"), ("gru4rec", "C3"), ("pop", "C7")):
            if other in res["models"]:
                ax.axhline(res["models"][other]["unmasked"][key], ls=":", label=other, c=color)
        ax.set_xlabel("guidance weight w")
        ax.set_title(f"Zhihu test {key.upper()}")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset", choices=["zhihu", "beauty", "ml-1m"])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--models", default="", help="comma-separated subset")
    p.add_argument("--sample-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--w", type=float, nargs="+", default=[0, 2, 4, 6, 8, 10])
    p.add_argument("--sasrec-epochs", type=int, default=0,
                   help="beauty / ml-1m: SASRec's epoch bound (0: --epochs; it early-stops, patience 10)")
    p.add_argument("--eval-step", type=int, default=0,
                   help="beauty / ml-1m: DiffuRec validates every this many epochs (0: once, at --epochs)")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--runs", default="runs/bench-diffusion", help="checkpoints: an interrupted fit resumes from here")
    p.add_argument("--force", action="store_true", help="re-run the selected models already in the results JSON")
    p.add_argument("--extra", default="", help="key=value overrides for every model, comma-separated (they win)")
    p.add_argument("--tag", default="", help="a name for --extra's setting: rows and run folders become <model>+TAG")
    args = p.parse_args()
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)  # epoch lines
    path = result_path(args)
    res = json.loads(path.read_text()) if path.exists() else {}
    res = run_zhihu(args, res) if args.dataset == "zhihu" else run_loo(args, res)
    save(args, res)
    if args.dataset == "zhihu" and any(k.split("+")[0] == "dreamrec" for k in res["models"]):
        plot_sweep(res, Path(args.out) / "diffusion_seq_zhihu.png")
    print(tables(res, args.dataset == "zhihu"))


if __name__ == "__main__":
    main()
