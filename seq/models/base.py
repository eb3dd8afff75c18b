"""The base of every sequence model: scoring from the user's history.

A :class:`SeqRecommender` keeps gcf's contract (:mod:`gcf.models.base`). At ranking time the
evaluator hands it the history of the part being ranked (the training items for validation,
training + validation for test, in time order); :meth:`score` takes each user's last
``max_len`` items from it, right-aligned (item ``i`` as ``i + 1``, 0 = padding), and calls
:meth:`score_sequences`. By default that is the dot product of :meth:`encode` (the state after
the last position) with :meth:`item_vectors`; models whose score is not a dot product
(FPMC, TransRec, ...) override :meth:`score_sequences`.
"""
from __future__ import annotations

import numpy as np
import torch

from gcf.models.base import Recommender, TrainData

from ..data import NextItemBatches, cut_padding


class SeqRecommender(Recommender):
    """Base class of next-item models; see the module docstring."""

    batch_kind = "seq"  # batches() builds the model's own builder
    length_buckets = False  # NextItemBatches' option: batches of similar lengths, cut to their longest row
    # score(): models whose output ignores leading padding (positions counted from the right, padding
    # keys masked; tests/test_seq_models_transformers.py checks it) rank histories sorted by length
    # in chunks of trim_chunk rows cut to their longest one (~2x faster on ML-1M at max_len 200)
    trim_padding = False
    trim_chunk = 256

    def __init__(self, data: TrainData, max_len: int = 50):
        super().__init__(data)
        self.max_len = int(max_len)
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self._train_sequences = data.sequences if data.interactions is not None else None

    # ------------------------------------------------------------ training
    def n_negatives_for_loss(self) -> int:
        """How many negatives per position the batches carry (0: none)."""
        return 0

    def batches(self, data: TrainData, batch_size: int):
        return NextItemBatches(data, batch_size, self.max_len, self.n_negatives_for_loss(),
                               length_buckets=self.length_buckets)

    # ------------------------------------------------------------- scoring
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        if history is None:  # cornac-style callers without a history: the training sequences
            history = self._train_sequences
        items, times = history.padded(users.cpu().numpy(), self.max_len)
        dev = self.device
        if not self.trim_padding:
            return self.score_sequences(users.to(dev), torch.from_numpy(items).to(dev),
                                        None if times is None else torch.from_numpy(times).to(dev))
        # histories sorted by length, scored in chunks cut to their longest row
        order = np.argsort(-(items > 0).sum(1), kind="stable")
        out = None
        for s in range(0, len(order), self.trim_chunk):
            rows = order[s:s + self.trim_chunk]
            it, tm = cut_padding(items[rows], None if times is None else times[rows])
            scores = self.score_sequences(users[rows].to(dev), torch.from_numpy(it).to(dev),
                                          None if tm is None else torch.from_numpy(tm).to(dev))
            if out is None:
                out = scores.new_empty(len(order), scores.shape[1])
            out[torch.from_numpy(rows).to(dev)] = scores
        return out

    def score_sequences(self, users: torch.Tensor, items: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        """``[B, n_items]`` scores (column ``j`` = gcf item ``j``) for right-aligned histories."""
        return self.encode(items, times) @ self.item_vectors().T

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, d]``: the representation after the last (right-most) position of ``items [B, L]``."""
        raise NotImplementedError(f"{type(self).__name__} scores by score_sequences(), not encode()")

    def item_vectors(self) -> torch.Tensor:
        """``[n_items, d]``: the output vectors of items ``1..n_items`` (no padding or mask rows)."""
        raise NotImplementedError(f"{type(self).__name__} has no output item vectors")

    @torch.no_grad()
    def latents(self):
        """Users: :meth:`encode` of their training sequences; items: :meth:`item_vectors`."""
        try:
            item = self.item_vectors()
        except NotImplementedError:
            raise TypeError(f"{type(self).__name__} has no user/item latent space") from None
        seqs = self._train_sequences

        def enc(users):
            items, times = seqs.padded(users.cpu().numpy(), self.max_len)
            return self.encode(torch.from_numpy(items).to(self.device),
                               None if times is None else torch.from_numpy(times).to(self.device))

        return self.over_all_users(enc), item


def item_rows(weight: torch.Tensor) -> torch.Tensor:
    """Rows ``1..n_items`` of an item table whose row 0 is padding, detached under ``no_grad``
    (a view of a parameter keeps ``requires_grad`` even there)."""
    return weight[1:] if torch.is_grad_enabled() else weight.detach()[1:]


class GenerativeSeqRecommender(SeqRecommender):
    """Models that generate the next item's embedding (DiffuRec, DreamRec: a seeded reverse
    diffusion process) and score every item by its inner product with it."""

    def generate(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` generated embeddings for the right-aligned histories ``items [B, L]``."""
        raise NotImplementedError

    def score_sequences(self, users, items, times=None) -> torch.Tensor:
        return self.generate(users, items) @ self.item_vectors().T  # [B, n_items]

    def item_vectors(self) -> torch.Tensor:
        return item_rows(self.item_embedding.weight)

    def latents(self):
        raise TypeError(f"{type(self).__name__}'s user representation is a random draw of the reverse process: "
                        "no latents")


def gcf_items(x: np.ndarray | torch.Tensor):
    """Seq ids (``i + 1``, 0 = padding) back to gcf ids."""
    return x - 1
