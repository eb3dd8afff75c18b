"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018).

A causal transformer over the user's last ``L`` items predicts, at every position, the next
item (paper Sec. III; official TF code kang205/SASRec):

.. math::
    x_t = \\sqrt{d}\\, E_{s_t} + P_t, \\qquad
    F = \\mathrm{LN}(\\mathrm{Block}^{(n)}(x)), \\qquad
    r_{i,t} = F_t \\cdot E_i

with ``E`` the item table (shared by input and output, Sec. III-D), ``P`` learned positions
indexed by slot (right-aligned, so the newest item is always in slot ``L - 1``), and blocks of
causal single-head attention and a ReLU feed-forward of width ``d``. The loss (Sec. III-E) is
binary cross-entropy at every non-padding position with one uniform negative outside the
user's training items: ``-log s(r+) - log(1 - s(r-))``, averaged over positions.

As in the official TF code (``model.py``, ``modules.py``): embeddings scaled by ``sqrt(d)``;
dropout on the input, then each block is ``y = LN(x); x = y + Attn(q=y, k=v=x)``,
``y = LN(x); x = y + FFN(y)`` (``norm="sasrec"`` in :mod:`seq.layers`: the residual comes from
the normalised input and keys/values are un-normalised); biased Q/K/V projections, no output
projection; dropout on the attention weights and after each feed-forward layer; LN eps 1e-8;
a final LN; glorot-uniform initialisation with zero biases and a zero padding row; Adam with
beta2 = 0.98 (``adam_beta2``, applied through :meth:`param_groups`).

Options beyond the paper: ``loss=ce`` is SASRec+ (Klenitskiy & Vasilev, RecSys 2023, full
softmax over all items at every position), ``loss=sampled_ce`` a softmax over the target and
``n_negatives`` negatives shared by the batch (their SASRec+3000 with ``n_negatives=3000``),
drawn uniformly or by popularity (``negative_sampling``, with the logQ correction);
``bce`` may use more than one negative (summed). ``norm="pre"``/``"post"`` give the standard
GPT-2/BERT placements. ``length_buckets=true`` batches users of similar length and cuts each
batch to its longest row (:class:`seq.data.NextItemBatches`): the same positions and loss, a
less mixed batch, ~2x less work at ``max_len=200`` on ML-1M. The full softmax is computed with
its gradient in row chunks (:func:`seq.losses.softmax_ce`), never as a whole ``[N, n_items]``
autograd graph.

Departures from the official code:
- The timeline mask that zeroes padding positions after every block is not applied: padding
  keys are masked in attention, so padding positions never reach a real position's output.
- Padding queries attend to themselves instead of to a uniform row over masked keys (no
  effect on real positions; avoids empty softmax rows).
- An epoch is one shuffled pass over the users with >= 2 training items (the TF sampler draws
  ``#users / batch`` users with replacement), as pmixer/SASRec.pytorch does now.
- Defaults: ``max_len=50`` (the official default; its ML-1M run uses 200, which costs ~8x per
  step on CPU: attention is ``O(L^2)``), dropout 0.2 (the official ML-1M value, for dense
  MovieLens data), ``hidden_size=64`` (paper 50; 64 as RecBole and SASRec+). With ``max_len``
  L only the last L training items of a user are ever targets, as in the official code.
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from gcf.models.registry import register_model

from ..layers import MultiHeadAttention, TransformerEncoder, causal_mask
from ..losses import NEXT_ITEM_LOSSES, SharedNegatives, next_item_loss
from .base import SeqRecommender, item_rows


def init_weights(module: nn.Module, weight_init) -> None:
    """``weight_init`` on every weight matrix and embedding, zero biases, LN weights untouched;
    the caller zeroes padding rows."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            weight_init(p)
        elif name.endswith("bias"):  # LN biases start at 0 anyway
            nn.init.zeros_(p)


def glorot_init(module: nn.Module) -> None:
    """Glorot-uniform weights (TF's default), zero biases."""
    init_weights(module, nn.init.xavier_uniform_)


def mha_in_projection_init(module: nn.Module) -> None:
    """Glorot-uniform query/key/value weights over the stacked ``[3d, d]`` matrix (bound
    ``sqrt(6 / 4d)``), zero biases: how ``torch.nn.MultiheadAttention`` initialises its
    ``in_proj_weight``, which the SASRec+ code's ``N(0, 0.02^2)`` initialiser (applied to
    ``nn.Linear``/``nn.Embedding`` modules only) never reaches."""
    for m in module.modules():
        if isinstance(m, MultiHeadAttention):
            bound = math.sqrt(6.0 / (4 * m.d))
            for lin in (m.q, m.k, m.v):
                nn.init.uniform_(lin.weight, -bound, bound)
                nn.init.zeros_(lin.bias)


class NextItemTransformer(SeqRecommender):
    """What SASRec and TiSASRec share: the item table (input and output), a causal
    :class:`TransformerEncoder` in SASRec's TF layout, the next-item loss at every position and
    Adam's beta2. A subclass builds its extra tables and defines :meth:`hidden`."""

    trim_padding = True  # scores ignore leading padding (SeqRecommender.score)
    init, initializer_range = "glorot", 0.02  # a subclass's constructor sets them before reset_parameters()

    def __init__(self, data, max_len: int, hidden_size: int, n_layers: int, n_heads: int, inner_size: int | None,
                 hidden_dropout_prob: float, attn_dropout_prob: float, norm: str, loss: str, n_negatives: int,
                 negative_sampling: str, l2_emb: float, adam_beta2: float, attn_out_proj: bool = False):
        super().__init__(data, max_len)
        if loss not in NEXT_ITEM_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(NEXT_ITEM_LOSSES)}, got {loss!r}")
        if loss != "ce" and n_negatives < 1:
            raise ValueError(f"loss={loss!r} needs n_negatives >= 1, got {n_negatives}")
        self.d, self.loss_kind, self.n_negatives = hidden_size, loss, int(n_negatives)
        self.l2_emb, self.adam_beta2 = float(l2_emb), float(adam_beta2)
        self.item_embedding = nn.Embedding(self.n_items + 1, hidden_size, padding_idx=0)
        self.input_dropout = nn.Dropout(hidden_dropout_prob)
        # SASRec's TF blocks: no output projection, no dropout on the attention output (only on
        # its weights), dropout after each feed-forward layer, a final LN for pre-norm layouts
        self.encoder = TransformerEncoder(n_layers, hidden_size, final_norm=norm != "post", n_heads=n_heads,
                                          inner_size=inner_size, hidden_dropout=hidden_dropout_prob,
                                          attn_dropout=attn_dropout_prob, activation="relu", norm=norm,
                                          out_proj=bool(attn_out_proj), attn_out_dropout=0.0, eps=1e-8)
        self.shared_negatives = SharedNegatives(data, self.n_negatives, negative_sampling) \
            if loss == "sampled_ce" else None

    def reset_parameters(self) -> None:
        if self.init == "glorot":
            glorot_init(self)
        elif self.init in ("normal", "normal_mha"):  # RecBole, GPT-2; SASRec+'s code with normal_mha
            init_weights(self, partial(nn.init.normal_, mean=0.0, std=self.initializer_range))
            if self.init == "normal_mha":
                mha_in_projection_init(self)
        else:
            raise ValueError(f"init must be 'glorot', 'normal' or 'normal_mha', got {self.init!r}")
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """``sqrt(d) E[items]`` ``[B, L, d]`` (the TF code's scaling; the output uses ``E``)."""
        return self.item_embedding(items) * math.sqrt(self.d)

    def hidden(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, d]``: the output at every position (position ``t`` has seen items ``<= t``)."""
        raise NotImplementedError

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.hidden(items, times)[:, -1]

    def item_vectors(self) -> torch.Tensor:
        return item_rows(self.item_embedding.weight)

    # ------------------------------------------------------------ training
    def n_negatives_for_loss(self) -> int:
        return self.n_negatives if self.loss_kind == "bce" else 0

    def loss(self, batch: dict) -> torch.Tensor:
        h = self.hidden(batch["items"], batch.get("times"))  # [B, L, d]
        targets = batch["targets"]  # [B, L], 0 at padding
        keep = targets > 0
        h, t = h[keep], targets[keep]  # [N, d], [N]
        negatives, log_q = None, None
        if self.loss_kind == "bce":
            negatives = batch["negatives"][keep]  # [N, k]
        elif self.loss_kind == "sampled_ce":
            negatives, log_q = self.shared_negatives(h.device)  # [k]
        loss = next_item_loss(self.loss_kind, h, t, self.item_embedding.weight, negatives, log_q=log_q)
        return loss + self.l2_penalty() if self.l2_emb else loss

    def embedding_tables(self) -> list[torch.Tensor]:
        """The tables ``l2_emb`` applies to."""
        return [self.item_embedding.weight]

    def l2_penalty(self) -> torch.Tensor:
        """``l2_emb * sum(w^2) / 2`` over :meth:`embedding_tables` (TF's ``l2_regularizer``)."""
        return self.l2_emb * sum(w.pow(2).sum() for w in self.embedding_tables()) / 2

    def param_groups(self) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "betas": (0.9, self.adam_beta2)}]


@register_model("sasrec", family="seq")
class SASRec(NextItemTransformer):
    """SASRec (module docstring).

    Args:
        max_len: positions ``L`` (default 50). hidden_size: ``d`` (default 64).
        n_layers: blocks (2). n_heads: heads (1). inner_size: feed-forward width (default ``d``).
        hidden_dropout_prob: dropout on the input and the feed-forward layers (0.2).
        attn_dropout_prob: dropout on the attention weights (0.2).
        norm: ``sasrec`` (official TF layout) | ``pre`` | ``post``.
        loss: ``bce`` | ``ce`` | ``sampled_ce``. n_negatives: negatives per position (``bce``)
            or per batch (``sampled_ce``). negative_sampling: ``uniform`` | ``popularity``
            (``sampled_ce``).
        l2_emb: ``l2_emb * sum(w^2) / 2`` over the item table, each step (TF's
            ``l2_regularizer``; 0 in the official SASRec defaults).
        adam_beta2: Adam's beta2 for this model's parameters (official 0.98).
        length_buckets: batches of users of similar length, cut to their longest row
            (:class:`seq.data.NextItemBatches`; off by default, as the official sampler).
        init: ``glorot`` (official TF, default) | ``normal`` (``N(0, initializer_range^2)``,
            RecBole's) | ``normal_mha`` (the SASRec+ code's: ``normal`` except the attention's
            query/key/value weights, glorot-uniform over the stacked ``[3d, d]`` matrix as
            ``torch.nn.MultiheadAttention`` leaves them). initializer_range: its std (0.02).
        attn_out_proj: an output projection after attention (``torch.nn.MultiheadAttention``'s,
            as the PyTorch ports and the SASRec+ code have; the official TF code has none).
        positions: ``right`` (default, the official TF code: the newest item always at position
            ``L-1``) | ``left`` (the SASRec+ code, which pads on the right: the oldest kept item at
            position 0, so an item's position does not change as later items arrive).

    Shapes: ``items [B, L]`` seq ids (0 = padding, right-aligned) -> hidden ``[B, L, d]``.
    """

    def __init__(self, data, max_len: int = 50, hidden_size: int = 64, n_layers: int = 2, n_heads: int = 1,
                 inner_size: int | None = None, hidden_dropout_prob: float = 0.2, attn_dropout_prob: float = 0.2,
                 norm: str = "sasrec", loss: str = "bce", n_negatives: int = 1, negative_sampling: str = "uniform",
                 l2_emb: float = 0.0, adam_beta2: float = 0.98, length_buckets: bool = False,
                 init: str = "glorot", initializer_range: float = 0.02, attn_out_proj: bool = False,
                 positions: str = "right"):
        super().__init__(data, max_len, hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob,
                         attn_dropout_prob, norm, loss, n_negatives, negative_sampling, l2_emb, adam_beta2,
                         attn_out_proj=attn_out_proj)
        self.length_buckets = bool(length_buckets)
        self.init, self.initializer_range = init, float(initializer_range)
        if positions not in ("right", "left"):
            raise ValueError(f"positions={positions!r}: expected 'right' or 'left'")
        self.positions = positions
        self.position_embedding = nn.Embedding(self.max_len, hidden_size)
        self.reset_parameters()

    def hidden(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        L, pad = items.shape[1], items == 0
        if self.positions == "left":  # position = index from the first real item (padding is on the left)
            positions = self.position_embedding((torch.arange(L, device=items.device)
                                                 - pad.sum(1, keepdim=True)).clamp(min=0))  # [B, L, d]
        else:
            positions = self.position_embedding.weight[self.max_len - L:]  # [L, d]
        x = self.input_dropout(self.embed_items(items) + positions) * (~pad).unsqueeze(-1)
        return self.encoder(x, causal_mask(pad))
