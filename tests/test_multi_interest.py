"""MIND, ComiRec-DR, ComiRec-SA and their shared pieces (seq/multi_interest.py), retrieval
(seq/retrieval.py) and ComiRec's protocol (seq/protocols.py): routing shapes, squash norms
and coupling sums, the dynamic interest count, training samples that never hold their
target, max-over-interests scoring equal to the merged per-interest retrieval, exact search
equal to faiss' flat index, the merge dropping duplicates and seen items, the controllable
aggregation, the protocol's disjoint user sets, and each model beating Pop under that
protocol on the embedded ml-latest-small within a short budget."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import seq.models  # noqa: F401  (registers the models)
from gcf.data.train_data import TrainData
from gcf.evaluate import evaluate
from gcf.models import build_model
from seq.multi_interest import (CutBatches, LogUniformNegatives, dynamic_interest_count, dynamic_routing,
                                label_aware_readout, left_align, squash)
from seq.protocols import held_out_users, run_comirec
from seq.retrieval import ItemIndex, Retriever, diversity, merge_candidates, recommend

MODELS = ["mind", "comirec_dr", "comirec_sa"]
SMALL = {"max_len": 20, "hidden_size": 16, "n_interests": 4, "n_negatives": 64}


@pytest.fixture(scope="module")
def comirec_split(ml_small):
    return held_out_users(ml_small.k_core(10, 10).dedup(), seed=1)


@pytest.fixture(scope="module")
def data(comirec_split):
    return TrainData.from_split(comirec_split)


# ------------------------------------------------------------ routing
def test_squash_keeps_direction_and_norm_below_one():
    z = torch.randn(50, 8) * torch.logspace(-3, 3, 50)[:, None]
    v = squash(z)
    n, nz = v.norm(dim=-1), z.norm(dim=-1)
    assert (n < 1).all()
    assert torch.allclose(n, nz ** 2 / (1 + nz ** 2), rtol=1e-4)
    assert torch.allclose(torch.nn.functional.cosine_similarity(v, z, dim=-1), torch.ones(50), atol=1e-5)
    assert torch.equal(squash(torch.zeros(3, 4)), torch.zeros(3, 4))


def test_routing_gives_k_distinct_interests_and_couplings_summing_to_one():
    torch.manual_seed(0)
    B, K, L, d = 5, 4, 7, 6
    pred = torch.randn(B, K, L, d, requires_grad=True)
    real = torch.ones(B, L, dtype=torch.bool)
    real[1, :3] = False
    real[2, :6] = False
    v, c = dynamic_routing(pred, real, torch.zeros(B, K, L))
    assert v.shape == (B, K, d) and c.shape == (B, K, L)
    assert (v.norm(dim=-1) < 1).all()
    assert torch.allclose(c.sum(1)[real], torch.ones(int(real.sum())), atol=1e-6)
    assert torch.equal(c.sum(1)[~real], torch.zeros(int((~real).sum())))
    gaps = (v[:, :, None] - v[:, None]).norm(dim=-1) + torch.eye(K) * 10
    assert gaps.min() > 1e-3  # K distinct vectors
    v.sum().backward()  # the last iteration lets the gradient into the predictions
    assert pred.grad.abs().sum() > 0
    # padding behaviours do not matter: changing them leaves the interests unchanged
    pred2 = pred.detach().clone()
    pred2[1, :, :3] += 100.0
    v2, _ = dynamic_routing(pred2, real, torch.zeros(B, K, L))
    assert torch.allclose(v2, v.detach(), atol=1e-6)


def test_dynamic_interest_count_and_masked_interests():
    n = torch.tensor([0, 1, 2, 3, 4, 7, 8, 16, 100])
    assert dynamic_interest_count(n, 4).tolist() == [1, 1, 1, 1, 2, 2, 3, 4, 4]
    B, K, L, d = 3, 4, 16, 5
    pred = torch.randn(B, K, L, d)
    mask = torch.arange(K)[None, :] < torch.tensor([1, 2, 4])[:, None]
    v, c = dynamic_routing(pred, torch.ones(B, L, dtype=torch.bool), torch.randn(B, K, L), interest_mask=mask)
    assert torch.equal(v[~mask], torch.zeros(int((~mask).sum()), d))
    assert torch.allclose(c.sum(1), torch.ones(B, L), atol=1e-6)


def test_mind_interest_count_option(comirec_split, data):
    items = torch.zeros(2, 20, dtype=torch.long)
    items[0, -3:] = torch.tensor([1, 2, 3])  # 3 behaviours -> 1 interest
    items[1, -12:] = torch.arange(1, 13)  # 12 behaviours -> 3 interests
    on = build_model("mind", SMALL, comirec_split, seed=0).eval()
    off = build_model("mind", {**SMALL, "dynamic_interests": False}, comirec_split, seed=0).eval()
    with torch.no_grad():
        v, valid = on.interests(items)
        assert valid.sum(1).tolist() == [1, 3]
        assert off.interests(items)[1].all()
        scores = on.score_sequences(None, items)
        assert torch.allclose(scores[0], v[0, 0] @ on.item_vectors().T)  # only the one interest
        # training re-draws the routing logits, evaluation uses one fixed draw
        assert torch.equal(on.interests(items)[0], v)
        on.train()
        assert not torch.allclose(on.interests(items)[0][1], on.interests(items)[0][1])


def test_left_align_and_label_aware_readout():
    items = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4], [0, 0, 0, 0]])
    assert left_align(items).tolist() == [[5, 6, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0]]
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    valid = torch.tensor([[True, True, False]])
    assert torch.equal(label_aware_readout(v, valid, torch.tensor([[0.0, 2.0]])), torch.tensor([[0.0, 1.0]]))
    soft = label_aware_readout(v, valid, torch.tensor([[1.0, 1.0]]), hard=False)
    assert torch.allclose(soft, torch.tensor([[0.5, 0.5]]))


def test_cut_batches_hold_the_items_before_the_target(data):
    b = CutBatches(data, 64, max_len=20, min_history=4, samples_per_user=2)
    seqs = data.sequences
    n_rows = 0
    for batch in b.epoch(np.random.default_rng(0)):
        for u, items, t in zip(batch["users"].numpy(), batch["items"].numpy(), batch["targets"].numpy()):
            s = seqs.of(u) + 1
            cut = int(np.flatnonzero(s == t)[0])
            assert cut >= min(4, len(s) - 1)
            hist = s[max(0, cut - 20):cut]
            assert items[20 - len(hist):].tolist() == hist.tolist() and not items[:20 - len(hist)].any()
            assert t not in items
            n_rows += 1
    assert n_rows == 2 * (seqs.lengths >= 2).sum()


def test_log_uniform_sampler_follows_popularity_rank(data):
    torch.manual_seed(0)
    s = LogUniformNegatives(data, 20000)
    ids, log_q = s("cpu")
    assert ids.min() >= 1 and ids.max() <= data.n_items
    assert torch.allclose(log_q[1:].exp().sum().double(), torch.tensor(1.0, dtype=torch.float64), atol=1e-4)
    counts = np.asarray(data.train.sum(0)).ravel()
    top = torch.from_numpy(np.argsort(-counts, kind="stable")[:10] + 1)
    assert torch.isin(ids, top).float().mean() > 0.2  # the 10 most popular items: P ~ log(11)/log(n+1) ~ 0.26


# ------------------------------------------------------------ scoring and retrieval
@pytest.mark.parametrize("name", MODELS)
def test_loss_decreases_on_a_fixed_batch(name, comirec_split, data):
    model = build_model(name, {**SMALL, "loss": "ce"}, comirec_split, seed=0)  # no negatives drawn per step
    batch = next(iter(model.batches(data, 64).epoch(np.random.default_rng(0))))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    torch.manual_seed(0)
    losses = []
    for _ in range(30):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", MODELS)
def test_max_over_interests_ranking_equals_merged_retrieval(name, comirec_split):
    model = build_model(name, SMALL, comirec_split, seed=0).eval()
    history = comirec_split.history("test")
    users = np.unique(comirec_split.test.users)[:16]
    with torch.no_grad():
        scores = model.score(torch.from_numpy(users), history)  # [B, n_items]
        v, valid = model.interest_vectors(torch.from_numpy(users), history)
    assert torch.allclose(scores, torch.einsum("bkd,nd->bkn", v, model.item_vectors()).amax(1))
    seen = history.csr()[users]
    scores[torch.from_numpy(np.repeat(np.arange(len(users)), np.diff(seen.indptr))),
           torch.from_numpy(seen.indices.astype(np.int64))] = float("-inf")
    top = torch.topk(scores, 20, dim=1).indices.numpy()
    ids, s = recommend(model, users, 20, history=history)
    assert (ids == top).all()
    assert not any(set(ids[b]) & set(seen[b].indices) for b in range(len(users)))


@pytest.mark.parametrize("name", ["comirec_sa", "sasrec", "bpr"])
def test_exact_search_equals_faiss_flat_index(name, comirec_split):
    pytest.importorskip("faiss")
    kwargs = SMALL if name == "comirec_sa" else {"max_len": 20, "hidden_size": 16} if name == "sasrec" else {}
    model = build_model(name, kwargs, comirec_split, seed=0)
    users = np.unique(comirec_split.test.users)[:32]
    history = comirec_split.history("test")
    exact_ids, exact_s = recommend(model, users, 30, index="exact", history=history)
    flat_ids, flat_s = recommend(model, users, 30, index="flat", history=history)
    assert (exact_ids == flat_ids).mean() > 0.99  # float summation order may swap near-ties
    assert np.allclose(exact_s, flat_s, atol=1e-5)
    # IVF searching every cluster is exact too; HNSW is approximate but close here
    retr = Retriever(model, "ivf", nlist=8, nprobe=8)
    ivf_ids, _ = retr.recommend(users, 30, history=history)
    assert (ivf_ids == exact_ids).mean() > 0.99
    hnsw_ids, _ = recommend(model, users, 30, index="hnsw", history=history, ef_search=200)
    overlap = np.mean([len(set(a) & set(b)) / 30 for a, b in zip(hnsw_ids, exact_ids)])
    assert overlap > 0.9


def test_item_index_exact_search():
    torch.manual_seed(0)
    items, q = torch.randn(100, 8), torch.randn(5, 8)
    s, i = ItemIndex(items, "exact", chunk=2).search(q, 7)
    ref = torch.topk(q @ items.T, 7, dim=1)
    assert np.array_equal(i, ref.indices.numpy()) and np.allclose(s, ref.values.numpy())
    with pytest.raises(ValueError, match="index must be one of"):
        ItemIndex(items, "l2")


def test_merge_drops_duplicates_and_seen_items():
    # two interests' lists side by side: item 3 in both (best score 0.9), item 7 seen
    ids = np.array([[3, 7, 1, 5, 3, 2, -1]])
    scores = np.array([[0.5, 0.95, 0.4, 0.1, 0.9, 0.3, 0.0]])
    seen = sp.csr_matrix(([1.0], ([0], [7])), shape=(1, 10))
    out_ids, out_s = merge_candidates(scores, ids, 4, seen)
    assert out_ids.tolist() == [[3, 1, 2, 5]]
    assert np.allclose(out_s, [[0.9, 0.4, 0.3, 0.1]])
    out_ids, _ = merge_candidates(scores, ids, 6, seen)
    assert out_ids.tolist() == [[3, 1, 2, 5, -1, -1]]  # fewer than k distinct unseen items


def test_controllable_aggregation_trades_score_for_diversity():
    ids = np.array([[0, 1, 2, 3, 4, 5]])
    scores = np.array([[1.0, 0.95, 0.9, 0.5, 0.45, 0.4]])
    cats = np.array([0, 0, 0, 1, 2, -1])  # item 5 has no category
    plain, _ = merge_candidates(scores, ids, 3, None)
    assert plain.tolist() == [[0, 1, 2]]
    same, _ = merge_candidates(scores, ids, 3, None, cats, 0.0)
    assert same.tolist() == plain.tolist()
    mixed, s = merge_candidates(scores, ids, 3, None, cats, 0.6)
    assert mixed.tolist() == [[0, 3, 4]]  # 0.95 - 0.6 < 0.5: the other categories win
    assert diversity(mixed, cats) == 1.0 and diversity(plain, cats) == 0.0
    assert merge_candidates(scores, ids, 3, None, cats, 0.3)[0].tolist() == [[0, 1, 3]]


# ------------------------------------------------------------ protocol
def test_protocol_users_disjoint_and_history_first_80_percent(ml_small, comirec_split):
    sets = comirec_split.user_sets()
    assert not set(sets["train"]) & set(sets["valid"]) and not set(sets["train"]) & set(sets["test"])
    assert not set(sets["valid"]) & set(sets["test"])
    n = sum(len(v) for v in sets.values())
    assert abs(len(sets["valid"]) / n - 0.1) < 0.02 and abs(len(sets["test"]) / n - 0.1) < 0.02
    hist, test = comirec_split.history("test"), comirec_split.test
    for u in sets["test"][:20]:
        h = hist.of(u)
        t = test.items[test.users == u]
        n_u = len(h) + len(t)
        assert len(h) == int(0.8 * n_u) and not set(h) & set(t)
        h_times = hist.times[hist.indptr[u]:hist.indptr[u + 1]]
        assert h_times.max() <= test.timestamps[test.users == u].min()  # the history comes first
    train_seqs = TrainData.from_split(comirec_split).sequences
    assert (train_seqs.lengths[sets["test"]] == 0).all() and (train_seqs.lengths[sets["valid"]] == 0).all()
    a, b = held_out_users(ml_small.dedup(), seed=3), held_out_users(ml_small.dedup(), seed=3)
    assert np.array_equal(a.test.users, b.test.users)  # seeded
    with pytest.raises(ValueError, match="history_share"):
        held_out_users(ml_small.dedup(), history_share=1.0)


def test_protocol_evaluation_ranks_each_user_from_its_own_history(comirec_split):
    pop = build_model("pop", {}, comirec_split, seed=0)
    pop.fit(TrainData.from_split(comirec_split))
    m = evaluate(pop, comirec_split, "test", ks=(20, 50), metrics=("recall", "hit", "ndcg"))
    assert set(m) == {"recall@20", "recall@50", "hit@20", "hit@50", "ndcg@20", "ndcg@50"}
    assert 0 < m["recall@20"] <= m["recall@50"] <= m["hit@50"] <= 1


@pytest.fixture(scope="module")
def pop_comirec(tmp_path_factory):
    out = tmp_path_factory.mktemp("pop")
    return run_comirec("pop", [f"out_dir={out}", *FAST], quiet=True)["test"]


FAST = ["progress=false", "device=cpu", "item_k=10", "user_k=10", "seed=1"]
# ~5-10 s of one core each: 5 epochs of 20 random cuts per training user (487 users, 10-cores)
BUDGET = ["epochs=5", "max_len=20", "hidden_size=32", "samples_per_user=20", "n_negatives=640", "batch_size=128"]
LR = {"mind": 0.005, "comirec_dr": 0.002, "comirec_sa": 0.005}


@pytest.mark.parametrize("name", MODELS)
def test_model_beats_pop_under_comirec_protocol(name, pop_comirec, tmp_path):
    m = run_comirec(name, [f"out_dir={tmp_path}", *FAST, *BUDGET, f"learning_rate={LR[name]}"], quiet=True)
    assert m["users"]["test"] > 50
    assert m["test"]["recall@50"] > 1.1 * pop_comirec["recall@50"], (name, m["test"], pop_comirec)


def test_retrieval_of_a_cf_model_is_its_own_ranking(comirec_split):
    model = build_model("bpr", {}, comirec_split, seed=0)
    users = np.unique(comirec_split.train.users)[:20]
    ids, _ = recommend(model, users, 10)  # seen = the training matrix
    with torch.no_grad():
        scores = model.score(torch.from_numpy(users))
    seen = model._train_matrix[users]
    scores[torch.from_numpy(np.repeat(np.arange(len(users)), np.diff(seen.indptr))),
           torch.from_numpy(seen.indices.astype(np.int64))] = float("-inf")
    assert (ids == torch.topk(scores, 10, dim=1).indices.numpy()).all()
