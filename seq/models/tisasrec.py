"""TiSASRec (Li, Wang & McAuley, "Time Interval Aware Self-Attention for Sequential
Recommendation", WSDM 2020).

SASRec whose attention also sees the time between items and their absolute positions, both
as learned vectors added to keys and values (official TF code
JiachengLi1995/TiSASRec ``model.py``, ``modules.py``):

.. math::
    e_{ij} = \\frac{Q_i (K_j + P^K_j + R^K_{r_{ij}})^\\top}{\\sqrt{d_h}}, \\qquad
    z_i = \\sum_{j \\le i} \\mathrm{softmax}_j(e_{ij}) (V_j + P^V_j + R^V_{r_{ij}})

with ``Q, K, V`` the projections of the (SASRec-layout) block input, ``P^K, P^V`` absolute
position tables (``max_len x d``), ``R^K, R^V`` interval tables (``(k + 1) x d``) and the
personalised interval ``r_ij = min(floor(|t_i - t_j| / r_u), k)``, ``r_u`` the user's smallest
non-zero gap between consecutive items and ``k = time_span``
(:func:`seq.data.time_intervals`). The input is ``sqrt(d) E[s_t]`` with dropout and **no**
positional term (positions enter only through keys and values); the tables are shared by all
blocks; the rest is SASRec (:mod:`seq.models.sasrec`): TF block layout, final LN, tied output
table, BCE with one uniform negative per position; L2 ``l2_emb * sum(w^2) / 2`` on every
embedding table (item, two position, two interval tables) at every step, Adam beta2 0.98.

The ``[B, L, L, d]`` interval tensors are never built: ``Q R^K`` is computed against the
``k + 1`` table rows and gathered, and the attention weights are summed per table row before
multiplying ``R^V`` (:class:`seq.layers.RelativeTerms`).

Departures from the official code:
- ``r_u`` comes from the window being scored (the model sees nothing else), not from the
  user's whole history including valid/test items; intervals are ``floor(|t_i - t_j| / r_u)``
  (the paper's formula) rather than differences of per-item rounded scaled times (at most 1
  apart). As in the official code, ``r_u`` is one number per sequence, so in training an
  earlier position's intervals can depend on later timestamps through it (never on later
  items); when ranking, the window is the history, so nothing of the future is seen.
- Dropout on the interval tables drops table rows (one mask per step, shared by the batch)
  instead of every ``(i, j)`` pair's vector; dropout on the position tables is per sequence,
  as the official.
- As in our SASRec: no timeline mask after each block (padding keys are masked), one shuffled
  pass over the users per epoch.
"""
from __future__ import annotations

import torch
from torch import nn

from gcf.models.registry import register_model

from ..data import time_intervals
from ..layers import RelativeTerms, causal_mask
from .sasrec import NextItemTransformer


@register_model("tisasrec", family="seq")
class TiSASRec(NextItemTransformer):
    """TiSASRec (module docstring). The arguments are SASRec's (:class:`SASRec`) plus
    ``time_span`` (``k``, the largest interval; default 256); defaults as the official code
    except ``hidden_size`` 64 (see ``configs/model/tisasrec.yaml``).

    Shapes: ``items [B, L]``, ``times [B, L]`` (int64 seconds, 0 at padding) -> ``[B, L, d]``.
    """

    def __init__(self, data, max_len: int = 50, hidden_size: int = 64, n_layers: int = 2, n_heads: int = 1,
                 inner_size: int | None = None, hidden_dropout_prob: float = 0.2, attn_dropout_prob: float = 0.2,
                 time_span: int = 256, norm: str = "sasrec", loss: str = "bce", n_negatives: int = 1,
                 negative_sampling: str = "uniform", l2_emb: float = 5e-5, adam_beta2: float = 0.98):
        super().__init__(data, max_len, hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob,
                         attn_dropout_prob, norm, loss, n_negatives, negative_sampling, l2_emb, adam_beta2)
        if data.interactions is not None and data.interactions.timestamps is None:
            raise ValueError("TiSASRec needs timestamps, and this dataset has none (use sasrec)")
        if time_span < 1:
            raise ValueError(f"time_span must be >= 1, got {time_span}")
        self.time_span = int(time_span)
        self.position_key = nn.Embedding(self.max_len, hidden_size)
        self.position_value = nn.Embedding(self.max_len, hidden_size)
        self.interval_key = nn.Embedding(self.time_span + 1, hidden_size)
        self.interval_value = nn.Embedding(self.time_span + 1, hidden_size)
        self.table_dropout = nn.Dropout(hidden_dropout_prob)
        self.reset_parameters()

    def hidden(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        if times is None:
            raise ValueError("TiSASRec needs the items' timestamps (times [B, L])")
        B, L = items.shape
        pad = items == 0
        x = self.input_dropout(self.embed_items(items)) * ~pad.unsqueeze(-1)  # [B, L, d]
        drop = self.table_dropout
        positions = slice(self.max_len - L, self.max_len)
        rel = RelativeTerms(
            key_add=drop(self.position_key.weight[positions].expand(B, L, self.d)),  # [B, L, d]
            value_add=drop(self.position_value.weight[positions].expand(B, L, self.d)),
            index=time_intervals(times, pad, self.time_span),  # [B, L, L]
            key_table=drop(self.interval_key.weight),  # [k + 1, d]
            value_table=drop(self.interval_value.weight))
        return self.encoder(x, causal_mask(pad), rel)

    def embedding_tables(self) -> list[torch.Tensor]:
        return [self.item_embedding.weight, self.position_key.weight, self.position_value.weight,
                self.interval_key.weight, self.interval_value.weight]
