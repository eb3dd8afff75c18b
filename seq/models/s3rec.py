"""S3-Rec (Zhou, Wang, Zhang, Zhang, Wang, Zhao, Wen, Wang, "S3-Rec: Self-Supervised Learning for
Sequential Recommendation with Mutual Information Maximization", CIKM 2020, arXiv 2008.07873).

Two stages on one BERT-style encoder (official code RUCAIBox/CIKM2020-S3Rec, ``models.py``,
``datasets.py``, ``trainers.py``; ``../shared/MODELS.md``):

**Pre-training** (``stage=pretrain``): bidirectional attention over the user's items, some
replaced by [mask]; four objectives, each a score ``f(x, y) = sigmoid((W x) . y)`` with its own
``W`` (Linear ``d -> d``), with the attribute table ``A`` and the item table ``E``:

.. math::
    \\mathcal{L}_{AAP} = \\sum_{t\\,\\text{unmasked}} \\mathrm{BCE}(\\sigma(W_{aap} h_t A^\\top), a_{i_t}), \\quad
    \\mathcal{L}_{MAP} = \\sum_{t\\,\\text{masked}} \\mathrm{BCE}(\\sigma(W_{map} h_t A^\\top), a_{i_t}),

.. math::
    \\mathcal{L}_{MIP} = \\sum_{t\\,\\text{masked}} -\\log\\sigma\\big(f(h_t, E_{i_t}) - f(h_t, E_{j})\\big), \\quad
    \\mathcal{L}_{SP} = \\sum_u -\\log\\sigma\\big(f(c_u, s^+_u) - f(c_u, s^-_u)\\big),

``a_i`` the multi-hot attributes of item ``i``, ``j`` a random item outside the user's training
items, ``c`` / ``s+`` / ``s-`` the encodings (state at the last position) of the sequence with a
random segment masked / of that segment alone (everything else [mask]) / of a segment of the
same length from another place of all users' concatenated sequences. Joint loss
``0.2 AAP + 1 MIP + 1 MAP + 0.5 SP`` (sums over the batch, as the code; the weights assume that
scale). Masks are redrawn for every batch with probability ``mask_p`` per item, the last item
always masked; the segment length is uniform in ``[1, n // 2]``.

**Fine-tuning** (``stage=finetune``, ``pretrained=PATH``): SASRec's task on the same encoder with
a causal mask: at every position the next item against one uniform negative (BCE), scored by
the dot product with the item table; ranking from the newest position.

Encoder (both stages, the code): input ``Dropout(LN(E_i + P_t))``, post-LN blocks with an
output projection, GELU feed-forward of width ``4d``, LN eps 1e-12; N(0, 0.02) initialisation,
zero biases. Item table rows: 0 = padding, ``n_items + 1`` = [mask].

The pre-training stage writes its weights with the run (``out_dir/last.pt``: the trainer's
checkpoint, whose ``model`` entry is the state dict); ``pretrained=`` takes such a file (or a
plain state dict) and loads every encoder and table weight; the pre-training heads and the
attribute table are not part of the fine-tuned model. A missing file, a missing key or a shape
that differs (another dataset, ``hidden_size``, ``max_len``) is an error naming the file and key.
Pre-training has no validation task of its own: its runs rank validation with the fine-tuning
path (causal, item dot product), so run it with ``eval_step`` = ``epochs`` (no early stop).

Item attributes (``attributes``): a spec of :func:`seq.attributes.item_feature_matrix`:
``attributes`` (S3-Rec's ``Beauty_item2attributes.json``, found beside ``Beauty.txt``, or
``attributes:PATH``), ``genres`` (MovieLens), ``genres+tags``, ...; values must be in ``[0, 1]``.

Departures from the official code:
- Negatives (MIP and fine-tuning) are uniform over items outside the user's *training* items
  (official: outside the whole sequence, valid and test included: a peek at the future) and
  never the [mask] id (official ``neg_sample`` can return it).
- Rows with fewer than 2 items have no segment and add nothing to SP (official: a constant
  ``log 2`` from identical all-[mask] positive and negative segments).
- Pre-training rows: ``pretrain_samples=prefixes`` (official: every prefix of each training
  sequence, ~7x the users on Beauty) or ``last`` (one window per user, the default on CPU;
  far cheaper per epoch).
- Losses computed from logits (``binary_cross_entropy_with_logits``, ``softplus``) instead of
  ``log`` of sigmoids with ``+1e-24``; the padding row is zero at initialisation.
- Fine-tuning ``loss`` may also be ``ce`` or ``sampled_ce`` (:mod:`seq.losses`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gcf.models.registry import register_model

from ..attributes import item_feature_matrix
from ..data import NextItemBatches, SeqBatches, cut_padding
from ..layers import TransformerEncoder, causal_mask, padding_mask
from ..losses import NEXT_ITEM_LOSSES, SharedNegatives, next_item_loss
from .base import SeqRecommender

PRETRAIN_ONLY = ("attribute_embedding.", "heads.", "item_attributes")


class S3RecPretrainBatches(SeqBatches):
    """Pre-training rows (module docstring), one per user (``samples="last"``: the last ``L``
    training items) or one per training prefix (``"prefixes"``), shuffled:

    ``items [B, L]`` the original window (seq ids, right-aligned), ``masked [B, L]`` with [mask]
    at the masked positions, ``mip_negatives [B, L]``, ``segment_context``, ``segment_pos``,
    ``segment_neg`` ``[B, L]`` and ``has_segment [B]`` (bool).

    ``length_buckets=True``: rows of similar length in batches of about equal positions, each cut
    to its longest row (:meth:`seq.data.SeqBatches._chunks`; exact, as padding is masked and
    positions count from the right). The losses are sums, so a batch's weight stays about the same; a batch
    of short rows holds more rows (and more SP terms) than ``batch_size``."""

    def __init__(self, data, batch_size: int, max_len: int, mask_p: float, samples: str = "last",
                 length_buckets: bool = False):
        if samples not in ("last", "prefixes"):
            raise ValueError(f"pretrain_samples must be 'last' or 'prefixes', got {samples!r}")
        super().__init__(data, batch_size, max_len, n_negatives=1)
        self.mask_p, self.length_buckets = float(mask_p), bool(length_buckets)
        self.mask_token = data.n_items + 1
        lengths = self.seqs.lengths
        users = np.flatnonzero(lengths >= 1)
        if samples == "last":
            self.users, self.ends = users, lengths[users]
        else:  # every prefix length 1..n of every user
            self.users = np.repeat(users, lengths[users])
            self.ends = np.arange(len(self.users)) - np.repeat(np.cumsum(lengths[users]) - lengths[users],
                                                               lengths[users]) + 1
        self.long = self.seqs.items + 1  # all users' training items, concatenated (seq ids)

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def epoch(self, rng: np.random.Generator):
        L, M = self.max_len, self.mask_token
        j = np.arange(L)[None, :]
        for rows in self._chunks(rng, len(self.users), self.ends if self.length_buckets else None):
            users = self.users[rows]
            drop = self.seqs.lengths[users] - self.ends[rows]
            items, _ = self.seqs.padded(users, L, drop_last=drop)  # [B, L]
            real = items > 0
            n = real.sum(1)
            B = len(rows)
            masked_pos = ((rng.random((B, L)) < self.mask_p) | (j == L - 1)) & real  # the last item always
            neg = self._negatives(users, rng, L).reshape(B, L)
            # segment prediction: a run of U[1, n // 2] items at a uniform start
            has_seg = n >= 2
            seg_len = np.where(has_seg, 1 + (rng.random(B) * np.maximum(n // 2, 1)).astype(np.int64), 0)
            seg_start = (rng.random(B) * (n - seg_len + 1)).astype(np.int64)
            rel = j - (L - n)[:, None]  # index inside the real items
            in_seg = (rel >= seg_start[:, None]) & (rel < (seg_start + seg_len)[:, None]) & real
            neg_start = (rng.random(B) * (len(self.long) - seg_len + 1)).astype(np.int64)
            neg_src = np.clip(neg_start[:, None] + rel - seg_start[:, None], 0, len(self.long) - 1)
            parts = [items, np.where(masked_pos, M, items), np.where(masked_pos, neg, 0), np.where(in_seg, M, items),
                     np.where(real, np.where(in_seg, items, M), 0),
                     np.where(real, np.where(in_seg, self.long[neg_src], M), 0)]
            if self.length_buckets:
                parts = cut_padding(*parts)
            names = ("items", "masked", "mip_negatives", "segment_context", "segment_pos", "segment_neg")
            yield {"users": torch.from_numpy(users), **{k: torch.from_numpy(a) for k, a in zip(names, parts)},
                   "has_segment": torch.from_numpy(has_seg)}


@register_model("s3rec", family="seq")
class S3Rec(SeqRecommender):
    """S3-Rec (module docstring).

    Args:
        stage: ``pretrain`` | ``finetune``. pretrained: the pre-training run's ``last.pt``
            (or ``best.pt``, or a state dict) to start fine-tuning from; ``null`` = from scratch.
        attributes: item attributes for pre-training (:func:`seq.attributes.item_feature_matrix`:
            ``attributes`` for Beauty, ``genres`` for MovieLens); ``null`` for fine-tuning.
        max_len: ``L`` (50). hidden_size: ``d`` (64). n_layers: 2. n_heads: 2. inner_size: ``4d``.
        hidden_dropout_prob, attn_dropout_prob: 0.5 / 0.5 (official). initializer_range: 0.02.
        loss: fine-tuning loss ``bce`` (official, one negative) | ``ce`` | ``sampled_ce``;
            n_negatives, negative_sampling: as SASRec.
        mask_p: pre-training mask probability (0.2). aap_weight, mip_weight, map_weight,
            sp_weight: 0.2, 1, 1, 0.5. pretrain_samples: ``last`` | ``prefixes``.
        length_buckets: both stages' batches hold rows of similar length, cut to their longest row
            (off; exact per row, ~7x fewer positions on Beauty at ``L`` 50).

    Shapes: ``items [B, L]`` seq ids (0 = padding, ``n_items + 1`` = [mask]) -> ``[B, L, d]``.
    """

    def __init__(self, data, stage: str = "finetune", pretrained: str | None = None, attributes: str | None = None,
                 max_len: int = 50, hidden_size: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_size: int | None = None, hidden_dropout_prob: float = 0.5, attn_dropout_prob: float = 0.5,
                 initializer_range: float = 0.02, loss: str = "bce", n_negatives: int = 1,
                 negative_sampling: str = "uniform", mask_p: float = 0.2, aap_weight: float = 0.2,
                 mip_weight: float = 1.0, map_weight: float = 1.0, sp_weight: float = 0.5,
                 pretrain_samples: str = "last", length_buckets: bool = False,
                 item_attributes: torch.Tensor | None = None):
        super().__init__(data, max_len)
        if stage not in ("pretrain", "finetune"):
            raise ValueError(f"stage must be 'pretrain' or 'finetune', got {stage!r}")
        if loss not in NEXT_ITEM_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(NEXT_ITEM_LOSSES)}, got {loss!r}")
        if not 0 < mask_p <= 1:
            raise ValueError(f"mask_p must be in (0, 1], got {mask_p}")
        if stage == "pretrain" and item_attributes is None:
            raise ValueError("stage=pretrain needs item attributes: set attributes=<item feature or JSON file>")
        if stage == "pretrain" and pretrained:
            raise ValueError("pretrained= is for stage=finetune")
        if pretrain_samples not in ("last", "prefixes"):
            raise ValueError(f"pretrain_samples must be 'last' or 'prefixes', got {pretrain_samples!r}")
        self.stage, self.loss_kind, self.n_negatives = stage, loss, int(n_negatives)
        self.length_buckets = bool(length_buckets)
        self.mask_token, self.mask_p, self.pretrain_samples = self.n_items + 1, float(mask_p), pretrain_samples
        self.weights = {"aap": float(aap_weight), "mip": float(mip_weight), "map": float(map_weight),
                        "sp": float(sp_weight)}
        d = hidden_size
        self.item_embedding = nn.Embedding(self.n_items + 2, d, padding_idx=0)  # + [mask]
        self.position_embedding = nn.Embedding(self.max_len, d)
        self.input_norm = nn.LayerNorm(d, eps=1e-12)
        self.input_dropout = nn.Dropout(hidden_dropout_prob)
        self.encoder = TransformerEncoder(n_layers, d, n_heads=n_heads, inner_size=inner_size or 4 * d,
                                          hidden_dropout=hidden_dropout_prob, attn_dropout=attn_dropout_prob,
                                          activation="gelu", norm="post", out_proj=True, ffn_inner_dropout=0.0,
                                          eps=1e-12)
        self.shared_negatives = SharedNegatives(data, self.n_negatives, negative_sampling) \
            if loss == "sampled_ce" else None
        if stage == "pretrain":
            attrs = torch.as_tensor(item_attributes, dtype=torch.float32)
            if attrs.shape[0] != self.n_items:
                raise ValueError(f"item attributes have {attrs.shape[0]} rows, the data has {self.n_items} items")
            self.register_buffer("item_attributes", torch.cat([attrs.new_zeros(1, attrs.shape[1]), attrs]),
                                 persistent=False)  # [n_items + 1, A], row 0 = padding
            self.attribute_embedding = nn.Embedding(attrs.shape[1], d)
            self.heads = nn.ModuleDict({k: nn.Linear(d, d) for k in ("aap", "mip", "map", "sp")})
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=initializer_range)
            elif name.endswith("bias") and "norm" not in name and ".ln" not in name:
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.pretrained = pretrained
        if pretrained:
            self.load_pretrained(pretrained)

    @classmethod
    def from_config(cls, data, **kwargs) -> "S3Rec":
        spec = kwargs.get("attributes")
        attrs = None
        if spec and kwargs.get("stage", "finetune") == "pretrain":
            attrs = torch.from_numpy(item_feature_matrix(data, spec))
            if attrs.shape[1] == 0:
                raise ValueError(f"attributes={spec!r} gives no attribute columns")
            if attrs.min() < 0 or attrs.max() > 1:
                raise ValueError(f"attributes={spec!r}: AAP/MAP targets must lie in [0, 1] (multi-hot)")
        return cls(data, **kwargs, item_attributes=attrs)

    def load_pretrained(self, path: str) -> None:
        """Copy every weight of this model from the pre-training file ``path`` (module docstring)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"pretrained={path!r}: no such file (run stage=pretrain first; it writes "
                                    f"out_dir/last.pt)")
        try:
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (any unreadable file)
            raise ValueError(f"pretrained={path!r}: not a torch checkpoint ({e})") from None
        state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"pretrained={path!r}: expected a state dict or a checkpoint with 'model'")
        own = self.state_dict()
        unexpected = [k for k in state if k not in own and not k.startswith(PRETRAIN_ONLY)]
        if unexpected:
            raise ValueError(f"pretrained={path!r}: key {unexpected[0]!r} is not an S3-Rec weight "
                             f"(a checkpoint of another model?)")
        for k, v in own.items():
            if k not in state:
                raise ValueError(f"pretrained={path!r}: missing key {k!r}")
            if tuple(state[k].shape) != tuple(v.shape):
                raise ValueError(f"pretrained={path!r}: key {k!r} has shape {tuple(state[k].shape)}, this model "
                                 f"{tuple(v.shape)} (another dataset, hidden_size or max_len?)")
        self.load_state_dict({k: state[k] for k in own})

    # ------------------------------------------------------------ network
    def hidden(self, items: torch.Tensor, bidirectional: bool = False) -> torch.Tensor:
        """``[B, L, d]``: causal (fine-tuning, ranking) or bidirectional (pre-training)."""
        L = items.shape[1]
        x = self.item_embedding(items) + self.position_embedding.weight[self.max_len - L:]
        pad = items == 0
        mask = padding_mask(pad) if bidirectional else causal_mask(pad)
        return self.encoder(self.input_dropout(self.input_norm(x)), mask)

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.hidden(items)[:, -1]

    def item_vectors(self) -> torch.Tensor:
        w = self.item_embedding.weight  # a view of a parameter keeps requires_grad even under no_grad
        return (w if torch.is_grad_enabled() else w.detach())[1:self.n_items + 1]

    # ------------------------------------------------------------ training
    def n_negatives_for_loss(self) -> int:
        return self.n_negatives if self.loss_kind == "bce" else 0

    def batches(self, data, batch_size: int):
        if self.stage == "pretrain":
            return S3RecPretrainBatches(data, batch_size, self.max_len, self.mask_p, self.pretrain_samples,
                                        self.length_buckets)
        return NextItemBatches(data, batch_size, self.max_len, self.n_negatives_for_loss(), self.length_buckets)

    def loss(self, batch: dict) -> torch.Tensor:
        if self.stage == "pretrain":
            losses = self.pretrain_losses(batch)
            return sum(self.weights[k] * v for k, v in losses.items())
        h = self.hidden(batch["items"])  # [B, L, d]
        keep = batch["targets"] > 0
        h, t = h[keep], batch["targets"][keep]
        negatives, log_q = None, None
        if self.loss_kind == "bce":
            negatives = batch["negatives"][keep]
        elif self.loss_kind == "sampled_ce":
            negatives, log_q = self.shared_negatives(h.device)
        return next_item_loss(self.loss_kind, h, t, self.item_embedding.weight, negatives, n_items=self.n_items,
                              log_q=log_q)

    def pretrain_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The four pre-training losses (sums over the batch), by name."""
        items, masked = batch["items"], batch["masked"]
        h = self.hidden(masked, bidirectional=True)  # [B, L, d]
        is_masked = masked == self.mask_token
        unmasked = (items > 0) & ~is_masked
        attr_table = self.attribute_embedding.weight  # [A, d]
        targets = self.item_attributes[items]  # [B, L, A]

        def attribute_loss(head: str, where: torch.Tensor) -> torch.Tensor:
            logits = self.heads[head](h[where]) @ attr_table.T  # [N, A]
            return F.binary_cross_entropy_with_logits(logits, targets[where], reduction="sum")

        def pair_loss(head: str, x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
            wx = self.heads[head](x)
            s_pos, s_neg = torch.sigmoid((wx * pos).sum(-1)), torch.sigmoid((wx * neg).sum(-1))
            return F.softplus(-(s_pos - s_neg)).sum()  # -log sigmoid(f+ - f-), f = sigmoid(score)

        E = self.item_embedding
        mip = pair_loss("mip", h[is_masked], E(items[is_masked]), E(batch["mip_negatives"][is_masked]))
        seg = batch["has_segment"]
        if bool(seg.any()):
            both = torch.cat([batch["segment_context"][seg], batch["segment_pos"][seg], batch["segment_neg"][seg]])
            z = self.hidden(both, bidirectional=True)[:, -1].view(3, int(seg.sum()), -1)  # [3, S, d]
            sp = pair_loss("sp", z[0], z[1], z[2])
        else:
            sp = h.sum() * 0.0
        return {"aap": attribute_loss("aap", unmasked), "mip": mip, "map": attribute_loss("map", is_masked),
                "sp": sp}
