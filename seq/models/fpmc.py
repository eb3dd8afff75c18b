r"""FPMC: Factorizing Personalized Markov Chains.

Rendle, Freudenthaler, Schmidt-Thieme, "Factorizing Personalized Markov Chains for
Next-Basket Recommendation", WWW 2010. References: RecBole's ``FPMC`` and Ruining He's C++
baseline (no code from the authors); see ``MODELS.md``.

With baskets of one item (the previous item ``l``), the paper's score is an MF term plus a
factorised first-order transition from ``l`` (the user-to-last-item term is constant for a
ranking and dropped):

.. math::
    \hat x_{u,l,i} = \langle V^{U,I}_u, V^{I,U}_i \rangle + \langle V^{I,L}_i, V^{L,I}_l \rangle

    \mathcal L = -\frac{1}{N}\sum_{(u,l,i,j)} \ln \sigma(\hat x_{u,l,i} - \hat x_{u,l,j})
      + \lambda \tfrac{1}{2}\,\frac{\|\Theta_{batch}\|^2}{N}

(S-BPR), with four separate factor tables. Each training transition ``l -> i`` of each user
is one example per epoch (:class:`seq.data.PrefixBatches` with ``max_len = 1``), with
``n_negatives`` items ``j`` drawn uniformly among those the user never had in training (RecBole);
the paper's bootstrap SGD draws (user, transition) pairs at random instead.

**Choices**: the trainer's Adam (the paper: SGD), RecBole's Xavier-normal init (He's C++
uses uniform [0, 1); the paper's is unconfirmed); ``reg_weight`` is the paper's lambda on the
rows of the batch (RecBole has none: ``reg_weight = 0``). At scoring time the previous item is
the last item of the history.
"""
from __future__ import annotations

import torch
from torch import nn

from gcf.models.base import bpr_loss, l2_rows
from gcf.models.registry import register_model

from ..data import PrefixBatches
from .base import SeqRecommender


@register_model("fpmc", family="seq")
class FPMC(SeqRecommender):
    """FPMC (module docstring).

    Args:
        embedding_size: factor size of every table (default 64). n_negatives: sampled
            negatives per transition (default 1). reg_weight: lambda (default 0).

    Shapes: scores ``[B, n_items]`` from ``users [B]`` and the last item of ``items [B, L]``.
    """

    def __init__(self, data, embedding_size: int = 64, n_negatives: int = 1, reg_weight: float = 0.0):
        super().__init__(data, max_len=1)
        n, d = data.n_items + 1, embedding_size  # seq ids: 0 = padding (no previous item)
        self.n_negatives, self.reg_weight = int(n_negatives), float(reg_weight)
        if self.n_negatives < 1:
            raise ValueError(f"fpmc: n_negatives must be >= 1, got {n_negatives}")
        self.UI = nn.Embedding(data.n_users, d)  # V^{U,I}
        self.IU = nn.Embedding(n, d)  # V^{I,U}
        self.LI = nn.Embedding(n, d, padding_idx=0)  # V^{L,I}: previous item
        self.IL = nn.Embedding(n, d)  # V^{I,L}: next item
        for table in (self.UI, self.IU, self.LI, self.IL):
            nn.init.xavier_normal_(table.weight)
        with torch.no_grad():
            self.LI.weight[0].zero_()

    def n_negatives_for_loss(self) -> int:
        return self.n_negatives

    def batches(self, data, batch_size: int):
        return PrefixBatches(data, batch_size, 1, self.n_negatives)

    def loss(self, batch) -> torch.Tensor:
        users, prev = batch["users"], batch["items"][:, -1]  # [B], [B]
        items = torch.cat([batch["targets"][:, None], batch["negatives"]], 1)  # [B, 1 + k]
        u, l = self.UI(users), self.LI(prev)  # [B, d]
        iu, il = self.IU(items), self.IL(items)  # [B, 1 + k, d]
        x = torch.einsum("bd,bkd->bk", u, iu) + torch.einsum("bd,bkd->bk", l, il)  # [B, 1 + k]
        loss = bpr_loss(x[:, :1], x[:, 1:])
        if self.reg_weight:
            loss = loss + self.reg_weight * l2_rows(u, l, iu, il) / len(users)
        return loss

    def score_sequences(self, users: torch.Tensor, items: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        prev = items[:, -1]
        return self.UI(users) @ self.IU.weight[1:].T + self.LI(prev) @ self.IL.weight[1:].T  # [B, n_items]

    @torch.no_grad()
    def latents(self):
        """Users: ``V^{U,I}``; items: ``V^{I,U}`` (the MF part of the score)."""
        return self.UI.weight.detach().clone(), self.IU.weight[1:].detach().clone()
