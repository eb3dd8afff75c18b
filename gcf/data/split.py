"""Train / valid / test splits. All are seeded, vectorised and share one id space.

- :func:`random_ratio`: per user, a random ``8:1:1`` (RecBole's ``RS``), with RecBole's rule
  for small users (every non-zero ratio gets at least one interaction while the train part
  keeps more than one).
- :func:`global_random`: one random ``8:1:1`` over all rows, users ignored (RecBole's ``RS``
  with ``group_by: None``, the protocol of its context-aware (CTR) benchmark).
- :func:`temporal`: one global cut in time (the oldest 80% train, ...).
- :func:`leave_one_out`: per user by time, last = test, second-last = valid.
- :func:`fixed`: the source's own train/test files; a validation part is carved out of train
  per user (``valid_ratio``; 0 disables validation), unless the source brings its own
  validation file too (DiffRec's ``valid_list.npy``): then that one is the validation part.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .interactions import Interactions
from .sequences import Sequences


@dataclass
class Split:
    """Three :class:`Interactions` over the same users and items."""

    train: Interactions
    valid: Interactions
    test: Interactions
    method: str = ""
    _csr: dict = field(default_factory=dict, init=False, repr=False)  # per-instance cache: replace() starts a fresh one
    fields: list | None = None  # the dataset's declared feature fields (gcf.data.fields), for feature models

    def __post_init__(self):
        for part in ("valid", "test"):
            other = getattr(self, part)
            if other.n_users != self.train.n_users or other.n_items != self.train.n_items:
                raise ValueError(f"split {self.method}: {part} has another id space than train")
        if len(self.train) == 0:
            raise ValueError(f"split {self.method}: the train part is empty ({self.train.source})")
        self._check_disjoint()

    def _check_disjoint(self) -> None:
        """A (user, item) pair in two parts would be trained on and then ranked: refuse it."""
        n_items = self.n_items
        keys = {p: np.unique(getattr(self, p).users * n_items + getattr(self, p).items)
                for p in ("train", "valid", "test")}
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            both = np.intersect1d(keys[a], keys[b], assume_unique=True)
            if len(both):
                u, i = divmod(int(both[0]), n_items)
                raise ValueError(
                    f"split {self.method}: {len(both)} (user, item) pair(s) are in both {a} and {b}, e.g. user "
                    f"{str(self.train.user_ids[u])!r} item {str(self.train.item_ids[i])!r} ({self.train.source}); "
                    f"de-duplicate the interactions first (Interactions.dedup(), as make_split does)")

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def csr(self, part: str) -> sp.csr_matrix:
        """Binary user x item matrix of ``part`` ('train', 'valid', 'test'), cached."""
        if part not in self._csr:
            self._csr[part] = getattr(self, part).to_csr()
        return self._csr[part]

    def history(self, part: str) -> Sequences:
        """What a model may know when ``part`` is ranked, in time order: the train part for
        'valid', train + valid for 'test' (cached)."""
        key = f"history:{part}"
        if key not in self._csr:
            if part == "valid":
                self._csr[key] = Sequences.from_interactions(self.train)
            elif part == "test":
                self._csr[key] = Sequences.from_interactions(self.train, self.valid)
            else:
                raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
        return self._csr[key]

    def fingerprint(self) -> str:
        """SHA-256 of the training part (its raw user/item id maps and its (user, item) pairs):
        equal for the same training data whatever the run, different for another split."""
        if "fingerprint" not in self._csr:
            h = hashlib.sha256()
            for ids in (self.train.user_ids, self.train.item_ids):
                h.update("\x1f".join(map(str, ids)).encode())
                h.update(b"\x1e")
            h.update(np.unique(self.train.users * self.n_items + self.train.items).astype("<i8").tobytes())
            self._csr["fingerprint"] = h.hexdigest()[:32]
        return self._csr["fingerprint"]

    def summary(self) -> str:
        return (f"{self.method}: {self.n_users} users, {self.n_items} items; train {len(self.train)}, "
                f"valid {len(self.valid)}, test {len(self.test)}")


def _rank_within_user(users: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each row inside its user when sorted by ``key``, and the user's row count."""
    order = np.lexsort((key, users))
    counts = np.bincount(users, minlength=users.max() + 1 if len(users) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - starts[users[order]]
    return rank, counts[users]


def _recbole_counts(total: np.ndarray, ratios) -> np.ndarray:
    """RecBole's ``_calcu_split_ids``: per user, how many rows go to each part."""
    ratios = np.asarray(ratios, dtype=np.float64) / np.sum(ratios)
    cnt = np.floor(ratios[None, :] * total[:, None] + 1e-9).astype(np.int64)
    cnt[:, 0] = total - cnt[:, 1:].sum(1)
    for i in range(1, len(ratios)):  # a part with 0 < r*tot < 1 takes one row from train
        j = len(ratios) - i
        bump = (cnt[:, 0] > 1) & (ratios[j] * total > 0) & (ratios[j] * total < 1)
        cnt[:, j] += bump
        cnt[:, 0] -= bump
    return cnt


def random_ratio(inter: Interactions, ratios=(0.8, 0.1, 0.1), seed: int = 2020) -> Split:
    """Per-user random split by ``ratios`` (train, valid, test)."""
    if len(ratios) != 3:
        raise ValueError(f"split ratios must be three numbers (train, valid, test), got {ratios}")
    rng = np.random.default_rng(seed)
    rank, _ = _rank_within_user(inter.users, rng.random(len(inter)))
    per_row = _recbole_counts(np.bincount(inter.users, minlength=inter.n_users), ratios)[inter.users]
    n_train, n_valid = per_row[:, 0], per_row[:, 1]
    part = np.where(rank < n_train, 0, np.where(rank < n_train + n_valid, 1, 2))
    return _from_parts(inter, part, f"random_ratio{tuple(ratios)} seed={seed}")


def global_random(inter: Interactions, ratios=(0.8, 0.1, 0.1), seed: int = 2020) -> Split:
    """One seeded random split of all rows by ``ratios``, whatever their user (RecBole's ``RS``
    with ``group_by: None``: its counts, ``floor(ratio x n)`` for valid and test, the rest train)."""
    if len(ratios) != 3:
        raise ValueError(f"split ratios must be three numbers (train, valid, test), got {ratios}")
    order = np.random.default_rng(seed).permutation(len(inter))
    n_train, n_valid, _ = _recbole_counts(np.array([len(inter)]), ratios)[0]
    part = np.empty(len(inter), dtype=np.int64)
    position = np.arange(len(inter))
    part[order] = np.where(position < n_train, 0, np.where(position < n_train + n_valid, 1, 2))
    return _from_parts(inter, part, f"global_random{tuple(ratios)} seed={seed}")


def temporal(inter: Interactions, ratios=(0.8, 0.1, 0.1)) -> Split:
    """Global cut in time: the oldest ``ratios[0]`` of all interactions train, then valid, test."""
    if inter.timestamps is None:
        raise ValueError(f"{inter.source}: split=temporal needs a timestamp column")
    order = np.argsort(inter.timestamps, kind="stable")
    bounds = np.floor(np.cumsum(ratios)[:2] / np.sum(ratios) * len(inter)).astype(np.int64)
    part = np.empty(len(inter), dtype=np.int64)
    part[order] = np.searchsorted(bounds, np.arange(len(inter)), side="right")
    return _from_parts(inter, part, f"temporal{tuple(ratios)}")


def leave_one_out(inter: Interactions) -> Split:
    """Per user by time (file order when there is no timestamp): last -> test,
    second-last -> valid. Users with 2 interactions give 1 to test, with 1 keep it in train."""
    key = inter.timestamps if inter.timestamps is not None else np.arange(len(inter), dtype=np.float64)
    # ties in time keep the file order
    rank, total = _rank_within_user(inter.users, np.lexsort((np.arange(len(inter)), key)).argsort())
    from_end = total - 1 - rank
    part = np.zeros(len(inter), dtype=np.int64)
    part[(from_end == 0) & (total >= 2)] = 2
    part[(from_end == 1) & (total >= 3)] = 1
    return _from_parts(inter, part, "leave_one_out")


def fixed(train: Interactions, test: Interactions, valid_ratio: float = 0.1, seed: int = 2020,
          valid: Interactions | None = None) -> Split:
    """The source's own train/test; ``valid_ratio`` of each user's train rows become valid.
    With ``valid`` (the source's own validation file) the three parts are taken as they are and
    ``valid_ratio``/``seed`` play no part."""
    if train.n_users != test.n_users or train.n_items != test.n_items:
        raise ValueError("fixed split: train and test files must share one id space")
    if valid is not None:
        if valid.n_users != train.n_users or valid.n_items != train.n_items:
            raise ValueError("fixed split: train, valid and test files must share one id space")
        return Split(train, valid, test, "fixed(own valid file)")
    if valid_ratio > 0:
        rng = np.random.default_rng(seed)
        rank, total = _rank_within_user(train.users, rng.random(len(train)))
        n_valid = np.floor(valid_ratio * total + 1e-9).astype(np.int64)
        is_valid = (rank < n_valid) & (total - n_valid >= 1)
        valid, train = train.subset(is_valid), train.subset(~is_valid)
    else:
        valid = train.subset(np.zeros(len(train), dtype=bool))
    return Split(train, valid, test, f"fixed(valid_ratio={valid_ratio}, seed={seed})")


def _from_parts(inter: Interactions, part: np.ndarray, method: str) -> Split:
    return Split(inter.subset(part == 0), inter.subset(part == 1), inter.subset(part == 2), method)


def make_split(inter: Interactions, method: str, ratios=(0.8, 0.1, 0.1), seed: int = 2020,
               test: Interactions | None = None, valid_ratio: float = 0.1,
               valid: Interactions | None = None) -> Split:
    """Dispatch on the config's ``split`` key. Repeated (user, item) pairs are merged first
    (the latest occurrence is kept, :meth:`Interactions.dedup`), so no pair lands in two parts.
    ``test`` (and ``valid``) are the source's own files, used by ``fixed``."""
    inter = inter.dedup()
    test = None if test is None else test.dedup()
    valid = None if valid is None else valid.dedup()
    if method == "random":
        return random_ratio(inter, ratios, seed)
    if method == "global_random":
        return global_random(inter, ratios, seed)
    if method == "temporal":
        return temporal(inter, ratios)
    if method == "loo":
        return leave_one_out(inter)
    if method == "fixed":
        if test is None:
            raise ValueError("split=fixed needs a dataset with its own test file")
        return fixed(inter, test, valid_ratio, seed, valid=valid)
    raise ValueError(f"unknown split {method!r}; expected one of: random, global_random, temporal, loo, fixed")
