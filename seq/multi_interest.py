"""What the multi-interest models (MIND, ComiRec-DR, ComiRec-SA) share, written once:
behaviour-to-interest dynamic routing, the label-aware readout, the log-uniform negative
sampler of their sampled softmax and the random-cut training batches. Their base class
(K interest vectors per user, scored by the best one) is
:class:`seq.models.multi_interest.MultiInterestRecommender`.

Dynamic routing (Sabour et al. 2017 as MIND, Li et al. CIKM 2019, Sec. 4.2, and ComiRec,
Cen et al. KDD 2020, Sec. 3.2, use it): for behaviour ``i`` and interest ``j`` with
prediction ``e_hat_{j|i}`` (the model's bilinear map of the item embedding),

.. math::
    c_{ij} = \\mathrm{softmax}_j(b_{ij}), \\qquad
    z_j = \\sum_i c_{ij}\\, \\hat e_{j|i}, \\qquad
    v_j = \\mathrm{squash}(z_j) = \\frac{\\lVert z_j\\rVert^2}{1 + \\lVert z_j\\rVert^2}
          \\frac{z_j}{\\lVert z_j\\rVert}, \\qquad
    b_{ij} \\mathrel{+}= \\hat e_{j|i} \\cdot v_j

for 3 iterations. As the official ComiRec code (THUDM/ComiRec ``src/model.py``): the
coupling is a softmax over the interests for each behaviour (padding behaviours get 0), the
first iterations route stop-gradient predictions and only the last one lets the gradient
into ``e_hat``; ``||v_j|| < 1`` always.

Label-aware attention (MIND Sec. 4.3) at training: with the target item's vector ``e``,
``v_u = sum_j softmax_j((v_j . e)^p) v_j``; ``readout="hard"`` takes the interest with the
largest ``v_j . e`` (the ComiRec code's ``hard_readout=True``, used for all three models,
the ``p -> inf`` limit of the paper's formula), ``"soft"`` the formula with integer ``p``.
The loss is a sampled softmax of ``v_u`` against the target and ``n_negatives`` negatives
shared by the batch (the official TF ``sampled_softmax_loss`` with ``10 x batch`` samples).

Scoring for full ranking and retrieval: ``score(u, i) = max_j v_j . e_i``. The top-N items of
this score are exactly what ComiRec's retrieval returns (top-N items per interest, merged
by score, duplicates dropped, top N kept): an item whose best interest is ``j`` and that is
in the top N of the max is in the top N of interest ``j``. So the one full-ranking evaluator
measures the official retrieval, and :mod:`seq.retrieval` does it with an index.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


__all__ = ["squash", "dynamic_routing", "label_aware_readout", "left_align", "dynamic_interest_count",
           "LogUniformNegatives", "CutBatches"]


def squash(z: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """``||z||^2 / (1 + ||z||^2) * z / ||z||`` over the last dimension (norm < 1; 0 stays 0)."""
    n2 = (z * z).sum(-1, keepdim=True)
    return n2 / (1 + n2) * z / torch.sqrt(n2 + eps)


def dynamic_routing(predictions: torch.Tensor, real: torch.Tensor, logits: torch.Tensor, iterations: int = 3,
                    interest_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Behaviour-to-interest routing (module docstring).

    Shapes: ``predictions [B, K, L, d]`` (``e_hat_{j|i}``), ``real [B, L]`` (True at real
    behaviours), ``logits [B, K, L]`` (initial ``b``, no gradient), ``interest_mask [B, K]``
    (True = the interest exists; ``None``: all K) -> ``interests [B, K, d]`` (0 for masked
    interests), ``coupling [B, K, L]`` of the last iteration (sums to 1 over the existing
    interests at every real behaviour, 0 at padding).
    """
    if iterations < 1:
        raise ValueError(f"routing_iterations must be >= 1, got {iterations}")
    frozen = predictions.detach()
    logits = logits.detach()
    if interest_mask is not None:
        logits = logits.masked_fill(~interest_mask[:, :, None], float("-inf"))
    keep = real[:, None, :].to(predictions.dtype)  # [B, 1, L]
    for it in range(iterations):
        coupling = torch.softmax(logits, dim=1) * keep  # [B, K, L], over the interests
        last = it == iterations - 1
        z = torch.einsum("bkl,bkld->bkd", coupling, predictions if last else frozen)  # [B, K, d]
        interests = squash(z)
        if not last:
            logits = logits + torch.einsum("bkld,bkd->bkl", frozen, interests)
    return interests, coupling


def label_aware_readout(interests: torch.Tensor, valid: torch.Tensor, target: torch.Tensor, hard: bool = True,
                        pow_p: int = 1) -> torch.Tensor:
    """``[B, d]`` user vector for the target: the interest closest to it (``hard``) or
    ``sum_j softmax_j((v_j . e)^p) v_j``. ``interests [B, K, d]``, ``valid [B, K]``, ``target [B, d]``."""
    att = torch.einsum("bkd,bd->bk", interests, target)  # [B, K]
    if hard:
        best = att.masked_fill(~valid, float("-inf")).argmax(1)  # [B]
        return interests[torch.arange(len(best), device=best.device), best]
    w = torch.softmax(att.pow(pow_p).masked_fill(~valid, float("-inf")), dim=1)  # [B, K]
    return torch.einsum("bk,bkd->bd", w, interests)


def left_align(items: torch.Tensor) -> torch.Tensor:
    """Right-aligned ``[B, L]`` seq ids (0 = padding on the left) moved to the left (padding on
    the right): the layout of the ComiRec code, where slot 0 is the oldest item of the window."""
    order = torch.argsort((items == 0).to(torch.int8), dim=1, stable=True)  # real slots first, in order
    return torch.gather(items, 1, order)


def dynamic_interest_count(n_behaviours: torch.Tensor, max_interests: int) -> torch.Tensor:
    """MIND's ``K'_u = max(1, min(K, floor(log2 |I_u|)))`` (Sec. 4.2) for ``n_behaviours [B]``."""
    k = torch.floor(torch.log2(n_behaviours.clamp(min=1).double())).long()
    return k.clamp(min=1, max=max_interests)


class LogUniformNegatives(nn.Module):
    """``k`` negatives shared by a batch from the log-uniform (Zipf) distribution over items
    ranked by training popularity (rank 0 = most frequent): ``P(r) = log((r + 2) / (r + 1)) /
    log(n + 1)``, TF's default sampler of ``sampled_softmax_loss`` (the ComiRec data assigns
    ids by descending frequency, so the id is the rank there). ``forward(device) -> (ids [k],
    log_q [n_items + 1])`` as :class:`seq.losses.SharedNegatives`; draws with replacement from
    torch's RNG (TF draws unique candidates and corrects by their expected counts)."""

    def __init__(self, data, k: int):
        super().__init__()
        if k < 1:
            raise ValueError(f"n_negatives must be >= 1 for sampled negatives, got {k}")
        self.k, self.n = int(k), int(data.n_items)
        counts = np.asarray(data.train.sum(0)).ravel()
        by_rank = np.argsort(-counts, kind="stable") + 1  # seq id of each popularity rank
        r = np.arange(self.n, dtype=np.float64)
        p = np.log((r + 2) / (r + 1)) / np.log(self.n + 1)
        log_q = np.full(self.n + 1, -np.inf)
        log_q[by_rank] = np.log(p)
        self.register_buffer("by_rank", torch.from_numpy(by_rank), persistent=False)
        self.register_buffer("log_q", torch.from_numpy(log_q).float(), persistent=False)

    def forward(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand(self.k, dtype=torch.float64)
        rank = (torch.exp(u * np.log(self.n + 1)) - 1).long().clamp(0, self.n - 1)  # inverse CDF
        return self.by_rank[rank.to(self.by_rank.device)].to(device), self.log_q.to(device)


class CutBatches:
    """ComiRec's training samples (``data_iterator.py``): a user and a random cut ``t`` in
    ``[min(min_history, n - 1), n - 1]`` of the user's ``n`` training items; the target is item
    ``t``, the input the (at most ``max_len``) items before it, right-aligned. One epoch = every
    user with >= 2 training items ``samples_per_user`` times, shuffled (the official code draws
    ``batch`` users at random for each step, without epochs). Batches: ``items [B, L]``,
    ``targets [B]`` (seq ids), ``users [B]``."""

    def __init__(self, data, batch_size: int, max_len: int, min_history: int = 4, samples_per_user: int = 1):
        if max_len < 1 or min_history < 1 or samples_per_user < 1:
            raise ValueError(f"max_len, min_history and samples_per_user must be >= 1, got {max_len}, "
                             f"{min_history}, {samples_per_user}")
        self.seqs = data.sequences
        self.batch_size, self.max_len = int(batch_size), int(max_len)
        self.min_history, self.samples_per_user = int(min_history), int(samples_per_user)
        self.users = np.repeat(np.flatnonzero(self.seqs.lengths >= 2), self.samples_per_user)

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def epoch(self, rng: np.random.Generator):
        order = rng.permutation(self.users)
        seqs, L = self.seqs, self.max_len
        for start in range(0, len(order), self.batch_size):
            users = order[start:start + self.batch_size]
            n = seqs.lengths[users]
            low = np.minimum(self.min_history, n - 1)
            cut = low + (rng.random(len(users)) * (n - low)).astype(np.int64)  # in [low, n - 1]
            first = seqs.indptr[users]
            pos = first + cut  # index of the target in seqs.items
            src = pos[:, None] - L + np.arange(L)[None, :]  # [B, L] the L positions before it
            valid = src >= first[:, None]
            items = np.where(valid, seqs.items[np.where(valid, src, 0)] + 1, 0)
            yield {"users": torch.from_numpy(users), "items": torch.from_numpy(items),
                   "targets": torch.from_numpy(seqs.items[pos] + 1)}
