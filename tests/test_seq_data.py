"""Sequence batches: order, truncation, no future item in any input, negatives, cloze masks,
time intervals; and the leave-one-out split the sequence models use."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gcf.data.interactions import Interactions
from gcf.data.split import leave_one_out
from gcf.data.train_data import TrainData
from seq.data import ClozeBatches, NextItemBatches, PrefixBatches, time_intervals


@pytest.fixture(scope="module")
def loo(ml_small):
    return leave_one_out(ml_small)


@pytest.fixture(scope="module")
def data(loo):
    return TrainData.from_split(loo)


def hand_data():
    # user 0: 0 1 2 3 4 5 (t = 10..15), user 1: 6 7 (t = 1, 2), user 2: 3 (t = 0)
    rows = [(0, i, 10 + i) for i in range(6)] + [(1, 6, 1), (1, 7, 2), (2, 3, 0)]
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))]  # file order must not matter: time does
    inter = Interactions(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), np.arange(3).astype(str),
                         np.arange(8).astype(str), timestamps=np.array([r[2] for r in rows], dtype=np.float64))
    csr = inter.to_csr()
    return TrainData(3, 8, csr, interactions=inter)


def test_next_item_batches_by_hand():
    b = next(NextItemBatches(hand_data(), 10, max_len=4, n_negatives=2).epoch(np.random.default_rng(0)))
    order = np.argsort(b["users"].numpy())
    items, targets = b["items"].numpy()[order], b["targets"].numpy()[order]
    assert b["users"].numpy()[order].tolist() == [0, 1]  # user 2 has a single item: nothing to predict
    # user 0: inputs are 1..4 (items 1-4 as ids + 1: 2..5), targets the next ones
    assert items[0].tolist() == [2, 3, 4, 5] and targets[0].tolist() == [3, 4, 5, 6]
    assert items[1].tolist() == [0, 0, 0, 7] and targets[1].tolist() == [0, 0, 0, 8]
    assert b["times"].numpy()[order][0].tolist() == [11, 12, 13, 14]
    neg = b["negatives"].numpy()[order]
    assert neg.shape == (2, 4, 2) and (neg[1, :3] == 0).all()
    assert not np.isin(neg[0] - 1, np.arange(6)).any()  # never one of the user's training items


@pytest.mark.parametrize("builder", ["next", "prefix"])
def test_no_input_holds_the_target_or_a_later_item(data, builder):
    """Every input position is strictly earlier in the user's sequence than the target."""
    seqs = data.sequences
    if builder == "next":
        b = NextItemBatches(data, 64, max_len=20)
    else:
        b = PrefixBatches(data, 512, max_len=20)
    pos_of = {}  # (user, item) -> position in the user's sequence (the embedded data has no repeats)
    for u in range(seqs.n_users):
        for j, i in enumerate(seqs.of(u)):
            pos_of[(u, int(i))] = j
    n_rows = 0
    for batch in b.epoch(np.random.default_rng(1)):
        users, items, targets = batch["users"].numpy(), batch["items"].numpy(), batch["targets"].numpy()
        if targets.ndim == 1:
            targets = np.broadcast_to(targets[:, None], items.shape)
            last_only = True
        else:
            last_only = False
        for r in range(len(users)):
            u = int(users[r])
            for j in range(items.shape[1]):
                if items[r, j] == 0:
                    continue
                t = int(targets[r, -1] if last_only else targets[r, j]) - 1
                assert pos_of[(u, int(items[r, j]) - 1)] < pos_of[(u, t)]
            n_rows += 1
        if n_rows > 400:
            break
    assert n_rows > 0


def test_batch_counts_and_coverage(data):
    seqs = data.sequences
    nb = NextItemBatches(data, 100, max_len=50)
    assert len(nb) == sum(1 for _ in nb.epoch(np.random.default_rng(0)))
    pb = PrefixBatches(data, 4096, max_len=50)
    batches = list(pb.epoch(np.random.default_rng(0)))
    assert len(pb) == len(batches)
    assert sum(len(b["targets"]) for b in batches) == int(np.maximum(seqs.lengths - 1, 0).sum())
    # every (user, target) transition exactly once
    pairs = np.concatenate([b["users"].numpy() * (data.n_items + 1) + b["targets"].numpy() for b in batches])
    assert len(np.unique(pairs)) == len(pairs)
    # first_target: each user's first item too, with an all-padding history
    fb = list(PrefixBatches(data, 4096, max_len=50, first_target=True).epoch(np.random.default_rng(0)))
    assert sum(len(b["targets"]) for b in fb) == int(seqs.lengths.sum())
    firsts = {(u, int(seqs.of(u)[0]) + 1) for u in range(seqs.n_users) if seqs.lengths[u]}
    empty = {(int(u), int(t)) for b in fb for u, t, row in zip(b["users"], b["targets"], b["items"]) if not row.any()}
    assert empty == firsts


def test_length_buckets_group_similar_lengths_and_only_drop_padding(data):
    plain, bucketed = NextItemBatches(data, 32, max_len=60), NextItemBatches(data, 32, max_len=60, length_buckets=True)
    full = {}  # user -> (items, targets) of the plain builder, full width
    for b in plain.epoch(np.random.default_rng(0)):
        for u, i, t in zip(b["users"].numpy(), b["items"].numpy(), b["targets"].numpy()):
            full[int(u)] = (i, t)
    seen, widths, spans, positions = [], [], [], []
    for b in bucketed.epoch(np.random.default_rng(3)):
        items, targets = b["items"].numpy(), b["targets"].numpy()
        positions.append(int((targets > 0).sum()))
        L = items.shape[1]
        assert (items[:, 0] > 0).any() and b["times"].shape == items.shape  # cut to its longest row
        widths.append(L)
        n = (items > 0).sum(1)
        spans.append(n.max() - n.min())
        for u, i, t in zip(b["users"].numpy(), items, targets):
            fi, ft = full[int(u)]
            assert (fi[:60 - L] == 0).all()  # what was cut is padding
            assert (fi[60 - L:] == i).all() and (ft[60 - L:] == t).all()  # the rest is unchanged, right-aligned
            seen.append(int(u))
    assert sorted(seen) == sorted(full) and len(widths) == len(bucketed)  # every user once per epoch
    assert min(widths) < 60 and np.median(spans) < 10  # batches hold users of similar length
    assert len(set(widths)) > 1
    # as many batches as a plain shuffle, each with about the same number of positions (short rows: more rows)
    assert max(positions) < 1.2 * min(positions)
    # batch order is shuffled, not longest first
    assert widths != sorted(widths, reverse=True)


def test_cloze_length_buckets_cut_only_padding(data):
    b = ClozeBatches(data, 16, max_len=40, mask_prob=0.3, n_negatives=2, window_stride=1.0, length_buckets=True)
    widths, rows = [], 0
    for batch in b.epoch(np.random.default_rng(0)):
        items, labels = batch["items"].numpy(), batch["labels"].numpy()
        assert (items[:, 0] > 0).any() and labels.shape == items.shape == batch["negatives"].shape[:2]
        assert ((labels > 0) == (items == b.mask_token)).all() and (labels > 0).any(1).all()
        widths.append(items.shape[1])
        rows += len(items)
    assert rows == len(b.users) and len(widths) == len(b) and min(widths) < 40


def test_prefix_length_buckets_keep_every_row_once_and_cut_only_padding(data):
    plain, bucketed = PrefixBatches(data, 64, max_len=30), PrefixBatches(data, 64, max_len=30, length_buckets=True)
    full = {}  # (user, target position) -> full-width items of the plain builder
    for b in plain.epoch(np.random.default_rng(0)):
        for u, t, i in zip(b["users"].numpy(), b["targets"].numpy(), b["items"].numpy()):
            full.setdefault((int(u), int(t)), []).append(i)
    seen, widths, spans, sizes = {}, [], [], []
    for b in bucketed.epoch(np.random.default_rng(3)):
        items = b["items"].numpy()
        L = items.shape[1]
        assert (items[:, 0] > 0).any() and b["times"].shape == items.shape  # cut to its longest row
        widths.append(L)
        sizes.append(len(items))
        n = (items > 0).sum(1)
        spans.append(n.max() - n.min())
        for u, t, i in zip(b["users"].numpy(), b["targets"].numpy(), items):
            seen.setdefault((int(u), int(t)), []).append(i)
    assert sorted(seen) == sorted(full) and len(widths) == len(bucketed)
    for key, rows in seen.items():  # the same histories (a user may reach an item twice), padding cut only
        want = sorted(r.tolist() for r in full[key])
        got = sorted(([0] * (30 - len(r)) + r.tolist()) for r in rows)
        assert got == want, key
    # one target per row: batches of batch_size rows (the last may be short), as a plain shuffle
    assert sorted(sizes)[1:] == [64] * (len(sizes) - 1)
    assert min(widths) < 10 and max(spans) <= 30 and np.median(spans) <= 1
    assert widths != sorted(widths, reverse=True)  # shuffled, not longest first


def test_prefix_batches_truncate_to_the_last_items():
    b = next(PrefixBatches(hand_data(), 100, max_len=2).epoch(np.random.default_rng(0)))
    rows = {(int(u), int(t)): i.tolist() for u, t, i in zip(b["users"], b["targets"], b["items"])}
    assert rows[(0, 6)] == [4, 5]  # target item 5: the two items before it (3, 4)
    assert rows[(0, 2)] == [0, 1]
    assert rows[(1, 8)] == [0, 7]
    assert len(rows) == 5 + 1


def test_cloze_masks(data):
    cb = ClozeBatches(data, 128, max_len=30, mask_prob=0.2)
    b = next(cb.epoch(np.random.default_rng(0)))
    items, labels = b["items"], b["labels"]
    masked = items == data.n_items + 1
    assert (masked == (labels > 0)).all() and masked.any(1).all()  # at least one per row
    assert 0.1 < masked.sum() / (labels.numel() - (items == 0).sum()) < 0.35
    # unmasked positions keep their item; masked ones hold it in the labels
    full, _ = data.sequences.padded(b["users"].numpy(), 30)
    full = torch.from_numpy(full)
    assert torch.equal(torch.where(masked, labels, items), full)
    again = next(cb.epoch(np.random.default_rng(0)))
    assert torch.equal(again["items"], items)


def test_time_intervals_personalised_and_clipped():
    times = torch.tensor([[0, 0, 100, 110, 130], [0, 5, 10, 15, 1000]])
    pad = torch.tensor([[True, False, False, False, False], [False] * 5])
    rel = time_intervals(times, pad, time_span=8)
    # row 0: smallest gap 10 -> intervals in units of 10; the padding row/column is 0
    assert rel[0, 2, 3] == 1 and rel[0, 2, 4] == 3 and rel[0, 4, 2] == 3 and (rel[0, 0] == 0).all()
    assert rel[1, 0, 4] == 8  # 1000 / 5 = 200 clipped at 8
    assert rel.dtype == torch.int64 and (rel == rel.transpose(1, 2)).all()
