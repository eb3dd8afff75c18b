"""What a model may know about the data when it is built: :class:`TrainData`."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .interactions import Interactions
from .sequences import Sequences


@dataclass
class TrainData:
    """Sizes, the binary training matrix and the ordered training interactions.

    ``train`` is the binary ``n_users x n_items`` CSR matrix (CF models); ``interactions``
    keeps every training row in file order with its timestamp, rating and the side features
    (sequence and feature models; with ``task=ctr`` also each row's click label);
    ``sequences`` is each user's training items in time order; ``fields`` the dataset's
    declared feature fields (feature models; ``None``: ids only); ``fingerprint`` identifies
    the split's training part (latents trained on another split are refused with it).
    """

    n_users: int
    n_items: int
    train: sp.csr_matrix  # binary n_users x n_items
    item_features: dict | None = None
    user_features: dict | None = None
    item_ids: np.ndarray | None = None  # raw ids, row i of the item side is item_ids[i]
    user_ids: np.ndarray | None = None
    interactions: Interactions | None = None
    fingerprint: str | None = None
    fields: list | None = None  # declared feature fields (dicts, gcf.data.fields); None: user_id and item_id

    @classmethod
    def from_split(cls, split) -> "TrainData":
        t = split.train
        return cls(split.n_users, split.n_items, split.csr("train"), t.item_features, t.user_features, t.item_ids,
                   t.user_ids, t, split.fingerprint(), getattr(split, "fields", None))

    @cached_property
    def sequences(self) -> Sequences:
        if self.interactions is None:
            raise ValueError("this TrainData has no ordered interactions (built from a matrix only)")
        return Sequences.from_interactions(self.interactions)
