"""The one in-memory form of a dataset: interactions with ids remapped to 0..n-1.

Every loader returns an :class:`Interactions`; splits, samplers, the evaluator and the
models only ever see the dense indices, and the id maps turn them back into the raw ids
of the source file.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp


@dataclass
class Interactions:
    """User-item interactions with dense 0-based ids.

    Attributes:
        users, items: ``int64`` arrays of equal length, dense indices.
        ratings: optional ``float32`` array (explicit feedback; ``None`` when implicit only).
        timestamps: optional ``float64`` array (seconds or any monotone clock).
        user_ids, item_ids: raw ids (as strings) indexed by dense id, so that
            ``user_ids[u]`` is the id in the source file.
        user_features, item_features: per-entity side features, each a dict of
            column name -> array (or list) aligned with the dense ids.
        source: a short description (file paths) for messages and configs.
        labels: optional ``float32`` 0/1 array, one click label per row (``task=ctr``, see
            :meth:`labelled`); ``None`` for implicit feedback (every row a positive).
    """

    users: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    user_features: dict = field(default_factory=dict)
    item_features: dict = field(default_factory=dict)
    source: str = ""
    labels: np.ndarray | None = None

    def __post_init__(self):
        self.users = np.asarray(self.users, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        if self.users.shape != self.items.shape:
            raise ValueError(f"{self.source}: users and items differ in length")
        for name in ("ratings", "timestamps", "labels"):
            col = getattr(self, name)
            if col is not None and len(col) != len(self.users):
                raise ValueError(f"{self.source}: column {name!r} has {len(col)} rows, expected {len(self.users)}")

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)

    def __repr__(self) -> str:
        return (f"Interactions({self.n_users} users, {self.n_items} items, {len(self)} interactions"
                f"{', ratings' if self.ratings is not None else ''}"
                f"{', timestamps' if self.timestamps is not None else ''}; {self.source})")

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_raw(cls, raw_users, raw_items, ratings=None, timestamps=None, source: str = "",
                 user_ids=None, item_ids=None) -> "Interactions":
        """Build from raw id columns; dense ids follow the sorted order of the raw ids
        (numeric order when all ids are integers), so the mapping is deterministic.

        ``user_ids``/``item_ids`` may fix the id space in advance (e.g. a test file that
        must use the train file's map); raw ids outside it raise an error.
        """
        raw_users = np.asarray(raw_users).astype(str)
        raw_items = np.asarray(raw_items).astype(str)
        u_ids = _sorted_ids(raw_users) if user_ids is None else np.asarray(user_ids).astype(str)
        i_ids = _sorted_ids(raw_items) if item_ids is None else np.asarray(item_ids).astype(str)
        users = _lookup(u_ids, raw_users, "user", source)
        items = _lookup(i_ids, raw_items, "item", source)
        return cls(users, items, u_ids, i_ids,
                   None if ratings is None else np.asarray(ratings, dtype=np.float32),
                   None if timestamps is None else np.asarray(timestamps, dtype=np.float64),
                   source=source)

    # --------------------------------------------------------------- views
    def subset(self, mask_or_index) -> "Interactions":
        """Rows selected by a boolean mask or an index array; the id space is kept."""
        take = lambda a: None if a is None else a[mask_or_index]  # noqa: E731
        return replace(self, users=self.users[mask_or_index], items=self.items[mask_or_index],
                       ratings=take(self.ratings), timestamps=take(self.timestamps), labels=take(self.labels))

    def to_csr(self, binary: bool = True) -> sp.csr_matrix:
        """``n_users x n_items`` CSR matrix; duplicates are merged (1 when ``binary``)."""
        data = np.ones(len(self), dtype=np.float32)
        m = sp.csr_matrix((data, (self.users, self.items)), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        m.sort_indices()
        return m

    def user_map(self) -> dict:
        """raw user id -> dense index."""
        return {raw: i for i, raw in enumerate(self.user_ids)}

    def item_map(self) -> dict:
        """raw item id -> dense index."""
        return {raw: i for i, raw in enumerate(self.item_ids)}

    # --------------------------------------------------------- preprocessing
    def implicit(self, threshold: float | None = None) -> "Interactions":
        """Keep interactions with ``rating >= threshold`` (all of them when ``None``)."""
        if threshold is None:
            return self
        if self.ratings is None:
            raise ValueError(f"{self.source}: rating_threshold={threshold} but the data has no rating column")
        return self.subset(self.ratings >= threshold)

    def labelled(self, threshold: float, drop: tuple[float, float] | list | None = None) -> "Interactions":
        """Click labels from ratings (``task=ctr``): rows whose rating lies in the closed range
        ``drop = [low, high]`` are removed (RecBole's ``val_interval``; ``[3, 3]`` drops the 3s),
        the others get ``label = rating >= threshold`` (1.0 or 0.0)."""
        if self.ratings is None:
            raise ValueError(f"{self.source}: click labels (label_threshold={threshold}) need a rating column")
        inter = self
        if drop is not None:
            if len(drop) != 2 or drop[0] > drop[1]:
                raise ValueError(f"drop_ratings must be [low, high] with low <= high, got {drop!r}")
            inter = self.subset(~((self.ratings >= drop[0]) & (self.ratings <= drop[1])))
        return replace(inter, labels=(inter.ratings >= threshold).astype(np.float32))

    def dedup(self) -> "Interactions":
        """Drop repeated (user, item) pairs, keeping the latest (or first) occurrence."""
        order = np.arange(len(self))
        if self.timestamps is not None:
            order = np.lexsort((self.timestamps,))[::-1]  # latest first
        key = self.users[order] * self.n_items + self.items[order]
        _, first = np.unique(key, return_index=True)
        return self.subset(np.sort(order[first]))

    def k_core(self, user_k: int = 0, item_k: int = 0) -> "Interactions":
        """Iteratively drop users with < ``user_k`` and items with < ``item_k`` interactions,
        then compact the id space (the raw ids are kept in ``user_ids``/``item_ids``)."""
        inter = self
        if user_k > 1 or item_k > 1:
            keep = np.ones(len(self), dtype=bool)
            while True:
                u_cnt = np.bincount(self.users[keep], minlength=self.n_users)
                i_cnt = np.bincount(self.items[keep], minlength=self.n_items)
                bad = keep & ((u_cnt[self.users] < user_k) | (i_cnt[self.items] < item_k))
                if not bad.any():
                    break
                keep &= ~bad
            inter = self.subset(keep)
        return inter.compact()

    def compact(self) -> "Interactions":
        """Renumber so that every user and item id in ``0..n-1`` occurs at least once."""
        u_keep = np.unique(self.users)
        i_keep = np.unique(self.items)
        u_new = np.full(self.n_users, -1, dtype=np.int64)
        u_new[u_keep] = np.arange(len(u_keep))
        i_new = np.full(self.n_items, -1, dtype=np.int64)
        i_new[i_keep] = np.arange(len(i_keep))
        return replace(self, users=u_new[self.users], items=i_new[self.items],
                       user_ids=self.user_ids[u_keep], item_ids=self.item_ids[i_keep],
                       user_features={k: _take(v, u_keep) for k, v in self.user_features.items()},
                       item_features={k: _take(v, i_keep) for k, v in self.item_features.items()})


def _take(values, index):
    if isinstance(values, np.ndarray):
        return values[index]
    return [values[i] for i in index]


def _sorted_ids(raw: np.ndarray) -> np.ndarray:
    uniq = np.unique(raw)
    try:  # numeric ids sort numerically ("2" before "10")
        order = np.argsort(uniq.astype(np.float64), kind="stable")
        return uniq[order]
    except ValueError:
        return uniq


def _lookup(ids: np.ndarray, raw: np.ndarray, what: str, source: str) -> np.ndarray:
    order = np.argsort(ids)
    pos = np.searchsorted(ids, raw, sorter=order)
    pos = np.clip(pos, 0, len(ids) - 1)
    found = order[pos]
    bad = ids[found] != raw
    if bad.any():
        raise ValueError(f"{source}: unknown {what} id {raw[bad][0]!r} (not in the id map)")
    return found.astype(np.int64)
