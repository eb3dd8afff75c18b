r"""Caser: convolutional sequence embedding with a user embedding.

Tang, Wang, "Personalized Top-N Sequential Recommendation via Convolutional Sequence
Embedding", WSDM 2018. Official code: graytowne/caser_pytorch (``caser.py``,
``train_caser.py``, ``interactions.py``). See ``MODELS.md``.

The last ``L = max_len`` items form an image ``E \in R^{L x d}``:

.. math::
    o^v = [\,\mathrm{conv}^{L\times 1}_k(E)\,]_{k=1..n_v} \in R^{n_v d}
    \quad\text{(vertical, no activation)}

    o^h = [\,\max_t \mathrm{ReLU}(\mathrm{conv}^{h\times d}_k(E))_t\,]_{h=1..L,\,k=1..n_h}
    \in R^{n_h L} \quad\text{(horizontal, max-pooled over time)}

    z = \mathrm{ReLU}(W_1\,\mathrm{drop}([o^v; o^h]) + b_1) \in R^d, \qquad
    s_{u,i} = \langle W^2_i, [z; P_u] \rangle + b^2_i

``W^2 [n_items, 2d]`` and ``b^2`` are output tables separate from the input embedding.

**Training** (official): sliding windows of ``L + T`` consecutive training items per user
(stride 1; a user with fewer items gives one window, left-padded), reshuffled every epoch
(:class:`CaserWindows`): the first ``L`` are the input, the last ``T`` the targets. Each
window draws ``T * n_negatives`` uniform negatives among the items the user never had in
training, fresh every epoch (the newer official code's ``neg_samples * T``). Loss:
``-mean log s(s_pos) - mean log(1 - s(s_neg))``. Adam with weight decay 1e-6 on every
parameter (``weight_decay`` in the config's ``train:`` section).

**Choices**: initialisation as the official code (user and item embeddings ``N(0, 1/d)``,
``W^2 ~ N(0, 1/(2d))``, ``b^2 = 0``, PyTorch's defaults for the convolutions and ``W_1``); the
padding item is a learned input row, as there. Departures: targets that are padding (windows
of users with fewer than ``T + 1`` items) are ignored, where the official code trains them as
positives of item 0; item 0 is never scored. RecBole's Caser is another model (``T = 1``,
prefixes, CE over a shared embedding, ``L = 50``); this one is the paper's.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gcf.data.sampler import _keys, sample_negatives
from gcf.models.registry import register_model

from .base import SeqRecommender, item_rows


class CaserWindows:
    """Caser's training windows: per user, every ``L + T`` consecutive training items (stride 1),
    or one window left-padded with 0 when the user has fewer; shuffled per epoch.

    Batches: ``users [B]``, ``items [B, L]`` (ids + 1, 0 = padding), ``targets [B, T]`` (0 =
    padding: no target), ``negatives [B, T * n_negatives]`` (ids + 1, uniform over the items
    the user never had in training)."""

    def __init__(self, data, batch_size: int, L: int, T: int, n_negatives: int = 3):
        seqs = data.sequences
        lengths = seqs.lengths
        W = L + T
        users = np.flatnonzero(lengths >= 1)
        per_user = np.maximum(lengths[users] - W + 1, 1)
        self.users = np.repeat(users, per_user)
        # window start relative to the user's first item; negative for left-padded windows
        first = np.repeat(np.cumsum(per_user) - per_user, per_user)
        start = np.arange(len(self.users)) - first + np.minimum(lengths[self.users] - W, 0)
        rel = start[:, None] + np.arange(W)[None, :]  # [N, W]
        src = seqs.indptr[self.users][:, None] + np.maximum(rel, 0)
        self.windows = np.where(rel >= 0, seqs.items[src] + 1, 0)  # [N, W]
        self.train, self.L, self.T = data.train, L, T
        self.batch_size, self.n_negatives = int(batch_size), int(n_negatives)
        self._keys = _keys(data.train) if n_negatives else None

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def epoch(self, rng: np.random.Generator):
        order = rng.permutation(len(self.users))
        users, windows = self.users[order], self.windows[order]
        neg = None
        if self.n_negatives:
            neg = sample_negatives(self.train, users, self.T * self.n_negatives, rng, self._keys) + 1
        for start in range(0, len(order), self.batch_size):
            sl = slice(start, start + self.batch_size)
            batch = {"users": torch.from_numpy(users[sl]), "items": torch.from_numpy(windows[sl, :self.L]),
                     "targets": torch.from_numpy(windows[sl, self.L:])}
            if neg is not None:
                batch["negatives"] = torch.from_numpy(neg[sl])
            yield batch


@register_model("caser", family="seq")
class Caser(SeqRecommender):
    """Caser (module docstring).

    Args:
        embedding_size: ``d`` (default 50). max_len: ``L``, the input window (default 5).
        n_targets: ``T`` (default 3). nv: vertical filters (default 4). nh: horizontal filters
        per height (default 16). dropout_prob: before ``W_1`` (default 0.5). n_negatives:
        negatives per target (default 3).

    Shapes: ``encode(users [B], items [B, L])`` -> ``[B, 2d]``; scores ``[B, n_items]``.
    """

    def __init__(self, data, embedding_size: int = 50, max_len: int = 5, n_targets: int = 3, nv: int = 4, nh: int = 16,
                 dropout_prob: float = 0.5, n_negatives: int = 3):
        super().__init__(data, max_len)
        if nv < 1 and nh < 1:
            raise ValueError("caser: nv and nh cannot both be 0")
        d, L = embedding_size, self.max_len
        self.n_targets, self.n_negatives, self.nv, self.nh = int(n_targets), int(n_negatives), nv, nh
        self.user_embedding = nn.Embedding(data.n_users, d)
        self.item_embedding = nn.Embedding(data.n_items + 1, d)  # row 0: the (learned) padding item
        self.conv_v = nn.Conv2d(1, nv, (L, 1)) if nv else None
        self.conv_h = nn.ModuleList(nn.Conv2d(1, nh, (h, d)) for h in range(1, L + 1)) if nh else nn.ModuleList()
        self.dropout = nn.Dropout(dropout_prob)
        self.fc1 = nn.Linear(nv * d + nh * L, d)
        self.W2 = nn.Embedding(data.n_items + 1, 2 * d)
        self.b2 = nn.Parameter(torch.zeros(data.n_items + 1))
        with torch.no_grad():
            self.user_embedding.weight.normal_(0.0, 1.0 / d)
            self.item_embedding.weight.normal_(0.0, 1.0 / d)
            self.W2.weight.normal_(0.0, 1.0 / (2 * d))

    def batches(self, data, batch_size: int):
        return CaserWindows(data, batch_size, self.max_len, self.n_targets, self.n_negatives)

    def encode_user(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B, 2d]``: ``[z; P_u]`` from the last ``L`` items ``[B, L]`` and the users ``[B]``."""
        E = self.item_embedding(items).unsqueeze(1)  # [B, 1, L, d]
        parts = []
        if self.conv_v is not None:
            parts.append(self.conv_v(E).flatten(1))  # [B, nv * d]
        for conv in self.conv_h:
            parts.append(F.relu(conv(E).squeeze(3)).amax(2))  # [B, nh], max over time
        z = F.relu(self.fc1(self.dropout(torch.cat(parts, 1))))  # [B, d]
        return torch.cat([z, self.user_embedding(users)], 1)

    def loss(self, batch) -> torch.Tensor:
        x = self.encode_user(batch["users"], batch["items"])  # [B, 2d]
        targets, negatives = batch["targets"], batch["negatives"]
        pos = torch.einsum("bd,btd->bt", x, self.W2(targets)) + self.b2[targets]  # [B, T]
        neg = torch.einsum("bd,bkd->bk", x, self.W2(negatives)) + self.b2[negatives]  # [B, T n]
        real = targets > 0
        pos_loss = (F.softplus(-pos) * real).sum() / real.sum().clamp(min=1)  # -log s(x) = softplus(-x)
        return pos_loss + F.softplus(neg).mean()

    def score_sequences(self, users: torch.Tensor, items: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        return self.encode_user(users, items) @ self.W2.weight[1:].T + self.b2[1:]  # [B, n_items]

    def item_vectors(self) -> torch.Tensor:
        return item_rows(self.W2.weight)

    @torch.no_grad()
    def latents(self):
        """Users: ``[z; P_u]`` of their last ``L`` training items; items: ``W^2`` (the bias
        ``b^2`` is left out)."""
        seqs = self._train_sequences

        def enc(users):
            items, _ = seqs.padded(users.cpu().numpy(), self.max_len)
            return self.encode_user(users, torch.from_numpy(items).to(self.device))

        return self.over_all_users(enc), self.item_vectors()
