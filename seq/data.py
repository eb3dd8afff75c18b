"""Sequence data for next-item models: batch builders over each user's chronological
training items.

The sequences come from the core (:class:`gcf.data.sequences.Sequences`, built from any dataset
the loaders read: ordered by timestamp as int64 seconds, ties by file order; file order for
the sequence formats), the leave-one-out split from :func:`gcf.data.split.leave_one_out`
(last = test, second-last = valid), both chosen by ``configs/family/seq.yaml``. Inside the
sequence models item ``i`` of gcf is ``i + 1``: 0 is padding and ``n_items + 1`` the [mask]
token of cloze models.

Batch builders (the interface of :mod:`gcf.data.sampler`: ``Builder(data, batch_size, ...)``,
``len()`` batches per epoch, ``epoch(rng)``) yield dicts of tensors:

- :class:`NextItemBatches`: one row per user, a loss at every position (SASRec, TiSASRec, GRU4Rec).
- :class:`PrefixBatches`: one row per (user, position): every prefix and its next item (RecBole's
  protocol; NARM, FPMC, TransRec).
- :class:`ClozeBatches`: masked positions to predict, over sliding windows (BERT4Rec).

Negatives are uniform over the items the user never had in training. All randomness comes from
the ``rng`` handed to ``epoch`` (the trainer's ``(seed, epoch)`` stream), so a resumed run sees
the same batches. No input position ever holds the item it is asked to predict, nor a later one.
"""
from __future__ import annotations

import numpy as np
import torch

from gcf.data.sampler import _keys, sample_negatives
from gcf.data.sequences import Sequences

__all__ = ["SeqBatches", "NextItemBatches", "PrefixBatches", "ClozeBatches", "time_intervals", "cut_padding",
           "Sequences"]


def cut_padding(items: np.ndarray, *others: np.ndarray | None) -> list[np.ndarray | None]:
    """``items [B, L]`` (right-aligned, 0 = padding) and ``others`` (same leading ``[B, L]``, or
    ``None``) without the leading columns that are padding in every row, contiguous."""
    width = max(1, int((items > 0).sum(1).max()))
    keep = slice(items.shape[1] - width, None)
    return [None if a is None else np.ascontiguousarray(a[:, keep]) for a in (items, *others)]


def _ceil(n: int, d: int) -> int:
    return -(-n // d)


def never_targets(seqs: Sequences, first_target: bool = False) -> np.ndarray:
    """``[n_items]`` bool: the items that are never a next-item target of ``seqs`` (every item of a
    sequence but its first is one; with ``first_target``, as :class:`PrefixBatches`', the first
    too, so only the items absent from ``seqs``). A model trained only through its targets
    (DreamRec's x0-MSE) never updates their rows."""
    is_target = np.ones(len(seqs.items), dtype=bool)
    if not first_target:
        is_target[seqs.indptr[:-1][seqs.lengths > 0]] = False
    return np.bincount(seqs.items[is_target], minlength=seqs.n_items) == 0


class SeqBatches:
    """The base of the sequence batch builders: data, sizes, negatives outside the user's training
    items, and the batch cut (:meth:`_chunks`). A model's own builder subclasses it."""

    def __init__(self, data, batch_size: int, max_len: int, n_negatives: int = 0):
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.seqs: Sequences = data.sequences
        self.train = data.train
        self.n_items = data.n_items
        self.batch_size, self.max_len, self.n_negatives = int(batch_size), int(max_len), int(n_negatives)
        self._neg_keys = _keys(self.train) if self.n_negatives else None

    def _negatives(self, users: np.ndarray, rng: np.random.Generator, per_row: int) -> np.ndarray:
        """``[len(users), per_row * n_negatives]`` item ids + 1, never in the user's training items."""
        neg = sample_negatives(self.train, users, per_row * self.n_negatives, rng, self._neg_keys)
        return neg + 1

    def _times(self, t: np.ndarray | None) -> dict:
        return {} if t is None else {"times": torch.from_numpy(t)}

    def _chunks(self, rng: np.random.Generator, n_rows: int, lengths: np.ndarray | None = None) -> list[np.ndarray]:
        """Row indices of each batch: a random permutation cut into batches of ``batch_size``.

        With ``lengths`` (``length_buckets``) the permutation is sorted by length (longest first,
        ties in random order) and cut into the same number of batches, each holding about the
        same number of positions (``sum(min(length, max_len)) / n_batches``): a batch of short
        rows holds more rows. So every position weighs about as much in the loss (a mean over
        the batch's positions) as with a plain shuffle; batches of ``batch_size`` rows each
        would give a short row's positions up to ``max_len / length`` times the weight (on ML-1M
        that held SASRec-CE's validation NDCG@10 at 0.156 instead of 0.170). The batches are
        shuffled."""
        order = rng.permutation(n_rows)
        if lengths is None:
            return [order[s:s + self.batch_size] for s in range(0, n_rows, self.batch_size)]
        n_batches = _ceil(n_rows, self.batch_size)
        size = np.maximum(np.minimum(lengths[order], self.max_len), 1)
        by_length = np.argsort(-size, kind="stable")
        order, cum = order[by_length], np.cumsum(size[by_length])
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n_batches) / n_batches, side="right")
        chunks = [c for c in np.split(order, cuts) if len(c)]
        return [chunks[i] for i in rng.permutation(len(chunks))]


class NextItemBatches(SeqBatches):
    """Per user with >= 2 training items: ``items [B, L]`` = the sequence without its last item
    (its last ``L``, right-aligned, 0 = padding), ``targets [B, L]`` = the item after each input
    position (0 where the input is padding); ``negatives [B, L, n]`` when ``n_negatives``;
    ``times [B, L]`` (input timestamps) when the data has them; ``users [B]``.

    ``length_buckets=True`` groups users of similar length: the users are sorted by input length
    (ties in random order) and cut into as many batches as usual, each with about the same
    number of positions (:meth:`SeqBatches._chunks`), and the batches are shuffled; each batch is
    then cut to its longest row (``L <= max_len`` columns, the leading all-padding ones dropped).
    The models see the same positions (right-aligned, so slot ``max_len - 1`` is always the
    newest item); on ML-1M at ``max_len=200`` this removes ~45% of the input positions, which are
    padding. The batches are less mixed than a plain shuffle (each holds users of one length
    band)."""

    def __init__(self, data, batch_size: int, max_len: int, n_negatives: int = 0, length_buckets: bool = False):
        super().__init__(data, batch_size, max_len, n_negatives)
        self.users = np.flatnonzero(self.seqs.lengths >= 2)
        self.length_buckets = bool(length_buckets)

    def __len__(self) -> int:
        return _ceil(len(self.users), self.batch_size)

    def epoch(self, rng: np.random.Generator):
        lengths = self.seqs.lengths[self.users] - 1 if self.length_buckets else None
        for rows in self._chunks(rng, len(self.users), lengths):
            users = self.users[rows]
            items, times = self.seqs.padded(users, self.max_len, drop_last=1)
            targets, _ = self.seqs.padded(users, self.max_len)
            targets = np.where(items > 0, targets, 0)
            neg = None
            if self.n_negatives:
                neg = self._negatives(users, rng, self.max_len).reshape(len(users), self.max_len, self.n_negatives)
            if self.length_buckets:
                items, targets, times, neg = cut_padding(items, targets, times, neg)
            batch = {"users": torch.from_numpy(users), "items": torch.from_numpy(items),
                     "targets": torch.from_numpy(targets), **self._times(times)}
            if neg is not None:
                batch["negatives"] = torch.from_numpy(np.where(targets[:, :, None] > 0, neg, 0))
            yield batch


class PrefixBatches(SeqBatches):
    """Every training position ``t >= 1`` of every user, shuffled: ``items [B, L]`` = the ``L``
    items before it (right-aligned), ``targets [B]`` = the item at ``t``, ``negatives [B, n]``,
    ``times [B, L]`` and ``target_times [B]`` when the data has timestamps, ``users [B]``.
    ``first_target=True`` adds ``t = 0``: each user's first item with an empty (all-padding)
    history, as DreamRec's data rows have them.

    ``length_buckets=True`` sorts the rows by history length (``min(t, L)``, ties in random
    order), cuts them into batches of ``batch_size`` rows (one target each, so every row weighs
    as with a plain shuffle), shuffles the batches and cuts each to its longest row (the leading
    all-padding columns dropped, :func:`cut_padding`). Only for models whose output does not
    depend on the number of padding columns (no absolute positions counted from the left, padding
    keys masked): on Beauty the mean history is ~5 items, so most of the ``L = 50`` columns go."""

    def __init__(self, data, batch_size: int, max_len: int, n_negatives: int = 0, length_buckets: bool = False,
                 first_target: bool = False):
        super().__init__(data, batch_size, max_len, n_negatives)
        self.length_buckets = bool(length_buckets)
        skip = 0 if first_target else 1
        counts = np.maximum(self.seqs.lengths - skip, 0)
        self.row_user = np.repeat(np.arange(len(counts)), counts)
        # position (index into seqs.items) of each target: every item but a user's first (or every one)
        starts = self.seqs.indptr[:-1]
        offset = np.arange(len(self.row_user)) - np.repeat(np.cumsum(counts) - counts, counts)
        self.row_pos = starts[self.row_user] + skip + offset

    def __len__(self) -> int:
        return _ceil(len(self.row_user), self.batch_size)

    def _row_chunks(self, rng: np.random.Generator) -> list[np.ndarray]:
        order = rng.permutation(len(self.row_user))
        if self.length_buckets:  # longest histories first, ties in the random order
            history = np.minimum(self.row_pos - self.seqs.indptr[self.row_user], self.max_len)
            order = order[np.argsort(-history[order], kind="stable")]
        chunks = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        return [chunks[i] for i in rng.permutation(len(chunks))] if self.length_buckets else chunks

    def epoch(self, rng: np.random.Generator):
        seqs, L = self.seqs, self.max_len
        for rows in self._row_chunks(rng):
            users, pos = self.row_user[rows], self.row_pos[rows]
            first = seqs.indptr[users]
            j = np.arange(L)
            src = pos[:, None] - L + j[None, :]  # [B, L] the L positions before the target
            valid = src >= first[:, None]
            safe = np.where(valid, src, 0)
            items = np.where(valid, seqs.items[safe] + 1, 0)
            times = np.where(valid, seqs.times[safe], 0) if seqs.times is not None else None
            if self.length_buckets:
                items, times = cut_padding(items, times)
            batch = {"users": torch.from_numpy(users), "items": torch.from_numpy(items),
                     "targets": torch.from_numpy(seqs.items[pos] + 1)}
            if times is not None:
                batch["times"] = torch.from_numpy(times)
                batch["target_times"] = torch.from_numpy(seqs.times[pos])
            if self.n_negatives:
                batch["negatives"] = torch.from_numpy(self._negatives(users, rng, 1))
            yield batch


class ClozeBatches(SeqBatches):
    """BERT4Rec's cloze task: windows of ``max_len`` training items, each position replaced by
    the [mask] token ``n_items + 1`` with probability ``mask_prob`` (at least one per row):
    ``items [B, L]``, ``labels [B, L]`` (the original item + 1 at masked positions, else 0),
    ``users [B]``; ``negatives [B, L, n]`` when ``n_negatives``. Two options of the official
    data generation / RecBole:

    - ``window_stride`` (official ``prop_sliding_window``): a sequence longer than ``max_len``
      gives windows ending at its last item, then every ``window_stride * max_len`` items
      earlier, down to the first ``max_len`` items; 0 (default) = the last window only.
    - ``last_item_ratio`` (RecBole's ``ft_ratio``; the official data adds one such copy per
      window): that share of the rows masks only its last item, the task ranking asks for.

    One epoch = every window once, shuffled; ``length_buckets`` as in :class:`NextItemBatches`
    (windows of similar length per batch, each batch cut to its longest row)."""

    def __init__(self, data, batch_size: int, max_len: int, mask_prob: float, n_negatives: int = 0,
                 window_stride: float = 0.0, last_item_ratio: float = 0.0, length_buckets: bool = False):
        super().__init__(data, batch_size, max_len, n_negatives)
        self.length_buckets = bool(length_buckets)
        if not 0 < mask_prob <= 1:
            raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
        if not 0 <= last_item_ratio <= 1:
            raise ValueError(f"last_item_ratio must be in [0, 1], got {last_item_ratio}")
        if window_stride < 0:
            raise ValueError(f"window_stride must be >= 0, got {window_stride}")
        self.mask_prob, self.last_item_ratio = float(mask_prob), float(last_item_ratio)
        self.mask_token = self.n_items + 1
        lengths = self.seqs.lengths
        users = np.flatnonzero(lengths >= 1)
        n = lengths[users]
        stride = max(1, int(round(window_stride * max_len))) if window_stride > 0 else None
        per_user = np.ones(len(users), dtype=np.int64) if stride is None else \
            1 + np.maximum(0, -(-(n - max_len) // stride))  # ceil((n - L) / stride) more windows
        self.users = np.repeat(users, per_user)
        k = np.arange(len(self.users)) - np.repeat(np.cumsum(per_user) - per_user, per_user)  # window # per user
        n = np.repeat(n, per_user)
        ends = n if stride is None else np.maximum(n - k * stride, np.minimum(n, max_len))
        self.drop = n - ends  # items after the window

    def __len__(self) -> int:
        return _ceil(len(self.users), self.batch_size)

    def epoch(self, rng: np.random.Generator):
        L = self.max_len
        lengths = self.seqs.lengths[self.users] - self.drop if self.length_buckets else None
        for rows in self._chunks(rng, len(self.users), lengths):
            users = self.users[rows]
            items, _ = self.seqs.padded(users, L, drop_last=self.drop[rows])  # [B, L]
            real = items > 0
            mask = (rng.random(items.shape) < self.mask_prob) & real
            none = np.flatnonzero(~mask.any(1))  # at least one masked position: a random real one
            mask[none, L - 1 - (rng.random(len(none)) * real[none].sum(1)).astype(np.int64)] = True
            if self.last_item_ratio > 0:
                last_only = rng.random(len(rows)) < self.last_item_ratio
                mask[last_only] = False
                mask[last_only, L - 1] = True
            neg = None
            if self.n_negatives:
                neg = np.where(mask[:, :, None], self._negatives(users, rng, L).reshape(len(users), L, self.n_negatives), 0)
            labels = np.where(mask, items, 0)
            items = np.where(mask, self.mask_token, items)
            if self.length_buckets:
                items, labels, neg = cut_padding(items, labels, neg)
            batch = {"users": torch.from_numpy(users), "items": torch.from_numpy(items), "labels": torch.from_numpy(labels)}
            if neg is not None:
                batch["negatives"] = torch.from_numpy(neg)
            yield batch


def time_intervals(times: torch.Tensor, pad: torch.Tensor, time_span: int, personalised: bool = True) -> torch.Tensor:
    """TiSASRec's relative intervals ``[B, L, L]``: ``|t_i - t_j|`` divided by the user's
    smallest non-zero gap between consecutive items (``personalised``, the paper's
    scaling), floored, clipped at ``time_span``; 0 where either position is padding.
    ``times [B, L]`` int64 seconds, ``pad [B, L]`` True at padding."""
    t = times.double()
    gaps = (t[:, 1:] - t[:, :-1]).abs()
    real_pair = ~(pad[:, 1:] | pad[:, :-1])
    gaps = torch.where(real_pair & (gaps > 0), gaps, torch.full_like(gaps, float("inf")))
    scale = gaps.min(1).values if personalised else torch.ones(len(t), dtype=t.dtype, device=t.device)
    scale = torch.where(torch.isfinite(scale), scale, torch.ones_like(scale))  # no gap: one unit
    rel = torch.floor((t[:, :, None] - t[:, None, :]).abs() / scale[:, None, None])
    rel = rel.clamp(max=time_span).long()
    both = ~(pad[:, :, None] | pad[:, None, :])
    return torch.where(both, rel, torch.zeros_like(rel))
