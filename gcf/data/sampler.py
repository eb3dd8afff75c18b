"""Negative sampling and the batches each kind of model trains on.

A model declares ``batch_kind``; :func:`epoch_batches` yields that kind of batch:

- ``"pairwise"``: ``(users, pos_items, neg_items)`` LongTensors, one pass over all training
  interactions in random order, one uniform negative per positive (RecBole / BPR-style).
- ``"user_rows"``: ``(users, rows)``, a shuffled pass over users with at least one training
  item; ``rows`` is their dense binary training vector ``[B, n_items]``.
- ``"item_user_rows"``: as ``user_rows`` for items (rows of the transposed matrix), then
  users: ``("item", items, rows)`` batches followed by ``("user", users, rows)`` batches,
  for models with alternating updates (BiVAE).

All sampling is vectorised and seeded per epoch: the same ``(seed, epoch)`` gives the same
batches, which is what makes ``resume`` reproduce an uninterrupted run.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import scipy.sparse as sp
import torch


def _keys(csr: sp.csr_matrix) -> np.ndarray:
    """Sorted ``user * n_items + item`` keys of the non-zeros of ``csr``."""
    users = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    keys = users * csr.shape[1] + csr.indices.astype(np.int64)
    keys.sort()
    return keys


def _is_positive(keys: np.ndarray, users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    q = users * n_items + items
    if len(keys) == 0:  # no positives at all (keys[-1] below would fail)
        return np.zeros(len(q), dtype=bool)
    pos = np.searchsorted(keys, q)
    pos = np.minimum(pos, len(keys) - 1)
    return keys[pos] == q


def sample_negatives(csr: sp.csr_matrix, users: np.ndarray, n_neg: int = 1,
                     rng: np.random.Generator | None = None, keys: np.ndarray | None = None) -> np.ndarray:
    """Uniform item ids ``[len(users), n_neg]`` that are never a positive of their user.

    Rejection sampling, vectorised: draw all, redraw only the rejected ones. Raises when a
    user has interacted with every item (no negative exists).
    """
    rng = rng or np.random.default_rng()
    n_items = csr.shape[1]
    users = np.asarray(users, dtype=np.int64)
    full = np.diff(csr.indptr)[users] >= n_items
    if full.any():
        raise ValueError(f"user {users[full][0]} has interacted with all {n_items} items: no negative to sample")
    keys = _keys(csr) if keys is None else keys
    u = np.repeat(users, n_neg)
    neg = rng.integers(0, n_items, size=len(u))
    bad = np.flatnonzero(_is_positive(keys, u, neg, n_items))
    while len(bad):
        neg[bad] = rng.integers(0, n_items, size=len(bad))
        bad = bad[_is_positive(keys, u[bad], neg[bad], n_items)]
    return neg.reshape(len(users), n_neg)


def sample_distinct_negatives(csr: sp.csr_matrix, n_neg: int, rng: np.random.Generator,
                              p: np.ndarray | None = None) -> np.ndarray:
    """``[n_rows, n_neg]`` distinct items per row of ``csr`` that are not among that row's
    non-zeros, drawn uniformly or, with ``p``, with those item probabilities (successive
    sampling, as ``rng.choice(replace=False, p=...)`` over the allowed items).

    Vectorised rejection rounds over all rows at once; only rows with fewer than ``n_neg``
    allowed items (rare: users who saw nearly everything) fall back to drawing with replacement.
    """
    n_rows, n_items = csr.shape
    keys = _keys(csr)
    drawable = np.ones(n_items, dtype=bool) if p is None else p > 0
    row_of = np.repeat(np.arange(n_rows), np.diff(csr.indptr))
    n_pos_drawable = np.bincount(row_of, weights=drawable[csr.indices], minlength=n_rows).astype(np.int64)
    allowed = int(drawable.sum()) - n_pos_drawable  # [n_rows] items each row may get
    if (allowed <= 0).any():
        raise ValueError(f"row {np.flatnonzero(allowed <= 0)[0]} has interacted with every item that can be "
                         f"drawn: no negative to sample")
    out = np.full((n_rows, n_neg), -1, dtype=np.int64)
    filled = np.zeros(n_rows, dtype=np.int64)
    rows = np.flatnonzero(allowed >= n_neg)
    while len(rows):
        k = 2 * int((n_neg - filled[rows]).max()) + 8
        cand = (rng.integers(0, n_items, size=(len(rows), k)) if p is None
                else rng.choice(n_items, size=(len(rows), k), p=p))
        ok = ~_is_positive(keys, np.repeat(rows, k), cand.ravel(), n_items).reshape(len(rows), k)
        combined = np.concatenate([out[rows], cand], 1)  # the ones already taken come first
        valid = np.concatenate([out[rows] >= 0, ok], 1)
        flat = (np.arange(len(rows))[:, None] * (n_items + 1) + combined + 1).ravel()
        first = np.zeros(flat.shape, dtype=bool)
        first[np.unique(flat, return_index=True)[1]] = True  # drop repeats within a row
        valid &= first.reshape(combined.shape)
        rank = np.cumsum(valid, 1)
        r, c = np.nonzero(valid & (rank <= n_neg))
        out[rows[r], rank[r, c] - 1] = combined[r, c]
        filled[rows] = np.minimum(rank[:, -1], n_neg)
        rows = rows[filled[rows] < n_neg]
    for row in np.flatnonzero(allowed < n_neg):  # nearly every item seen
        seen = csr.indices[csr.indptr[row]:csr.indptr[row + 1]]
        cands = np.setdiff1d(np.flatnonzero(drawable), seen)
        w = None if p is None else p[cands] / p[cands].sum()
        out[row] = rng.choice(cands, size=n_neg, replace=True, p=w)
    return out


class PairwiseSampler:
    """One epoch = every training interaction once, shuffled, with fresh negatives."""

    def __init__(self, train: sp.csr_matrix):
        self.train = train
        self.keys = _keys(train)
        self.users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
        self.items = train.indices.astype(np.int64)

    def __len__(self) -> int:
        return len(self.users)

    def epoch(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        order = rng.permutation(len(self.users))
        users, pos = self.users[order], self.items[order]
        neg = sample_negatives(self.train, users, 1, rng, self.keys)[:, 0]
        users, pos, neg = (torch.from_numpy(a) for a in (users, pos, neg))
        for start in range(0, len(order), batch_size):
            sl = slice(start, start + batch_size)
            yield users[sl], pos[sl], neg[sl]


def dense_rows(csr: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    """Dense float32 ``[len(rows), n_cols]`` tensor of the selected CSR rows."""
    sub = csr[rows]
    out = torch.zeros(len(rows), csr.shape[1])
    r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    out[torch.from_numpy(r), torch.from_numpy(sub.indices.astype(np.int64))] = torch.from_numpy(
        sub.data.astype(np.float32))
    return out


def row_batches(csr: sp.csr_matrix, batch_size: int, rng: np.random.Generator | None,
                tag: str | None = None) -> Iterator[tuple]:
    """Batches of ``(ids, dense rows)`` over the non-empty rows of ``csr``; shuffled when
    ``rng`` is given, in id order otherwise. With ``tag``, batches are ``(tag, ids, rows)``."""
    ids = np.flatnonzero(np.diff(csr.indptr) > 0)
    if rng is not None:
        ids = rng.permutation(ids)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        batch = (torch.from_numpy(chunk), dense_rows(csr, chunk))
        yield (tag, *batch) if tag else batch


def epoch_batches(kind: str, train: sp.csr_matrix, batch_size: int, rng: np.random.Generator,
                  cache: dict | None = None) -> Iterator:
    """The batches of one epoch for a model of ``batch_kind == kind``."""
    cache = {} if cache is None else cache
    if kind == "pairwise":
        if "pairwise" not in cache:
            cache["pairwise"] = PairwiseSampler(train)
        return cache["pairwise"].epoch(batch_size, rng)
    if kind == "user_rows":
        return row_batches(train, batch_size, rng)
    if kind == "item_user_rows":
        if "transpose" not in cache:
            cache["transpose"] = train.T.tocsr()
        return _chain(row_batches(cache["transpose"], batch_size, None, "item"),
                      row_batches(train, batch_size, None, "user"))
    raise ValueError(f"unknown batch_kind {kind!r}; expected pairwise, user_rows or item_user_rows")


def _chain(*iterators):
    for it in iterators:
        yield from it


def n_batches(kind: str, train: sp.csr_matrix, batch_size: int) -> int:
    """How many batches :func:`epoch_batches` yields (for progress bars)."""
    ceil = lambda n: -(-n // batch_size)  # noqa: E731
    if kind == "pairwise":
        return ceil(train.nnz)
    rows = ceil(int((np.diff(train.indptr) > 0).sum()))
    if kind == "item_user_rows":
        rows += ceil(int((np.bincount(train.indices, minlength=train.shape[1]) > 0).sum()))
    return rows
