r"""BPR-MF: matrix factorisation trained with Bayesian Personalized Ranking.

Rendle, Freudenthaler, Gantner, Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
Implicit Feedback", UAI 2009.

.. math::
    \hat x_{ui} = \langle w_u, h_i \rangle, \qquad
    \mathcal L = -\frac{1}{B}\sum_{(u,i,j)} \ln \sigma(\hat x_{ui} - \hat x_{uj})
      + \lambda \tfrac{1}{2}\,\frac{\|w_u\|^2 + \|h_i\|^2 + \|h_j\|^2}{B}

Choices (see ``MODELS.md``): as RecBole's reference BPR, Xavier-normal init, Adam, one uniform
negative per training interaction per epoch. The paper's per-triple L2 is kept as
``reg_weight`` (applied only to the rows of the batch, as in the paper); RecBole's default is
no regularisation, which ``reg_weight=0`` reproduces.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Recommender, TrainData, bpr_loss, l2_rows


class BPR(Recommender):
    batch_kind = "pairwise"
    score_is_dot = True  # score = user vector . item vector (cornac ANN can serve it)

    def __init__(self, data: TrainData, embedding_size: int = 64, reg_weight: float = 0.0):
        super().__init__(data)
        self.reg_weight = reg_weight
        self.user_embedding = nn.Embedding(data.n_users, embedding_size)
        self.item_embedding = nn.Embedding(data.n_items, embedding_size)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def loss(self, batch) -> torch.Tensor:
        users, pos, neg = batch
        u, p, n = self.user_embedding(users), self.item_embedding(pos), self.item_embedding(neg)  # [B, d]
        loss = bpr_loss((u * p).sum(1), (u * n).sum(1))
        if self.reg_weight:
            loss = loss + self.reg_weight * l2_rows(u, p, n) / len(users)
        return loss

    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        return self.user_embedding(users) @ self.item_embedding.weight.T  # [B, I]

    def latents(self):
        return self.user_embedding.weight.detach(), self.item_embedding.weight.detach()
