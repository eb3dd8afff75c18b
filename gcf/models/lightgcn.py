r"""LightGCN: simplified graph convolution for recommendation.

He, Deng, Wang, Li, Zhang, Wang, "LightGCN: Simplifying and Powering Graph Convolution
Network for Recommendation", SIGIR 2020 (arXiv 2002.02126).

.. math::
    E^{(k+1)} = \hat A E^{(k)}, \quad \hat A = D^{-1/2} A D^{-1/2}, \qquad
    E = \frac{1}{K+1} \sum_{k=0}^{K} E^{(k)}, \qquad \hat y_{ui} = e_u^\top e_i

No feature transform, no nonlinearity, no self-loops. Loss: BPR plus
``reg_weight * 1/2 (||u0||^2 + ||p0||^2 + ||n0||^2) / B`` on the **ego** (layer-0) rows of the
batch, as both official repos do.

Choices: init ``normal(std=0.1)`` as LightGCN-PyTorch (its comment: better than Xavier without
nonlinearity); one uniform negative per training interaction per epoch (RecBole's sampler;
the official samplers are user-uniform); propagation through :class:`gcf.graph.Graph`.

Args:
    embedding_size: d (default: 64).
    n_layers: K (default: 3).
    reg_weight: L2 weight on the ego embeddings (default: 1e-4).
"""
from __future__ import annotations

import torch
from torch import nn

from ..graph import Graph
from .base import Recommender, TrainData, bpr_loss, l2_rows


class LightGCN(Recommender):
    batch_kind = "pairwise"
    score_is_dot = True  # score = user vector . item vector (cornac ANN can serve it)

    def __init__(self, data: TrainData, embedding_size: int = 64, n_layers: int = 3, reg_weight: float = 1e-4,
                 init_std: float = 0.1, graph_backend: str = "spmm"):
        super().__init__(data)
        self.n_layers = n_layers
        self.reg_weight = reg_weight
        self.graph = Graph(data.train, norm="sym", backend=graph_backend)
        self.user_embedding = nn.Embedding(data.n_users, embedding_size)
        self.item_embedding = nn.Embedding(data.n_items, embedding_size)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-averaged user and item embeddings ``[U, d]``, ``[I, d]``."""
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])  # [U+I, d]
        total = x
        for _ in range(self.n_layers):
            x = self.graph.propagate(x)
            total = total + x
        out = total / (self.n_layers + 1)
        return out[: self.n_users], out[self.n_users:]

    def loss(self, batch) -> torch.Tensor:
        users, pos, neg = batch
        user_all, item_all = self.propagate()
        u, p, n = user_all[users], item_all[pos], item_all[neg]  # [B, d]
        loss = bpr_loss((u * p).sum(1), (u * n).sum(1))
        ego = l2_rows(self.user_embedding(users), self.item_embedding(pos), self.item_embedding(neg))
        return loss + self.reg_weight * ego / len(users)

    def _final(self):
        return self.cached("final", self.propagate)

    @torch.no_grad()
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        user_all, item_all = self._final()
        return user_all[users] @ item_all.T  # [B, I]

    @torch.no_grad()
    def latents(self):
        return tuple(t.detach() for t in self._final())
