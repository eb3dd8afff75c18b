"""Top-k metrics against hand-computed cases and an independent numpy port of RecBole's formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gcf import metrics
from gcf.metrics import METRICS, auc, topk_metrics


def T(rows):
    return torch.tensor(rows, dtype=torch.float32)


def N(values):
    return torch.tensor(values, dtype=torch.int64)


def one(name, hits, n_rel, k):
    return float(topk_metrics(T([hits]), N([n_rel]), [k], [name])[f"{name}@{k}"][0])


# ----------------------------------------------------------------- hand-computed
@pytest.mark.parametrize("n_rel,k", [(1, 1), (2, 5), (3, 3), (5, 10)])
def test_perfect_ranking(n_rel, k):
    hits = [1] * n_rel + [0] * (k - n_rel)
    for name in ("recall", "ndcg", "hit", "map", "mrr"):
        assert one(name, hits, n_rel, k) == pytest.approx(1.0), name
    assert one("precision", hits, n_rel, k) == pytest.approx(n_rel / k)


def test_no_hits_is_zero_everywhere():
    out = topk_metrics(torch.zeros(3, 10), N([1, 4, 20]), [1, 5, 10])
    assert len(out) == len(METRICS) * 3
    for key, v in out.items():
        assert v.shape == (3,), key
        assert torch.all(v == 0), key


def test_textbook_ndcg():
    # relevant at ranks 1 and 3, two relevant items in total
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert one("ndcg", [1, 0, 1], 2, 3) == pytest.approx(expected, rel=1e-6)
    # with k = 2 only the first hit counts, idcg over min(2, 2) = 2 positions
    assert one("ndcg", [1, 0, 1], 2, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)), rel=1e-6)
    # a single hit at rank 2, one relevant item: 1/log2(3)
    assert one("ndcg", [0, 1, 0], 1, 3) == pytest.approx(1 / math.log2(3), rel=1e-6)


def test_ndcg_idcg_over_min_k_nrel():
    # 5 relevant items but k = 3: ideal DCG is over 3 positions, so a full top 3 scores 1
    assert one("ndcg", [1, 1, 1], 5, 3) == pytest.approx(1.0)
    # hits at 1 and 2 out of 3 positions, 5 relevant: (1 + 1/log2 3) / (1 + 1/log2 3 + 1/2)
    expected = (1 + 1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5)
    assert one("ndcg", [1, 1, 0], 5, 3) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("hits,expected", [([1, 0, 0, 0], 1.0), ([0, 1, 1, 0], 0.5), ([0, 0, 0, 1], 0.25),
                                           ([0, 0, 0, 0], 0.0)])
def test_mrr_is_inverse_rank_of_first_hit(hits, expected):
    assert one("mrr", hits, 2, 4) == pytest.approx(expected)


def test_mrr_ignores_hits_beyond_k():
    assert one("mrr", [0, 0, 0, 1], 1, 3) == 0.0
    assert one("mrr", [0, 0, 0, 1], 1, 4) == pytest.approx(0.25)


def test_map_by_hand():
    # hits at ranks 1, 3, 5 with 4 relevant, k = 5: (1/1 + 2/3 + 3/5) / min(5, 4)
    assert one("map", [1, 0, 1, 0, 1], 4, 5) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4, rel=1e-6)
    # the same with k = 3: (1 + 2/3) / min(3, 4) = 3
    assert one("map", [1, 0, 1, 0, 1], 4, 3) == pytest.approx((1 + 2 / 3) / 3, rel=1e-6)
    # one relevant found at rank 2: (1/2) / 1
    assert one("map", [0, 1, 0], 1, 3) == pytest.approx(0.5)


def test_recall_precision_hit_when_nrel_exceeds_k():
    hits = [1, 1, 0, 1, 1]  # 4 hits in the top 5, 10 relevant
    assert one("recall", hits, 10, 5) == pytest.approx(0.4)
    assert one("precision", hits, 10, 5) == pytest.approx(0.8)
    assert one("hit", hits, 10, 5) == 1.0
    assert one("recall", hits, 10, 2) == pytest.approx(0.2)
    assert one("precision", hits, 10, 2) == pytest.approx(1.0)
    assert one("hit", [0, 0, 1], 10, 2) == 0.0


def test_topk_metrics_keys_and_unknown_metric():
    out = topk_metrics(T([[1, 0, 1]]), N([2]), [1, 3], ["recall", "ndcg"])
    assert set(out) == {"recall@1", "recall@3", "ndcg@1", "ndcg@3"}
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        topk_metrics(T([[1, 0]]), N([1]), [2], ["nope"])


# -------------------------------------------------------- RecBole formulas (numpy)
def recbole_reference(pos_index: np.ndarray, pos_len: np.ndarray) -> dict[str, np.ndarray]:
    """Per-user, per-cut-off values ``[B, K]`` written after RecBole's ``metrics.py``."""
    b, kmax = pos_index.shape
    pos = pos_index.astype(bool)
    ranks = np.arange(1, kmax + 1, dtype=np.float64)
    cum = np.cumsum(pos, axis=1)
    out = {"recall": cum / pos_len[:, None], "precision": cum / ranks, "hit": (cum > 0).astype(np.float64)}
    # MRR: 1 / (index of the first hit + 1) from that index on
    mrr = np.zeros((b, kmax))
    first = pos.argmax(1)
    for row, idx in enumerate(first):
        if pos[row, idx]:
            mrr[row, idx:] = 1.0 / (idx + 1)
    out["mrr"] = mrr
    # NDCG: idcg over min(k, pos_len) ideal positions
    idcg_len = np.minimum(pos_len, kmax)
    idcg = np.tile(np.cumsum(1.0 / np.log2(ranks + 1)), (b, 1))
    for row, idx in enumerate(idcg_len):
        idcg[row, idx:] = idcg[row, idx - 1]
    dcg = np.cumsum(np.where(pos, 1.0 / np.log2(ranks + 1), 0.0), axis=1)
    out["ndcg"] = dcg / idcg
    # MAP: running sum of precision at hits / min(k, pos_len)
    pre = cum / ranks
    sum_pre = np.cumsum(pre * pos, axis=1)
    result = np.zeros((b, kmax))
    for row, lens in enumerate(np.minimum(pos_len, kmax)):
        r = np.arange(1, kmax + 1)
        r[lens:] = r[lens - 1]
        result[row] = sum_pre[row] / r
    out["map"] = result
    return out


def test_against_recbole_formulas():
    rng = np.random.default_rng(0)
    b, kmax = 64, 20
    pos_len = rng.integers(1, 30, size=b)
    hits = (rng.random((b, kmax)) < 0.25).astype(np.float32)
    hits[np.arange(kmax)[None, :] >= pos_len[:, None]] = 0  # cannot hit more than there are
    hits[0] = 0  # one user without hits
    ref = recbole_reference(hits, pos_len)
    ks = [1, 3, 5, 10, 20]
    ours = topk_metrics(torch.from_numpy(hits), torch.from_numpy(pos_len), ks)
    for name in METRICS:
        for k in ks:
            np.testing.assert_allclose(ours[f"{name}@{k}"].double().numpy(), ref[name][:, k - 1], rtol=1e-5,
                                       atol=1e-7, err_msg=f"{name}@{k}")


def test_metrics_are_row_independent():
    rng = np.random.default_rng(1)
    hits = torch.from_numpy((rng.random((10, 8)) < 0.3).astype(np.float32))
    n_rel = torch.from_numpy(rng.integers(1, 10, size=10))
    full = topk_metrics(hits, n_rel, [5])
    for i in range(10):
        part = topk_metrics(hits[i:i + 1], n_rel[i:i + 1], [5])
        for key in full:
            assert float(part[key][0]) == pytest.approx(float(full[key][i]), rel=1e-6)


def test_functions_table_matches_names():
    assert set(metrics.FUNCTIONS) == set(METRICS)


# ------------------------------------------------------------------------- AUC
def test_auc_tiny():
    pos = torch.tensor([[3.0, 1.0]])
    neg = torch.tensor([[2.0, 0.0, 1.0]])
    # pairs (pos > neg): 3 beats all three; 1 beats 0, ties 1 (half), loses to 2 -> (3 + 1.5) / 6
    assert float(auc(pos, neg)[0]) == pytest.approx(4.5 / 6)
    out = auc(torch.tensor([[5.0], [0.0], [1.0]]), torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 1.0]]))
    assert out.tolist() == pytest.approx([1.0, 0.0, 0.5])
