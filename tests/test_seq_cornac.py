"""Sequence models inside cornac: a ``NextItemEvaluation`` Experiment end to end on real data
(SASRec beats popularity, cornac's validation numbers equal the trainer's), the sequences and
validation built from cornac's ``SequentialDataset``, scoring a given history, timestamps
reaching TiSASRec, save/load."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

cornac = pytest.importorskip("cornac")
from cornac.eval_methods import NextItemEvaluation  # noqa: E402

import seq.cornac as sc  # noqa: E402
from gcf.data.datasets import EMBEDDED_DIR  # noqa: E402
from gcf.data.sequences import Sequences  # noqa: E402

METRICS = [cornac.metrics.HitRatio(10), cornac.metrics.NDCG(10)]
SASREC = dict(epochs=4, max_len=50, learning_rate=0.005, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def loo():
    """ml-latest-small (items with >= 20 ratings: 610 users, ~1.3k items), per-user
    leave-last-out in cornac: a session is a user's whole history."""
    df = pd.read_csv(EMBEDDED_DIR / "ml-latest-small" / "ratings.csv")
    counts = df.movieId.value_counts()
    df = df[df.movieId.isin(counts[counts >= 20].index)]
    data = list(zip(df.userId.astype(str), df.movieId.astype(str), df.rating.astype(float),
                    df.timestamp.astype(int)))
    return NextItemEvaluation.leave_last_out(data, exclude_unknowns=True)


@pytest.fixture(scope="module")
def experiment(loo):
    pop, sasrec = sc.Pop(), sc.SASRec(**SASREC)
    exp = cornac.Experiment(loo, [pop, sasrec], METRICS, verbose=False, save_dir=None)
    exp.run()
    return exp, pop, sasrec


def test_experiment_sasrec_beats_popularity(experiment):
    exp, pop, sasrec = experiment
    test = {r.model_name: r.metric_avg_results for r in exp.result}
    assert set(test) == {"gcf-Pop", "gcf-SASRec"}
    assert test["gcf-SASRec"]["NDCG@10"] > 1.2 * test["gcf-Pop"]["NDCG@10"]
    assert test["gcf-SASRec"]["HitRatio@10"] > 1.1 * test["gcf-Pop"]["HitRatio@10"]
    # cornac's val_set was the trainer's validation: cornac ranking its validation sessions
    # through score(user_idx, history_items) gives the trainer's own number (same targets,
    # same histories, seen items masked)
    val = {r.model_name: r.metric_avg_results for r in exp.val_result}
    for m in (pop, sasrec):
        assert m.trainer_metrics["valid"]["ndcg@10"] == pytest.approx(val[m.name]["NDCG@10"], abs=1e-6)
        assert m.trainer_metrics["valid"]["hit@10"] == pytest.approx(val[m.name]["HitRatio@10"], abs=1e-6)


def test_split_keeps_cornac_sessions_in_order(loo):
    train, val = loo.train_set, loo.val_set
    split, rows = sc.seq_split_from_cornac(train, val)
    seqs = Sequences.from_interactions(split.train)
    sid = next(iter(train.sessions))
    r = rows["session"][sid]
    np.testing.assert_array_equal(seqs.of(r), train.uir_tuple[1][train.sessions[sid]])
    assert split.n_users == train.num_sessions + 1 and rows["unseen"] == train.num_sessions  # + the unseen row
    assert len(seqs.of(rows["unseen"])) == 0
    # validation: the last item of each validation session, which continues its training session
    v = val.sessions[sid]
    assert split.valid.items[split.valid.users == r].tolist() == [val.uir_tuple[1][v[-1]]]
    assert len(split.valid) == train.num_sessions
    # without a val_set: the last item of every training sequence of >= 3 items is held out
    held, _ = sc.seq_split_from_cornac(train, None)
    assert len(held.valid) == int((seqs.lengths[:-1] >= 3).sum())
    assert held.valid.items[held.valid.users == r].tolist() == [seqs.of(r)[-1]]
    assert len(held.train) + len(held.valid) == len(train.uir_tuple[0])
    none, _ = sc.seq_split_from_cornac(train, None, holdout_valid=False)
    assert len(none.valid) == 0


def test_score_of_a_given_history(experiment, loo, tmp_path):
    _, _, sasrec = experiment
    hist = loo.train_set.uir_tuple[1][loo.train_set.sessions[0]][-5:]
    s = sasrec.score(0, hist)
    assert s.shape == (loo.train_set.num_items,) and np.isneginf(s[hist]).all()
    # what the model scores from a Sequences holding that history
    row = sasrec._rows["user"][0]
    indptr = np.where(np.arange(sasrec.model.n_users + 1) > row, len(hist), 0)
    with torch.no_grad():
        direct = sasrec.model.score(torch.tensor([row]), Sequences(indptr, hist, None, len(s)))[0].numpy()
    keep = ~np.isin(np.arange(len(s)), hist)
    np.testing.assert_allclose(s[keep], direct[keep], rtol=1e-5, atol=1e-6)
    short = sasrec.score(0, hist[:2])  # the history decides the ranking (not only the masked items)
    top = lambda x: [int(i) for i in np.argsort(-np.where(keep, x, -np.inf), kind="stable")[:10]]  # noqa: E731
    assert top(s) != top(short) and not np.allclose(s[keep], short[keep], atol=1e-3)
    # an empty history: training popularity; items unknown at training time are dropped
    np.testing.assert_array_equal(sasrec.score(0, []), sasrec._popularity)
    np.testing.assert_allclose(sasrec.score(0, [*hist, 10 ** 6])[keep], s[keep], rtol=1e-6)
    # save / load keeps the scores
    loaded = cornac.models.Recommender.load(sasrec.save(str(tmp_path)))
    np.testing.assert_allclose(loaded.score(0, hist), s, rtol=1e-6)


def test_tisasrec_gets_the_histories_timestamps(loo):
    # TiSASRec refuses to score without times: the Experiment (validation and test ranking) runs
    # only if the wrapper finds the timestamps of every ranked history in the dataset cornac ranks
    m = sc.TiSASRec(epochs=1, max_len=20, hidden_size=16, batch_size=256, device="cpu")
    exp = cornac.Experiment(loo, [m], METRICS, verbose=False, save_dir=None)
    exp.run()
    assert np.isfinite(exp.result[0].metric_avg_results["NDCG@10"])
    assert exp.val_result[0].metric_avg_results["NDCG@10"] == pytest.approx(m.trainer_metrics["valid"]["ndcg@10"],
                                                                           abs=1e-6)
    hist = [1, 2, 3]
    with pytest.raises(ValueError, match="timestamps"):
        m.score(0, hist)  # a direct call without times
    s = m.score(0, hist, history_times=[100, 200, 300])
    assert not np.allclose(s, m.score(0, hist, history_times=[100, 200 + 10 ** 7, 300 + 10 ** 7]))
