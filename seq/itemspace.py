"""A picture of a trained model's item space, and of one user's vectors in it.

    python -m seq.itemspace RUN_DIR [--user RAW_ID] [--color genres|attributes|popularity]
                            [--method tsne|pca] [--max-items 4000] [--out items.png]

``RUN_DIR`` is the folder of any finished run (``python -m gcf.train`` / ``seq.train`` /
``bridges.train``) whose model has item vectors (``item_vectors()`` or the item side of
``latents()``; :func:`seq.retrieval.item_vectors`). The items (a seeded sample of
``--max-items``, always with the user's history) and the user's query vectors (the K interest
vectors of MIND / ComiRec, the encoded history of a sequence model, the user latent of a CF
model; :func:`seq.retrieval.query_vectors`) are projected together to 2-D, by t-SNE with the
cosine metric (the models score by inner products, so direction matters more than length;
scikit-learn) or by PCA (numpy, no extra dependency). Items are coloured by their first genre
(MovieLens), first attribute (S3-Rec's ``item2attributes.json``) or training-popularity
decile; the user's history items are ringed and the query vectors drawn as stars. t-SNE keeps
neighbourhoods, not distances: clusters mean "these vectors are similar", the space between
clusters means nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from gcf.runs import load_trained

from .attributes import item_attribute_lists
from .retrieval import item_vectors, query_vectors


def item_labels(data, color: str) -> tuple[np.ndarray, str]:
    """``(label per item, what the labels are)``; ``auto`` tries genres, then attributes, then popularity."""
    feats = data.item_features or {}
    if color in ("auto", "genres"):
        col = next((feats[k] for k in ("genres", "class") if k in feats), None)
        if col is not None:
            first = []
            for v in col:
                parts = v.replace("|", " ").split() if isinstance(v, str) else (list(v) if v is not None else [])
                first.append(parts[0] if parts else "(none)")
            return np.asarray(first, dtype=object), "first genre"
        if color == "genres":
            raise ValueError(f"--color genres: the dataset has no genre column (item columns: {sorted(feats) or 'none'})")
    if color in ("auto", "attributes"):
        try:
            attrs = item_attribute_lists(data)
            return np.asarray([f"attr {a[0]}" if len(a) else "(none)" for a in (attrs.of(j) for j in
                                                                                 range(data.n_items))], dtype=object), \
                "first attribute"
        except (FileNotFoundError, ValueError):
            if color == "attributes":
                raise
    if color not in ("auto", "popularity"):
        raise ValueError(f"--color must be auto, genres, attributes or popularity, got {color!r}")
    pop = np.diff(data.train.tocsc().indptr)
    ranks = np.argsort(np.argsort(-pop, kind="stable"), kind="stable")
    decile = (10 * ranks // max(1, data.n_items)) + 1
    return np.asarray([f"top {10 * d}%" for d in decile], dtype=object), "training popularity decile"


def project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    """``[n, 2]`` coordinates of the rows of ``x``."""
    if method == "pca":
        c = x - x.mean(0)
        _, _, vt = np.linalg.svd(c, full_matrices=False)
        return c @ vt[:2].T
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise ValueError("--method tsne needs scikit-learn (pip install scikit-learn), or use --method pca") \
                from None
        return TSNE(2, metric="cosine", init="pca", random_state=seed, perplexity=min(30, len(x) - 1)).fit_transform(x)
    raise ValueError(f"--method must be tsne or pca, got {method!r}")


def plot_item_space(run_dir, user: str | None = None, color: str = "auto", method: str = "tsne",
                    max_items: int = 4000, out: str | None = None, seed: int = 0) -> Path:
    """Write the PNG (see the module docstring) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gcf.data.train_data import TrainData

    model, split = load_trained(run_dir)
    data = TrainData.from_split(split)
    items = item_vectors(model).numpy()
    labels, what = item_labels(data, color)
    rng = np.random.default_rng(seed)
    history, queries, valid = np.zeros(0, dtype=np.int64), np.zeros((0, items.shape[1]), np.float32), None
    if user is not None:
        ids = [str(u) for u in split.train.user_ids]
        if str(user) not in ids:
            raise ValueError(f"--user {user!r} is not a user of this run's data (e.g. {ids[:3]})")
        u = ids.index(str(user))
        history = data.train[u].indices.astype(np.int64)
        q, valid = query_vectors(model, [u])
        queries = q[0][valid[0]].numpy()
    keep = np.arange(len(items)) if len(items) <= max_items else np.union1d(
        rng.choice(len(items), max_items, replace=False), history)
    xy = project(np.concatenate([items[keep], queries]).astype(np.float64), method, seed)
    item_xy, query_xy = xy[:len(keep)], xy[len(keep):]

    kinds, counts = np.unique(labels[keep], return_counts=True)
    top = [k for _, k in sorted(zip(-counts, kinds))][:12]  # the 12 commonest labels get colours
    fig, ax = plt.subplots(figsize=(9, 8))
    other = ~np.isin(labels[keep], top)
    ax.scatter(item_xy[other, 0], item_xy[other, 1], s=4, c="lightgrey", label="other", alpha=0.6)
    cmap = plt.get_cmap("tab20")
    for k, name in enumerate(top):
        m = labels[keep] == name
        ax.scatter(item_xy[m, 0], item_xy[m, 1], s=5, color=cmap(k), label=str(name), alpha=0.75)
    if len(history):
        h = np.isin(keep, history)
        ax.scatter(item_xy[h, 0], item_xy[h, 1], s=40, facecolors="none", edgecolors="black", linewidths=0.8,
                   label=f"user {user}: history ({h.sum()})")
    if len(queries):
        ax.scatter(query_xy[:, 0], query_xy[:, 1], s=320, marker="*", c="red", edgecolors="black",
                   label=f"user {user}: {len(queries)} query vector(s)")
    ax.set_title(f"{type(model).__name__} item space ({len(keep)} of {len(items)} items, {method}), "
                 f"coloured by {what}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=1, loc="best", ncol=2)
    fig.tight_layout()
    path = Path(out or Path(run_dir) / f"itemspace-{method}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--user", default=None, help="a raw user id: draw its history and query vectors")
    p.add_argument("--color", default="auto", help="auto | genres | attributes | popularity")
    p.add_argument("--method", default="tsne", help="tsne (cosine) | pca")
    p.add_argument("--max-items", type=int, default=4000)
    p.add_argument("--out", default=None, help="PNG path (default RUN_DIR/itemspace-<method>.png)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import seq.models  # noqa: F401  (a sequence run's model must be registered to load)
    try:
        import bridges.models  # noqa: F401
    except ImportError:
        pass
    try:
        path = plot_item_space(a.run_dir, a.user, a.color, a.method, a.max_items, a.out, a.seed)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sys.exit(main())
