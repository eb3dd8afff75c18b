"""Shared blocks of the sequence models: one transformer :class:`Block` (and the
:class:`TransformerEncoder` stacking it) and one :class:`GRUEncoder`.

Sequences are ``[B, L]`` item ids, right-aligned (0 = padding on the left), so the newest item
is always at position ``L - 1``. Masks are boolean, ``True`` = may attend:

- :func:`causal_mask` ``[B, 1, L, L]``: position ``i`` sees the real items ``j <= i`` (SASRec,
  TiSASRec); :func:`padding_mask` ``[B, 1, 1, L]``: every real item (BERT4Rec). A padding
  query also sees itself, so no softmax row is empty (its output is never used).

Attention is ``torch.nn.functional.scaled_dot_product_attention`` (the fused kernels on CPU
and GPU) unless the caller adds TiSASRec's relative interval terms (:class:`RelativeTerms`),
which need the attention weights themselves; then it is computed explicitly.

Three placements of the layer norm (``norm``), as the papers' code has them, for a sublayer
``f`` (attention or feed-forward):

- ``"post"`` (BERT, BERT4Rec): ``x = LN(x + f(x))``.
- ``"pre"`` (GPT-2, nanoGPT): ``x = x + f(LN(x))``.
- ``"sasrec"`` (kang205/SASRec, the TF code of SASRec and TiSASRec): ``y = LN(x); x = y + f(y)``,
  the residual taken from the *normalised* input, and attention's keys and values read the
  un-normalised ``x`` (only the queries are normalised).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Block", "TransformerEncoder", "MultiHeadAttention", "RelativeTerms", "FeedForward", "GRUEncoder",
           "causal_mask", "padding_mask", "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


@functools.lru_cache(maxsize=16)
def _triangles(L: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The lower triangle and the diagonal ``[L, L]`` (bool), built once per length and device."""
    tril = torch.ones(L, L, dtype=torch.bool, device=device).tril()
    return tril, torch.eye(L, dtype=torch.bool, device=device)


def causal_mask(pad: torch.Tensor) -> torch.Tensor:
    """``[B, 1, L, L]``: query ``i`` attends to key ``j`` iff ``j <= i`` and ``j`` is real, or
    ``j == i``. ``pad [B, L]`` is True at padding."""
    tril, eye = _triangles(pad.shape[1], pad.device)
    return (tril & ~pad[:, None, None, :]) | eye


def padding_mask(pad: torch.Tensor) -> torch.Tensor:
    """``[B, 1, 1, L]``: every query attends to the real keys (bidirectional)."""
    return ~pad[:, None, None, :]


class RelativeTerms(NamedTuple):
    """Extra terms of TiSASRec's attention (Li et al., WSDM 2020), shared by every block:

    ``e_ij = Q_i (K_j + key_add_j + key_table[index_ij])^T / sqrt(d_h)``,
    ``z_i = sum_j a_ij (V_j + value_add_j + value_table[index_ij])``.

    ``key_add``/``value_add`` ``[B or 1, L, d]`` are added to the projected keys/values
    (absolute positions); ``index [B, L, L]`` (long, in ``[0, R)``) picks rows of
    ``key_table``/``value_table`` ``[R, d]`` (relative intervals). Any field may be ``None``.
    """

    key_add: torch.Tensor | None = None
    value_add: torch.Tensor | None = None
    index: torch.Tensor | None = None
    key_table: torch.Tensor | None = None
    value_table: torch.Tensor | None = None


class MultiHeadAttention(nn.Module):
    """Multi-head attention with biased Q/K/V projections and an optional output projection
    (BERT has one; the SASRec/TiSASRec TF code has none).

    Shapes: ``query_in [B, L, d]``, ``kv_in [B, L, d]``, ``mask [B, 1, L or 1, L]`` (True =
    attend) -> ``[B, L, d]``.
    """

    def __init__(self, d: int, n_heads: int, attn_dropout: float = 0.0, out_proj: bool = True):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"hidden_size {d} is not divisible by n_heads {n_heads}")
        self.d, self.h = d, n_heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d) if out_proj else nn.Identity()
        self.attn_dropout = attn_dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.h, self.d // self.h).transpose(1, 2)  # [B, h, L, d_h]

    def forward(self, query_in: torch.Tensor, kv_in: torch.Tensor, mask: torch.Tensor,
                rel: RelativeTerms | None = None) -> torch.Tensor:
        B, L, d = query_in.shape
        q, k, v = self.q(query_in), self.k(kv_in), self.v(kv_in)  # [B, L, d]
        if rel is not None and rel.key_add is not None:
            k = k + rel.key_add
        if rel is not None and rel.value_add is not None:
            v = v + rel.value_add
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # [B, h, L, d_h]
        p = self.attn_dropout if self.training else 0.0
        if rel is None or rel.index is None:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, h, L, d_h]
        else:
            z = self._relative(q, k, v, mask, rel, p)
        return self.out(z.transpose(1, 2).reshape(B, L, d))

    def _relative(self, q, k, v, mask, rel: RelativeTerms, p: float) -> torch.Tensor:
        """Attention with per-pair table rows, without materialising ``[B, L, L, d]``: the
        query-table products ``Q R^T [B, h, L, R]`` are gathered at ``index`` for the logits,
        and the weights are summed per table row (scatter-add into ``[B, h, L, R]``) before
        multiplying the value table."""
        B, h, L, dh = q.shape
        idx = rel.index[:, None].expand(B, h, L, L)  # [B, h, L, L]
        logits = q @ k.transpose(-1, -2)  # [B, h, L, L]
        if rel.key_table is not None:
            rk = rel.key_table.view(-1, h, dh).transpose(0, 1)  # [h, R, d_h]
            logits = logits + torch.gather(q @ rk.transpose(-1, -2).unsqueeze(0), -1, idx)
        logits = (logits / math.sqrt(dh)).masked_fill(~mask, float("-inf"))
        a = F.dropout(torch.softmax(logits, -1), p, self.training)  # [B, h, L, L]
        z = a @ v  # [B, h, L, d_h]
        if rel.value_table is not None:
            R = rel.value_table.shape[0]
            binned = a.new_zeros(B, h, L, R).scatter_add_(-1, idx, a)  # [B, h, L, R]
            z = z + binned @ rel.value_table.view(R, h, dh).transpose(0, 1).unsqueeze(0)
        return z


class FeedForward(nn.Module):
    """Point-wise feed-forward ``W_2 drop(act(W_1 x + b_1)) + b_2`` (SASRec Sec. III-B with
    ``inner = d`` and ReLU; BERT with ``inner = 4d``, GELU and no inner dropout)."""

    def __init__(self, d: int, inner: int, activation: str = "relu", inner_dropout: float = 0.0):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d, inner), nn.Linear(inner, d)
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(inner_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.drop(self.act(self.w1(x))))


class Block(nn.Module):
    """One transformer block: self-attention then feed-forward, each with dropout, a residual
    and a layer norm placed as ``norm`` says (module docstring).

    Args:
        d: hidden size. n_heads: attention heads (``d % n_heads == 0``).
        inner_size: feed-forward width (default ``d``). activation: ``relu`` | ``gelu`` | ...
        hidden_dropout: dropout on each sublayer's output (the feed-forward's always; the
            attention's unless ``attn_out_dropout`` says otherwise).
        attn_dropout: dropout on the attention weights.
        norm: ``"pre"`` | ``"post"`` | ``"sasrec"`` (default ``"pre"``).
        out_proj: attention output projection (default ``True``; SASRec's TF code has none).
        attn_out_dropout: dropout on the attention sublayer's output (default ``hidden_dropout``).
        ffn_inner_dropout: dropout after the activation (default ``hidden_dropout``; BERT: 0).
        eps: layer-norm epsilon (SASRec TF 1e-8, BERT 1e-12).

    Shapes: ``x [B, L, d]``, ``mask [B, 1, L or 1, L]`` -> ``[B, L, d]``.
    """

    def __init__(self, d: int, n_heads: int = 1, inner_size: int | None = None, hidden_dropout: float = 0.0,
                 attn_dropout: float = 0.0, activation: str = "relu", norm: str = "pre", out_proj: bool = True,
                 attn_out_dropout: float | None = None, ffn_inner_dropout: float | None = None, eps: float = 1e-8):
        super().__init__()
        if norm not in ("pre", "post", "sasrec"):
            raise ValueError(f"norm must be 'pre', 'post' or 'sasrec', got {norm!r}")
        self.norm = norm
        self.attn = MultiHeadAttention(d, n_heads, attn_dropout, out_proj)
        self.ffn = FeedForward(d, inner_size or d, activation,
                               hidden_dropout if ffn_inner_dropout is None else ffn_inner_dropout)
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.drop_attn = nn.Dropout(hidden_dropout if attn_out_dropout is None else attn_out_dropout)
        self.drop_ffn = nn.Dropout(hidden_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rel: RelativeTerms | None = None) -> torch.Tensor:
        if self.norm == "post":
            x = self.ln1(x + self.drop_attn(self.attn(x, x, mask, rel)))
            return self.ln2(x + self.drop_ffn(self.ffn(x)))
        if self.norm == "pre":
            y = self.ln1(x)
            x = x + self.drop_attn(self.attn(y, y, mask, rel))
            return x + self.drop_ffn(self.ffn(self.ln2(x)))
        y = self.ln1(x)  # "sasrec": normalised queries, raw keys/values, residual from the normalised input
        x = y + self.drop_attn(self.attn(y, x, mask, rel))
        y = self.ln2(x)
        return y + self.drop_ffn(self.ffn(y))


class TransformerEncoder(nn.Module):
    """``n_layers`` :class:`Block` s (keyword arguments as :class:`Block`), with an optional
    final layer norm (pre-norm stacks need one: SASRec's TF code, GPT-2).

    Shapes: ``x [B, L, d]``, ``mask [B, 1, L or 1, L]`` -> ``[B, L, d]``; ``rel`` (the same for
    every block) as :class:`RelativeTerms`.
    """

    def __init__(self, n_layers: int, d: int, final_norm: bool = False, **block_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, **block_kwargs) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d, eps=block_kwargs.get("eps", 1e-8)) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rel: RelativeTerms | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask, rel)
        return self.final_norm(x)


class GRUEncoder(nn.Module):
    """Embedding dropout, then a stack of GRU layers (GRU4Rec, NARM), run on each sequence's
    real items only: right-aligned rows are moved to the left first, so the recurrence starts
    at the first real item (padding never enters the state) and no packing is needed.

    Args:
        input_size: embedding size. hidden_size: GRU state size. n_layers: stacked GRU layers.
        emb_dropout: dropout on the input embeddings. layer_dropout: dropout between layers.

    Shapes: ``emb [B, L, input_size]``, ``pad [B, L]`` (True at padding, any alignment; or
    ``lengths [B]`` for right-aligned rows) -> ``outputs [B, L, hidden_size]`` (in the input's
    layout, 0 at padding), ``last [B, hidden_size]`` (the state after the newest item; 0 for
    empty rows).
    """

    def __init__(self, input_size: int, hidden_size: int, n_layers: int = 1, emb_dropout: float = 0.0,
                 layer_dropout: float = 0.0):
        super().__init__()
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.gru = nn.GRU(input_size, hidden_size, n_layers, batch_first=True,
                          dropout=layer_dropout if n_layers > 1 else 0.0)

    def forward(self, emb: torch.Tensor, pad: torch.Tensor | None = None, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        B, L, _ = emb.shape
        if pad is None:
            if lengths is None:
                raise ValueError("GRUEncoder needs pad [B, L] or lengths [B]")
            pad = torch.arange(L, device=emb.device)[None, :] < (L - lengths.to(emb.device))[:, None]
        real = ~pad
        n = real.sum(1)  # [B]
        order = torch.argsort(pad.to(torch.int8), dim=1, stable=True)  # real positions first, in order
        x = self.emb_dropout(torch.gather(emb, 1, order[:, :, None].expand(-1, -1, emb.shape[2])))
        out, _ = self.gru(x)  # [B, L, h], left-aligned; steps past n[b] are never read
        last = out[torch.arange(B, device=emb.device), (n - 1).clamp(min=0)] * (n > 0)[:, None]
        back = torch.empty_like(order).scatter_(1, order, torch.arange(L, device=emb.device).expand(B, L))
        outputs = torch.gather(out, 1, back[:, :, None].expand(-1, -1, out.shape[2])) * real[:, :, None]
        return outputs, last
