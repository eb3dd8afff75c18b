"""Negative sampling and the batch builders models train on.

A batch builder is built as ``Builder(data: TrainData, batch_size, **options)``; ``len()`` is
the number of batches of one epoch (the trainer's progress bar) and ``epoch(rng)`` yields them.
A model names its builder through ``batch_kind`` (a name registered here with
:func:`register_batch_kind`, by gcf or any other package) or returns one from its
``batches(data, batch_size)`` method (sequence models pass their ``max_len`` etc.). gcf's kinds:

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


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def stream_uniforms(seed: int, keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) that depend only on ``(seed, key, counter)``, broadcast over
    ``keys`` and ``counters``: a counter-based stream per key, so what one key (user) gets does
    not depend on which other keys are drawn with it."""
    with np.errstate(over="ignore"):
        base = _splitmix64(np.asarray(keys, dtype=np.uint64) ^ _splitmix64(np.array(seed, dtype=np.uint64)))
        x = _splitmix64(base + np.asarray(counters, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def sample_distinct_negatives(csr: sp.csr_matrix, n_neg: int, seed: int, row_keys: np.ndarray | None = None,
                              p: np.ndarray | None = None) -> np.ndarray:
    """``[n_rows, n_neg]`` distinct items per row of ``csr`` that are not among that row's
    non-zeros, drawn uniformly or, with ``p``, with those item probabilities (successive
    sampling, as ``rng.choice(replace=False, p=...)`` over the allowed items).

    Row ``r`` draws from its own stream, keyed by ``(seed, row_keys[r])`` (default: the row
    number): its negatives depend on its key and its non-zeros only, never on the other rows
    of the call, so an evaluation gives each user the same negatives at any batch size.
    Candidates ``0, 1, 2, ...`` of a row's stream are taken in order, skipping the row's
    positives and repeats. Rows with fewer than ``n_neg`` allowed items (users who saw nearly
    everything) draw with replacement among the allowed ones.
    """
    n_rows, n_items = csr.shape
    row_keys = np.arange(n_rows, dtype=np.int64) if row_keys is None else np.asarray(row_keys, dtype=np.int64)
    keys = _keys(csr)
    drawable = np.ones(n_items, dtype=bool) if p is None else p > 0
    cdf = None if p is None else np.cumsum(p / p.sum())
    row_of = np.repeat(np.arange(n_rows), np.diff(csr.indptr))
    n_pos_drawable = np.bincount(row_of, weights=drawable[csr.indices], minlength=n_rows).astype(np.int64)
    allowed = int(drawable.sum()) - n_pos_drawable  # [n_rows] items each row may get
    if (allowed <= 0).any():
        raise ValueError(f"row {np.flatnonzero(allowed <= 0)[0]} has interacted with every item that can be "
                         f"drawn: no negative to sample")

    def draw(rows: np.ndarray, counters: np.ndarray) -> np.ndarray:
        u = stream_uniforms(seed, row_keys[rows][:, None], counters)
        if cdf is None:
            return np.minimum((u * n_items).astype(np.int64), n_items - 1)
        return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), n_items - 1)

    out = np.full((n_rows, n_neg), -1, dtype=np.int64)
    filled = np.zeros(n_rows, dtype=np.int64)
    rows = np.flatnonzero(allowed >= n_neg)
    k = 2 * n_neg + 8  # candidates per round, the same for every row: round t reads t*k .. t*k+k-1
    round_ = 0
    while len(rows):
        cand = draw(rows, np.arange(round_ * k, (round_ + 1) * k)[None, :])
        cand = cand if p is None else np.where(drawable[cand], cand, -1)
        ok = (cand >= 0) & ~_is_positive(keys, np.repeat(rows, k), np.maximum(cand, 0).ravel(),
                                         n_items).reshape(len(rows), k)
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
        round_ += 1
    for row in np.flatnonzero(allowed < n_neg):  # nearly every item seen
        seen = csr.indices[csr.indptr[row]:csr.indptr[row + 1]]
        cands = np.setdiff1d(np.flatnonzero(drawable), seen)
        w = None if p is None else p[cands] / p[cands].sum()
        out[row] = np.random.default_rng([seed, int(row_keys[row])]).choice(cands, size=n_neg, replace=True, p=w)
    return out


BATCH_KINDS: dict[str, type] = {}


def register_batch_kind(name: str):
    """Class decorator: a batch builder available to models as ``batch_kind = name``."""
    def deco(cls):
        if name in BATCH_KINDS and BATCH_KINDS[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"batch kind {name!r} is already registered by {BATCH_KINDS[name].__module__}")
        BATCH_KINDS[name] = cls
        return cls
    return deco


def get_batch_kind(name: str) -> type:
    try:
        return BATCH_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown batch_kind {name!r}; registered: {', '.join(sorted(BATCH_KINDS))}") from None


def _ceil(n: int, d: int) -> int:
    return -(-n // d)


@register_batch_kind("pairwise")
class PairwiseBatches:
    """One epoch = every training interaction once, shuffled, with fresh uniform negatives."""

    def __init__(self, data, batch_size: int):
        train = data.train
        self.train, self.batch_size = train, batch_size
        self.keys = _keys(train)
        self.users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
        self.items = train.indices.astype(np.int64)

    def __len__(self) -> int:
        return _ceil(len(self.users), self.batch_size)

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        order = rng.permutation(len(self.users))
        users, pos = self.users[order], self.items[order]
        neg = sample_negatives(self.train, users, 1, rng, self.keys)[:, 0]
        users, pos, neg = (torch.from_numpy(a) for a in (users, pos, neg))
        for start in range(0, len(order), self.batch_size):
            sl = slice(start, start + self.batch_size)
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


def _n_rows(csr: sp.csr_matrix) -> int:
    return int((np.diff(csr.indptr) > 0).sum())


@register_batch_kind("user_rows")
class UserRowBatches:
    """Shuffled batches of ``(users, dense training rows)``."""

    def __init__(self, data, batch_size: int):
        self.train, self.batch_size = data.train, batch_size

    def __len__(self) -> int:
        return _ceil(_n_rows(self.train), self.batch_size)

    def epoch(self, rng: np.random.Generator):
        return row_batches(self.train, self.batch_size, rng)


@register_batch_kind("item_user_rows")
class ItemUserRowBatches:
    """All item rows (``("item", items, rows)``), then all user rows, in id order (BiVAE)."""

    def __init__(self, data, batch_size: int):
        self.train, self.batch_size = data.train, batch_size
        self.transpose = data.train.T.tocsr()

    def __len__(self) -> int:
        return _ceil(_n_rows(self.train), self.batch_size) + _ceil(_n_rows(self.transpose), self.batch_size)

    def epoch(self, rng: np.random.Generator):
        yield from row_batches(self.transpose, self.batch_size, None, "item")
        yield from row_batches(self.train, self.batch_size, None, "user")
