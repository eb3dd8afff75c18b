r"""NARM: Neural Attentive Recommendation Machine.

Li, Ren, Chen, Ren, Lian, Ma, "Neural Attentive Session-based Recommendation", CIKM 2017.
Official code: lijingsdu/sessionRec_NARM (Theano, ``NARM.py``); RecBole's ``NARM``. See
``MODELS.md``.

.. math::
    h_1..h_t = \mathrm{GRU}(\mathrm{drop}(E x_1), \dots, \mathrm{drop}(E x_t)), \qquad
    c_g = h_t \quad\text{(global encoder)}

    \alpha_{tj} = v^\top \sigma(A_1 h_j + A_2 h_t), \qquad
    c_l = \sum_j \tilde\alpha_{tj} h_j \quad\text{(local encoder)}

    c = \mathrm{drop}([c_l; c_g]), \qquad s_i = E_i\, B\, c \quad\text{(bilinear decoder)}

``E`` is the input embedding table, reused by the decoder (no output bias); ``A_1, A_2`` are
``h x h``, ``v`` is ``h``, ``B`` is ``embedding_size x 2h``, none with a bias. Trained on every
prefix of every user's training sequence (:class:`seq.data.PrefixBatches`) with a softmax
cross-entropy over all items.

**Choices** (paper vs official code vs RecBole):

- ``attention="softmax"`` (default, the official code): ``\tilde\alpha`` is the softmax of
  ``\alpha`` over the real positions. ``attention="sum"``: the raw ``\alpha`` (the paper's
  formula as commonly stated, and RecBole).
- The gates of the GRU and of the attention use the logistic sigmoid (the paper); the official
  Theano code uses ``hard_sigmoid``, a speed approximation of it.
- Initialisation as the official code: normal with std ``sqrt(2 / fan_in)`` for ``E`` (std
  ``sqrt(2 / n_items)``), ``A_1``, ``A_2``, ``B`` (std ``sqrt(2 / embedding_size)``), ``v``
  (std ``sqrt(2)``: a ``1 x h`` matrix in the official code) and the GRU's input weights;
  orthogonal recurrent weights; zero biases. The padding row of ``E`` is zero.
- The official code predicts over every id including the padding one; here the softmax is over
  the ``n_items`` real items only. It truncates long prefixes to their *first* 19 items; here
  the last ``max_len`` are kept (the newest items, as every other sequence model here).
- Dimensions: RecBole's 64 / 128 (the official 50 / 100 are a config away); dropout 0.25 on the
  embeddings and 0.5 on ``c`` (both).
"""
from __future__ import annotations

import torch
from torch import nn

from gcf.models.registry import register_model

from ..data import PrefixBatches
from ..layers import GRUEncoder
from ..losses import next_item_loss
from .base import SeqRecommender, item_rows

ATTENTIONS = ("softmax", "sum")


@register_model("narm", family="seq")
class NARM(SeqRecommender):
    """NARM (module docstring).

    Args:
        embedding_size: item embedding size (default 64). hidden_size: GRU width (default 128).
        n_layers: GRU layers (default 1). dropout_probs: ``[embedding, context]`` dropout
            (default ``[0.25, 0.5]``). attention: ``softmax`` | ``sum`` (default ``softmax``).
        max_len: history length (default 50).

    Shapes: ``encode(items [B, L])`` -> ``[B, embedding_size]`` (``B c``); scores ``[B, n_items]``.
    """

    def __init__(self, data, embedding_size: int = 64, hidden_size: int = 128, n_layers: int = 1,
                 dropout_probs: list | tuple = (0.25, 0.5), attention: str = "softmax", max_len: int = 50):
        super().__init__(data, max_len)
        if attention not in ATTENTIONS:
            raise ValueError(f"narm: attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")
        if len(dropout_probs) != 2:
            raise ValueError(f"narm: dropout_probs must be [embedding, context], got {dropout_probs!r}")
        self.attention = attention
        self.item_embedding = nn.Embedding(data.n_items + 1, embedding_size, padding_idx=0)
        self.encoder = GRUEncoder(embedding_size, hidden_size, n_layers, emb_dropout=dropout_probs[0])
        self.a1 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.a2 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v = nn.Linear(hidden_size, 1, bias=False)
        self.context_dropout = nn.Dropout(dropout_probs[1])
        self.b = nn.Linear(2 * hidden_size, embedding_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        def normal_(w: torch.Tensor, fan_in: int) -> None:
            w.normal_(0.0, (2.0 / fan_in) ** 0.5)

        normal_(self.item_embedding.weight, self.n_items)
        self.item_embedding.weight[0].zero_()
        h = self.a1.weight.shape[0]
        normal_(self.a1.weight, h)
        normal_(self.a2.weight, h)
        normal_(self.v.weight, 1)
        normal_(self.b.weight, self.b.weight.shape[0])  # official B: (embedding, 2h), std sqrt(2/embedding)
        for name, p in self.encoder.gru.named_parameters():
            if name.startswith("weight_ih"):
                normal_(p, p.shape[1])
            elif name.startswith("weight_hh"):
                for block in p.view(3, h, h):
                    nn.init.orthogonal_(block)
            else:
                p.zero_()

    def batches(self, data, batch_size: int):
        return PrefixBatches(data, batch_size, self.max_len)

    def loss(self, batch) -> torch.Tensor:
        return next_item_loss("ce", self.encode(batch["items"]), batch["targets"], self.item_embedding.weight)

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        pad = items == 0  # [B, L]
        outputs, last = self.encoder(self.item_embedding(items), pad=pad)  # [B, L, h], [B, h]
        alpha = self.v(torch.sigmoid(self.a1(outputs) + self.a2(last)[:, None])).squeeze(-1)  # [B, L]
        if self.attention == "softmax":
            alpha = torch.softmax(alpha.masked_fill(pad, float("-inf")), 1).nan_to_num(0.0)  # empty rows: 0
        else:
            alpha = alpha.masked_fill(pad, 0.0)
        local = (alpha[:, :, None] * outputs).sum(1)  # [B, h]
        return self.b(self.context_dropout(torch.cat([local, last], 1)))  # [B, embedding_size]

    def item_vectors(self) -> torch.Tensor:
        return item_rows(self.item_embedding.weight)
