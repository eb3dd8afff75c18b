"""Each user's interactions in time order: what sequence models train on and what every
model is given as the history when a split is ranked.

:class:`Sequences` is a CSR-like layout: the items of user ``u`` are
``items[indptr[u]:indptr[u+1]]``, oldest first. Order: by timestamp (int64 seconds; a
fractional part is dropped), ties broken by the part the row came from (train before valid)
and then by its position in the source file; without timestamps, by part and file order
(the sequence formats store each user's items in order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .interactions import Interactions


@dataclass
class Sequences:
    """Per-user chronological item sequences over ``n_items`` items (0-based item ids)."""

    indptr: np.ndarray  # [n_users + 1] int64
    items: np.ndarray  # [N] int64
    times: np.ndarray | None  # [N] int64 or None
    n_items: int
    _csr: sp.csr_matrix | None = field(default=None, repr=False)

    @classmethod
    def from_interactions(cls, *parts: Interactions) -> "Sequences":
        """The rows of ``parts`` (same id space) merged per user in time order (see module doc)."""
        if not parts:
            raise ValueError("Sequences.from_interactions needs at least one part")
        n_users, n_items = parts[0].n_users, parts[0].n_items
        users = np.concatenate([p.users for p in parts])
        items = np.concatenate([p.items for p in parts])
        part = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(parts)])
        pos = np.concatenate([np.arange(len(p), dtype=np.int64) for p in parts])
        has_time = all(p.timestamps is not None for p in parts)
        times = np.concatenate([np.asarray(p.timestamps).astype(np.int64) for p in parts]) if has_time else None
        keys = (pos, part) if times is None else (pos, part, times)
        order = np.lexsort(keys + (users,))
        counts = np.bincount(users, minlength=n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr, items[order], None if times is None else times[order], n_items)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def __len__(self) -> int:
        return len(self.items)

    def of(self, user: int) -> np.ndarray:
        """The items of ``user``, oldest first."""
        return self.items[self.indptr[user]:self.indptr[user + 1]]

    def csr(self) -> sp.csr_matrix:
        """Binary ``n_users x n_items`` matrix of the items in the sequences (cached)."""
        if self._csr is None:
            rows = np.repeat(np.arange(self.n_users), self.lengths)
            m = sp.csr_matrix((np.ones(len(self.items), dtype=np.float32), (rows, self.items)),
                              shape=(self.n_users, self.n_items))
            m.sum_duplicates()
            m.data[:] = 1.0
            m.sort_indices()
            self._csr = m
        return self._csr

    def padded(self, users: np.ndarray, max_len: int, shift: int = 1, drop_last: int = 0
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """The last ``max_len`` items of each user (after dropping the last ``drop_last``),
        right-aligned in ``[B, max_len]`` with 0 as padding and item ``i`` stored as
        ``i + shift`` (so 0 stays free for padding); with timestamps, ``times`` the same shape
        (0 at padding), else ``None``."""
        users = np.asarray(users, dtype=np.int64)
        ends = self.indptr[users + 1] - drop_last
        starts = self.indptr[users]
        lens = np.clip(ends - starts, 0, max_len)
        j = np.arange(max_len)
        valid = j[None, :] >= (max_len - lens)[:, None]
        src = np.where(valid, ends[:, None] - max_len + j[None, :], 0)
        out = np.where(valid, self.items[src] + shift, 0)
        times = None if self.times is None else np.where(valid, self.times[src], 0)
        return out, times
