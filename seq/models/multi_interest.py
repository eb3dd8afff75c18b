"""The base class of the multi-interest models (MIND, ComiRec-DR, ComiRec-SA): see
:mod:`seq.multi_interest` for the shared pieces and the scoring rule."""
from __future__ import annotations

import torch
from torch import nn

from ..losses import SharedNegatives, next_item_loss
from ..multi_interest import CutBatches, LogUniformNegatives, label_aware_readout
from .base import SeqRecommender, item_rows

__all__ = ["MultiInterestRecommender"]


class MultiInterestRecommender(SeqRecommender):
    """Base of MIND, ComiRec-DR and ComiRec-SA: one item table (input and output, row 0 =
    padding), :meth:`interests` ``[B, K, d]`` from a history, the label-aware readout and the
    sampled softmax at training, the max over interests for ranking (module docstring).

    A subclass builds its extractor and defines :meth:`interests`."""

    def __init__(self, data, max_len: int, hidden_size: int, n_interests: int, loss: str, n_negatives: int,
                 negative_sampling: str, readout: str, readout_pow: int, min_history: int, samples_per_user: int):
        super().__init__(data, max_len)
        if n_interests < 1:
            raise ValueError(f"n_interests must be >= 1, got {n_interests}")
        if loss not in ("sampled_ce", "ce"):
            raise ValueError(f"loss must be 'sampled_ce' (official) or 'ce' (full softmax), got {loss!r}")
        if readout not in ("hard", "soft"):
            raise ValueError(f"readout must be 'hard' or 'soft', got {readout!r}")
        if int(readout_pow) != readout_pow or readout_pow < 1:
            raise ValueError(f"readout_pow must be a positive integer, got {readout_pow}")
        self.d, self.n_interests, self.loss_kind = int(hidden_size), int(n_interests), loss
        self.readout, self.readout_pow = readout, int(readout_pow)
        self.min_history, self.samples_per_user = int(min_history), int(samples_per_user)
        self.item_embedding = nn.Embedding(self.n_items + 1, hidden_size, padding_idx=0)
        self.negatives = None
        if loss == "sampled_ce":
            self.negatives = LogUniformNegatives(data, n_negatives) if negative_sampling == "log_uniform" \
                else SharedNegatives(data, n_negatives, negative_sampling)

    # ------------------------------------------------------------ the extractor
    def interests(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``items [B, L]`` right-aligned seq ids -> ``interests [B, K, d]``, ``valid [B, K]``
        (False for interests a user does not have: MIND's dynamic count)."""
        raise NotImplementedError

    def item_vectors(self) -> torch.Tensor:
        return item_rows(self.item_embedding.weight)

    # ------------------------------------------------------------ training
    def batches(self, data, batch_size: int):
        return CutBatches(data, batch_size, self.max_len, self.min_history, self.samples_per_user)

    def loss(self, batch: dict) -> torch.Tensor:
        interests, valid = self.interests(batch["items"])  # [B, K, d]
        targets = batch["targets"]  # [B]
        table = self.item_embedding.weight
        user = label_aware_readout(interests, valid, table[targets], self.readout == "hard", self.readout_pow)
        if self.loss_kind == "ce":
            return next_item_loss("ce", user, targets, table)
        negatives, log_q = self.negatives(user.device)
        return next_item_loss("sampled_ce", user, targets, table, negatives, log_q=log_q)

    # ------------------------------------------------------------- scoring
    def score_sequences(self, users, items, times=None) -> torch.Tensor:
        """``max_j v_j . e_i`` over the user's existing interests ``[B, n_items]``."""
        interests, valid = self.interests(items)
        table = self.item_vectors()
        out = None
        for j in range(interests.shape[1]):  # a running max: one [B, n_items] matrix at a time
            s = (interests[:, j] @ table.T).masked_fill(~valid[:, j:j + 1], float("-inf"))
            out = s if out is None else torch.maximum(out, s)
        return out

    @torch.no_grad()
    def interest_vectors(self, users: torch.Tensor, history=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, K, d]`` interests and ``[B, K]`` validity of ``users`` from ``history`` (default:
        the training sequences), for retrieval (:mod:`seq.retrieval`)."""
        history = self._train_sequences if history is None else history
        items, _ = history.padded(users.cpu().numpy(), self.max_len)
        return self.interests(torch.from_numpy(items).to(self.device))

    def latents(self):
        raise TypeError(f"{type(self).__name__} has {self.n_interests} vectors per user, not one latent: "
                        "use interest_vectors() or seq.retrieval")
