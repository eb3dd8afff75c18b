"""Top-k retrieval for every model with user and item vectors, by exact search or through
faiss (``pip install faiss-cpu``, the ``faiss`` extra).

``recommend(model, users, k)`` ranks items by the inner product of the user's vector(s) with
the item vectors, dropping the items the user has already seen:

- query vectors (:func:`query_vectors`): a multi-interest model's K interests
  (``interest_vectors``), a sequence model's encoding of the history (``encode``), any other
  model's user row of ``latents()``; item vectors: ``item_vectors()`` or ``latents()``. For
  models whose score is that inner product (BPR, LightGCN, NGCF, SASRec, GRU4Rec, MIND,
  ComiRec, ...) the ranking is the model's own; for models with other scores (biases,
  decoders) it is the ranking of their latent space.
- ``index``: ``exact`` (the default: a matrix product and ``torch.topk``, in chunks),
  ``flat`` (faiss ``IndexFlatIP``: exact inner product, never L2), ``ivf`` (``IndexIVFFlat``
  with the inner-product metric, ``nlist`` clusters, ``nprobe`` searched), ``hnsw``
  (``IndexHNSWFlat`` with the inner-product metric, ``M`` links, ``ef_search``).
- Multi-interest users (ComiRec's retrieval, ``src/train.py``): top ``k`` per interest, merged
  by score, duplicates and seen items dropped, top ``k`` kept. Each interest is searched
  ``k + |seen|`` deep, so ``k`` unseen items remain.
- ``diversity_lambda > 0`` with ``item_categories``: ComiRec's controllable aggregation
  (Sec. 3.4): from the merged candidates, pick ``k`` greedily, each maximising
  ``score - lambda * (#items already picked in its category)``, which greedily maximises
  ``sum_i f(u, i) + lambda * sum_{i<j} 1[cat(i) != cat(j)]``. Candidates without a category
  (``-1``) are dropped, as the official code drops items missing from its category map.
  :func:`diversity` is the official measure (share of pairs of different categories).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["ItemIndex", "Retriever", "recommend", "query_vectors", "item_vectors", "merge_candidates",
           "diversity", "INDEXES"]

INDEXES = ("exact", "flat", "ivf", "hnsw")


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("this index needs faiss: pip install faiss-cpu (the 'faiss' extra); "
                          "index='exact' needs nothing") from None
    return faiss


class ItemIndex:
    """An inner-product index over ``items [n, d]``; :meth:`search` returns the top ``k``
    ``(scores [Q, k] float32, ids [Q, k] int64)`` of each query row (id -1, score -inf where an
    approximate index found fewer than ``k``).

    Args:
        kind: ``exact`` | ``flat`` | ``ivf`` | ``hnsw`` (module docstring).
        nlist: IVF clusters (default ``4 sqrt(n)``, at most ``n / 39`` so k-means has data).
        nprobe: IVF clusters searched (8). M: HNSW links per node (32).
        ef_search: HNSW search breadth (64). ef_construction: HNSW build breadth (200).
        chunk: query rows per matrix product of the exact search (1024).
    """

    def __init__(self, items, kind: str = "exact", nlist: int | None = None, nprobe: int = 8, M: int = 32,
                 ef_search: int = 64, ef_construction: int = 200, chunk: int = 1024):
        if kind not in INDEXES:
            raise ValueError(f"index must be one of {', '.join(INDEXES)}, got {kind!r}")
        items = torch.as_tensor(items).detach().float().cpu().contiguous()
        if items.dim() != 2 or len(items) == 0:
            raise ValueError(f"item vectors must be a non-empty [n_items, d] matrix, got shape {tuple(items.shape)}")
        self.kind, self.n, self.d, self.chunk = kind, items.shape[0], items.shape[1], int(chunk)
        self.items = items
        self.index = None
        if kind == "exact":
            return
        faiss = _faiss()
        x = np.ascontiguousarray(items.numpy(), dtype=np.float32)
        if kind == "flat":
            self.index = faiss.IndexFlatIP(self.d)
        elif kind == "ivf":
            nlist = int(nlist or max(1, min(int(4 * np.sqrt(self.n)), self.n // 39)))
            self.quantizer = faiss.IndexFlatIP(self.d)  # kept alive: the IVF index refers to it
            self.index = faiss.IndexIVFFlat(self.quantizer, self.d, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.train(x)
            self.index.nprobe = int(nprobe)
        else:
            self.index = faiss.IndexHNSWFlat(self.d, int(M), faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = int(ef_construction)
            self.index.hnsw.efSearch = int(ef_search)
        self.index.add(x)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.as_tensor(queries).detach().float().cpu()
        k = int(min(k, self.n))
        if self.index is None:
            scores, ids = [], []
            for s in range(0, len(q), self.chunk):
                top = torch.topk(q[s:s + self.chunk] @ self.items.T, k, dim=1)
                scores.append(top.values)
                ids.append(top.indices)
            if not scores:
                return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
            return torch.cat(scores).numpy(), torch.cat(ids).numpy().astype(np.int64)
        scores, ids = self.index.search(np.ascontiguousarray(q.numpy(), dtype=np.float32), k)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids.astype(np.int64)


@torch.no_grad()
def query_vectors(model, users, history=None, user_table: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, K, d]`` query vectors of ``users`` and ``[B, K]`` validity (K = 1 but for
    multi-interest models); ``history`` (:class:`gcf.data.sequences.Sequences`) is what a
    sequence model reads (default: its training sequences). ``user_table``: the user side of
    ``latents()`` when the caller has it already (models without a history encoder)."""
    users = torch.as_tensor(np.asarray(users), dtype=torch.long)
    if user_table is not None:
        return user_table[users].float().cpu()[:, None, :], torch.ones(len(users), 1, dtype=torch.bool)
    if hasattr(model, "interest_vectors"):
        q, valid = model.interest_vectors(users, history)
        return q.float().cpu(), valid.cpu()
    if hasattr(model, "encode") and hasattr(model, "max_len"):
        history = model._train_sequences if history is None else history
        items, times = history.padded(users.numpy(), model.max_len)
        dev = model.device
        q = model.encode(torch.from_numpy(items).to(dev), None if times is None else torch.from_numpy(times).to(dev))
    else:
        q = model.latents()[0][users.to(model.device)]
    return q.float().cpu()[:, None, :], torch.ones(len(users), 1, dtype=torch.bool)


@torch.no_grad()
def item_vectors(model) -> torch.Tensor:
    """``[n_items, d]``: ``model.item_vectors()`` or the item side of ``model.latents()``."""
    if hasattr(model, "item_vectors"):
        try:
            return model.item_vectors().float().cpu()
        except NotImplementedError:
            pass
    return model.latents()[1].float().cpu()


def merge_candidates(scores: np.ndarray, ids: np.ndarray, k: int, seen: sp.csr_matrix | None = None,
                     item_categories: np.ndarray | None = None, diversity_lambda: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-interest candidates ``scores, ids [B, M]`` (the K lists side by side; id -1 =
    none) into each row's top ``k``: duplicates keep their best score, items in row ``b`` of
    ``seen`` (CSR ``[B, n_items]``) are dropped; with ``diversity_lambda`` the greedy
    controllable aggregation over ``item_categories [n_items]`` (module docstring). Returns
    ``(ids [B, k], scores [B, k])`` best first (id -1, score -inf when fewer remain)."""
    s = torch.from_numpy(np.asarray(scores, dtype=np.float32)).clone()
    i = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    B, M = s.shape
    s[i < 0] = float("-inf")
    if seen is not None:  # drop seen items: a sorted-key search of (row, item) pairs
        seen = sp.csr_matrix(seen)
        seen.sort_indices()
        rows = np.repeat(np.arange(B, dtype=np.int64), np.diff(seen.indptr))
        n_items = max(int(seen.shape[1]), int(i.max()) + 1 if i.numel() else 1)
        keys = torch.from_numpy(rows * n_items + seen.indices.astype(np.int64))
        if len(keys):
            query = torch.arange(B)[:, None] * n_items + i.clamp(min=0)
            pos = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
            s[keys[pos] == query] = float("-inf")
    order = torch.argsort(s, dim=1, descending=True, stable=True)  # best first
    s, i = s.gather(1, order), i.gather(1, order)
    by_id = torch.argsort(i, dim=1, stable=True)  # equal ids adjacent, best first within them
    sid = i.gather(1, by_id)
    dup = torch.zeros_like(sid, dtype=torch.bool)
    dup[:, 1:] = sid[:, 1:] == sid[:, :-1]
    s[torch.zeros_like(dup).scatter_(1, by_id, dup)] = float("-inf")  # later copies of an item
    if diversity_lambda and item_categories is not None:
        return _controllable(s, i, k, torch.as_tensor(np.asarray(item_categories), dtype=torch.long),
                             float(diversity_lambda))
    top = torch.topk(s, min(k, M), dim=1)
    out_i = i.gather(1, top.indices).masked_fill(torch.isinf(top.values), -1)
    return _pad(out_i.numpy(), top.values.numpy(), k)


def _controllable(s: torch.Tensor, i: torch.Tensor, k: int, cats: torch.Tensor, lam: float):
    """Greedy ``argmax score - lam * picked[category]``, ``k`` steps, vectorised over rows."""
    B, M = s.shape
    c = cats[i.clamp(min=0)]  # [B, M]
    s = s.masked_fill(c < 0, float("-inf"))  # no category: not a candidate (official)
    c = c.clamp(min=0)
    picked = torch.zeros(B, int(cats.max()) + 1 if len(cats) else 1)
    out_i = torch.full((B, k), -1, dtype=torch.long)
    out_s = torch.full((B, k), float("-inf"))
    rows = torch.arange(B)
    for step in range(min(k, M)):
        gain = s - lam * picked.gather(1, c)
        best = gain.argmax(1)
        ok = torch.isfinite(s[rows, best])
        out_i[ok, step], out_s[ok, step] = i[rows, best][ok], s[rows, best][ok]
        picked[rows[ok], c[rows, best][ok]] += 1
        s[rows, best] = float("-inf")
    return out_i.numpy(), out_s.numpy()


def _pad(ids: np.ndarray, scores: np.ndarray, k: int):
    if ids.shape[1] >= k:
        return ids, scores
    extra = k - ids.shape[1]
    return (np.pad(ids, ((0, 0), (0, extra)), constant_values=-1),
            np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf))


def diversity(ids: np.ndarray, item_categories: np.ndarray) -> float:
    """Mean over rows of the share of item pairs in different categories (ComiRec's
    ``compute_diversity``); ids of -1 are ignored."""
    cats = np.asarray(item_categories)
    values = []
    for row in np.asarray(ids):
        c = cats[row[row >= 0]]
        n = len(c)
        if n < 2:
            continue
        same = np.bincount(c[c >= 0]).astype(np.float64) if (c >= 0).any() else np.zeros(1)
        values.append(1.0 - ((same * (same - 1)).sum() / 2) / (n * (n - 1) / 2))
    return float(np.mean(values)) if values else 0.0


class Retriever:
    """An :class:`ItemIndex` over ``model``'s item vectors, built once, and :meth:`recommend`
    (index options as :class:`ItemIndex`)."""

    def __init__(self, model, index: str = "exact", **index_options):
        was_training = model.training
        model.eval()
        self.model = model
        self.index = ItemIndex(item_vectors(model), index, **index_options)
        # models without a history encoder: their user vectors are computed once, here
        encodes = hasattr(model, "interest_vectors") or (hasattr(model, "encode") and hasattr(model, "max_len"))
        self.user_table = None if encodes else model.latents()[0].detach().float().cpu()
        model.train(was_training)

    def recommend(self, users, k: int, history=None, exclude_seen: bool = True,
                  item_categories: np.ndarray | None = None, diversity_lambda: float = 0.0,
                  batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [B, k], scores [B, k])`` for ``users`` (module docstring). Seen items: the
        items of ``history`` (a :class:`Sequences`), else the model's training matrix."""
        if diversity_lambda and item_categories is None:
            raise ValueError("diversity_lambda needs item_categories (one category id per item, -1 = none)")
        users = np.asarray(users, dtype=np.int64)
        model = self.model
        was_training = model.training
        model.eval()
        seen_all = None
        if exclude_seen:
            seen_all = history.csr() if history is not None else getattr(model, "_train_matrix", None)
        out_i, out_s = [], []
        for start in range(0, len(users), batch_size):
            batch = users[start:start + batch_size]
            q, valid = query_vectors(model, batch, history, self.user_table)  # [B, K, d], [B, K]
            B, K, d = q.shape
            seen = seen_all[batch] if seen_all is not None else None
            depth = k + (int(np.diff(seen.indptr).max()) if seen is not None and len(batch) else 0)
            scores, ids = self.index.search(q.reshape(B * K, d), depth)  # [B K, depth]
            depth = scores.shape[1]
            scores = np.where(valid.reshape(B * K, 1).numpy(), scores, -np.inf)
            ids_b, s_b = merge_candidates(scores.reshape(B, K * depth), ids.reshape(B, K * depth), k, seen,
                                          item_categories, diversity_lambda)
            out_i.append(ids_b)
            out_s.append(s_b)
        model.train(was_training)
        if not out_i:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return np.concatenate(out_i), np.concatenate(out_s)


def recommend(model, users, k: int, index: str = "exact", history=None, exclude_seen: bool = True,
              nprobe: int = 8, ef_search: int = 64, item_categories: np.ndarray | None = None,
              diversity_lambda: float = 0.0, **index_options) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item ids and scores of ``users`` (module docstring); builds the index each
    call: keep a :class:`Retriever` to search one index many times."""
    retriever = Retriever(model, index, nprobe=nprobe, ef_search=ef_search, **index_options)
    return retriever.recommend(users, k, history, exclude_seen, item_categories, diversity_lambda)
