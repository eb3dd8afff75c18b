"""Every gcf model as a cornac ``Recommender``: ``from gcf.cornac import LightGCN, VAECF``.

The classes are made from the model registry, not written out: each takes the same keys as
``python -m gcf.train <model>`` (the model's own keys from ``configs/model/<model>.yaml`` plus
the training keys below), stores them under their own names (so cornac's ``clone``,
``GridSearch`` and ``RandomSearch`` work), and is named ``gcf-<Model>`` in cornac's tables.

``fit(train_set, val_set=None)`` reads cornac's training matrix and id maps, trains through
:class:`gcf.trainer.Trainer` and keeps the best validated epoch; ``score(user_idx,
item_idx=None)`` serves cornac's per-user loop from scores computed in batches of
``score_batch_size`` users. Models whose score is a dot product of a user and an item vector
also implement cornac's ``ANNMixin``.

Validation and early stopping. With a ``val_set`` (``RatioSplit(val_size=...)``, cornac's
``GridSearch``/``RandomSearch``) the trainer validates on it. cornac's ``Experiment`` gives
no ``val_set`` when the split has none, and ``epochs`` is the CLI's upper bound (300), meant
for early stopping: so by default (``holdout_valid=0.1``) the wrapper holds out a validation
slice of its training data itself (also when the ``val_set`` has no interaction left after
``rating_threshold``): ``floor(0.1 x n)`` random interactions of every user with ``n``
training interactions (at least one always stays in training; the rule of the CLI's
``split=fixed valid_ratio``, so users with fewer than 10 hold out none), drawn from ``seed``,
and early-stops on it (``valid_metric``, ``eval_step``, ``stopping_step`` as on the CLI) to
find the best number of epochs; ``refit=True`` (the default) then trains the model again from
scratch on all the training data for that many epochs. On ml-100k (cornac's
``RatioSplit(test_size=0.2, rating_threshold=4.0, seed=123)``) the refit moved Recall@20 /
NDCG@20 from 0.3094 / 0.2574 to 0.3138 / 0.2615 for VAECF, from 0.2857 / 0.2373 to 0.2968 /
0.2483 for BPR and from 0.3238 / 0.2722 to 0.3364 / 0.2915 for BiVAE (without it BiVAE lost to
cornac's BiVAECF, 0.3273 / 0.2782), for 1.3-2.4x the training time; ``refit=False`` keeps the
model of the best validated epoch, trained on the other 90%.
``holdout_valid=0`` turns the held-out slice off and trains exactly ``epochs`` epochs on all
the data. Closed-form models have nothing to stop and always end fitted on all of it: Pop
fits once; EASE picks its lambda on the held-out slice (``reg_grid``) and then fits on all the
data at it (on ml-100k in cornac's harness, seed 123, a fixed lambda = 250, RecBole's default and
the best on the CLI's ml-100k split, gave Recall@20 / NDCG@20 0.2744 / 0.1905; the picked 500 gives
0.2997 / 0.2285, below cornac's EASE, 0.3125 / 0.2584, which reads the rating values and clips
negative weights: ``EASE(weighting="rating", positive_only=True, reg_weight=500)`` is that model,
equal to four decimals, and with lambda picked on the slice it reaches 0.3492 / 0.3030:
``benchmarks/README.md``).

cornac's ``train_set`` holds every rating; like the CLI, ``rating_threshold=4.0`` trains on the
ratings >= 4 only (how Mult-VAE binarises MovieLens; the held-out slice is drawn from those).
In cornac's ranking protocol the training items rated below the threshold are not masked, so
this matters there (``benchmarks/README.md``).

Example::

    import cornac
    from cornac.eval_methods import RatioSplit
    from gcf.cornac import LightGCN, EASE
    data = cornac.datasets.movielens.load_feedback(variant="100K")
    rs = RatioSplit(data, test_size=0.2, rating_threshold=4.0, seed=123)
    cornac.Experiment(rs, [LightGCN(), EASE()], [cornac.metrics.Recall(20)]).run()
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
from cornac.exception import ScoreException
from cornac.models.recommender import MEASURE_DOT, ANNMixin, Recommender

from .config import resolve_config
from .data.interactions import Interactions
from .data.split import Split, fixed
from .models import GCF_MODELS, MODELS, build_model
from .trainer import Trainer

# training keys a wrapper takes besides the model's own
TRAIN_KEYS = ("epochs", "batch_size", "learning_rate", "weight_decay", "seed", "device", "eval_step",
              "stopping_step", "valid_metric", "rating_threshold")


def _plain(value):
    """numpy scalars (what cornac's ``RandomSearch`` samples) as Python values, so the config's
    type check accepts ``np.int64(20)`` for ``epochs``."""
    return value.item() if isinstance(value, np.generic) else value


class GCFRecommender(Recommender):
    """Base of the generated wrappers; ``model_key`` names the registry entry, ``param_names``
    the keys the constructor takes and ``wrapper_defaults`` those of the wrapper only (not
    config keys of the CLI)."""

    model_key: str = ""
    param_names: tuple = ()
    wrapper_defaults: dict = {"holdout_valid": 0.1, "refit": True}

    def __init__(self, name=None, trainable=True, verbose=False, score_batch_size=1024, **params):
        super().__init__(name=name or f"gcf-{MODELS[self.model_key].__name__}", trainable=trainable,
                         verbose=verbose)
        unknown = set(params) - set(self.param_names)
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown parameter(s) {sorted(unknown)}; "
                             f"valid: {', '.join(self.param_names)}")
        defaults = {**self.config_defaults(), **self.wrapper_defaults}
        for key in self.param_names:
            setattr(self, key, _plain(params.get(key, defaults[key])))
        self._check_params()
        self.score_batch_size = score_batch_size
        self.model = None
        self._block = (None, None)  # (first user of the cached block, scores [B, I])

    @classmethod
    def resolve(cls, key: str, overrides=()) -> tuple[dict, dict]:
        """``(config, model keys)`` of model ``key`` as the CLI resolves them."""
        return resolve_config(key, overrides)

    @classmethod
    def config_defaults(cls) -> dict:
        return cls.resolve(cls.model_key)[0]

    def _check_params(self) -> None:
        """Refuse a bad value when the wrapper is made, naming the key (not later inside fit)."""
        self._config()  # types against the CLI's defaults
        h = self.holdout_valid
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 <= h < 1:
            raise ValueError(f"{type(self).__name__}: holdout_valid must be a number in [0, 1), got {h!r}")
        if not isinstance(self.refit, bool):
            raise ValueError(f"{type(self).__name__}: refit must be true or false, got {self.refit!r}")

    def _config(self) -> tuple[dict, dict]:
        """The run config and model keys from this wrapper's parameters (type-checked)."""
        overrides = {k: getattr(self, k) for k in self.param_names if k not in self.wrapper_defaults}
        overrides["progress"] = bool(self.verbose)
        return self.resolve(self.model_key, overrides)

    # ------------------------------------------------------------ training
    def fit(self, train_set, val_set=None):
        Recommender.fit(self, train_set, val_set)
        if not self.trainable:
            return self
        split = _split_from_cornac(train_set, val_set, self.rating_threshold)
        cfg, kwargs = self._config()
        full = split
        if len(split.valid) == 0 and self.holdout_valid > 0 and MODELS[self.model_key].uses_validation(kwargs):
            split = holdout_split(split, float(self.holdout_valid), int(cfg["seed"]))  # no (usable) val_set
        # without validation interactions the trainer trains exactly `epochs` epochs
        self.model = build_model(self.model_key, kwargs, split, int(cfg["seed"]))
        self.trainer_metrics = Trainer(self.model, split, cfg).fit()
        closed_form = MODELS[self.model_key].batch_kind is None  # a choice among fits: always refitted, cheap
        if (self.refit or closed_form) and split is not full:  # again on all the data, for the best number of epochs
            best = max(int(self.trainer_metrics["best_epoch"]), 1)  # (and the setting a closed form chose)
            self.model = build_model(self.model_key, {**kwargs, **self.trainer_metrics.get("selected", {})}, full,
                                     int(cfg["seed"]))
            refit = Trainer(self.model, full, {**cfg, "epochs": best}).fit()
            self.trainer_metrics = {**self.trainer_metrics, "refit": refit,
                                    "train_sec": self.trainer_metrics["train_sec"] + refit["train_sec"]}
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


def holdout_split(split: Split, ratio: float, seed: int) -> Split:
    """``split`` with ``floor(ratio x n)`` random training interactions of each user (``n`` of
    them; at least one stays in training) moved to validation, drawn from ``seed``: the rule
    of the CLI's ``split=fixed valid_ratio`` (:func:`gcf.data.split.fixed`)."""
    out = fixed(split.train, split.test, valid_ratio=ratio, seed=seed)
    out.method = f"cornac train_set, holdout_valid={ratio} seed={seed}"
    return out


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

    train = part(train_set, "cornac train_set").implicit(rating_threshold).dedup()
    valid = part(val_set, "cornac val_set")
    if val_set is not None:
        valid = valid.implicit(rating_threshold).dedup()
        in_train = np.isin(valid.users * n_items + valid.items, train.users * n_items + train.items)
        valid = valid.subset(~in_train)  # a pair cornac repeats in both sets is a training pair
    if len(train) == 0:
        raise ValueError(f"cornac train_set has no rating >= rating_threshold={rating_threshold}")
    return Split(train, valid, part(None, "cornac (no test)"), "cornac")


def make_wrapper(key: str, model_cls, base: type, train_keys: tuple, extra_bases: tuple = (),
                 module: str = __name__) -> type:
    """A cornac class named like ``model_cls`` for registry entry ``key``: ``base`` (a
    :class:`GCFRecommender`) with the model's keys of ``configs/model/<key>.yaml``, ``train_keys``
    and ``base.wrapper_defaults`` as keyword parameters with the CLI's defaults."""
    defaults, model_keys = base.resolve(key)  # the keys of configs/model/<key>.yaml, as the CLI
    defaults = {**defaults, **base.wrapper_defaults}
    params = tuple(model_keys) + tuple(train_keys) + tuple(base.wrapper_defaults)
    cls = type(model_cls.__name__, (base, *extra_bases),
               {"model_key": key, "param_names": params, "__module__": module,
                "__doc__": f"cornac wrapper of :class:`{model_cls.__module__}.{model_cls.__name__}`.\n\n"
                           f"{model_cls.__doc__ or ''}"})

    def __init__(self, name=None, trainable=True, verbose=False, score_batch_size=1024, **kw):
        base.__init__(self, name, trainable, verbose, score_batch_size, **kw)

    # an explicit signature, so cornac's clone()/GridSearch find every parameter by introspection
    P = inspect.Parameter
    __init__.__signature__ = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("name", P.KEYWORD_ONLY, default=None),
         P("trainable", P.KEYWORD_ONLY, default=True), P("verbose", P.KEYWORD_ONLY, default=False),
         P("score_batch_size", P.KEYWORD_ONLY, default=1024)]
        + [P(k, P.KEYWORD_ONLY, default=defaults[k]) for k in params])
    cls.__init__ = __init__
    return cls


WRAPPERS = {key: make_wrapper(key, MODELS[key], GCFRecommender, TRAIN_KEYS,
                              (DotProductANN,) if getattr(MODELS[key], "score_is_dot", False) else ())
            for key in GCF_MODELS}
globals().update({w.__name__: w for w in WRAPPERS.values()})
__all__ = ["GCFRecommender", "WRAPPERS", "make_wrapper", "holdout_split", *[w.__name__ for w in WRAPPERS.values()]]
