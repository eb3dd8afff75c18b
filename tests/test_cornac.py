"""gcf models inside cornac: Experiment end to end, clone/GridSearch, save/load, ANN vectors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

cornac = pytest.importorskip("cornac")
from cornac.eval_methods import RatioSplit  # noqa: E402
from cornac.exception import ScoreException  # noqa: E402

import gcf.cornac as gc  # noqa: E402
from gcf.data.datasets import EMBEDDED_DIR  # noqa: E402
from gcf.models import MODELS  # noqa: E402


@pytest.fixture(scope="module")
def ratio_split():
    df = pd.read_csv(EMBEDDED_DIR / "ml-latest-small" / "ratings.csv")
    counts = df.movieId.value_counts()
    df = df[df.movieId.isin(counts[counts >= 20].index)]  # ~1.3k items: a fast EASE
    data = list(zip(df.userId.astype(str), df.movieId.astype(str), df.rating.astype(float)))
    return RatioSplit(data, test_size=0.2, val_size=0.1, rating_threshold=0.5, seed=123, exclude_unknowns=True,
                      verbose=False)


def test_one_wrapper_per_registered_model():
    assert {w.model_key for w in gc.WRAPPERS.values()} == set(MODELS)
    for key, cls in MODELS.items():
        wrapper = getattr(gc, cls.__name__)
        assert wrapper().name == f"gcf-{cls.__name__}"
        assert issubclass(wrapper, cornac.models.Recommender)


def test_same_keys_as_the_cli():
    from gcf.config import resolve_config

    _, kwargs = resolve_config("lightgcn")
    m = gc.LightGCN()
    for k, v in kwargs.items():
        assert getattr(m, k) == v
    assert set(kwargs) <= set(gc.LightGCN._get_init_params())
    with pytest.raises(ValueError, match="n_layer"):
        gc.LightGCN(n_layer=2)


def test_clone_round_trips_parameters():
    m = gc.LightGCN(n_layers=2, learning_rate=0.01, epochs=7, embedding_size=16)
    c = m.clone()
    assert (c.n_layers, c.learning_rate, c.epochs, c.embedding_size) == (2, 0.01, 7, 16)
    c2 = m.clone({"n_layers": 4})
    assert c2.n_layers == 4 and c2.epochs == 7


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


def test_grid_search_runs(ratio_split):
    from cornac.hyperopt import Discrete, GridSearch

    gs = GridSearch(model=gc.EASE(), space=[Discrete("reg_weight", [10.0, 500.0])],
                    metric=cornac.metrics.NDCG(20), eval_method=ratio_split)
    gs.fit(ratio_split.train_set, ratio_split.val_set)
    assert gs.best_params["reg_weight"] in (10.0, 500.0)
    assert gs.best_model.reg_weight == gs.best_params["reg_weight"]


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
