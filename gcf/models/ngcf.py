r"""NGCF: neural graph collaborative filtering.

Wang, He, Wang, Feng, Chua, "Neural Graph Collaborative Filtering", SIGIR 2019 (arXiv 1905.08108).

.. math::
    E^{(l)} = \mathrm{LeakyReLU}\big((\mathcal L + I) E^{(l-1)} W_1^{(l)} + b_1
      + (\mathcal L E^{(l-1)}) \odot E^{(l-1)} W_2^{(l)} + b_2\big), \qquad
    e^* = [e^{(0)} \| \tilde e^{(1)} \| \dots \| \tilde e^{(L)}]

with :math:`\mathcal L = D^{-1/2} A D^{-1/2}` (the paper's Laplacian), the bi-interaction term
:math:`(\mathcal L E) \odot E`, message dropout after each layer, and
:math:`\tilde e^{(l)}` the L2-row-normalised copy of :math:`e^{(l)}` that goes to the output
while the un-normalised one feeds the next layer (official code). Score: inner product of the
concatenations. Loss: BPR + ``reg_weight * 1/2 (||u*||^2 + ||p*||^2 + ||n*||^2) / B`` on the
final embeddings of the batch (official code). Node dropout (official: random removal of
adjacency entries with ``1/(1-p)`` rescaling) is ``node_dropout`` and off by default, as in the
official README's commands.

Choices against the official TF code (see ``MODELS.md``): the paper's symmetric Laplacian, not
the code's row-normalised ``D^-1(A+I)``; LeakyReLU of the sum (paper) rather than of each term;
Xavier-uniform init of embeddings and weights (code).

Ablation switches (the LightGCN paper's NGCF study, its Table 1: NGCF-f, NGCF-n, NGCF-fn; all on
by default, which is NGCF as above): ``feature_transform=False`` drops :math:`W_1, W_2` and their
biases, so a layer is :math:`\sigma((\mathcal L + I)E + (\mathcal L E) \odot E)` (every layer
keeps the size ``embedding_size``); ``nonlinearity=False`` makes :math:`\sigma` the identity;
``bi_interaction=False`` drops the :math:`(\mathcal L E) \odot E` term (and :math:`W_2`).

Args:
    embedding_size: d (default: 64).
    hidden_size_list: output size of each layer (default: [64, 64, 64]).
    node_dropout, message_dropout: dropout rates (default: 0.0, 0.1).
    reg_weight: L2 weight (default: 1e-5).
    feature_transform, nonlinearity, bi_interaction: the ablation switches above (default: True).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..graph import Graph
from .base import Recommender, TrainData, bpr_loss, l2_rows


class NGCF(Recommender):
    batch_kind = "pairwise"
    score_is_dot = True  # score = user vector . item vector (cornac ANN can serve it)

    def __init__(self, data: TrainData, embedding_size: int = 64, hidden_size_list=(64, 64, 64),
                 node_dropout: float = 0.0, message_dropout: float = 0.1, reg_weight: float = 1e-5,
                 graph_backend: str = "spmm", feature_transform: bool = True, nonlinearity: bool = True,
                 bi_interaction: bool = True):
        super().__init__(data)
        if not feature_transform and any(int(h) != embedding_size for h in hidden_size_list):
            raise ValueError(f"ngcf: feature_transform=false keeps every layer at embedding_size "
                             f"({embedding_size}); hidden_size_list is {list(hidden_size_list)}")
        self.node_dropout = node_dropout
        self.message_dropout = message_dropout
        self.reg_weight = reg_weight
        self.n_layers = len(hidden_size_list)
        self.feature_transform, self.nonlinearity, self.bi_interaction = feature_transform, nonlinearity, bi_interaction
        self.graph = Graph(data.train, norm="sym", backend=graph_backend)
        self.user_embedding = nn.Embedding(data.n_users, embedding_size)
        self.item_embedding = nn.Embedding(data.n_items, embedding_size)
        sizes = [embedding_size, *hidden_size_list]
        pairs = list(zip(sizes[:-1], sizes[1:])) if feature_transform else []
        self.w1 = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.w2 = nn.ModuleList(nn.Linear(a, b) for a, b in (pairs if bi_interaction else []))
        for p in self.parameters():
            nn.init.xavier_uniform_(p.unsqueeze(0) if p.dim() == 1 else p)

    def propagate(self, nodes: torch.Tensor | None = None):
        """Concatenated layer outputs ``[e0 | ~e1 | ... | ~eL]``: for users ``[U, d*]`` and items
        ``[I, d*]``, or, given node ids ``nodes [M]`` (users ``0..U-1``, items ``U..U+I-1``),
        for those rows only ``[M, d*]``. The normalised copies and the last layer are computed
        only for the rows asked for (no layer reads them), the same values as the full pass."""
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])  # [U+I, d]
        adj = self.graph.dropout(self.node_dropout) if self.training and self.node_dropout > 0 else None
        outputs = [x if nodes is None else x[nodes]]
        last = self.n_layers - 1
        for k in range(self.n_layers):
            side = self.graph.propagate(x) if adj is None else torch.sparse.mm(adj, x)  # L E
            if nodes is not None and k == last:  # the last layer feeds only the output rows
                side, x = side[nodes], x[nodes]
            x = self.layer(k, side, x)
            x = F.dropout(x, self.message_dropout, self.training)
            outputs.append(F.normalize(x if nodes is None or k == last else x[nodes], p=2, dim=1))
        out = torch.cat(outputs, 1)
        return out if nodes is not None else (out[: self.n_users], out[self.n_users:])

    def layer(self, k: int, side: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Layer ``k`` before message dropout, from ``side = L E`` and ``x = E`` (``[M, d]`` each)."""
        if self.feature_transform:
            h = self.w1[k](side + x)
            if self.bi_interaction:
                h = h + self.w2[k](side * x)
        else:
            h = side + x
            if self.bi_interaction:
                h = h + side * x
        return F.leaky_relu(h, negative_slope=0.2) if self.nonlinearity else h

    def loss(self, batch) -> torch.Tensor:
        users, pos, neg = batch
        nodes, inverse = torch.unique(torch.cat([users, pos + self.n_users, neg + self.n_users]), return_inverse=True)
        u, p, n = self.propagate(nodes)[inverse].split(len(users))
        loss = bpr_loss((u * p).sum(1), (u * n).sum(1))
        return loss + self.reg_weight * l2_rows(u, p, n) / len(users)

    def _final(self):
        return self.cached("final", self.propagate)

    @torch.no_grad()
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        user_all, item_all = self._final()
        return user_all[users] @ item_all.T

    @torch.no_grad()
    def latents(self):
        return tuple(t.detach() for t in self._final())
