"""Every sequence model as a cornac ``NextItemRecommender``: ``from seq.cornac import SASRec, GRU4Rec``.

The classes are made from the model registry (every model registered with family ``seq``,
plus ``Pop``, the popularity baseline of ``python -m seq.train pop``), like
:mod:`gcf.cornac`: each takes the keys of ``python -m seq.train <model>`` (the model's own
keys from ``configs/model/<model>.yaml`` plus the training keys below), stores them under
their own names (cornac's ``clone``, ``GridSearch`` and ``RandomSearch`` work) and is named
``gcf-<Model>`` in cornac's tables. Evaluate them with cornac's ``NextItemEvaluation``.

Training. ``fit(train_set, val_set=None)`` turns cornac's ``SequentialDataset`` into a
:class:`gcf.data.split.Split` and trains through :class:`gcf.trainer.Trainer`. Each cornac
*session* of ``train_set`` is one training sequence (one "user" row of the gcf model), in
row order with its timestamps (cornac requires the rows of a session in chronological
order; ties keep the row order), as cornac's own session models train. With
``NextItemEvaluation.leave_last_out`` a session is a user's whole history. One extra row,
never trained, stands for sessions the model has not seen (it only matters for the models
with a user vector: Caser, FPMC, TransRec).

Validation and early stopping (``valid_metric``, ``eval_step``, ``stopping_step`` as on the
CLI; the best validated epoch is the model):

- with a ``val_set`` (``leave_last_out``, ``GridSearch``): the last item of each validation
  session that continues a training session (its earlier items are that session's training
  sequence, as in ``leave_last_out``) is that row's validation target;
- otherwise, by default (``holdout_valid=True``), the last item of every training sequence of
  at least 3 items is held out for validation (leave-one-out, as the CLI's split); the model
  is not refitted with it.
- ``holdout_valid=False`` and no usable ``val_set``: exactly ``epochs`` epochs on everything.

A validation target that repeats an item of its row's training sequence is skipped (the
toolkit keeps training and validation pairs disjoint), and that item stays in training.

Scoring. ``score(user_idx, history_items, **kwargs)`` builds a :class:`gcf.data.sequences.Sequences`
holding just that history (its timestamps from the dataset cornac is ranking, found through
``history_mapped_ids``, or ``history_times=``) and calls the model's ``score(users,
history)``; the row is the training row of the session being ranked (from ``kwargs``'s
``history_mapped_ids``/``session_indices``; for a direct call without them, the user's most
recent training session). Items unknown at training time are dropped from the history. With
``mask_seen=True`` (the toolkit's default) the history's items get ``-inf`` (never ranked),
which cornac's evaluation does not do by itself; set ``mask_seen=False`` for data where items
repeat. An empty history scores by training popularity.

Example::

    import cornac
    from cornac.eval_methods import NextItemEvaluation
    from seq.cornac import SASRec, Pop
    # data: [(user, item, rating, timestamp), ...]
    ev = NextItemEvaluation.leave_last_out(data, exclude_unknowns=True)
    cornac.Experiment(ev, [Pop(), SASRec(max_len=50)], [cornac.metrics.HitRatio(10), cornac.metrics.NDCG(10)]).run()
"""
from __future__ import annotations

import numpy as np
import torch
from cornac.exception import ScoreException
from cornac.models.recommender import NextItemRecommender, Recommender

import seq.models  # noqa: F401  (registers the sequence models)
from gcf.cornac import GCFRecommender, make_wrapper
from gcf.data.interactions import Interactions
from gcf.data.sequences import Sequences
from gcf.data.split import Split
from gcf.models import build_model
from gcf.models.base import item_popularity
from gcf.models.registry import FAMILIES, MODELS
from gcf.trainer import Trainer

# training keys a wrapper takes besides the model's own (mask_seen also decides cornac's ranking)
TRAIN_KEYS = ("epochs", "batch_size", "learning_rate", "weight_decay", "seed", "device", "eval_step",
              "stopping_step", "valid_metric", "mask_seen")
UNSEEN = "<unseen session>"


class SeqNextItemRecommender(GCFRecommender, NextItemRecommender):
    """Base of the generated sequence wrappers (see the module docstring)."""

    wrapper_defaults = {"holdout_valid": True}

    @classmethod
    def resolve(cls, key: str, overrides=()):
        from gcf.config import resolve_config

        return resolve_config(key, overrides, family="seq")  # Pop too: the sequence protocol's keys

    def _check_params(self) -> None:
        self._config()
        if not isinstance(self.holdout_valid, (bool, np.bool_)):
            raise ValueError(f"{type(self).__name__}: holdout_valid must be true or false, got {self.holdout_valid!r}")
        self.holdout_valid = bool(self.holdout_valid)

    # ------------------------------------------------------------ training
    def fit(self, train_set, val_set=None):
        Recommender.fit(self, train_set, val_set)
        if not self.trainable:
            return self
        split, self._rows = seq_split_from_cornac(train_set, val_set, self.holdout_valid)
        cfg, kwargs = self._config()
        self.model = build_model(self.model_key, kwargs, split, int(cfg["seed"]))
        self.trainer_metrics = Trainer(self.model, split, cfg).fit()
        self.model.eval()
        self._popularity = item_popularity(self.model._train_matrix)
        self._time_sources = [d for d in (train_set, val_set) if d is not None]
        self.ignored_attrs = list(set(self.ignored_attrs) | {"_time_sources"})
        return self

    def transform(self, test_set):
        """Remember the dataset being ranked (cornac calls this first): the histories' timestamps
        are read from it."""
        sources = getattr(self, "_time_sources", [])
        if test_set is not None and all(d is not test_set for d in sources):
            self._time_sources = [*sources, test_set]

    # ------------------------------------------------------------- scoring
    def _row(self, user_idx, kwargs) -> int:
        ids, sessions = kwargs.get("history_mapped_ids"), kwargs.get("session_indices")
        if ids is not None and len(ids) and sessions is not None:
            return self._rows["session"].get(int(sessions[ids[0]]), self._rows["unseen"])
        return self._rows["user"].get(int(user_idx), self._rows["unseen"])

    def _history_times(self, kwargs, n: int):
        if kwargs.get("history_times") is not None:
            return np.asarray(kwargs["history_times"], dtype=np.int64)
        ids, sessions = kwargs.get("history_mapped_ids"), kwargs.get("session_indices")
        if ids is None or sessions is None:
            return None
        for d in getattr(self, "_time_sources", []):
            if d.session_indices is sessions and d.timestamps is not None:
                return np.asarray(d.timestamps)[np.asarray(ids, dtype=np.int64)].astype(np.int64)
        return None

    def score(self, user_idx, history_items=None, **kwargs):
        if self.model is None:
            raise ScoreException(f"{self.name} is not fitted")
        n_items = self.model.n_items
        items = np.asarray([] if history_items is None else history_items, dtype=np.int64).ravel()
        times = self._history_times(kwargs, len(items))
        known = (items >= 0) & (items < n_items)
        items = items[known]
        if times is not None:
            times = times[known] if len(times) == len(known) else None
        if len(items) == 0:
            return self._popularity.astype(np.float64).copy()
        row = self._row(user_idx, kwargs)
        n_rows = self.model.n_users
        indptr = np.where(np.arange(n_rows + 1) > row, len(items), 0).astype(np.int64)
        history = Sequences(indptr, items, times, n_items)
        with torch.no_grad():
            scores = self.model.score(torch.tensor([row], device=self.model.device), history)
        scores = scores[0].double().cpu().numpy()
        if self.mask_seen:
            scores[items] = -np.inf
        return scores

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_time_sources", None)
        return state


def seq_split_from_cornac(train_set, val_set=None, holdout_valid: bool = True) -> tuple[Split, dict]:
    """cornac's ``SequentialDataset`` as a :class:`Split`: one row per training session (row
    order and timestamps kept) plus one untrained row for unseen sessions; validation as in
    the module docstring. Returns the split and the maps ``{"session": sid -> row, "user":
    user -> row of their latest session, "unseen": row}``."""
    n_items = train_set.num_items
    item_ids = np.array(sorted(train_set.iid_map, key=train_set.iid_map.get), dtype=str)[:n_items]
    sessions = train_set.sessions  # sid -> row indices in order
    sids = list(sessions)
    row_of = {int(sid): r for r, sid in enumerate(sids)}
    sid_raw = {v: k for k, v in train_set.sid_map.items()}
    user_ids = np.array([str(sid_raw.get(s, s)) for s in sids] + [UNSEEN], dtype=str)
    order = np.concatenate([np.asarray(sessions[s], dtype=np.int64) for s in sids])
    lengths = np.array([len(sessions[s]) for s in sids], dtype=np.int64)
    rows = np.repeat(np.arange(len(sids), dtype=np.int64), lengths)
    items = np.asarray(train_set.uir_tuple[1], dtype=np.int64)[order]
    ts = None if train_set.timestamps is None else np.asarray(train_set.timestamps, dtype=np.float64)[order]
    users_of = np.asarray(train_set.uir_tuple[0], dtype=np.int64)[order]

    def inter(mask, source):
        return Interactions(rows[mask], items[mask], user_ids, item_ids,
                            timestamps=None if ts is None else ts[mask], source=source)

    in_valid = np.zeros(len(order), dtype=bool)
    valid_rows, valid_items, valid_ts = [], [], []
    if val_set is not None:  # the last item of each validation session that continues a training one
        v_items = np.asarray(val_set.uir_tuple[1], dtype=np.int64)
        v_ts = None if val_set.timestamps is None else np.asarray(val_set.timestamps, dtype=np.float64)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        for sid, idx in val_set.sessions.items():
            r = row_of.get(int(sid))
            if r is None or len(idx) < 2:
                continue
            seq = v_items[idx]
            train_seq = items[starts[r]:starts[r + 1]]
            if len(seq) != len(train_seq) + 1 or not np.array_equal(seq[:-1], train_seq):
                continue
            if seq[-1] >= n_items or seq[-1] in train_seq:
                continue
            valid_rows.append(r)
            valid_items.append(int(seq[-1]))
            valid_ts.append(0.0 if v_ts is None else v_ts[idx[-1]])
    if not valid_rows and holdout_valid:  # leave-one-out inside the training sequences
        ends = np.cumsum(lengths) - 1
        for r in np.flatnonzero(lengths >= 3):
            last = ends[r]
            if items[last] not in items[last - lengths[r] + 1:last]:
                in_valid[last] = True
    train = inter(~in_valid, "cornac train_set")
    if valid_rows:
        valid = Interactions(np.array(valid_rows), np.array(valid_items), user_ids, item_ids,
                             timestamps=None if ts is None else np.array(valid_ts), source="cornac val_set")
    else:
        valid = inter(in_valid, "cornac train_set (held-out last items)")
    empty = inter(np.zeros(len(order), dtype=bool), "cornac (no test)")
    # each user's latest session: the one holding their latest interaction (ties: the later row)
    by = np.lexsort((np.arange(len(order)), np.zeros(len(order)) if ts is None else ts, users_of))
    last = by[np.r_[users_of[by][1:] != users_of[by][:-1], True]]
    latest = dict(zip(users_of[last].tolist(), rows[last].tolist()))
    return Split(train, valid, empty, "cornac SequentialDataset"), {"session": row_of, "user": latest,
                                                                     "unseen": len(sids)}


SEQ_MODELS = tuple(k for k in MODELS if FAMILIES.get(k) == "seq")
WRAPPERS = {key: make_wrapper(key, MODELS[key], SeqNextItemRecommender, TRAIN_KEYS, module=__name__)
            for key in ("pop", *SEQ_MODELS)}
globals().update({w.__name__: w for w in WRAPPERS.values()})
__all__ = ["SeqNextItemRecommender", "WRAPPERS", "seq_split_from_cornac", *[w.__name__ for w in WRAPPERS.values()]]
