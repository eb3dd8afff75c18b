"""The small contract every model keeps; the trainer, evaluator, CLI and cornac wrappers
only ever call these methods and never branch on a model's name.

A model is built as ``Model.from_config(data, **hyperparameters)`` (the constructor, unless a
model reads files for its inputs) where ``data`` is a :class:`TrainData` (sizes, the training
matrix, the ordered training interactions and per-user sequences) and the keyword arguments
are exactly the keys of ``configs/model/<name>.yaml``. Models register in
:mod:`gcf.models.registry`.

- ``batch_kind``: the name of a registered batch builder (:mod:`gcf.data.sampler`:
  ``"pairwise"``, ``"user_rows"``, ``"item_user_rows"``; other packages register theirs), or
  ``None`` for closed-form models that implement ``fit`` instead of ``loss``.
  ``batches(data, batch_size)`` builds it; a model overrides it to pass its own options.
- ``loss(batch) -> scalar tensor``: one training step's objective.
- ``fit(data)``: closed-form fit (Pop, EASE). ``fit_path(data)`` fits once per candidate
  setting and yields it (a dict of keys, e.g. ``{"reg_weight": 500.0}``): with a validation
  split the trainer keeps the best candidate (and refits at it with ``fit(data, **setting)``
  when it was not the last); by default it is ``fit(data)`` alone. ``uses_validation(kwargs)``
  says whether a model built from these keys trains on a validation split (early stopping, or
  more than one candidate fit): the cornac wrappers hold out a slice only then.
- ``score(users, history) -> [B, n_items]``: higher is better; a fresh tensor (never a view of
  a parameter or buffer), since the evaluator masks seen items in place. ``history``
  (:class:`gcf.data.sequences.Sequences`) is what the model may know when ranking: the
  training part for validation, train + validation for test; CF models ignore it (they
  score from their training data), sequence models read the users' histories from it.
- ``score_rows(rows, history) -> [N]``: one score (a logit) per row of an
  :class:`~gcf.data.interactions.Interactions` (labelled evaluation, ``task=ctr``); by default
  the user's row of ``score`` at the row's item, feature models encode the rows' fields.
- ``latents() -> (user [n_users, d], item [n_items, d])``: the representations that
  ``bridges/`` feeds to sequence models; models without a latent space raise.
- Optional: ``param_groups()`` (per-module learning rates), ``start_epoch(epoch)`` (schedules
  that count epochs, not batches) and ``extra_state()`` / ``load_extra_state(state)`` (state
  outside the parameters and buffers that a resume must restore).

Caches (propagated embeddings for evaluation, ...) live in ``self._cache`` and are dropped
whenever the model switches between train and eval mode or its parameters are reloaded.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..data.sampler import dense_rows, get_batch_kind
from ..data.train_data import TrainData

__all__ = ["Recommender", "TrainData", "bpr_loss", "l2_rows", "item_popularity"]


class Recommender(nn.Module):
    """Base class: stores ``n_users``/``n_items`` and the training matrix (not as a parameter)."""

    batch_kind: str | None = "pairwise"

    @classmethod
    def from_config(cls, data: TrainData, **kwargs) -> "Recommender":
        """Build from the config's keys (a model that reads files for its inputs overrides this)."""
        return cls(data, **kwargs)

    def __init__(self, data: TrainData):
        super().__init__()
        self.n_users = data.n_users
        self.n_items = data.n_items
        self._train_matrix = data.train
        self._cache: dict = {}

    # ------------------------------------------------------------ contract
    def loss(self, batch) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has batch_kind={self.batch_kind!r} but no loss()")

    def fit(self, data: TrainData) -> None:
        raise NotImplementedError(f"{type(self).__name__} is trained by loss(), not fit()")

    def fit_path(self, data: TrainData):
        """Closed-form models: fit once per candidate setting, yielding each (module docstring)."""
        self.fit(data)
        yield {}

    @classmethod
    def uses_validation(cls, kwargs: dict) -> bool:
        """Whether training with these model keys reads a validation split (module docstring)."""
        return cls.batch_kind is not None

    def batches(self, data: TrainData, batch_size: int):
        """The batch builder of one training run (``len()`` batches per epoch, ``epoch(rng)``)."""
        return get_batch_kind(self.batch_kind)(data, batch_size)

    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def score_rows(self, rows, history=None, batch_size: int = 1024) -> torch.Tensor:
        """``[N]`` scores of the (user, item) rows of ``rows`` (an Interactions): ``score`` of
        ``batch_size`` distinct users at a time, read at each row's item."""
        users, inverse = np.unique(rows.users, return_inverse=True)
        items = torch.from_numpy(rows.items.astype(np.int64))
        out = torch.empty(len(rows))
        for start in range(0, len(users), batch_size):
            block = users[start:start + batch_size]
            scores = self.score(torch.from_numpy(block).to(self.device), history).float().cpu()  # [b, n_items]
            at = np.flatnonzero((inverse >= start) & (inverse < start + len(block)))
            out[at] = scores[torch.from_numpy(inverse[at] - start), items[at]]
        return out

    def latents(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise TypeError(f"{type(self).__name__} has no user/item latent space")

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups; a group may set its own ``lr`` (the config's is the default)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def start_epoch(self, epoch: int) -> None:
        """Called by the trainer before each training epoch (0-based, also after a resume)."""

    def extra_state(self) -> dict:
        """Training state outside parameters and buffers (counters, ...) that ``last.pt`` keeps:
        plain values and tensors only."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what :meth:`extra_state` returned."""

    # -------------------------------------------------------------- helpers
    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._cache.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def cached(self, key: str, compute):
        """``compute()`` once per evaluation (recomputed in training mode, where parameters move)."""
        if self.training or key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @torch.no_grad()
    def over_all_users(self, fn, batch_size: int = 1024) -> torch.Tensor:
        """``fn(users)`` for every user, in batches of ``batch_size`` ids, concatenated ``[U, ...]``."""
        users = torch.arange(self.n_users, device=self.device)
        return torch.cat([fn(users[s:s + batch_size]) for s in range(0, self.n_users, batch_size)])

    def history_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense binary training rows ``[B, n_items]`` of ``users`` (for user-row models)."""
        return dense_rows(self._train_matrix, users.cpu().numpy()).to(users.device)


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``mean softplus(neg - pos) = -mean log sigmoid(pos - neg)``, the stable form of BPR."""
    return nn.functional.softplus(neg - pos).mean()


def l2_rows(*rows: torch.Tensor) -> torch.Tensor:
    """``1/2 * sum of squares`` of the given embedding rows (duplicates counted)."""
    return sum(r.pow(2).sum() for r in rows) / 2


def item_popularity(train: sp.csr_matrix) -> np.ndarray:
    return np.asarray(train.sum(0)).ravel().astype(np.float32)
