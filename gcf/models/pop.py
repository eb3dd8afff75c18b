"""Pop: every user gets the items ranked by their number of training interactions.

The trivial baseline every model must beat (RecBole's ``Pop``).
"""
from __future__ import annotations

import torch

from .base import Recommender, TrainData, item_popularity


class Pop(Recommender):
    batch_kind = None

    def __init__(self, data: TrainData):
        super().__init__(data)
        self.register_buffer("counts", torch.zeros(data.n_items))

    def fit(self, data: TrainData) -> None:
        self.counts.copy_(torch.from_numpy(item_popularity(data.train)))

    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        return self.counts.unsqueeze(0).repeat(len(users), 1)  # [B, I], a fresh tensor (not a view)
