"""CARCA (Rashed, Elsayed & Schmidt-Thieme, "Context and Attribute-Aware Sequential
Recommendation via Cross-Attention", RecSys 2022; official TF code ahmedrashed-ml/CARCA).

Every item occurrence is embedded with its attributes ``a_i`` and the context ``c`` of the
interaction (6 time features, :func:`seq.attributes.time_context`), for profile items and
candidates alike:

.. math::
    z(i, c) = W_2\\,[\\sqrt{d}\\,E_i \\,\\|\\, W_1 [a_i \\| c] + b_1] + b_2 \\qquad
    (W_1: F{+}6 \\to 5d,\\; W_2: 6d \\to d)

The profile ``z(s_1, c_1) .. z(s_L, c_L)`` goes through ``n_layers`` self-attention blocks and a
final layer norm, giving ``H``. A candidate ``j`` for the next step, embedded with the context of
that step, ``q_j = z(j, c_{t+1})``, attends to ``H`` (cross-attention, one block with its own
weights) and is scored

.. math::
    y_j = \\sigma\\big(w^\\top (\\mathrm{MHA}(q_j, H, H) \\odot q_j) + b\\big)

trained with binary cross-entropy on the true next item and ``n_negatives`` uniform items
outside the user's training items per position, plus ``l2_emb * sum(E^2) / 2``.
``cross_attention=false`` is the paper's "w/o CA" variant: ``y_j = sigma(H_t . q_j)``.

As in the official code (``CARCA.py``): no positional embedding; ids scaled by ``sqrt(d)`` with a
zero padding row; ``W_1`` initialised ``N(0, 0.01)``, every other layer (``W_2``, the logit
layer included) glorot-uniform, TF's default (with all three at ``N(0, 0.01)`` the product of
small factors in the cross-attention head barely learns: hit@10 0.13 against 0.69 on the test's
category task); attention
projections ``Q, K, V`` with a leaky-ReLU (slope 0.2, TF's), no output projection, dropout on the
weights; each profile block ``y = LN(x); x = MHA(y, x) * y`` (the "residual" is a product with the
normalised queries; ``residual=add`` gives the usual sum), then ``y = LN(x); x = y + FFN(y)``
(``d -> d`` leaky-ReLU ``-> d``, dropout after both layers), padding re-zeroed; the candidates'
product residual is ``cross_residual`` (official: on for Beauty and Games); Adam beta2 0.98; both
the positive and the negatives carry the context of the true next item.

Departures (the official code's defects; the official behaviour is an option where cheap):

- **Leak-free attention (default).** The official code trains with non-causal attention over
  the profile, and every candidate at step ``t`` attends to the whole profile, which holds the
  positive itself (item ``t + 1``) and everything after it. Here the profile attention is causal
  and the candidate at step ``t`` attends to profile positions ``<= t`` only; at ranking time
  the candidates attend to the whole history, exactly as position ``t = L`` did in training.
  ``official_attention=true`` restores the leaking form.
- Padding keys are always masked. (In the official code the final layer norm makes the padding
  rows non-zero, so its zero-key mask stops masking them in the cross-attention.)
- **The target's context at ranking time.** The evaluator hands a model the user's history
  (:mod:`gcf.evaluate`), not the held-out interaction, so its time is unknown: the candidates
  get the context of the newest history item (for the test ranking, the validation item's
  time). The official code gives them the test interaction's own time. ``candidate_time=last``
  trains with the same rule (the time of the newest profile item at each step), so training
  and ranking agree; ``candidate_time=target`` (default, the paper) trains with the true next
  interaction's time.
- Context is only used when the timestamps are unix seconds (``context=auto``): the sequence
  formats (Beauty in S3-Rec form) store positions, which have no calendar.
- The week feature is the ISO week / 53 (official: / 4, up to ~13; ``week_scale=4``); the year
  is min-max scaled over the training interactions (official: all interactions).
- One epoch is one shuffled pass over the users with >= 2 training items (official: #users /
  batch random users with replacement); the official code has no early stopping or model
  selection and evaluates every 20 epochs on test; here the trainer stops early on validation.
- ``positions=right`` adds SASRec's learned positional embedding to the profile (the newest item
  at position ``L - 1``; candidates get none). Not in the paper or the official code, which have
  no positions (default ``none``): there the non-causal attention sees the whole profile, while
  in the leak-free causal form the order reaches the model only through the causal mask.
- ``length_buckets=true`` batches users of similar length and cuts each batch to its longest
  row (:class:`seq.data.NextItemBatches`); exact here (no positions counted from the left,
  padding keys masked), and on short-sequence data such as Beauty (mean ~9 items at ``L = 50``)
  most of the columns are padding.
- Defaults are CPU-sized (``configs/model/carca.yaml``): d 64 (official 90 on Beauty), dropout 0.2,
  lr 1e-3 (official 1e-4 for 1,801 epochs).

Attributes (``item_features``, :func:`seq.attributes.item_feature_matrix`): ``auto`` takes
genres + year (+ tags) from MovieLens side columns, or S3-Rec's ``<Name>_item2attributes.json``
beside the data file, else none; or any spec such as ``genres+year``, ``attributes``,
``latent:PATH`` (BiTVAE-Rec's CF latents in this slot), ``none``. The constructor also takes a
ready matrix (``item_attribute_matrix [n_items, F]``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gcf.models.registry import register_model

from ..attributes import CONTEXT_SIZE, epoch_seconds, find_item2attributes, item_feature_matrix, time_context, \
    year_range
from ..data import NextItemBatches
from ..layers import FeedForward, MultiHeadAttention, causal_mask, padding_mask
from .base import SeqRecommender
from .sasrec import glorot_init


class NextItemTimeBatches(NextItemBatches):
    """:class:`NextItemBatches` plus ``target_times [B, L]``: the time of each position's
    target (0 where there is none)."""

    def epoch(self, rng: np.random.Generator):
        for batch in super().epoch(rng):
            if "times" in batch:
                _, t = self.seqs.padded(batch["users"].numpy(), self.max_len)
                t = t[:, self.max_len - batch["targets"].shape[1]:]  # as cut by length_buckets
                batch["target_times"] = torch.from_numpy(np.where(batch["targets"].numpy() > 0, t, 0))
            yield batch


class LeakyAttention(MultiHeadAttention):
    """Multi-head attention whose Q/K/V projections pass through a leaky-ReLU (CARCA's TF code),
    no output projection. Queries and keys may differ in length.

    Shapes: ``query_in [B, Lq, d]``, ``kv_in [B, L, d]``, ``mask [B, 1, Lq or 1, L]`` -> ``[B, Lq, d]``."""

    def __init__(self, d: int, n_heads: int, attn_dropout: float, proj_activation: bool = True):
        super().__init__(d, n_heads, attn_dropout, out_proj=False)
        self.act = nn.LeakyReLU(0.2) if proj_activation else nn.Identity()

    def forward(self, query_in: torch.Tensor, kv_in: torch.Tensor, mask: torch.Tensor, rel=None) -> torch.Tensor:
        """``query_in [1, Lq, d]`` (queries shared by every row of ``kv_in``, e.g. all items as
        candidates) is projected once and broadcast."""
        B, (_, Lq, d) = kv_in.shape[0], query_in.shape
        q = self._heads(self.act(self.q(query_in))).expand(B, -1, -1, -1)  # [B, h, Lq, d_h]
        k, v = self._heads(self.act(self.k(kv_in))), self._heads(self.act(self.v(kv_in)))  # [B, h, L, d_h]
        p = self.attn_dropout if self.training else 0.0
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, h, Lq, d_h]
        return z.transpose(1, 2).reshape(B, Lq, d)


class ProfileBlock(nn.Module):
    """CARCA's self-attention block: ``y = LN(x); x = MHA(y, x) (*|+) y; y = LN(x); x = y + FFN(y)``."""

    def __init__(self, d: int, n_heads: int, dropout: float, residual: str, proj_activation: bool):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-8), nn.LayerNorm(d, eps=1e-8)
        self.attn = LeakyAttention(d, n_heads, dropout, proj_activation)
        self.ffn = FeedForward(d, d, "relu", dropout)
        self.ffn.act = nn.LeakyReLU(0.2)  # the official 1x1 convolutions use a leaky-ReLU
        self.drop = nn.Dropout(dropout)
        self.product = residual == "product"

    def forward(self, x: torch.Tensor, mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        y = self.ln1(x)
        a = self.attn(y, x, mask)
        x = a * y if self.product else a + y
        y = self.ln2(x)
        return (y + self.drop(self.ffn(y))) * real


@register_model("carca", family="seq")
class CARCA(SeqRecommender):
    """CARCA (module docstring).

    Args:
        max_len: profile length ``L`` (default 50). hidden_size: ``d`` (64).
        n_layers: profile blocks (3). n_heads: heads (1). dropout: on the input, the attention
            weights and the feed-forward layers (0.2).
        item_features: attribute spec (``auto``; module docstring). tag_min_items: ``tags`` kept
            when on at least this many items (2).
        context: ``auto`` | ``on`` | ``off``: the 6 time features (auto: when timestamps are
            unix seconds). candidate_time: ``target`` (paper) | ``last`` (module docstring).
        week_scale: divisor of the ISO week (53; official 4).
        cross_attention: score by cross-attention (True) or by a dot product ("w/o CA").
        cross_residual: multiply the cross-attention output by the candidate (official use_res).
        residual: ``product`` (official) | ``add`` in the profile blocks.
        proj_activation: leaky-ReLU on the Q/K/V projections (official: True).
        official_attention: the official non-causal attention, which leaks the positive (False).
        n_negatives: negatives per position (1). l2_emb: ``l2_emb * sum(E^2) / 2`` (1e-4).
        adam_beta2: 0.98. score_chunk: candidates per chunk when ranking all items (1024).
        positions: ``none`` (official) | ``right`` (SASRec's learned positions on the profile).
        length_buckets: batches of users of similar length, cut to their longest row (False).
        item_attribute_matrix: a ready ``[n_items, F]`` matrix instead of ``item_features``.

    Shapes: ``items [B, L]`` seq ids, ``times [B, L]`` seconds -> profile ``[B, L, d]``; scores
    ``[B, n_items]``.
    """

    trim_padding = True  # scores ignore leading padding columns (SeqRecommender.score)
    trim_chunk = 64  # narrower length bands than the default 256: ~1.3x faster ranking on Beauty

    def __init__(self, data, max_len: int = 50, hidden_size: int = 64, n_layers: int = 3, n_heads: int = 1,
                 dropout: float = 0.2, item_features: str | None = "auto", tag_min_items: int = 2,
                 context="auto", candidate_time: str = "target", week_scale: float = 53.0,
                 cross_attention: bool = True, cross_residual: bool = True, residual: str = "product",
                 proj_activation: bool = True, official_attention: bool = False, n_negatives: int = 1,
                 l2_emb: float = 1e-4, adam_beta2: float = 0.98, score_chunk: int = 1024,
                 positions: str = "none", length_buckets: bool = False,
                 item_attribute_matrix: np.ndarray | None = None):
        super().__init__(data, max_len)
        if residual not in ("product", "add"):
            raise ValueError(f"residual must be 'product' or 'add', got {residual!r}")
        if candidate_time not in ("target", "last"):
            raise ValueError(f"candidate_time must be 'target' or 'last', got {candidate_time!r}")
        if n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
        if positions not in ("none", "right"):
            raise ValueError(f"positions must be 'none' or 'right', got {positions!r}")
        d = int(hidden_size)
        self.d, self.n_negatives, self.l2_emb, self.adam_beta2 = d, int(n_negatives), float(l2_emb), float(adam_beta2)
        self.cross_attention, self.cross_residual = bool(cross_attention), bool(cross_residual)
        self.official_attention, self.candidate_time = bool(official_attention), candidate_time
        self.week_scale, self.score_chunk = float(week_scale), int(score_chunk)
        self.length_buckets = bool(length_buckets)
        self._base_cache = None  # candidate_base(): (weights' key, [n_items, d]) while ranking

        # attributes: a buffer [n_items + 1, F], row 0 (padding) zero
        if item_attribute_matrix is None:
            spec = self.auto_features(data) if item_features == "auto" else item_features
            item_attribute_matrix = item_feature_matrix(data, spec, tag_min_items)
            self.item_features = spec
        else:
            self.item_features = "matrix"
        attrs = torch.as_tensor(np.asarray(item_attribute_matrix), dtype=torch.float32)
        if attrs.dim() != 2 or attrs.shape[0] != self.n_items:
            raise ValueError(f"item_attribute_matrix must be [n_items={self.n_items}, F], got {tuple(attrs.shape)}")
        self.register_buffer("attributes", torch.cat([attrs.new_zeros(1, attrs.shape[1]), attrs]))

        # context: on when asked, or (auto) when the timestamps are unix seconds
        times = None if data.interactions is None else data.interactions.timestamps
        has_seconds = times is not None and epoch_seconds(times)
        if context == "auto":
            self.context = has_seconds
        elif isinstance(context, bool) or context in ("on", "off"):
            self.context = context in (True, "on")
            if self.context and not has_seconds:
                raise ValueError("context=on needs timestamps in unix seconds; this dataset has "
                                 f"{'none' if times is None else 'positions only (a sequence format)'}: use context=off")
        else:
            raise ValueError(f"context must be auto, on or off, got {context!r}")
        lo, hi = year_range(times) if self.context else (0.0, 1.0)
        self.register_buffer("year_bounds", torch.tensor([lo, hi], dtype=torch.float64))

        n_feat = self.attributes.shape[1] + (CONTEXT_SIZE if self.context else 0)
        self.item_embedding = nn.Embedding(self.n_items + 1, d, padding_idx=0)
        self.feature_proj = nn.Linear(n_feat, 5 * d) if n_feat else None
        self.combine = nn.Linear(d + (5 * d if n_feat else 0), d)
        self.position_embedding = nn.Embedding(self.max_len, d) if positions == "right" else None
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(ProfileBlock(d, n_heads, dropout, residual, proj_activation)
                                    for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d, eps=1e-8)
        self.cross = LeakyAttention(d, n_heads, dropout, proj_activation) if self.cross_attention else None
        self.logit = nn.Linear(d, 1) if self.cross_attention else None
        self.reset_parameters()

    @staticmethod
    def auto_features(data) -> str:
        """``genres+year(+tags)`` for MovieLens side columns, ``attributes`` when S3-Rec's json lies
        beside the data file, else ``none``."""
        feats = data.item_features or {}
        if "genres" in feats or "class" in feats:
            parts = ["genres"]
            if "release_year" in feats or "title" in feats:
                parts.append("year")
            if "tags" in feats:
                parts.append("tags")
            return "+".join(parts)
        try:
            find_item2attributes(data)
            return "attributes"
        except FileNotFoundError:
            return "none"

    def reset_parameters(self) -> None:
        glorot_init(self)  # TF's default for every Dense layer, W_2 and the logit layer included
        if self.feature_proj is not None:
            nn.init.normal_(self.feature_proj.weight, std=0.01)  # the official W_1 initialiser
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    # ------------------------------------------------------------ pieces
    def context_of(self, seconds: torch.Tensor) -> torch.Tensor | None:
        """``[..., 6]`` context features of ``seconds`` (None when context is off)."""
        if not self.context:
            return None
        lo, hi = self.year_bounds.tolist()
        return time_context(seconds, lo, hi, self.week_scale)

    def embed(self, items: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
        """``z(i, c)`` ``[..., d]`` for seq ids ``items [...]`` and context ``ctx [..., 6]``."""
        e = self.item_embedding(items) * math.sqrt(self.d)
        if self.feature_proj is not None:
            f = self.attributes[items]
            if ctx is not None:
                f = torch.cat([f, ctx], -1)
            e = torch.cat([e, self.feature_proj(f)], -1)
        return self.combine(e)

    def profile(self, items: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        """``H [B, L, d]``: the encoded profile (causal unless ``official_attention``)."""
        pad = items == 0
        real = (~pad).unsqueeze(-1).float()
        ctx = self.context_of(times) if self.context else None
        x = self.embed(items, ctx)  # [B, L, d]
        if self.position_embedding is not None:  # newest item at position max_len - 1 (rows may be cut)
            x = x + self.position_embedding.weight[self.max_len - items.shape[1]:]
        x = self.input_dropout(x) * real
        mask = padding_mask(pad) if self.official_attention else causal_mask(pad)
        for block in self.blocks:
            x = block(x, mask, real)
        return self.final_norm(x)

    def cross_logits(self, cand: torch.Tensor, profile: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, Q]`` logits of candidates ``cand [B or 1, Q, d]`` attending to ``profile [B, L, d]``."""
        if cand.shape[0] == 1 and not self.training:
            return self.shared_cross_logits(cand[0], profile, mask)
        z = self.cross(cand, profile, mask)  # [B, Q, d]
        if self.cross_residual:
            z = z * cand
        return self.logit(z).squeeze(-1)

    def shared_cross_logits(self, cand: torch.Tensor, profile: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`cross_logits` for candidates ``cand [Q, d]`` shared by every user (ranking all
        items, no attention dropout), without the ``[B, Q, d]`` attention output: the logit is
        linear in it, ``w . (z_q * c_q) = sum_l p_ql (v_l . (c_q * w))``, so per head two products
        ``[Q, d_h] x [d_h, B * L]`` (one matrix each, all users at once) and ``[Q, B, L]`` tensors
        are all it builds (``L`` is the cut history width, ~9 on Beauty, against ``d = 64``)."""
        att = self.cross
        B, L, _ = profile.shape
        h, dh = att.h, self.d // att.h
        q = att.act(att.q(cand)) / math.sqrt(dh)  # [Q, d], scaled as in attention
        k, v = att.act(att.k(profile)).reshape(B * L, -1), att.act(att.v(profile)).reshape(B * L, -1)  # [B L, d]
        w = self.logit.weight[0]  # [d]
        cw = cand * w if self.cross_residual else w.expand_as(cand)  # [Q, d]
        keep = mask.reshape(B, L)  # [B, L], True = may attend
        out = 0
        for j in range(h):
            part = slice(j * dh, (j + 1) * dh)
            s = (q[:, part] @ k[:, part].T).view(-1, B, L).masked_fill_(~keep, float("-inf"))  # [Q, B, L]
            m = (cw[:, part] @ v[:, part].T).view(-1, B, L)  # [Q, B, L]: v_l . (c_q * w) on this head
            e = (s - s.amax(-1, keepdim=True)).exp_()  # softmax by hand: torch's is slow on rows of ~9
            out = out + (e * m).sum(-1) / e.sum(-1)  # [Q, B]
        return out.T + self.logit.bias

    # ------------------------------------------------------------ training
    def n_negatives_for_loss(self) -> int:
        return self.n_negatives

    def batches(self, data, batch_size: int):
        return NextItemTimeBatches(data, batch_size, self.max_len, self.n_negatives, self.length_buckets)

    def candidate_offset(self, users: torch.Tensor) -> torch.Tensor | None:
        """``[B, d]`` added to every candidate vector of each user (query side), or ``None``:
        CARCA has none; BiTVAE-Rec puts the user's CF latent here."""
        return None

    def step_logits(self, items: torch.Tensor, times: torch.Tensor | None, cands: torch.Tensor,
                    cand_times: torch.Tensor | None, offset: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, K]`` logits of candidates ``cands [B, L, K]`` (seq ids) for the step after each
        profile position, with the context of ``cand_times [B, L]`` (and ``offset [B, d]`` added,
        :meth:`candidate_offset`); step ``t`` sees the profile up to ``t`` only (unless
        ``official_attention``)."""
        if self.context and (times is None or cand_times is None):
            raise ValueError("CARCA with context needs the profile's and the candidates' times")
        B, L, K = cands.shape
        h = self.profile(items, times)  # [B, L, d]
        ctx = self.context_of(cand_times).unsqueeze(2).expand(-1, -1, K, -1) if self.context else None  # [B, L, K, 6]
        c = self.embed(cands, ctx)  # [B, L, K, d]
        if offset is not None:
            c = c + offset[:, None, None, :]
        if not self.cross_attention:
            return (h.unsqueeze(2) * c).sum(-1)
        pad = items == 0
        mask = padding_mask(pad) if self.official_attention else \
            causal_mask(pad).repeat_interleave(K, dim=2)  # [B, 1, L * K, L]: step t sees positions <= t
        return self.cross_logits(c.reshape(B, L * K, self.d), h, mask).view(B, L, K)

    def loss(self, batch: dict) -> torch.Tensor:
        items, targets, times = batch["items"], batch["targets"], batch.get("times")  # [B, L]
        cands = torch.cat([targets.unsqueeze(-1), batch["negatives"]], -1)  # [B, L, 1 + k]
        when = None
        if self.context:
            when = batch.get("target_times") if self.candidate_time == "target" else times
        offset = self.candidate_offset(batch["users"])
        logits = self.step_logits(items, times, cands, when, offset)[targets > 0]  # [N, 1 + k]
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0  # the true next item; the negatives 0
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(-1).mean()
        if self.l2_emb:
            loss = loss + self.l2_emb * self.item_embedding.weight.pow(2).sum() / 2
        return loss

    def param_groups(self) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "betas": (0.9, self.adam_beta2)}]

    # ------------------------------------------------------------- scoring
    def candidate_parts(self, when: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All items' candidate vectors as ``base [n_items, d] + shift [B, 1, d]``: ``z(i, c)`` is
        linear in ``c``, so the context's share is one vector per user (no ``[B, n, F]`` input)."""
        base = self.candidate_base()  # [n, d]: z(i, 0)
        if not self.context:
            return base, None
        ctx = self.context_of(when)  # [B, 6]
        w_ctx = self.feature_proj.weight[:, -CONTEXT_SIZE:]  # [5d, 6]
        w_feat = self.combine.weight[:, self.d:]  # [d, 5d]
        return base, (ctx @ w_ctx.T @ w_feat.T).unsqueeze(1)  # [B, 1, d]

    def candidate_base(self) -> torch.Tensor:
        """``z(i, 0)`` (``z(i)`` without context) ``[n_items, d]`` of all items. Ranking asks for it
        once per chunk of users: in eval mode without grad it is kept while no weight or buffer
        changes (same storage, same in-place version count), and rebuilt otherwise."""
        key = None
        if not self.training and not torch.is_grad_enabled():
            key = tuple((t.data_ptr(), t._version) for t in (*self.parameters(), *self.buffers()))
            if self._base_cache is not None and self._base_cache[0] == key:
                return self._base_cache[1]
        ids = torch.arange(1, self.n_items + 1, device=self.attributes.device)
        zero = torch.zeros(len(ids), CONTEXT_SIZE, device=ids.device) if self.context else None
        base = self.embed(ids, zero)
        self._base_cache = None if key is None else (key, base)
        return base

    def score_sequences(self, users: torch.Tensor, items: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        if self.context and times is None:
            raise ValueError("CARCA with context needs the history's times")
        h = self.profile(items, times)  # [B, L, d]
        when = times[:, -1] if self.context else None  # the newest history item's time
        base, shift = self.candidate_parts(when)
        offset = self.candidate_offset(users)
        if offset is not None:
            shift = offset[:, None, :] if shift is None else shift + offset[:, None, :]
        if not self.cross_attention:
            scores = h[:, -1] @ base.T  # [B, n]
            return scores if shift is None else scores + (h[:, -1:] * shift).sum(-1)
        mask = padding_mask(items == 0)  # [B, 1, 1, L]: every real history item
        out = []
        for start in range(0, self.n_items, self.score_chunk):
            cand = base[start:start + self.score_chunk].unsqueeze(0)  # [1, c, d]: projected once for all users
            if shift is not None:
                cand = cand + shift  # [B, c, d]
            out.append(self.cross_logits(cand, h, mask))
        return torch.cat(out, 1)
