"""BERT4Rec (Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer", CIKM 2019).

A bidirectional (BERT) encoder trained on the cloze task: random positions of the user's
last ``L`` items are replaced by the [mask] token and predicted from both sides (paper
Sec. 3; official TF code FeiSun/BERT4Rec ``modeling.py``, ``run.py``):

.. math::
    h^0_t = \\mathrm{Drop}(\\mathrm{LN}(E_{s_t} + P_t)), \\qquad
    h = \\mathrm{Block}^{(n)}_{\\text{post-LN}}(h^0), \\qquad
    P(v \\mid t) = \\mathrm{softmax}_v\\big(\\mathrm{LN}(\\mathrm{GELU}(W h_t + b)) E_v^\\top + b^O_v\\big)

with the input table ``E`` tied to the output, learned positions ``P``, post-LN blocks
(multi-head attention with an output projection, GELU feed-forward of width ``inner_size``,
dropout on each sublayer's output, LN eps 1e-12) and a key-padding mask only. The loss is the
cross-entropy over all items at the masked positions (``loss=sampled_ce``: a softmax over the
target and ``n_negatives`` negatives shared by the batch). To rank, the [mask] token is
appended after the history (its last ``L - 1`` items) and the item distribution at that
position scores every item. Initialisation: truncated normal, std 0.02 (``initializer_range``),
zero biases.

Departures from the official code:
- Masks are drawn afresh for every batch (:class:`seq.data.ClozeBatches`, as RecBole), not
  pre-generated with ``dupe_factor`` 10; every masked position becomes [mask] (the official
  scripts set ``mask_prob`` 1.0, so the 80/10/10 branch never runs there either); each
  position is masked independently (official: exactly ``max(1, round(len * p))`` positions,
  at most ``max_predictions_per_seq``). Training windows: the last ``L`` items of each user, or
  sliding windows (``window_stride``, the official ``prop_sliding_window``; default 1.0:
  without them, one window per user is memorised on small data); the official extra "last
  item only" copy of each window is ``last_item_ratio`` (0 by default).
- The softmax runs over the items only (the official vocabulary also holds [pad], [MASK] and
  [NO_USE]); no token-type embedding (all type 0 there: a constant vector).
- Adam with the trainer's constant learning rate (RecBole's choice), not AdamW with weight
  decay 0.01, warm-up, linear decay and clip-norm 5.
- Positions are slots of the right-aligned window, so the scored [mask] is always in the last
  slot.
"""
from __future__ import annotations

import torch
from torch import nn

from gcf.models.registry import register_model

from ..data import ClozeBatches
from ..layers import TransformerEncoder, padding_mask
from ..losses import SharedNegatives, next_item_loss
from .base import SeqRecommender


@register_model("bert4rec", family="seq")
class BERT4Rec(SeqRecommender):
    """BERT4Rec (module docstring).

    Args:
        max_len: window ``L`` (default 50, RecBole's; the official ML-1M/ML-20M setting is 200).
        hidden_size: ``d`` (64). n_layers: blocks (2). n_heads: heads (2).
        inner_size: feed-forward width (256). hidden_dropout_prob: 0.2. attn_dropout_prob: 0.2.
        mask_prob: probability of masking each position (0.2, ML-1M/ML-20M).
        window_stride: stride of the training windows over long sequences, as a fraction of
            ``max_len`` (official ``prop_sliding_window``; default 1.0, windows side by side;
            0 = the last window only).
        last_item_ratio: share of rows that mask only their last item (0; RecBole's ``ft_ratio``).
        loss: ``ce`` | ``sampled_ce``. n_negatives, negative_sampling: for ``sampled_ce``.
        initializer_range: std of the truncated-normal initialisation (0.02).
        length_buckets: batches of windows of similar length, cut to their longest row (off).

    Shapes: ``items [B, L]`` seq ids (0 = padding, ``n_items + 1`` = [mask]) -> ``[B, L, d]``.
    """

    trim_padding = True  # scores ignore leading padding (SeqRecommender.score)

    def __init__(self, data, max_len: int = 50, hidden_size: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_size: int = 256, hidden_dropout_prob: float = 0.2, attn_dropout_prob: float = 0.2,
                 mask_prob: float = 0.2, window_stride: float = 1.0, last_item_ratio: float = 0.0,
                 loss: str = "ce", n_negatives: int = 1000, negative_sampling: str = "uniform",
                 initializer_range: float = 0.02, length_buckets: bool = False):
        super().__init__(data, max_len)
        self.length_buckets = bool(length_buckets)
        if loss not in ("ce", "sampled_ce"):
            raise ValueError(f"BERT4Rec's loss must be 'ce' or 'sampled_ce', got {loss!r}")
        if not 0 < mask_prob <= 1:
            raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
        if not 0 <= last_item_ratio <= 1:
            raise ValueError(f"last_item_ratio must be in [0, 1], got {last_item_ratio}")
        if window_stride < 0:
            raise ValueError(f"window_stride must be >= 0, got {window_stride}")
        self.loss_kind, self.mask_prob = loss, float(mask_prob)
        self.window_stride, self.last_item_ratio = float(window_stride), float(last_item_ratio)
        self.mask_token = self.n_items + 1
        self.item_embedding = nn.Embedding(self.n_items + 2, hidden_size, padding_idx=0)  # + [mask]
        self.position_embedding = nn.Embedding(self.max_len, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size, eps=1e-12)
        self.input_dropout = nn.Dropout(hidden_dropout_prob)
        self.encoder = TransformerEncoder(n_layers, hidden_size, n_heads=n_heads, inner_size=inner_size,
                                          hidden_dropout=hidden_dropout_prob, attn_dropout=attn_dropout_prob,
                                          activation="gelu", norm="post", out_proj=True, ffn_inner_dropout=0.0,
                                          eps=1e-12)
        # the masked-LM head: a GELU transform and LN, then the tied table plus a bias per item
        self.head = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(),
                                  nn.LayerNorm(hidden_size, eps=1e-12))
        self.output_bias = nn.Parameter(torch.zeros(self.n_items + 1))  # indexed by seq id; 0 unused
        self.shared_negatives = SharedNegatives(data, n_negatives, negative_sampling) \
            if loss == "sampled_ce" else None
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.trunc_normal_(p, std=initializer_range, a=-2 * initializer_range, b=2 * initializer_range)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def batches(self, data, batch_size: int):
        return ClozeBatches(data, batch_size, self.max_len, self.mask_prob, window_stride=self.window_stride,
                            last_item_ratio=self.last_item_ratio, length_buckets=self.length_buckets)

    # ------------------------------------------------------------ network
    def hidden(self, items: torch.Tensor) -> torch.Tensor:
        """``[B, L, d]`` encoder outputs (every position sees every real one)."""
        L = items.shape[1]
        x = self.item_embedding(items) + self.position_embedding.weight[self.max_len - L:]
        return self.encoder(self.input_dropout(self.input_norm(x)), padding_mask(items == 0))

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, d]``: the head's output at a [mask] appended after the last ``L - 1`` items."""
        mask = items.new_full((len(items), 1), self.mask_token)
        items = torch.cat([items[:, 1:] if items.shape[1] >= self.max_len else items, mask], 1)
        return self.head(self.hidden(items)[:, -1])

    def item_vectors(self) -> torch.Tensor:
        w = self.item_embedding.weight  # a view of a parameter keeps requires_grad even under no_grad
        return (w if torch.is_grad_enabled() else w.detach())[1:self.n_items + 1]

    def score_sequences(self, users, items, times) -> torch.Tensor:
        return self.encode(items) @ self.item_vectors().T + self.output_bias[1:]

    # ------------------------------------------------------------ training
    def loss(self, batch: dict) -> torch.Tensor:
        labels = batch["labels"]  # [B, L], seq ids at masked positions, else 0
        keep = labels > 0
        h = self.head(self.hidden(batch["items"])[keep])  # [N, d], masked positions only
        negatives = log_q = None
        if self.loss_kind == "sampled_ce":
            negatives, log_q = self.shared_negatives(h.device)
        return next_item_loss(self.loss_kind, h, labels[keep], self.item_embedding.weight, negatives,
                              bias=self.output_bias, n_items=self.n_items, log_q=log_q)
