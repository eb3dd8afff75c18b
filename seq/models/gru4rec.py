r"""GRU4Rec: a GRU over the session, trained with session-parallel mini-batches.

Hidasi, Karatzoglou, Baltrunas, Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016; Hidasi, Karatzoglou, "Recurrent Neural Networks with Top-k Gains for
Session-based Recommendations", CIKM 2018. Follows the official PyTorch code
(hidasib/GRU4Rec_PyTorch_Official, ``gru4rec_pytorch.py``); see ``MODELS.md``.

.. math::
    h^{(l)}_t = \mathrm{GRU}(x^{(l)}_t, h^{(l)}_{t-1}), \qquad
    r_{t,j} = \langle h^{(top)}_t, W^y_j \rangle + b^y_j

The input of step ``t`` is the current item: the item's row of the output table ``W^y``
(``constrained_embedding=True``, the official default), a separate embedding table
(``embedding_size > 0``), or a one-hot vector (``embedding_size = 0``: the first GRU layer's
input weights looked up as a ``[n_items, 3h]`` table, fed through a frozen identity). There is
no feed-forward layer between the GRU and the scores.

**Training** (``loss`` = ``cross-entropy`` or ``bpr-max``), as the official code:

- *Session-parallel mini-batches* (:class:`SessionParallelBatches`): each user's training
  sequence is one session (or, with ``max_session_len = N``, each run of at most ``N`` of its
  items); sessions are ordered by their first timestamp and never shuffled.
  ``batch_size`` slots each run one session, one transition (current item -> next item) per
  step; a slot whose session ends loads the next unused session and its hidden state is reset
  to zero; slots drop out when no session is left. Every training transition is visited
  exactly once per epoch.
- The hidden state is carried from step to step and detached every step (no BPTT). It lives
  on the model between batches (``slot_hidden``, a non-persistent buffer, one row per slot),
  is dropped at :meth:`start_epoch` and is never part of a checkpoint (a resume starts at an
  epoch boundary, where every slot starts a fresh session anyway).
- Dropout: ``dropout_p_embed`` on the input vector (one-hot mode: on the first layer's
  output), ``dropout_p_hidden`` on every layer's output, and the dropped-out vector is what
  is stored as the next hidden state (as the official code).
- Scores of one step are taken against the step's ``S`` targets (in-batch negatives) plus
  ``n_sample`` extra items shared by the step, drawn with replacement proportionally to
  ``count ** sample_alpha`` (counts of the training interactions). Losses
  (:func:`seq.losses.gru4rec_xe_loss`, :func:`seq.losses.bpr_max_loss`): softmax
  cross-entropy with the optional ``logq`` correction, or BPR-max over ELU(``elu_param``)
  scores with the ``bpreg`` score regulariser. Reduction: the sum over active slots divided
  by ``batch_size`` (the official fixed divisor).

``loss=ce`` trains RecBole-style instead: every prefix of the last ``max_len`` items
(:class:`seq.data.PrefixBatches`), full softmax over all items; set ``max_len=50`` with it.

**Scoring**: the GRU runs over the user's history (the last ``max_len`` items, from a zero
state) and :meth:`encode` returns the top layer's final state; scores = ``h W^y^T + b^y``.

**Choices against the official code**:

- Optimiser: the trainer's Adam (the official code uses Adagrad with momentum and sparse
  updates, lr 0.05); the learning rate is set for Adam.
- ``remove_accidental_hits=True`` (default): a column holding the row's own target (another
  slot with the same next item, or a sample equal to it) is not used as a negative. The
  official code keeps such columns, which on small catalogues (ml-100k: 1,682 items against
  2,048 samples) puts the positive among its own negatives at almost every step;
  ``remove_accidental_hits=False`` reproduces it.
- Initialisation as the official "compatibility mode" (uniform ``+-sqrt(6 / (fan_in +
  fan_out))`` per gate block, zero biases, ``b^y = 0``), drawn from torch's seeded generator
  rather than numpy seed 42; the official multi-layer init gives every layer's input block
  the width of the first input (a shape error unless all widths agree): here each layer's own
  input width is used.
- The official loop stops an epoch early when ``n_sample = 0`` and fewer than 2 slots are left
  (a softmax over one column); here those last transitions still run (their loss is 0).
- Sessions of a single item have no transition and are skipped (the official code loads them
  and replaces them at the next boundary: the same transitions, other slot numbers).
"""
from __future__ import annotations

import heapq

import numpy as np
import torch
from torch import nn

from gcf.models.registry import register_model

from ..data import PrefixBatches
from ..layers import GRUEncoder
from ..losses import bpr_max_loss, gru4rec_xe_loss, next_item_loss
from .base import SeqRecommender, item_rows

LOSSES = ("cross-entropy", "bpr-max", "ce")


def assign_slots(durations: np.ndarray, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Session-parallel schedule: session ``k`` (in order) goes to the slot that becomes free
    first, the lowest slot number among those free at the same step (the official order).
    Returns each session's first step and slot. One heap operation per session, run once per
    builder (the schedule is the same every epoch)."""
    free = [(0, s) for s in range(n_slots)]  # (step at which the slot is free, slot): a valid heap
    start = np.empty(len(durations), dtype=np.int64)
    slot = np.empty(len(durations), dtype=np.int64)
    for k, d in enumerate(durations.tolist()):
        t, s = free[0]
        start[k], slot[k] = t, s
        heapq.heapreplace(free, (t + d, s))
    return start, slot


class SessionParallelBatches:
    """GRU4Rec's session-parallel mini-batches over the users' training sequences.

    One batch = one step of the ``batch_size`` slots (fewer at the end of the epoch, when
    sessions run out): ``items [S]`` (current items, ids + 1), ``targets [S]`` (next items),
    ``slots [S]`` (which slot each row is, ascending), ``reset [S]`` (True where the slot
    starts a new session: its hidden state must be zeroed first), ``n_slots`` (``batch_size``,
    an int) and, when ``n_sample > 0``, ``negatives [n_sample]`` (ids + 1, shared by the step,
    drawn proportionally to ``count ** sample_alpha`` from the epoch's ``rng``). The schedule
    is fixed (sessions ordered by their first timestamp, ties by user id; by user id without
    timestamps); only the samples change from epoch to epoch. ``len()`` is the number of steps.

    A session is a user's whole training sequence, or with ``max_session_len = N`` each run of at
    most ``N`` consecutive items of it (consecutive runs share one item, so every transition is
    still visited once): long histories then stop dictating the length of an epoch (an epoch
    lasts at least as many steps as the longest session has transitions) and training matches
    scoring, which reads at most ``max_len`` items from a zero state.
    """

    def __init__(self, data, batch_size: int, n_sample: int = 0, sample_alpha: float = 0.5,
                 max_session_len: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_session_len == 1 or max_session_len < 0:
            raise ValueError(f"max_session_len must be 0 (whole sequences) or >= 2, got {max_session_len}")
        seqs = data.sequences
        moves = np.maximum(seqs.lengths - 1, 0)  # transitions per user
        chunk = int(max_session_len) - 1 if max_session_len else max(int(moves.max(initial=0)), 1)
        n_chunks = -(-moves // chunk)  # sessions per user: chunks overlapping by one item
        users = np.repeat(np.arange(len(moves)), n_chunks)
        k = np.arange(len(users)) - np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
        first = seqs.indptr[users] + k * chunk  # position of each session's first item
        steps = np.minimum(chunk, moves[users] - k * chunk)  # its transitions
        if seqs.times is not None:  # by first timestamp; ties by user, then chunk
            order = np.argsort(seqs.times[first], kind="stable")
            users, first, steps = users[order], first[order], steps[order]
        start, slot = assign_slots(steps, batch_size)
        # every transition: (session, j-th of it) -> global step, slot, input position
        sess = np.repeat(np.arange(len(users)), steps)
        j = np.arange(len(sess)) - np.repeat(np.cumsum(steps) - steps, steps)
        pos = first[sess] + j
        step, slot_t = start[sess] + j, slot[sess]
        order = np.lexsort((slot_t, step))
        self.items = torch.from_numpy(seqs.items[pos][order] + 1)
        self.targets = torch.from_numpy(seqs.items[pos + 1][order] + 1)
        self.slots = torch.from_numpy(slot_t[order])
        self.reset = torch.from_numpy(j[order] == 0)
        n_steps = int(step.max()) + 1 if len(step) else 0
        self.bounds = np.searchsorted(step[order], np.arange(n_steps + 1))  # batch b = [bounds[b], bounds[b+1])
        self.session_users, self.session_first = users, first  # in the order sessions are loaded
        self.batch_size, self.n_sample = int(batch_size), int(n_sample)
        counts = np.bincount(seqs.items, minlength=data.n_items).astype(np.float64)
        p = counts ** sample_alpha * (counts > 0)
        self.cdf = np.cumsum(p) / p.sum() if p.sum() > 0 else None

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def epoch(self, rng: np.random.Generator):
        for b in range(len(self)):
            sl = slice(int(self.bounds[b]), int(self.bounds[b + 1]))
            batch = {"items": self.items[sl], "targets": self.targets[sl], "slots": self.slots[sl],
                     "reset": self.reset[sl], "n_slots": self.batch_size}
            if self.n_sample > 0 and self.cdf is not None:
                neg = np.minimum(np.searchsorted(self.cdf, rng.random(self.n_sample), side="right"), len(self.cdf) - 1)
                batch["negatives"] = torch.from_numpy(neg + 1)
            yield batch


def _uniform_(weight: torch.Tensor, fan_a: int, fan_b: int) -> None:
    """The official init, ``U(+-sqrt(6 / (fan_a + fan_b)))``; for a GRU weight ``fan_a, fan_b``
    are one gate block's sizes (the official code draws the three blocks separately with one bound)."""
    bound = (6.0 / (fan_a + fan_b)) ** 0.5
    with torch.no_grad():
        weight.uniform_(-bound, bound)


@register_model("gru4rec", family="seq")
class GRU4Rec(SeqRecommender):
    """GRU4Rec (module docstring).

    Args:
        hidden_size: GRU width (every layer) (default 100, official ``layers=[100]``).
        num_layers: stacked GRU layers (default 1).
        constrained_embedding: input = the item's output vector (default True).
        embedding_size: without ``constrained_embedding``: a separate input embedding of this
            size, or 0 for one-hot input (default 0).
        dropout_p_embed, dropout_p_hidden: dropout on the input / every layer output (default 0).
        loss: ``cross-entropy`` | ``bpr-max`` (session-parallel, official) | ``ce`` (RecBole-style
            prefixes, full softmax) (default ``cross-entropy``).
        n_sample: extra negatives per step, shared (default 2048). sample_alpha: their
            popularity exponent (default 0.5).
        bpreg: BPR-max score regulariser (default 1.0). elu_param: ELU before BPR-max, 0 = none
            (default 0.5). logq: cross-entropy logQ correction weight (default 0).
        remove_accidental_hits: no column equal to the row's target is a negative (default True).
        max_len: history length at scoring time (and for ``loss=ce``) (default 200).
        max_session_len: cut training sequences into sessions of at most this many items, 0 = one
            session per user (default 0; :class:`SessionParallelBatches`).

    Shapes: ``encode(items [B, L])`` -> ``[B, hidden_size]``; scores ``[B, n_items]``.
    """

    def __init__(self, data, hidden_size: int = 100, num_layers: int = 1, constrained_embedding: bool = True,
                 embedding_size: int = 0, dropout_p_embed: float = 0.0, dropout_p_hidden: float = 0.0,
                 loss: str = "cross-entropy", n_sample: int = 2048, sample_alpha: float = 0.5, bpreg: float = 1.0,
                 elu_param: float = 0.5, logq: float = 0.0, remove_accidental_hits: bool = True, max_len: int = 200,
                 max_session_len: int = 0):
        super().__init__(data, max_len)
        if loss not in LOSSES:
            raise ValueError(f"gru4rec: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if num_layers < 1:
            raise ValueError(f"gru4rec: num_layers must be >= 1, got {num_layers}")
        self.loss_type, self.n_sample, self.sample_alpha = loss, int(n_sample), float(sample_alpha)
        self.bpreg, self.elu_param, self.logq = float(bpreg), float(elu_param), float(logq)
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.max_session_len = int(max_session_len)
        self.constrained_embedding, self.num_layers, self.hidden_size = constrained_embedding, num_layers, hidden_size
        self.one_hot = not constrained_embedding and embedding_size == 0
        n, h = data.n_items, hidden_size
        self.item_embedding = nn.Embedding(n + 1, h)  # W^y, row = seq id (0 = padding)
        self.item_bias = nn.Parameter(torch.zeros(n + 1))  # b^y
        if constrained_embedding:
            self.input_embedding, input_size = None, h
        elif self.one_hot:
            self.input_embedding, input_size = nn.Embedding(n + 1, 3 * h), 3 * h
        else:
            self.input_embedding, input_size = nn.Embedding(n + 1, embedding_size), embedding_size
        # one GRU stack, used step by step in training (torch.gru_cell on its weights) and over
        # whole sequences when encoding (GRUEncoder)
        self.encoder = GRUEncoder(input_size, h, num_layers, emb_dropout=0.0 if self.one_hot else dropout_p_embed,
                                  layer_dropout=dropout_p_hidden)
        self.drop_embed, self.drop_hidden = nn.Dropout(dropout_p_embed), nn.Dropout(dropout_p_hidden)
        counts = np.bincount(data.sequences.items, minlength=n).astype(np.float32)
        self.register_buffer("log_counts", torch.from_numpy(np.log(np.concatenate([[1.0], counts]).clip(min=1e-30))))
        self.register_buffer("slot_hidden", torch.zeros(0), persistent=False)  # [num_layers, n_slots, h]
        self.reset_parameters(input_size)

    def reset_parameters(self, input_size: int) -> None:
        n, h = self.n_items, self.hidden_size
        _uniform_(self.item_embedding.weight, n, h)  # W^y
        nn.init.zeros_(self.item_bias)
        gru = self.encoder.gru
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(gru, f"weight_ih_l{k}"), getattr(gru, f"weight_hh_l{k}")
            _uniform_(w_hh, h, h)
            nn.init.zeros_(getattr(gru, f"bias_ih_l{k}"))
            nn.init.zeros_(getattr(gru, f"bias_hh_l{k}"))
            if k == 0 and self.one_hot:  # the lookup table holds W_ih: identity, frozen (no b_hh either)
                with torch.no_grad():
                    w_ih.copy_(torch.eye(3 * h))
                w_ih.requires_grad_(False)
                gru.bias_hh_l0.requires_grad_(False)
                _uniform_(self.input_embedding.weight, n, h)
            else:
                _uniform_(w_ih, input_size if k == 0 else h, h)
        if self.input_embedding is not None and not self.one_hot:
            _uniform_(self.input_embedding.weight, n, input_size)

    # ------------------------------------------------------------ training
    def batches(self, data, batch_size: int):
        if self.loss_type == "ce":
            return PrefixBatches(data, batch_size, self.max_len)
        return SessionParallelBatches(data, batch_size, self.n_sample, self.sample_alpha, self.max_session_len)

    def start_epoch(self, epoch: int) -> None:
        self.slot_hidden = torch.zeros(0, device=self.device)

    def _inputs(self, items: torch.Tensor) -> torch.Tensor:
        table = self.item_embedding if self.input_embedding is None else self.input_embedding
        return table(items)

    def _step(self, items: torch.Tensor, h: torch.Tensor) -> list[torch.Tensor]:
        """One session-parallel step: ``items [S]``, ``h [num_layers, S, hidden]`` -> each layer's
        new (dropped-out) state."""
        x = self._inputs(items)  # [S, in]
        if not self.one_hot:
            x = self.drop_embed(x)
        gru, out = self.encoder.gru, []
        for k in range(self.num_layers):
            x = torch.gru_cell(x, h[k], getattr(gru, f"weight_ih_l{k}"), getattr(gru, f"weight_hh_l{k}"),
                               getattr(gru, f"bias_ih_l{k}"), getattr(gru, f"bias_hh_l{k}"))  # [S, h]
            x = self.drop_embed(x) if (k == 0 and self.one_hot) else self.drop_hidden(x)
            out.append(x)
        return out

    def loss(self, batch) -> torch.Tensor:
        if self.loss_type == "ce":
            hidden = self.encode(batch["items"])
            return next_item_loss("ce", hidden, batch["targets"], self.item_embedding.weight, bias=self.item_bias)
        slots, reset, targets = batch["slots"], batch["reset"], batch["targets"]
        shape = (self.num_layers, int(batch["n_slots"]), self.hidden_size)
        if self.slot_hidden.shape != shape:
            self.slot_hidden = torch.zeros(shape, device=self.device)
        h = self.slot_hidden[:, slots].masked_fill(reset[None, :, None], 0.0)  # [layers, S, h]
        states = self._step(batch["items"], h)
        self.slot_hidden[:, slots] = torch.stack(states).detach()
        negatives = batch.get("negatives")
        cols = targets if negatives is None else torch.cat([targets, negatives])  # [C]
        logits = states[-1] @ self.item_embedding(cols).T + self.item_bias[cols]  # [S, C]
        hits = None
        if self.remove_accidental_hits:
            S = len(targets)
            hits = cols[None, :] == targets[:, None]
            hits[torch.arange(S, device=hits.device), torch.arange(S, device=hits.device)] = False
        if self.loss_type == "bpr-max":
            total = bpr_max_loss(logits, self.bpreg, self.elu_param, hits)
        else:
            log_q = None
            if self.logq > 0:
                log_q = self.log_counts[cols].clone()
                log_q[len(targets):] *= self.sample_alpha
                log_q = self.logq * log_q
            total = gru4rec_xe_loss(logits, log_q, hits)
        return total / shape[1]

    # ------------------------------------------------------------- scoring
    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        _, last = self.encoder(self._inputs(items), pad=items == 0)  # [B, h]
        return last

    def item_vectors(self) -> torch.Tensor:
        return item_rows(self.item_embedding.weight)

    def score_sequences(self, users: torch.Tensor, items: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        return self.encode(items, times) @ self.item_vectors().T + self.item_bias[1:]  # [B, n_items]
