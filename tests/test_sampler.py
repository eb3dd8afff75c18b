"""Negative sampling and the training batches: never a positive, uniform, seeded, complete."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gcf.data.sampler import (BATCH_KINDS, PairwiseBatches, dense_rows, get_batch_kind, register_batch_kind,
                              row_batches, sample_distinct_negatives, sample_negatives)
from gcf.data.train_data import TrainData


@pytest.fixture(scope="module")
def train(ml_small_split):
    return ml_small_split.csr("train")


def test_negatives_never_positive_on_real_data(train):
    rng = np.random.default_rng(0)
    users = rng.integers(0, train.shape[0], size=200_000)
    neg = sample_negatives(train, users, 1, rng)
    assert neg.shape == (200_000, 1)
    assert neg.min() >= 0 and neg.max() < train.shape[1]
    dense = train.toarray() > 0
    assert not dense[users, neg[:, 0]].any()
    # heavy users (many positives) are the ones rejection sampling must get right
    heavy = np.argsort(np.diff(train.indptr))[-5:]
    neg = sample_negatives(train, np.repeat(heavy, 1000), 3, rng)
    assert not dense[np.repeat(heavy, 1000)[:, None], neg].any()


def test_negatives_uniform_over_non_positives():
    # user 0 likes items {0, 2, 5} of 8; user 1 likes all but item 3
    r = sp.csr_matrix(np.array([[1, 0, 1, 0, 0, 1, 0, 0],
                                [1, 1, 1, 0, 1, 1, 1, 1]], dtype=np.float32))
    rng = np.random.default_rng(123)
    n = 50_000
    neg = sample_negatives(r, np.zeros(n, dtype=np.int64), 1, rng)[:, 0]
    counts = np.bincount(neg, minlength=8)
    assert counts[[0, 2, 5]].sum() == 0
    allowed = counts[[1, 3, 4, 6, 7]]
    expected = n / 5
    chi2 = ((allowed - expected) ** 2 / expected).sum()
    assert chi2 < 20.5  # 4 degrees of freedom, p ~ 0.0004
    only = sample_negatives(r, np.ones(1000, dtype=np.int64), 2, rng)
    assert np.all(only == 3)


def test_negatives_deterministic_with_seed(train):
    users = np.arange(train.shape[0]).repeat(20)
    a = sample_negatives(train, users, 2, np.random.default_rng(42))
    b = sample_negatives(train, users, 2, np.random.default_rng(42))
    c = sample_negatives(train, users, 2, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_user_with_every_item_raises():
    r = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0]], dtype=np.float32))
    sample_negatives(r, np.array([1, 1]), 1, np.random.default_rng(0))  # fine
    with pytest.raises(ValueError, match="user 0 has interacted with all 3 items"):
        sample_negatives(r, np.array([1, 0]), 1, np.random.default_rng(0))


def _data(train):
    return TrainData(train.shape[0], train.shape[1], train)


def test_pairwise_epoch_covers_each_interaction_once(train):
    sampler = PairwiseBatches(_data(train), 4096)
    rng = np.random.default_rng(7)
    batches = list(sampler.epoch(rng))
    assert len(batches) == len(sampler) == -(-train.nnz // 4096)
    assert all(len(b[0]) == 4096 for b in batches[:-1])
    users, pos, neg = (torch.cat(x).numpy() for x in zip(*batches))
    assert all(t.dtype == torch.int64 for t in batches[0])
    coo = train.tocoo()
    expected = np.sort(coo.row.astype(np.int64) * train.shape[1] + coo.col)
    np.testing.assert_array_equal(np.sort(users * train.shape[1] + pos), expected)
    dense = train.toarray() > 0
    assert dense[users, pos].all()
    assert not dense[users, neg].any()
    # shuffled: not in CSR order
    assert (users[:-1] > users[1:]).any()


def test_pairwise_epoch_seeded(train):
    sampler = PairwiseBatches(_data(train), 10_000)
    a = [torch.cat(x) for x in zip(*sampler.epoch(np.random.default_rng(1)))]
    b = [torch.cat(x) for x in zip(*sampler.epoch(np.random.default_rng(1)))]
    c = [torch.cat(x) for x in zip(*sampler.epoch(np.random.default_rng(2)))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_row_batches_equal_csr_rows():
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 17)) < 0.15).astype(np.float32)
    dense[4] = 0  # an empty user is skipped
    r = sp.csr_matrix(dense)
    non_empty = np.flatnonzero(dense.sum(1) > 0)
    assert 4 not in non_empty
    for shuffle in (None, rng):
        seen = []
        for ids, rows in row_batches(r, 8, shuffle):
            assert rows.shape == (len(ids), 17) and rows.dtype == torch.float32
            np.testing.assert_array_equal(rows.numpy(), dense[ids.numpy()])
            seen.extend(ids.tolist())
        assert sorted(seen) == non_empty.tolist()
        if shuffle is None:
            assert seen == non_empty.tolist()
    tagged = next(row_batches(r, 8, None, tag="item"))
    assert tagged[0] == "item" and len(tagged) == 3


def test_dense_rows(train):
    rows = np.array([5, 0, 5, 600])
    np.testing.assert_array_equal(dense_rows(train, rows).numpy(), train[rows].toarray())


def test_batch_kinds_count_their_batches(train):
    rng = np.random.default_rng(0)
    for kind in ("pairwise", "user_rows", "item_user_rows"):
        builder = get_batch_kind(kind)(_data(train), 2048)
        assert sum(1 for _ in builder.epoch(rng)) == len(builder)
    tags = [b[0] for b in get_batch_kind("item_user_rows")(_data(train), 2048).epoch(rng)]
    assert tags[0] == "item" and tags[-1] == "user"
    with pytest.raises(ValueError, match="unknown batch_kind 'x'"):
        get_batch_kind("x")


def test_another_package_registers_a_batch_kind(train):
    @register_batch_kind("test_users_only")
    class UsersOnly:
        def __init__(self, data, batch_size):
            self.n, self.bs = data.n_users, batch_size

        def __len__(self):
            return -(-self.n // self.bs)

        def epoch(self, rng):
            perm = torch.from_numpy(rng.permutation(self.n))
            yield from perm.split(self.bs)

    try:
        assert get_batch_kind("test_users_only") is UsersOnly
        with pytest.raises(ValueError, match="already registered"):
            register_batch_kind("test_users_only")(type("UsersOnly2", (), {}))
    finally:
        BATCH_KINDS.pop("test_users_only")


def test_negatives_from_matrix_without_positives():
    r = sp.csr_matrix((3, 5), dtype=np.float32)
    neg = sample_negatives(r, np.array([0, 1, 2]), 4, np.random.default_rng(0))
    assert neg.shape == (3, 4) and neg.min() >= 0 and neg.max() < 5


@pytest.mark.parametrize("weighted", [False, True])
def test_distinct_negatives_avoid_positives_and_repeats(weighted):
    rng = np.random.default_rng(0)
    n_items = 60
    dense = rng.random((40, n_items)) < 0.3
    dense[0, :] = True
    dense[0, :3] = False  # row 0 may only get items 0-2: fewer than n_neg, drawn with replacement
    csr = sp.csr_matrix(dense.astype(np.float32))
    p = None
    if weighted:
        p = np.arange(n_items, dtype=np.float64)  # item 0 is never drawn
        p /= p.sum()
    negs = sample_distinct_negatives(csr, 10, 1, None, p)
    assert negs.shape == (40, 10)
    for row in range(1, 40):
        assert not dense[row, negs[row]].any() and len(set(negs[row])) == 10
        if weighted:
            assert (negs[row] != 0).all()
    assert set(negs[0]) <= ({1, 2} if weighted else {0, 1, 2})
    again = sample_distinct_negatives(csr, 10, 1, None, p)
    assert (again == negs).all()
    dense[5, :] = True
    with pytest.raises(ValueError, match="row 5"):
        sample_distinct_negatives(sp.csr_matrix(dense.astype(np.float32)), 10, 1, None, p)


def test_distinct_negatives_are_uniform():
    dense = np.zeros((2000, 20), dtype=np.float32)
    dense[:, 0] = 1.0
    negs = sample_distinct_negatives(sp.csr_matrix(dense), 5, 3)
    counts = np.bincount(negs.ravel(), minlength=20)
    assert counts[0] == 0
    assert counts[1:].min() > 0.8 * counts[1:].mean()  # 10000 draws over 19 items


@pytest.mark.parametrize("weighted", [False, True])
def test_distinct_negatives_depend_on_the_row_key_only(weighted):
    """A row's negatives come from its own stream: the same whatever rows it is drawn with."""
    rng = np.random.default_rng(0)
    dense = rng.random((40, 160)) < 0.2
    csr = sp.csr_matrix(dense.astype(np.float32))
    p = np.arange(1, 161, dtype=np.float64) if weighted else None
    keys = np.arange(1000, 1040)
    whole = sample_distinct_negatives(csr, 100, 5, keys, p)
    for bs in (1, 7, 13):
        parts = [sample_distinct_negatives(csr[s:s + bs], 100, 5, keys[s:s + bs], p) for s in range(0, 40, bs)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not (sample_distinct_negatives(csr, 100, 6, keys, p) == whole).all()
