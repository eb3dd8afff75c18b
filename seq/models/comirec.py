"""ComiRec-DR and ComiRec-SA (Cen et al., "Controllable Multi-Interest Framework for
Recommendation", KDD 2020).

Two multi-interest extractors over the user's last ``L`` behaviours (paper Sec. 3.2; official
TF code THUDM/ComiRec ``src/model.py``), both giving K interest vectors per user:

- **ComiRec-DR** (dynamic routing): one bilinear map per (position, interest),
  ``e_hat_{j|i} = W_{ij} e_i`` (a ``[L, K d, d]`` tensor, ``N(0, 1)`` initialisation), routing
  logits starting at 0, 3 iterations of :func:`seq.multi_interest.dynamic_routing`.
- **ComiRec-SA** (self-attention): ``H = E + P`` (learned positions),
  ``A = \\mathrm{softmax}_{\\text{positions}}(W_2 \\tanh(W_1 H^\\top))`` with ``W_1: d -> 4d``,
  ``W_2: 4d -> K`` (padding gets a large negative logit), interests ``V = A E`` (the values are
  the raw item embeddings, without positions).

Training as MIND's (:mod:`seq.multi_interest`): hard label-aware readout (the interest
closest to the target), sampled softmax with ``10 x batch`` log-uniform negatives over the
item table (zero biases), Adam (lr 1e-3; the README advises 0.005 for ComiRec-DR, the default
of ``configs/model/comirec_dr.yaml``), batch 128, ``L = 20``, ``d = 64``, ``K = 4``; random cuts
``t >= 4`` of each training user's sequence (:class:`seq.multi_interest.CutBatches`).
Ranking and retrieval score an item by its best interest, ``max_j v_j . e_i``, which is the
official faiss retrieval (top-N per interest, merged by score, de-duplicated) as a full
ranking. The controllable aggregation (greedy accuracy + ``lambda`` x category diversity)
is a retrieval option: :func:`seq.retrieval.recommend` with ``diversity_lambda``.

As the official code: behaviours are laid out from the oldest (slot 0) with padding after
them, so ComiRec-DR's maps and ComiRec-SA's positions are indexed from the oldest behaviour of
the window; padding embeddings are zeroed; glorot-uniform initialisation (TF's default) except
the routing maps.

Departures: one epoch = every training user ``samples_per_user`` times (the official code
draws random users per step); negatives drawn with replacement (TF: unique, with an
expected-count correction); ``loss=ce``, ``readout=soft`` and other samplers are options.
"""
from __future__ import annotations

import torch
from torch import nn

from gcf.models.registry import register_model

from ..multi_interest import dynamic_routing, left_align
from .multi_interest import MultiInterestRecommender
from .sasrec import glorot_init

_SHARED_ARGS = """
        max_len: behaviours ``L`` (default 20, the official Books setting). hidden_size: ``d`` (64).
        n_interests: ``K`` (4).
        loss: ``sampled_ce`` (official) | ``ce`` (full softmax). n_negatives: shared per batch
            (1280 = 10 x batch 128). negative_sampling: ``log_uniform`` (TF's default) |
            ``uniform`` | ``popularity``.
        readout: ``hard`` (official) | ``soft``. readout_pow: ``p`` of the soft readout.
        min_history: smallest cut of a training sample (4). samples_per_user: per epoch (1).
"""


class _ComiRec(MultiInterestRecommender):
    def __init__(self, data, max_len, hidden_size, n_interests, loss, n_negatives, negative_sampling, readout,
                 readout_pow, min_history, samples_per_user):
        super().__init__(data, max_len, hidden_size, n_interests, loss, n_negatives, negative_sampling, readout,
                         readout_pow, min_history, samples_per_user)

    def _embed(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-aligned ids, their real mask and zero-padded embeddings ``[B, L, d]``."""
        items = left_align(items)
        real = items > 0
        return items, real, self.item_embedding(items) * real[:, :, None]


@register_model("comirec_dr", family="seq")
class ComiRecDR(_ComiRec):
    __doc__ = """ComiRec-DR (module docstring).

    Args:""" + _SHARED_ARGS + """        routing_iterations: 3.

    Shapes: ``items [B, L]`` seq ids (0 = padding, right-aligned) -> ``[B, K, d]`` interests.
    """

    def __init__(self, data, max_len: int = 20, hidden_size: int = 64, n_interests: int = 4,
                 routing_iterations: int = 3, loss: str = "sampled_ce", n_negatives: int = 1280,
                 negative_sampling: str = "log_uniform", readout: str = "hard", readout_pow: int = 1,
                 min_history: int = 4, samples_per_user: int = 1):
        super().__init__(data, max_len, hidden_size, n_interests, loss, n_negatives, negative_sampling, readout,
                         readout_pow, min_history, samples_per_user)
        self.routing_iterations = int(routing_iterations)
        self.maps = nn.Parameter(torch.empty(self.max_len, n_interests * hidden_size, hidden_size))  # W_{ij}
        glorot_init(self)
        nn.init.normal_(self.maps, 0.0, 1.0)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def interests(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        items, real, e = self._embed(items)
        B, L = items.shape
        K, d = self.n_interests, self.d
        pred = torch.einsum("lod,bld->blo", self.maps[:L], e)  # [B, L, K d]
        pred = pred.view(B, L, K, d).transpose(1, 2)  # [B, K, L, d]
        logits = e.new_zeros(B, K, L)
        v, _ = dynamic_routing(pred, real, logits, self.routing_iterations)
        return v, torch.ones(B, K, dtype=torch.bool, device=items.device)


@register_model("comirec_sa", family="seq")
class ComiRecSA(_ComiRec):
    __doc__ = """ComiRec-SA (module docstring).

    Args:""" + _SHARED_ARGS + """        add_positions: learned position embeddings in the attention's input (official: on).

    Shapes: ``items [B, L]`` seq ids (0 = padding, right-aligned) -> ``[B, K, d]`` interests.
    """

    def __init__(self, data, max_len: int = 20, hidden_size: int = 64, n_interests: int = 4,
                 add_positions: bool = True, loss: str = "sampled_ce", n_negatives: int = 1280,
                 negative_sampling: str = "log_uniform", readout: str = "hard", readout_pow: int = 1,
                 min_history: int = 4, samples_per_user: int = 1):
        super().__init__(data, max_len, hidden_size, n_interests, loss, n_negatives, negative_sampling, readout,
                         readout_pow, min_history, samples_per_user)
        self.positions = nn.Parameter(torch.empty(self.max_len, hidden_size)) if add_positions else None
        self.w1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.w2 = nn.Linear(4 * hidden_size, n_interests)
        glorot_init(self)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def interests(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        items, real, e = self._embed(items)
        B, L = items.shape
        h = e if self.positions is None else e + self.positions[:L]  # [B, L, d]
        logits = self.w2(torch.tanh(self.w1(h))).transpose(1, 2)  # [B, K, L]
        logits = logits.masked_fill(~real[:, None, :], -2.0 ** 32 + 1)  # the official padding logit
        a = torch.softmax(logits, dim=-1)  # over positions
        v = a @ e  # [B, K, d]
        return v, torch.ones(B, self.n_interests, dtype=torch.bool, device=items.device)
