"""What every feature model shares: the fields in, one logit out, the two tasks.

A feature model (LR, FM, DeepFM, AFN, AFN+) subclasses :class:`FeatureRecommender` and writes
only ``logit(x) -> [B]`` over the encoded fields ``x`` (:class:`gcf.data.fields.FieldEncoder`:
``cat [B, F_cat]``, ``seq [B, F_seq, L]``, ``num [B, F_num]``). The base class

- fits the dataset's declared fields on the training rows (``data.fields``; the two ids when
  the dataset declares none) and keeps the encoder as a sub-module, so the vocabulary is
  saved with the weights and restored with them;
- trains on the ``"fields"`` batches (:class:`gcf.data.fields.FieldBatches`): labelled rows
  with ``task=ctr``, positives plus ``neg_samples`` sampled negatives with ``task=ranking``,
  binary cross-entropy on the logit either way;
- ranks all items for a user (``score``, ``task=ranking``): every (user, item) pair is encoded
  and scored, about ``score_rows_per_chunk`` rows per forward pass, with the context (hour,
  ...) of the user's latest history interaction;
- scores labelled rows (``score_rows``, ``task=ctr``) with their own context.

Layers used by several models: :class:`FieldEmbedding` (one table for all fields; a sequence
field is pooled, a numeric field's vector is scaled by its value), :func:`fm_interaction` and
:class:`MLP`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..data.fields import FieldBatches, FieldEncoder, time_parts
from .base import Recommender, TrainData

__all__ = ["FeatureRecommender", "FieldEmbedding", "MLP", "fm_interaction"]


class FieldEmbedding(nn.Module):
    r"""``[B, F, d]`` field vectors from one table over all fields' features.

    A categorical field gives its category's row; a sequence field the mean (``pooling="mean"``)
    or the sum (``"sum"``, a multi-hot input times its weights) of its values' rows, padding
    (global index 0, a zero row) left out; a numeric field its own row times its value
    (FuxiCTR, DeepCTR's ``DenseFeat`` with an embedding). With ``dim=1`` it is the first-order
    (linear) part of LR and FM.
    """

    def __init__(self, encoder: FieldEncoder, dim: int, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {pooling!r}")
        self.pooling = pooling
        self.table = nn.Embedding(encoder.n_features, dim, padding_idx=0)

    def reset_parameters(self, init) -> None:
        init(self.table.weight)
        with torch.no_grad():
            self.table.weight[0].zero_()  # the padding row

    def forward(self, x: dict) -> torch.Tensor:
        cat = self.table(x["cat"])  # [B, F_cat, d]
        seq = self.table(x["seq"]).sum(2)  # [B, F_seq, d]
        if self.pooling == "mean":
            seq = seq / (x["seq"] > 0).sum(2, keepdim=True).clamp(min=1)
        num = self.table.weight[x["num_index"]] * x["num"].unsqueeze(-1)  # [B, F_num, d]
        return torch.cat([cat, seq, num], 1)  # [B, F, d]


def fm_interaction(v: torch.Tensor) -> torch.Tensor:
    r"""Rendle's pairwise term :math:`\sum_{i<j}\langle v_i, v_j\rangle` of ``[B, F, d]`` field
    vectors in :math:`O(Fd)`: :math:`\tfrac12\sum_k[(\sum_i v_{ik})^2 - \sum_i v_{ik}^2]`, ``[B]``."""
    return 0.5 * (v.sum(1).pow(2) - v.pow(2).sum(1)).sum(1)


class MLP(nn.Sequential):
    """``Linear -> ReLU [-> BatchNorm] [-> Dropout]`` per hidden size, then ``Linear -> 1`` when
    ``output`` (the order of AFN's official code; DeepFM has no batch norm)."""

    def __init__(self, in_dim: int, hidden: list[int], dropout: float = 0.0, batch_norm: bool = False,
                 output: bool = True, output_bias: bool = True):
        layers, d = [], in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = h
        if output:
            layers.append(nn.Linear(d, 1, bias=output_bias))
        super().__init__(*layers)
        self.out_dim = 1 if output else d


class FeatureRecommender(Recommender):
    r"""Base of the feature models (see the module docstring).

    Args:
        data: the training data; ``data.fields`` are the declared fields.
        neg_samples: negatives per positive with ``task=ranking`` (ignored with labels).
        score_rows_per_chunk: (user, item) pairs per forward pass when ranking all items.
        embedding_regularizer: L2 weight :math:`\lambda` on every :class:`FieldEmbedding` table,
            FuxiCTR's ``embedding_regularizer``: :math:`\tfrac{\lambda}{2}\lVert E\rVert^2` of the
            whole table added to the batch loss, i.e. Adam's (coupled) ``weight_decay`` on the
            tables' parameter group (default: 0, none). The config's ``weight_decay`` stays the
            other parameters' (FuxiCTR's ``net_regularizer``).
    """

    batch_kind = "fields"

    def __init__(self, data: TrainData, neg_samples: int = 1, score_rows_per_chunk: int = 1 << 16,
                 embedding_regularizer: float = 0.0):
        super().__init__(data)
        if embedding_regularizer < 0:
            raise ValueError(f"embedding_regularizer must be >= 0, got {embedding_regularizer}")
        self.encoder = FieldEncoder(data.fields, data)
        self.embedding_regularizer = float(embedding_regularizer)
        self.neg_samples = neg_samples
        self.score_rows_per_chunk = score_rows_per_chunk
        self.n_fields = self.encoder.n_fields

    # ------------------------------------------------------------ contract
    def logit(self, x: dict) -> torch.Tensor:
        """``[B]`` logits of encoded rows ``x``."""
        raise NotImplementedError

    def forward(self, users: torch.Tensor, items: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.logit(self.encoder(users, items, context))

    def param_groups(self) -> list[dict]:
        """The embedding tables in a group of their own with ``weight_decay=embedding_regularizer``."""
        if not self.embedding_regularizer:
            return super().param_groups()
        tables = {id(m.table.weight): m.table.weight for m in self.modules() if isinstance(m, FieldEmbedding)}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in tables]
        return [{"params": list(tables.values()), "weight_decay": self.embedding_regularizer}, {"params": rest}]

    def batches(self, data: TrainData, batch_size: int) -> FieldBatches:
        return FieldBatches(data, batch_size, self.neg_samples)

    def loss(self, batch) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self(batch["users"], batch["items"], batch["context"]),
                                                  batch["label"])

    @torch.no_grad()
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        """``[B, n_items]`` logits of every item for each user, in the context of the user's
        latest history interaction (no context when there is none)."""
        device, n = users.device, self.n_items
        context = torch.from_numpy(self._latest_context(users.cpu().numpy(), history)).to(device)  # [B, F_ctx]
        items = torch.arange(n, device=device)
        step = max(1, self.score_rows_per_chunk // n)
        out = []
        for s in range(0, len(users), step):
            u, c = users[s:s + step], context[s:s + step]
            logits = self(u.repeat_interleave(n), items.repeat(len(u)), c.repeat_interleave(n, 0))
            out.append(logits.view(len(u), n))
        return torch.cat(out) if out else torch.empty(0, n, device=device)

    @torch.no_grad()
    def score_rows(self, rows, history=None, batch_size: int = 4096) -> torch.Tensor:
        """``[N]`` logits of labelled rows (``task=ctr``), each with its own context."""
        device = self.device
        users = torch.from_numpy(rows.users.astype(np.int64))
        items = torch.from_numpy(rows.items.astype(np.int64))
        context = torch.from_numpy(time_parts(self.encoder.specs, rows.timestamps, len(rows)))
        out = [self(users[s:s + batch_size].to(device), items[s:s + batch_size].to(device),
                    context[s:s + batch_size].to(device)).float().cpu()
               for s in range(0, len(rows), batch_size)]
        return torch.cat(out) if out else torch.empty(0)

    def _latest_context(self, users: np.ndarray, history) -> np.ndarray:
        times = np.full(len(users), np.nan)
        if history is not None and history.times is not None:
            has = history.lengths[users] > 0
            times[has] = history.times[history.indptr[users[has] + 1] - 1]
        return time_parts(self.encoder.specs, times, len(users))
