"""Splits on the real ml-latest-small data and on hand-made users: no leakage, no loss, seeds."""
from __future__ import annotations

import numpy as np
import pytest

from gcf.data.interactions import Interactions
from gcf.data.split import Split, _recbole_counts, fixed, leave_one_out, make_split, random_ratio, temporal


def keyed(inter: Interactions) -> Interactions:
    """The same data with the original row number stored in ``ratings`` (a unique row key)."""
    from dataclasses import replace

    return replace(inter, ratings=np.arange(len(inter), dtype=np.float64))


def keys(part: Interactions) -> set:
    return set(zip(part.users.tolist(), part.items.tolist(), part.ratings.astype(np.int64).tolist()))


def assert_partition(split: Split, whole: Interactions):
    tr, va, te = (keys(p) for p in (split.train, split.valid, split.test))
    assert len(tr) == len(split.train) and len(va) == len(split.valid) and len(te) == len(split.test)
    assert not tr & va and not tr & te and not va & te
    assert tr | va | te == keys(whole)
    assert len(split.train) + len(split.valid) + len(split.test) == len(whole)
    for part in (split.train, split.valid, split.test):
        assert part.n_users == whole.n_users and part.n_items == whole.n_items


def fixed_pair(inter: Interactions, seed: int = 0):
    """A train/test file pair over one id space (20% of the rows as the 'test file')."""
    is_test = np.random.default_rng(seed).random(len(inter)) < 0.2
    return inter.subset(~is_test), inter.subset(is_test)


SPLITS = {
    "random": lambda d, seed: random_ratio(d, (0.8, 0.1, 0.1), seed=seed),
    "temporal": lambda d, seed: temporal(d, (0.8, 0.1, 0.1)),
    "loo": lambda d, seed: leave_one_out(d),
    "fixed": lambda d, seed: fixed(*fixed_pair(d), valid_ratio=0.1, seed=seed),
}


@pytest.fixture(scope="module")
def data(ml_small):
    return keyed(ml_small)


@pytest.mark.parametrize("name", list(SPLITS))
def test_parts_are_disjoint_and_complete(data, name):
    split = SPLITS[name](data, 2020)
    assert len(split.valid) > 0 and len(split.test) > 0
    assert_partition(split, data)


@pytest.mark.parametrize("name", ["random", "fixed"])
def test_seeds(data, name):
    a, b, c = SPLITS[name](data, 2020), SPLITS[name](data, 2020), SPLITS[name](data, 7)
    for part in ("train", "valid", "test"):
        assert keys(getattr(a, part)) == keys(getattr(b, part))
    assert keys(a.valid) != keys(c.valid)
    if name == "random":
        assert keys(a.test) != keys(c.test)


@pytest.mark.parametrize("name", ["temporal", "loo"])
def test_deterministic_without_seed(data, name):
    a, b = SPLITS[name](data, 1), SPLITS[name](data, 2)
    for part in ("train", "valid", "test"):
        assert keys(getattr(a, part)) == keys(getattr(b, part))


def test_random_ratio_proportions_on_real_users(data):
    split = random_ratio(data, (0.8, 0.1, 0.1), seed=2020)
    total = np.bincount(data.users, minlength=data.n_users)
    got = np.stack([np.bincount(p.users, minlength=data.n_users) for p in (split.train, split.valid, split.test)], 1)
    valid_expected = np.floor(0.1 * total + 1e-9).astype(int)
    np.testing.assert_array_equal(got[:, 1], valid_expected)
    np.testing.assert_array_equal(got[:, 2], valid_expected)
    np.testing.assert_array_equal(got[:, 0], total - 2 * valid_expected)


def users_with(counts) -> Interactions:
    users = np.repeat(np.arange(len(counts)), counts)
    items = np.concatenate([np.arange(c) for c in counts])
    return Interactions(users, items, np.arange(len(counts)).astype(str), np.arange(max(counts)).astype(str),
                        ratings=np.arange(len(users), dtype=np.float64))


@pytest.mark.parametrize("total,expected", [
    (10, (8, 1, 1)),
    (20, (16, 2, 2)),
    (9, (7, 1, 1)),   # floor(0.9) = 0 for valid/test -> each takes one from train
    (5, (3, 1, 1)),   # RecBole's small-user rule
    (3, (1, 1, 1)),
    (2, (1, 0, 1)),   # test takes one; train is then down to 1, so valid gets none
    (1, (1, 0, 0)),   # train would be left with 1 row: nothing moves
])
def test_random_ratio_small_user_rule(total, expected):
    assert tuple(_recbole_counts(np.array([total]), (0.8, 0.1, 0.1))[0]) == expected
    inter = users_with([total, 10])
    split = random_ratio(inter, (0.8, 0.1, 0.1), seed=3)
    got = tuple(int((p.users == 0).sum()) for p in (split.train, split.valid, split.test))
    assert got == expected
    assert_partition(split, inter)


def recbole_calcu_split_ids(tot, ratios):
    """RecBole's ``Dataset._calcu_split_ids`` (counts, not cumulative ids)."""
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.6, 0.2, 0.2), (0.9, 0.0, 0.1)])
def test_recbole_counts_match_recbole(ratios):
    totals = np.arange(1, 60)
    ours = _recbole_counts(totals, ratios)
    for tot, row in zip(totals, ours):
        assert list(row) == recbole_calcu_split_ids(int(tot), ratios), tot


def test_random_ratio_needs_three_ratios(data):
    with pytest.raises(ValueError, match="three numbers"):
        random_ratio(data, (0.8, 0.2))


def test_temporal_order(data):
    split = temporal(data, (0.8, 0.1, 0.1))
    assert split.train.timestamps.max() <= split.valid.timestamps.min()
    assert split.valid.timestamps.max() <= split.test.timestamps.min()
    assert len(split.train) == int(0.8 * len(data))
    assert len(split.train) + len(split.valid) == int(0.9 * len(data))


def test_temporal_needs_timestamps(data):
    from dataclasses import replace

    with pytest.raises(ValueError, match="needs a timestamp column"):
        temporal(replace(data, timestamps=None))


def test_leave_one_out_takes_latest(data):
    split = leave_one_out(data)
    n = data.n_users
    latest = np.full(n, -np.inf)
    np.maximum.at(latest, data.users, data.timestamps)
    # every user (all have >= 20 rows) has one test and one valid item
    np.testing.assert_array_equal(np.bincount(split.test.users, minlength=n), np.ones(n))
    np.testing.assert_array_equal(np.bincount(split.valid.users, minlength=n), np.ones(n))
    test_t = np.empty(n)
    test_t[split.test.users] = split.test.timestamps
    valid_t = np.empty(n)
    valid_t[split.valid.users] = split.valid.timestamps
    np.testing.assert_array_equal(test_t, latest)
    train_latest = np.full(n, -np.inf)
    np.maximum.at(train_latest, split.train.users, split.train.timestamps)
    assert np.all(valid_t <= test_t)
    assert np.all(train_latest <= valid_t)


def test_leave_one_out_small_users_and_ties():
    # user 0: 1 row; user 1: 2 rows; user 2: 3 rows with a tie in time (file order decides)
    users = np.array([0, 1, 1, 2, 2, 2])
    items = np.array([0, 1, 0, 0, 1, 2])
    ts = np.array([5.0, 2.0, 1.0, 1.0, 9.0, 9.0])
    inter = Interactions(users, items, np.array(["a", "b", "c"]), np.array(["x", "y", "z"]), timestamps=ts)
    split = leave_one_out(inter)
    assert list(zip(split.train.users, split.train.items)) == [(0, 0), (1, 0), (2, 0)]
    assert list(zip(split.valid.users, split.valid.items)) == [(2, 1)]
    assert list(zip(split.test.users, split.test.items)) == [(1, 1), (2, 2)]


def test_fixed_keeps_test_file_and_carves_valid(data):
    train, test = fixed_pair(data)
    split = fixed(train, test, valid_ratio=0.1, seed=1)
    assert keys(split.test) == keys(test)
    assert keys(split.train) | keys(split.valid) == keys(train)
    total = np.bincount(train.users, minlength=data.n_users)
    np.testing.assert_array_equal(np.bincount(split.valid.users, minlength=data.n_users),
                                  np.floor(0.1 * total + 1e-9).astype(int))
    no_valid = fixed(train, test, valid_ratio=0)
    assert len(no_valid.valid) == 0 and keys(no_valid.train) == keys(train)


def test_fixed_needs_one_id_space(data):
    other = users_with([3, 3])
    with pytest.raises(ValueError, match="share one id space"):
        fixed(data, other)


def test_empty_train_raises():
    inter = users_with([1, 1])
    empty = inter.subset(np.zeros(len(inter), dtype=bool))
    with pytest.raises(ValueError, match="train part is empty"):
        Split(empty, inter, inter, "manual")
    # a temporal split with a zero train ratio leaves train empty
    ts_inter = Interactions(inter.users, inter.items, inter.user_ids, inter.item_ids,
                            timestamps=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="train part is empty"):
        temporal(ts_inter, (0.0, 0.5, 0.5))


def test_split_rejects_other_id_space():
    a, b = users_with([2, 2]), users_with([2, 2, 2])
    with pytest.raises(ValueError, match="another id space"):
        Split(a, b, a, "manual")


def test_make_split_dispatch(data):
    assert make_split(data, "loo").method == "leave_one_out"
    assert make_split(data, "random", seed=5).method.startswith("random_ratio")
    with pytest.raises(ValueError, match="unknown split 'bogus'"):
        make_split(data, "bogus")
    with pytest.raises(ValueError, match="needs a dataset with its own test file"):
        make_split(data, "fixed")
