"""CL4SRec (Xie, Sun, Liu, Wu, Gao, Ding, Cui, "Contrastive Learning for Sequential
Recommendation", ICDE 2022, arXiv 2010.14395).

SASRec's causal transformer trained with its next-item loss plus a contrastive task: two
augmented views of each training sequence (item crop, mask and reorder, :mod:`seq.augment`)
are encoded by the same network and pulled together against the other views of the batch:

.. math::
    s^a = \\mathrm{aug}_a(s_u),\\; s^b = \\mathrm{aug}_b(s_u), \\qquad
    z = \\mathrm{Enc}(s)_{\\text{last}}, \\qquad
    \\mathcal{L}_{cl} = -\\log \\frac{\\exp(\\mathrm{sim}(z^a_u, z^b_u)/\\tau)}
        {\\sum_{v \\in 2N \\setminus \\{z^a_u\\}} \\exp(\\mathrm{sim}(z^a_u, v)/\\tau)}, \\qquad
    \\mathcal{L} = \\mathcal{L}_{next} + \\lambda\\, \\mathcal{L}_{cl}

with ``z`` the output at the newest position, ``sim`` the dot product (``similarity=cos``: the
cosine), NT-Xent over the ``2N`` views of a batch (:func:`seq.augment.nt_xent`: the partner
view positive, the other ``2N - 2`` views negative). The paper's next-item loss is the
cross-entropy over all items (``loss=ce``, the default); ``bce`` and ``sampled_ce`` are the
other losses our SASRec offers, so CL4SRec and SASRec can be compared under one loss.

The paper has no official code (``../shared/MODELS.md``); the choices follow RecBole-DA's
CL4SRec, the de-facto reference: rates ``eta`` (crop) 0.6, ``gamma`` (mask) 0.3, ``beta``
(reorder) 0.6, ``lambda`` (``cl_weight``) 0.1, dot similarity with ``tau`` 1; each sequence gets
two *different* operations (``distinct_augmentations``); augmentations redrawn for every batch;
the masked item is a learned [mask] vector (RecBole-DA: an extra item row, the same thing).

Departures from RecBole-DA:
- The views are augmented copies of the batch (RecBole-DA's mask and reorder write into a view
  of the batch tensor, which can alter the sequence the main loss and the other view see).
- The encoder is our SASRec (official TF layout, :mod:`seq.models.sasrec`) and its training rows:
  one per user with a next-item loss at every position (RecBole: one row per prefix, a loss at
  the last position); the views are augmentations of that row's input (the sequence without
  its last training item). This keeps CL4SRec and our SASRec on identical batches, so the
  contrastive term is the only difference.
- Crop keeps ``max(1, floor(eta n))`` items (never an empty view).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gcf.models.registry import register_model

from ..augment import AUGMENTATIONS, augment_views, nt_xent
from .sasrec import SASRec


@register_model("cl4srec", family="seq")
class CL4SRec(SASRec):
    """CL4SRec (module docstring). SASRec's arguments (:class:`seq.models.sasrec.SASRec`), plus:

    Args:
        crop_eta: share of items a crop keeps (0.6). mask_gamma: share of items masked (0.3).
        reorder_beta: share of items in the shuffled window (0.6).
        augmentations: the operations drawn from (``[crop, mask, reorder]``).
        distinct_augmentations: the two views of a sequence use different operations (true).
        cl_weight: ``lambda``, the contrastive loss's weight (0.1).
        temperature: ``tau`` (1.0). similarity: ``dot`` | ``cos``.
        length_buckets: SASRec's batches of users of similar length, cut to their longest row
            (false). The in-batch negatives of NT-Xent are then users of a similar length, and a
            batch of short users holds more rows (more negatives) than one of long users.

    Shapes: ``items [B, L]`` seq ids (0 = padding, right-aligned; ``n_items + 1`` = [mask] in the
    views only) -> hidden ``[B, L, d]``.
    """

    def __init__(self, data, max_len: int = 50, hidden_size: int = 64, n_layers: int = 2, n_heads: int = 1,
                 inner_size: int | None = None, hidden_dropout_prob: float = 0.2, attn_dropout_prob: float = 0.2,
                 norm: str = "sasrec", loss: str = "ce", n_negatives: int = 1, negative_sampling: str = "uniform",
                 l2_emb: float = 0.0, adam_beta2: float = 0.98, crop_eta: float = 0.6, mask_gamma: float = 0.3,
                 reorder_beta: float = 0.6, augmentations: list | tuple = AUGMENTATIONS,
                 distinct_augmentations: bool = True, cl_weight: float = 0.1, temperature: float = 1.0,
                 similarity: str = "dot", length_buckets: bool = False):
        super().__init__(data, max_len, hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob,
                         attn_dropout_prob, norm, loss, n_negatives, negative_sampling, l2_emb, adam_beta2,
                         length_buckets=length_buckets)
        for key, rate in (("crop_eta", crop_eta), ("mask_gamma", mask_gamma), ("reorder_beta", reorder_beta)):
            if not 0 <= rate <= 1:
                raise ValueError(f"{key} must be in [0, 1], got {rate}")
        bad = [a for a in augmentations if a not in AUGMENTATIONS]
        if bad or not augmentations:
            raise ValueError(f"augmentations must be a non-empty subset of {list(AUGMENTATIONS)}, got {augmentations}")
        if similarity not in ("dot", "cos"):
            raise ValueError(f"similarity must be 'dot' or 'cos', got {similarity!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if cl_weight < 0:
            raise ValueError(f"cl_weight must be >= 0, got {cl_weight}")
        self.eta, self.gamma, self.beta = float(crop_eta), float(mask_gamma), float(reorder_beta)
        self.augmentations, self.distinct = tuple(augmentations), bool(distinct_augmentations)
        self.cl_weight, self.temperature, self.similarity = float(cl_weight), float(temperature), similarity
        self.mask_token = self.n_items + 1
        # the [mask] input vector, drawn like an item row (glorot bound of the item table)
        self.mask_embedding = nn.Parameter(torch.empty(hidden_size))
        bound = math.sqrt(6.0 / (self.n_items + 1 + hidden_size))
        nn.init.uniform_(self.mask_embedding, -bound, bound)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        is_mask = items == self.mask_token  # only in augmented views
        e = self.item_embedding(items.masked_fill(is_mask, 0))  # [B, L, d]
        e = torch.where(is_mask[..., None], self.mask_embedding.to(e.dtype), e)
        return e * math.sqrt(self.d)

    def views(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented copies ``[B, L]`` of ``items`` (torch's RNG, seeded by the trainer)."""
        return augment_views(items, self.eta, self.gamma, self.beta, self.mask_token, self.augmentations,
                             self.distinct)

    def contrastive_loss(self, items: torch.Tensor) -> torch.Tensor:
        a, b = self.views(items)
        z = self.hidden(torch.cat([a, b], 0))[:, -1]  # [2B, d], both views in one pass
        return nt_xent(z[:len(items)], z[len(items):], self.temperature, self.similarity)

    def loss(self, batch: dict) -> torch.Tensor:
        next_item = super().loss(batch)
        if self.cl_weight == 0:
            return next_item
        return next_item + self.cl_weight * self.contrastive_loss(batch["items"])
