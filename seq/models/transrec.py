r"""TransRec: translation-based sequential recommendation.

He, Kang, McAuley, "Translation-based Recommendation", RecSys 2017. Reference: Ruining He's
C++ code (``TransRec.cpp``, as redistributed; see ``MODELS.md``) and RecBole's ``TransRec``.

Items are points ``\gamma_i`` of a translation space; user ``u`` moves from the previous item
``i`` by the global translation ``t`` plus a personal one ``t_u``:

.. math::
    \hat x_{u,i,j} = \beta_j - d(\gamma_i + t + t_u,\ \gamma_j), \qquad
    \|\gamma_i\| \le 1

    \mathcal L = -\frac{1}{N}\sum \ln \sigma(\hat x_{u,i,j} - \hat x_{u,i,k})
      + \frac{1}{N}\sum \big[\lambda(\|\gamma_i\|^2 + \|\gamma_j\|^2 + \|\gamma_k\|^2 + \|t\|^2)
      + \lambda_u \|t_u\|^2 + \lambda_\beta(\beta_j^2 + \beta_k^2)\big]

(S-BPR over every training transition ``i -> j`` once per epoch, :class:`seq.data.PrefixBatches`
with ``max_len = 1``; ``k`` uniform among the items the user never had in training.)

**Choices**: ``distance="squared_l2"`` (default) is the official code's "L2" (no square root);
``"l2"`` is the true Euclidean distance (RecBole), ``"l1"`` the code's ``TransRec_L1``. The
unit-ball constraint is kept as the code does it, by projection: every item vector is
rescaled to norm 1 when it is read with a larger norm (``nn.Embedding(max_norm=1)``, which
renormalises the looked-up rows in place before use: the code projects the touched rows after
each step, here they are projected before their next use); scoring uses the projected table.
RecBole drops the constraint. Initialisation as the code: every parameter uniform in
``+-6/sqrt(K)``, then the items and ``t`` projected onto the unit ball, ``beta = 0``,
``t_u = 0``. The code's SGD (lr 0.05) is the trainer's Adam here; the regularisers are the
code's (lambda on items and ``t``, ``relation_reg`` on ``t_u``, ``bias_reg`` on ``beta``), per
example. The code stores ``beta`` with the opposite sign (an equivalent parametrisation).
"""
from __future__ import annotations

import torch
from torch import nn

from gcf.models.base import bpr_loss
from gcf.models.registry import register_model

from ..data import PrefixBatches
from .base import SeqRecommender

DISTANCES = ("squared_l2", "l2", "l1")


@register_model("transrec", family="seq")
class TransRec(SeqRecommender):
    """TransRec (module docstring).

    Args:
        embedding_size: ``K`` (default 64). n_negatives: negatives per transition (default 1).
        reg_weight: lambda on items and ``t`` (default 0). user_reg_weight: on ``t_u`` (default 0).
        bias_reg_weight: on ``beta`` (default 0). distance: ``squared_l2`` | ``l2`` | ``l1``
        (default ``squared_l2``). max_norm: the item ball's radius (default 1; 0 = none).

    Shapes: scores ``[B, n_items]`` from ``users [B]`` and the last item of ``items [B, L]``.
    """

    def __init__(self, data, embedding_size: int = 64, n_negatives: int = 1, reg_weight: float = 0.0,
                 user_reg_weight: float = 0.0, bias_reg_weight: float = 0.0, distance: str = "squared_l2",
                 max_norm: float = 1.0):
        super().__init__(data, max_len=1)
        if distance not in DISTANCES:
            raise ValueError(f"transrec: distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
        if n_negatives < 1:
            raise ValueError(f"transrec: n_negatives must be >= 1, got {n_negatives}")
        K = embedding_size
        self.n_negatives, self.distance, self.max_norm = int(n_negatives), distance, float(max_norm) or None
        self.reg_weight, self.user_reg_weight, self.bias_reg_weight = reg_weight, user_reg_weight, bias_reg_weight
        # seq ids: row 0 = "no previous item", a zero vector (the query is then t + t_u)
        self.item_embedding = nn.Embedding(data.n_items + 1, K, padding_idx=0, max_norm=self.max_norm)
        self.user_translation = nn.Embedding(data.n_users, K)
        self.translation = nn.Parameter(torch.empty(K))
        self.item_bias = nn.Parameter(torch.zeros(data.n_items + 1))
        bound = 6.0 / K ** 0.5
        with torch.no_grad():
            self.item_embedding.weight.uniform_(-bound, bound)
            self.item_embedding.weight[0].zero_()
            if self.max_norm:
                self.item_embedding.weight.copy_(self._projected(self.item_embedding.weight))
            self.translation.uniform_(-bound, bound)
            self.translation.copy_(self._projected(self.translation[None])[0])
            self.user_translation.weight.zero_()

    def _projected(self, w: torch.Tensor) -> torch.Tensor:
        """Rows of ``w`` rescaled onto the ball of radius ``max_norm`` when outside it."""
        if not self.max_norm:
            return w
        norm = w.norm(dim=-1, keepdim=True)
        return w * (self.max_norm / norm.clamp(min=self.max_norm))

    def _dist(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``d(q, g)`` over the last dimension (broadcasting)."""
        diff = q - g
        if self.distance == "l1":
            return diff.abs().sum(-1)
        sq = diff.pow(2).sum(-1)
        return sq if self.distance == "squared_l2" else (sq + 1e-12).sqrt()

    def n_negatives_for_loss(self) -> int:
        return self.n_negatives

    def batches(self, data, batch_size: int):
        return PrefixBatches(data, batch_size, 1, self.n_negatives)

    def loss(self, batch) -> torch.Tensor:
        users, prev = batch["users"], batch["items"][:, -1]
        items = torch.cat([prev[:, None], batch["targets"][:, None], batch["negatives"]], 1)  # [B, 2 + k]
        g = self.item_embedding(items)  # [B, 2 + k, K], one lookup: rows renormalised once
        tu = self.user_translation(users)  # [B, K]
        q = g[:, 0] + self.translation + tu  # [B, K]
        x = self.item_bias[items[:, 1:]] - self._dist(q[:, None], g[:, 1:])  # [B, 1 + k]
        loss = bpr_loss(x[:, :1], x[:, 1:])
        B = len(users)
        if self.reg_weight:
            loss = loss + self.reg_weight * (g.pow(2).sum() / B + self.translation.pow(2).sum())
        if self.user_reg_weight:
            loss = loss + self.user_reg_weight * tu.pow(2).sum() / B
        if self.bias_reg_weight:
            loss = loss + self.bias_reg_weight * self.item_bias[items[:, 1:]].pow(2).sum() / B
        return loss

    def score_sequences(self, users: torch.Tensor, items: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        gamma = self._projected(self.item_embedding.weight)  # [I + 1, K]
        q = gamma[items[:, -1]] + self.translation + self.user_translation(users)  # [B, K]
        g = gamma[1:]
        if self.distance == "l1":
            d = torch.cdist(q, g, p=1)
        else:
            d = (q.pow(2).sum(1, keepdim=True) - 2 * q @ g.T + g.pow(2).sum(1)).clamp(min=0)  # [B, I]
            if self.distance == "l2":
                d = (d + 1e-12).sqrt()
        return self.item_bias[1:] - d  # [B, n_items]
