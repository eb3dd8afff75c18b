"""MIND (Li et al., "Multi-Interest Network with Dynamic Routing for Recommendation at Tmall",
CIKM 2019).

K interest vectors per user from the behaviours by behaviour-to-interest (B2I) dynamic routing
(paper Sec. 4.2; the routing itself: :func:`seq.multi_interest.dynamic_routing`): one bilinear
map ``S`` shared by every behaviour and every interest predicts ``e_hat_{j|i} = S e_i + b``,
the routing logits ``b_ij`` start from a fresh draw of a truncated ``N(0, 1)`` at every pass
(with a shared map the random start is what makes the interests differ), then 3 iterations of

.. math::
    c_{ij} = \\mathrm{softmax}_j(b_{ij}), \\quad
    v_j = \\mathrm{squash}\\Big(\\sum_i c_{ij} \\hat e_{j|i}\\Big), \\quad
    b_{ij} \\mathrel{+}= \\hat e_{j|i} \\cdot v_j .

Training (Sec. 4.3-4.4): label-aware attention picks the user vector for the target
(``readout``), trained with a sampled softmax over the item table; ranking and retrieval
score an item by its best interest, ``max_j v_j . e_i`` (:mod:`seq.multi_interest`).

MIND has no official public code; the reference is ComiRec's re-implementation
(THUDM/ComiRec ``src/model.py``, ``Model_MIND`` / ``CapsuleNetwork(bilinear_type=0)``), which
this file follows: item table ``d = 64`` shared by input and softmax, padding behaviours
zeroed, ``S`` a dense layer with bias, stop-gradient predictions in the first two iterations,
hard readout (the argmax interest), TF's ``sampled_softmax_loss`` with ``10 x batch``
log-uniform negatives and zero biases, Adam lr 1e-3, batch 128, ``L = 20`` (Books), a
ReLU layer on the interests as an option (``relu_layer``: on for Books, off for Taobao there).

From the paper and not in ComiRec's code: the dynamic interest count
``K'_u = max(1, min(K, log2 |I_u|))`` (``dynamic_interests``, on by default; ``|I_u|`` = the
behaviours in the window, ``log2`` floored), the soft readout ``softmax((v_j . e)^p)``
(``readout=soft``, ``readout_pow=p``). Not implemented: user-profile features and the
feed-forward layers over [interest, profile] (our data has no profiles; the paper's
feed-forward layers would be ``relu_layer``).

Departures from the ComiRec code:
- At evaluation the routing logits start from one fixed draw (a buffer, drawn at
  construction and saved with the weights) instead of a fresh draw per pass, so a user's
  interests and the ranking are a function of the history; training re-draws every pass.
- Samples: one epoch is every user ``samples_per_user`` times with a random cut
  (:class:`seq.multi_interest.CutBatches`); the official code draws random users per step.
- Negatives are drawn with replacement (TF: unique candidates with an expected-count
  correction); ``negative_sampling=uniform|popularity`` and ``loss=ce`` are options.
"""
from __future__ import annotations

import torch
from torch import nn

from gcf.models.registry import register_model

from ..multi_interest import dynamic_interest_count, dynamic_routing, left_align
from .multi_interest import MultiInterestRecommender
from .sasrec import glorot_init


@register_model("mind", family="seq")
class MIND(MultiInterestRecommender):
    """MIND (module docstring).

    Args:
        max_len: behaviours ``L`` (default 20, ComiRec's Books setting).
        hidden_size: ``d`` (64). n_interests: ``K`` (4).
        dynamic_interests: MIND's ``K'_u`` (default ``True``; ``False`` = ComiRec's MIND, always K).
        routing_iterations: 3. relu_layer: Dense(d, ReLU) on the interests (default ``False``).
        loss: ``sampled_ce`` (official) | ``ce`` (full softmax). n_negatives: shared per batch
            (1280 = 10 x batch 128). negative_sampling: ``log_uniform`` (TF's default) |
            ``uniform`` | ``popularity``.
        readout: ``hard`` (official) | ``soft``. readout_pow: ``p`` of the soft readout.
        min_history: smallest cut of a training sample (4, official). samples_per_user: per epoch (1).

    Shapes: ``items [B, L]`` seq ids (0 = padding, right-aligned) -> ``[B, K, d]`` interests.
    """

    def __init__(self, data, max_len: int = 20, hidden_size: int = 64, n_interests: int = 4,
                 dynamic_interests: bool = True, routing_iterations: int = 3, relu_layer: bool = False,
                 loss: str = "sampled_ce", n_negatives: int = 1280, negative_sampling: str = "log_uniform",
                 readout: str = "hard", readout_pow: int = 1, min_history: int = 4, samples_per_user: int = 1):
        super().__init__(data, max_len, hidden_size, n_interests, loss, n_negatives, negative_sampling, readout,
                         readout_pow, min_history, samples_per_user)
        self.dynamic_interests, self.routing_iterations = bool(dynamic_interests), int(routing_iterations)
        self.bilinear = nn.Linear(hidden_size, hidden_size)  # S, shared by behaviours and interests
        self.relu_layer = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU()) if relu_layer else None
        glorot_init(self)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        eval_logits = nn.init.trunc_normal_(torch.empty(n_interests, self.max_len), std=1.0, a=-2.0, b=2.0)
        self.register_buffer("eval_routing_logits", eval_logits)  # [K, L], the evaluation's fixed start

    def interests(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        items = left_align(items)  # the official layout: slot 0 = oldest behaviour
        B, L = items.shape
        K = self.n_interests
        real = items > 0
        e = self.item_embedding(items) * real[:, :, None]  # [B, L, d]
        pred = self.bilinear(e)[:, None].expand(B, K, L, self.d)  # [B, K, L, d], one map for all
        if self.training:
            logits = nn.init.trunc_normal_(e.new_empty(B, K, L), std=1.0, a=-2.0, b=2.0)
        else:
            logits = self.eval_routing_logits[:, :L].expand(B, K, L)
        valid = torch.ones(B, K, dtype=torch.bool, device=items.device)
        if self.dynamic_interests:
            count = dynamic_interest_count(real.sum(1), K)  # [B]
            valid = torch.arange(K, device=items.device)[None, :] < count[:, None]
        v, _ = dynamic_routing(pred, real, logits, self.routing_iterations, valid)  # [B, K, d]
        if self.relu_layer is not None:
            v = self.relu_layer(v) * valid[:, :, None]
        return v, valid
