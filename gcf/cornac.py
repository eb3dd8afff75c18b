"""Every gcf model as a cornac ``Recommender``: ``from gcf.cornac import LightGCN, VAECF``.

The classes are made from the model registry, not written out: each takes the same keys as
``python -m gcf.train <model>`` (the model's own keys from ``configs/model/<model>.yaml`` plus
the training keys below), stores them under their own names (so cornac's ``clone``,
``GridSearch`` and ``RandomSearch`` work), and is named ``gcf-<Model>`` in cornac's tables.

``fit(train_set, val_set=None)`` reads cornac's training matrix and id maps, trains through
:class:`gcf.trainer.Trainer` (early stopping on ``val_set`` when given, else a fixed number
of epochs), and ``score(user_idx, item_idx=None)`` serves cornac's per-user loop from scores
computed in batches of ``score_batch_size`` users. Models whose score is a dot product of a
user and an item vector also implement cornac's ``ANNMixin``.

cornac's ``train_set`` holds every rating; like the CLI, ``rating_threshold=4.0`` trains on the
ratings >= 4 only (how Mult-VAE binarises MovieLens). In cornac's ranking protocol the
training items rated below the threshold are not masked, so this matters there
(``benchmarks/README.md``). Without a ``val_set`` exactly ``epochs`` epochs are trained, and
the CLI defaults assume early stopping: pass ``epochs=`` (e.g. ``VAECF(epochs=20,
batch_size=100)`` on ml-100k).

Example::

    import cornac
    from cornac.eval_methods import RatioSplit
    from gcf.cornac import LightGCN, EASE
    data = cornac.datasets.movielens.load_feedback(variant="100K")
    rs = RatioSplit(data, test_size=0.2, rating_threshold=4.0, seed=123)
    cornac.Experiment(rs, [LightGCN(epochs=100), EASE()], [cornac.metrics.Recall(20)]).run()
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
from cornac.exception import ScoreException
from cornac.models.recommender import MEASURE_DOT, ANNMixin, Recommender

from .config import resolve_config
from .data.interactions import Interactions
from .data.split import Split
from .models import GCF_MODELS, MODELS, build_model
from .trainer import Trainer

# training keys a wrapper takes besides the model's own
TRAIN_KEYS = ("epochs", "batch_size", "learning_rate", "weight_decay", "seed", "device", "eval_step",
              "stopping_step", "valid_metric", "rating_threshold")


class GCFRecommender(Recommender):
    """Base of the generated wrappers; ``model_key`` names the registry entry."""

    model_key: str = ""
    param_names: tuple = ()

    def __init__(self, name=None, trainable=True, verbose=False, score_batch_size=1024, **params):
        super().__init__(name=name or f"gcf-{MODELS[self.model_key].__name__}", trainable=trainable,
                         verbose=verbose)
        unknown = set(params) - set(self.param_names)
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown parameter(s) {sorted(unknown)}; "
                             f"valid: {', '.join(self.param_names)}")
        defaults = resolve_config(self.model_key)[0]
        for key in self.param_names:
            setattr(self, key, params.get(key, defaults[key]))
        self.score_batch_size = score_batch_size
        self.model = None
        self._block = (None, None)  # (first user of the cached block, scores [B, I])

    # ------------------------------------------------------------ training
    def fit(self, train_set, val_set=None):
        Recommender.fit(self, train_set, val_set)
        if not self.trainable:
            return self
        split = _split_from_cornac(train_set, val_set, self.rating_threshold)
        overrides = {k: getattr(self, k) for k in self.param_names}
        overrides["progress"] = bool(self.verbose)
        if val_set is None:  # no validation: train the given number of epochs
            overrides["eval_step"] = 10 ** 9
        cfg, kwargs = resolve_config(self.model_key, overrides)
        self.model = build_model(self.model_key, kwargs, split, int(cfg["seed"]))
        self.trainer_metrics = Trainer(self.model, split, cfg).fit()
        self.model.eval()
        self._block = (None, None)
        return self

    # ------------------------------------------------------------- scoring
    def _user_scores(self, user_idx: int) -> np.ndarray:
        start, block = self._block
        if start is None or not (start <= user_idx < start + len(block)):
            start = (user_idx // self.score_batch_size) * self.score_batch_size
            users = torch.arange(start, min(start + self.score_batch_size, self.model.n_users))
            with torch.no_grad():
                block = self.model.score(users.to(self.model.device)).float().cpu().numpy()
            self._block = (start, block)
        return block[user_idx - start]

    def score(self, user_idx, item_idx=None):
        if self.model is None:
            raise ScoreException(f"{self.name} is not fitted")
        if user_idx is None or not (0 <= int(user_idx) < self.model.n_users):
            raise ScoreException(f"Can't make score prediction for user {user_idx}")
        scores = self._user_scores(int(user_idx))
        if item_idx is None:
            return scores
        if np.any(np.asarray(item_idx) >= self.model.n_items):
            raise ScoreException(f"Can't make score prediction for item {item_idx}")
        return scores[item_idx]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_block"] = (None, None)
        return state


class DotProductANN(ANNMixin):
    """cornac's ANN interface for models scored by ``user_vector . item_vector``."""

    def get_vector_measure(self):
        return MEASURE_DOT

    def get_user_vectors(self):
        return self.model.latents()[0].cpu().numpy()

    def get_item_vectors(self):
        return self.model.latents()[1].cpu().numpy()


def _split_from_cornac(train_set, val_set, rating_threshold=None) -> Split:
    """cornac's sets as a :class:`Split` over cornac's own user/item indices; with
    ``rating_threshold`` only ratings >= it are training (and validation) interactions, as
    ``rating_threshold=`` does on the CLI (cornac's ``train_set`` holds every rating)."""
    n_users, n_items = train_set.num_users, train_set.num_items
    user_ids = np.array(sorted(train_set.uid_map, key=train_set.uid_map.get), dtype=str)[:n_users]
    item_ids = np.array(sorted(train_set.iid_map, key=train_set.iid_map.get), dtype=str)[:n_items]

    def part(dataset, source):
        if dataset is None:
            return Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64), user_ids, item_ids, source=source)
        u, i, r = dataset.uir_tuple
        keep = (u < n_users) & (i < n_items)  # cornac's global maps may hold unseen ids
        return Interactions(u[keep], i[keep], user_ids, item_ids, ratings=np.asarray(r)[keep], source=source)

    train = part(train_set, "cornac train_set").implicit(rating_threshold)
    valid = part(val_set, "cornac val_set")
    if val_set is not None:
        valid = valid.implicit(rating_threshold)
    if len(train) == 0:
        raise ValueError(f"cornac train_set has no rating >= rating_threshold={rating_threshold}")
    return Split(train, valid, part(None, "cornac (no test)"), "cornac")


def _make_wrapper(key: str, model_cls) -> type:
    defaults, model_keys = resolve_config(key)  # the keys of configs/model/<key>.yaml, as the CLI
    params = tuple(model_keys) + TRAIN_KEYS
    bases = (GCFRecommender, DotProductANN) if getattr(model_cls, "score_is_dot", False) else (GCFRecommender,)
    cls = type(model_cls.__name__, bases, {"model_key": key, "param_names": params,
                                           "__doc__": f"cornac wrapper of :class:`{model_cls.__module__}."
                                                      f"{model_cls.__name__}`.\n\n{model_cls.__doc__ or ''}",
                                           "__module__": __name__})

    def __init__(self, name=None, trainable=True, verbose=False, score_batch_size=1024, **kw):
        GCFRecommender.__init__(self, name, trainable, verbose, score_batch_size, **kw)

    # an explicit signature, so cornac's clone()/GridSearch find every parameter by introspection
    P = inspect.Parameter
    __init__.__signature__ = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("name", P.KEYWORD_ONLY, default=None),
         P("trainable", P.KEYWORD_ONLY, default=True), P("verbose", P.KEYWORD_ONLY, default=False),
         P("score_batch_size", P.KEYWORD_ONLY, default=1024)]
        + [P(k, P.KEYWORD_ONLY, default=defaults[k]) for k in params])
    cls.__init__ = __init__
    return cls


WRAPPERS = {key: _make_wrapper(key, MODELS[key]) for key in GCF_MODELS}
globals().update({w.__name__: w for w in WRAPPERS.values()})
__all__ = ["GCFRecommender", "WRAPPERS", *[w.__name__ for w in WRAPPERS.values()]]
