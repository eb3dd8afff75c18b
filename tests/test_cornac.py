"""gcf models inside cornac: Experiment end to end against a baseline, early stopping without a
``val_set`` (the held-out slice), GridSearch/RandomSearch picking the better setting,
save/load, ANN vectors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

cornac = pytest.importorskip("cornac")
from cornac.eval_methods import RatioSplit  # noqa: E402
from cornac.exception import ScoreException  # noqa: E402
from cornac.hyperopt import Discrete, GridSearch, RandomSearch  # noqa: E402

import gcf.cornac as gc  # noqa: E402
from gcf.data.datasets import EMBEDDED_DIR  # noqa: E402

# BPR settings that learn in a few epochs on the small data below
FAST_BPR = dict(embedding_size=16, batch_size=1024, learning_rate=0.01, device="cpu")


@pytest.fixture(scope="module")
def ratio_split():
    df = pd.read_csv(EMBEDDED_DIR / "ml-latest-small" / "ratings.csv")
    counts = df.movieId.value_counts()
    df = df[df.movieId.isin(counts[counts >= 20].index)]  # ~1.3k items: a fast EASE
    data = list(zip(df.userId.astype(str), df.movieId.astype(str), df.rating.astype(float)))
    return RatioSplit(data, test_size=0.2, val_size=0.1, rating_threshold=0.5, seed=123, exclude_unknowns=True,
                      verbose=False)


def _val_ndcg(model, split) -> float:
    from cornac.eval_methods import ranking_eval

    return ranking_eval(model, [cornac.metrics.NDCG(20)], split.train_set, split.val_set,
                        rating_threshold=split.rating_threshold, exclude_unknowns=True)[0][0]


def test_parameters_are_checked_and_cloned():
    with pytest.raises(ValueError, match="n_layer"):
        gc.LightGCN(n_layer=2)
    with pytest.raises(ValueError, match="holdout_valid"):
        gc.LightGCN(holdout_valid=1.5)
    with pytest.raises(ValueError, match="'learning_rate' expects a number"):
        gc.LightGCN(learning_rate="fast")
    m = gc.LightGCN(n_layers=2, learning_rate=0.01, epochs=7, embedding_size=16, holdout_valid=0.2)
    c = m.clone()
    assert (c.n_layers, c.learning_rate, c.epochs, c.embedding_size, c.holdout_valid) == (2, 0.01, 7, 16, 0.2)
    c2 = m.clone({"n_layers": np.int64(4)})  # what RandomSearch samples
    assert c2.n_layers == 4 and type(c2.n_layers) is int and c2.epochs == 7


def test_experiment_end_to_end_and_scores(ratio_split, tmp_path):
    lgcn = gc.LightGCN(epochs=8, learning_rate=0.01, embedding_size=32, device="cpu")
    ease = gc.EASE(reg_weight=100.0)
    pop = gc.Pop()
    exp = cornac.Experiment(ratio_split, [pop, ease, lgcn],
                            [cornac.metrics.Recall(20), cornac.metrics.NDCG(20)], verbose=False)
    exp.run()
    res = {r.model_name: r.metric_avg_results for r in exp.result}
    assert set(res) == {"gcf-Pop", "gcf-EASE", "gcf-LightGCN"}
    assert res["gcf-EASE"]["NDCG@20"] > 1.1 * res["gcf-Pop"]["NDCG@20"]
    assert res["gcf-LightGCN"]["Recall@20"] > res["gcf-Pop"]["Recall@20"]
    assert lgcn.trainer_metrics["valid"]  # cornac's val_set was used for early stopping

    n_items = ratio_split.train_set.num_items
    s = lgcn.score(0)
    assert s.shape == (n_items,) and np.isfinite(s).all()
    assert lgcn.score(0, 3) == pytest.approx(s[3])
    with pytest.raises(ScoreException):
        lgcn.score(ratio_split.train_set.num_users + 5)

    # ANN: user vectors . item vectors reproduce the scores
    assert lgcn.get_vector_measure() == cornac.models.recommender.MEASURE_DOT
    u, i = lgcn.get_user_vectors(), lgcn.get_item_vectors()
    np.testing.assert_allclose(u[0] @ i.T, s, rtol=1e-4, atol=1e-5)
    assert not isinstance(ease, cornac.models.recommender.ANNMixin)  # EASE is not a dot product

    # save / load
    path = lgcn.save(str(tmp_path))
    loaded = cornac.models.Recommender.load(path)
    np.testing.assert_allclose(loaded.score(0), s, rtol=1e-6)


def test_holdout_split_per_user(ratio_split):
    split = gc._split_from_cornac(ratio_split.train_set, None)
    held = gc.holdout_split(split, 0.1, seed=7)
    n = np.bincount(split.train.users, minlength=split.n_users)
    n_valid = np.bincount(held.valid.users, minlength=split.n_users)
    np.testing.assert_array_equal(n_valid, np.floor(0.1 * n + 1e-9).astype(int))
    assert len(held.train) + len(held.valid) == len(split.train)
    key = lambda p: set((p.users * split.n_items + p.items).tolist())  # noqa: E731
    assert key(held.train) | key(held.valid) == key(split.train) and not key(held.train) & key(held.valid)
    assert key(gc.holdout_split(split, 0.1, seed=7).valid) == key(held.valid)  # seeded
    assert key(gc.holdout_split(split, 0.1, seed=8).valid) != key(held.valid)


def test_without_val_set_early_stops_on_a_held_out_slice(ratio_split):
    train = ratio_split.train_set
    # no val_set: 10% of each user's training interactions are held out and early stopping
    # ends the run long before the upper bound of epochs (a high learning rate overfits fast)
    m = gc.BPR(**{**FAST_BPR, "learning_rate": 0.05}, epochs=200, stopping_step=2, refit=False).fit(train)
    tm = m.trainer_metrics
    assert tm["valid"] and tm["epochs"] < 50 and tm["best_epoch"] == tm["epochs"] - 2
    # holdout_valid=0: exactly `epochs` epochs on every training interaction, no validation
    m0 = gc.BPR(**FAST_BPR, epochs=3, holdout_valid=0).fit(train)
    assert m0.trainer_metrics["epochs"] == 3 and m0.trainer_metrics["valid"] == {}
    assert m0.model._train_matrix.nnz == len(train.uir_tuple[0]) > m.model._train_matrix.nnz
    # refit=True (the default): then again from scratch on every interaction for the best number of epochs
    r = gc.BPR(**{**FAST_BPR, "learning_rate": 0.05}, epochs=200, stopping_step=2).fit(train)
    assert r.trainer_metrics["best_epoch"] == tm["best_epoch"]  # the same held-out run first
    assert r.trainer_metrics["refit"]["epochs"] == tm["best_epoch"] and r.trainer_metrics["refit"]["valid"] == {}
    assert r.model._train_matrix.nnz == len(train.uir_tuple[0])
    # closed-form models have nothing to stop and end fitted on everything; EASE first picks its
    # lambda on the held-out slice (reg_grid), then fits on all the data at it
    e = gc.EASE(reg_grid=[1.0, 1e6]).fit(train)
    assert e.model._train_matrix.nnz == len(train.uir_tuple[0])
    assert e.trainer_metrics["selected"]["reg_weight"] in (1.0, 1e6) and e.trainer_metrics["valid"]
    ref = gc.EASE(reg_weight=e.trainer_metrics["selected"]["reg_weight"]).fit(train)  # a number: no search
    assert torch.equal(e.model.weights, ref.model.weights) and ref.trainer_metrics["valid"] == {}
    assert gc.Pop().fit(train).model._train_matrix.nnz == len(train.uir_tuple[0])


def test_grid_search_picks_the_better_learning_rate(ratio_split):
    # lr 1e-7 leaves the random initial embeddings in place; grid order is sorted and a tie
    # keeps the first, so picking 0.01 (the second) means it scored strictly higher
    gs = GridSearch(model=gc.BPR(**FAST_BPR, epochs=4), space=[Discrete("learning_rate", [0.01, 1e-7])],
                    metric=cornac.metrics.NDCG(20), eval_method=ratio_split)
    gs.fit(ratio_split.train_set, ratio_split.val_set)
    assert gs.best_params == {"learning_rate": 0.01}
    assert gs.best_model.learning_rate == 0.01
    bad = gc.BPR(**{**FAST_BPR, "learning_rate": 1e-7}, epochs=4).fit(ratio_split.train_set, ratio_split.val_set)
    assert gs.best_score > 2 * _val_ndcg(bad, ratio_split)


def test_random_search_picks_the_better_setting(ratio_split):
    space = [Discrete("learning_rate", [1e-7, 0.01]), Discrete("epochs", [2, 3])]
    rs = RandomSearch(model=gc.BPR(**FAST_BPR), space=space, metric=cornac.metrics.NDCG(20),
                      eval_method=ratio_split, n_trails=3)
    tried = rs._build_param_set()  # seeded by the model's seed: the same draws as in fit
    assert {p["learning_rate"] for p in tried} == {1e-7, 0.01}
    rs.fit(ratio_split.train_set, ratio_split.val_set)
    assert rs.best_params["learning_rate"] == 0.01
    assert type(rs.best_model.epochs) is int and rs.best_model.epochs in (2, 3)  # numpy draws made plain
    assert rs.best_model.trainer_metrics["epochs"] <= rs.best_model.epochs


def test_rating_threshold_trains_on_high_ratings_only(ratio_split):
    train = ratio_split.train_set
    n_high = int((np.asarray(train.uir_tuple[2]) >= 4.0).sum())
    all_ratings = gc.Pop().fit(train)
    high = gc.Pop(rating_threshold=4.0).fit(train)
    assert all_ratings.model._train_matrix.nnz == len(train.uir_tuple[0]) > n_high
    assert high.model._train_matrix.nnz == n_high
    assert high.model.n_users == all_ratings.model.n_users  # cornac's indices are kept
    with pytest.raises(ValueError, match="rating_threshold=9"):
        gc.Pop(rating_threshold=9.0).fit(train)
