"""The evaluator: masking of seen items, hand-computed results, batch-size invariance, sampled mode."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gcf.data.interactions import Interactions
from gcf.data.sampler import dense_rows
from gcf.data.split import Split, fixed
from gcf.evaluate import evaluate
from gcf.models.base import Recommender, TrainData
from gcf.models.pop import Pop


class FixedScores(Recommender):
    """Returns rows of a fixed score matrix and records which users it was asked about."""

    batch_kind = None

    def __init__(self, data: TrainData, scores: torch.Tensor):
        super().__init__(data)
        self.register_buffer("scores", scores.float())
        self.calls: list[list[int]] = []

    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        self.calls.append(users.tolist())
        return self.scores[users]


def part(pairs, n_users=3, n_items=6) -> Interactions:
    users = np.array([p[0] for p in pairs], dtype=np.int64)
    items = np.array([p[1] for p in pairs], dtype=np.int64)
    return Interactions(users, items, np.arange(n_users).astype(str), np.arange(n_items).astype(str))


@pytest.fixture()
def tiny():
    # u0: train {0}, valid {1}, test {2, 4};  u1: train {5}, test {3};  u2: train {0, 1}, valid {2}
    split = Split(part([(0, 0), (1, 5), (2, 0), (2, 1)]), part([(0, 1), (2, 2)]), part([(0, 2), (0, 4), (1, 3)]),
                  "hand")
    scores = torch.tensor([[6, 5, 4, 3, 2, 1],
                           [1, 2, 3, 4, 5, 6],
                           [9, 8, 1, 0, 5, 4]])
    return split, FixedScores(TrainData.from_split(split), scores)


def test_test_part_by_hand(tiny):
    split, model = tiny
    model.train()
    out = evaluate(model, split, "test", ks=(1, 3), batch_size=1)
    # only users with test items are scored, in id order, one per batch
    assert model.calls == [[0], [1]]
    assert model.training  # mode restored
    # u0: items 0 (train) and 1 (valid) masked -> ranking 2, 3, 4 -> hits [1, 0, 1], 2 relevant
    # u1: item 5 masked -> ranking 4, 3, 2 -> hits [0, 1, 0], 1 relevant
    l3 = 1 / math.log2(3)
    expected = {
        "recall@1": (0.5 + 0) / 2, "recall@3": (1 + 1) / 2,
        "precision@1": (1 + 0) / 2, "precision@3": (2 / 3 + 1 / 3) / 2,
        "hit@1": 0.5, "hit@3": 1.0,
        "mrr@1": 0.5, "mrr@3": (1 + 0.5) / 2,
        "ndcg@1": 0.5, "ndcg@3": ((1 + 0.5) / (1 + l3) + l3) / 2,
        "map@1": 0.5, "map@3": ((1 + 2 / 3) / 2 + 0.5) / 2,
    }
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, rel=1e-6), key


def test_valid_part_masks_train_only(tiny):
    split, model = tiny
    out = evaluate(model, split, "valid", ks=(1, 3), metrics=("ndcg", "mrr", "hit"))
    assert model.calls == [[0, 2]]  # u1 has no valid item
    # u0: item 0 masked -> item 1 (valid) is ranked first; u2: 0, 1 masked -> ranking 4, 5, 2
    assert out["hit@1"] == pytest.approx(0.5)
    assert out["mrr@3"] == pytest.approx((1 + 1 / 3) / 2)
    assert out["ndcg@3"] == pytest.approx((1 + 0.5) / 2)
    assert set(out) == {"ndcg@1", "ndcg@3", "mrr@1", "mrr@3", "hit@1", "hit@3"}


def test_masking_matters(tiny):
    """Without the masks u0's valid item 1 would take rank 1 in the test ranking."""
    split, model = tiny
    # a model that puts the seen items of every user on top: after masking only the held-out
    # items can be found, so hit@1 is the same as ranking the held-out items among the rest
    seen = dense_rows((split.csr("train") + split.csr("valid")).tocsr(), np.arange(3))
    test = dense_rows(split.csr("test"), np.arange(3))
    cheat = FixedScores(TrainData.from_split(split), 10 * seen + 5 * test)
    out = evaluate(cheat, split, "test", ks=(1, 2))
    assert out["hit@1"] == 1.0 and out["ndcg@2"] == pytest.approx(1.0) and out["recall@2"] == 1.0
    # valid evaluation must not mask valid items, but must mask the train ones
    valid = dense_rows(split.csr("valid"), np.arange(3))
    cheat_v = FixedScores(TrainData.from_split(split), 10 * dense_rows(split.csr("train"), np.arange(3)) + 5 * valid)
    assert evaluate(cheat_v, split, "valid", ks=(1,))["hit@1"] == 1.0


def test_bad_part(tiny):
    split, model = tiny
    with pytest.raises(ValueError, match="part must be 'valid' or 'test'"):
        evaluate(model, split, "train")


def test_empty_valid_raises(ml_small):
    rng = np.random.default_rng(0)
    is_test = rng.random(len(ml_small)) < 0.2
    split = fixed(ml_small.subset(~is_test), ml_small.subset(is_test), valid_ratio=0)
    model = Pop(TrainData.from_split(split))
    with pytest.raises(ValueError, match="the valid split is empty"):
        evaluate(model, split, "valid")


@pytest.fixture(scope="module")
def pop(ml_small_split):
    model = Pop(TrainData.from_split(ml_small_split))
    model.fit(TrainData.from_split(ml_small_split))
    return model


def test_pop_fit(pop, ml_small_split):
    counts = np.bincount(ml_small_split.train.items, minlength=ml_small_split.n_items)
    np.testing.assert_array_equal(pop.counts.numpy(), counts)


@pytest.mark.parametrize("part", ["valid", "test"])
def test_batch_size_invariance(pop, ml_small_split, part):
    ref = evaluate(pop, ml_small_split, part, ks=(5, 10, 20), batch_size=5000)
    assert len(ref) == 6 * 3 and 0 < ref["recall@20"] < 1
    for bs in (7, 128):
        out = evaluate(pop, ml_small_split, part, ks=(5, 10, 20), batch_size=bs)
        assert out.keys() == ref.keys()
        for key in ref:
            assert out[key] == pytest.approx(ref[key], rel=1e-9), (bs, key)


def test_pop_against_direct_computation(pop, ml_small_split):
    """Recall@10 of Pop against a per-user numpy ranking. Pop has many tied scores and
    ``torch.topk`` breaks ties in no documented order, so the per-user value is bounded by the
    held-out items strictly above the 10th score and those at or above it."""
    split = ml_small_split
    counts = pop.counts.numpy().astype(np.float64)
    seen = (split.csr("train") + split.csr("valid")).tocsr()
    test = split.csr("test")
    lo, hi = [], []
    for u in range(split.n_users):
        rel = test.indices[test.indptr[u]:test.indptr[u + 1]]
        if len(rel) == 0:
            continue
        s = counts.copy()
        s[seen.indices[seen.indptr[u]:seen.indptr[u + 1]]] = -np.inf
        cut = np.sort(s)[::-1][9]  # the 10th best score
        lo.append((s[rel] > cut).sum() / len(rel))
        hi.append(min(10 - (s > cut).sum() + (s[rel] > cut).sum(), (s[rel] >= cut).sum()) / len(rel))
    got = evaluate(pop, split, "test", ks=(10,), metrics=("recall",))["recall@10"]
    assert np.mean(lo) - 1e-12 <= got <= np.mean(hi) + 1e-12
    assert np.mean(hi) - np.mean(lo) < 0.05  # the bounds are tight enough to mean something
    assert got > 0.01  # popularity is far better than random (about 10/9724)


@pytest.fixture(scope="module")
def few_users(ml_small):
    """ml-latest-small restricted to 120 users (the id space is kept): sampled evaluation
    loops over users, so this keeps those tests fast."""
    from gcf.data.split import random_ratio

    return random_ratio(ml_small.subset(ml_small.users < 120), (0.8, 0.1, 0.1), seed=2020)


def oracle(split, sign: float):
    test = dense_rows(split.csr("test"), np.arange(split.n_users))
    return FixedScores(TrainData.from_split(split), sign * test)


def test_sampled_labels_and_oracles(few_users):
    split = few_users
    good = evaluate(oracle(split, 1.0), split, "test", ks=(10,), sampled="uni100", batch_size=256)
    assert set(good) == {f"{m}@10[uni100]" for m in ("recall", "ndcg", "precision", "hit", "mrr", "map")}
    assert good["ndcg@10[uni100]"] == pytest.approx(1.0)
    assert good["hit@10[uni100]"] == 1.0
    bad = evaluate(oracle(split, -1.0), split, "test", ks=(10,), sampled="pop100")
    assert all(key.endswith("[pop100]") for key in bad)
    assert bad["hit@10[pop100]"] == 0.0
    # a constant model: ties are ranked against the held-out items (pessimistic)
    flat = evaluate(oracle(split, 0.0), split, "test", ks=(10,), sampled="uni100")
    assert flat["hit@10[uni100]"] == 0.0


def test_sampled_seeded_and_between_full_and_trivial(few_users):
    pop = Pop(TrainData.from_split(few_users))
    pop.fit(TrainData.from_split(few_users))
    a = evaluate(pop, few_users, "test", ks=(10,), sampled="uni100", seed=1)
    b = evaluate(pop, few_users, "test", ks=(10,), sampled="uni100", seed=1)
    c = evaluate(pop, few_users, "test", ks=(10,), sampled="uni100", seed=2)
    assert a == b
    assert a != c
    full = evaluate(pop, few_users, "test", ks=(10,))
    # ranking among 100 negatives is much easier than among all items
    assert a["hit@10[uni100]"] > full["hit@10"]


@pytest.mark.parametrize("sampled", ["uni100", "pop100"])
@pytest.mark.parametrize("part", ["valid", "test"])
def test_sampled_metrics_do_not_depend_on_the_batch_size(few_users, sampled, part):
    """Each user draws negatives from its own stream: with scores that differ per user (random
    here; Pop could not tell), any batch size gives every user the same negatives."""
    split = few_users
    scores = torch.from_numpy(np.random.default_rng(0).random((split.n_users, split.n_items)))
    model = FixedScores(TrainData.from_split(split), scores)
    ref = evaluate(model, split, part, ks=(5, 10), sampled=sampled, batch_size=4096, seed=3)
    for bs in (1, 7, 40):
        out = evaluate(model, split, part, ks=(5, 10), sampled=sampled, batch_size=bs, seed=3)
        assert out == pytest.approx(ref, rel=1e-12, abs=1e-12), bs


@pytest.mark.parametrize("spec", ["uni", "foo100", "uni-5", "100", "UNI100"])
def test_bad_sampled_spec(tiny, spec):
    split, model = tiny
    with pytest.raises(ValueError, match="expected 'uni<N>' or 'pop<N>'"):
        evaluate(model, split, "test", sampled=spec)


def test_evaluation_leaves_the_model_untouched(pop, ml_small_split):
    """The evaluator masks scores in place: a model's buffers must not be written through."""
    before = pop.counts.clone()
    evaluate(pop, ml_small_split, "test", ks=(10,))
    assert torch.equal(pop.counts, before)


def test_cpu_score_cap_splits_batches_without_changing_metrics(few_users, monkeypatch):
    """On CPU the evaluator keeps each ``[B, n_items]`` score matrix under a byte cap (fewer users
    per batch on a large catalogue); the metrics are those of one batch of every user."""
    import gcf.evaluate as ev
    calls = []

    class Counting(FixedScores):
        def score(self, users, history=None):
            calls.append(len(users))
            return super().score(users, history)

    rng = np.random.default_rng(0)
    model = Counting(TrainData.from_split(few_users), torch.from_numpy(rng.random((few_users.n_users,
                                                                                    few_users.n_items))).float())
    whole = evaluate(model, few_users, "test", ks=(5, 20), batch_size=10 ** 6)
    assert max(calls) > 7
    monkeypatch.setattr(ev, "CPU_SCORE_BYTES", 7 * 4 * few_users.n_items)  # 7 users' scores
    calls.clear()
    capped = evaluate(model, few_users, "test", ks=(5, 20), batch_size=10 ** 6)
    assert max(calls) == 7 and len(calls) > 1
    assert capped == pytest.approx(whole, rel=1e-12)
