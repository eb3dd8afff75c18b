"""Next-item losses, called by name from a model's config (``loss: bce | ce | sampled_ce``).

Every loss scores hidden states against rows of an output table ``item_weight`` whose row
``i`` is the vector of seq item id ``i`` (0 = padding, ``1..n_items`` the items, then possibly
the [mask] token): ``r(h, i) = h . W_i (+ b_i)``. Targets are seq ids; rows whose target is
0 (padding) are ignored, and each loss is the mean over the remaining rows.

- ``bce`` (SASRec, Kang & McAuley 2018, Sec. III-E): ``-log s(r+) - sum_k log(1 - s(r-_k))`` with
  the sampled negatives of the row (one per position in the paper).
- ``ce`` (full softmax; "SASRec+" of Klenitskiy & Vasilev, RecSys 2023; BERT4Rec): cross
  entropy over items ``1..n_items`` only, so the padding and [mask] rows are never predicted.
- ``sampled_ce``: softmax over the target and ``k`` negatives, per row ``[N, k]`` or shared by
  the batch ``[k]``; a negative equal to the row's target is dropped (accidental hit). With
  ``log_q`` (log of each id's sampling probability, ``[V]``), every logit ``r(h, i)`` becomes
  ``r(h, i) - log q_i`` (logQ correction, Yi et al., RecSys 2019), so that popular items, drawn
  as negatives more often, are not pushed down more than the full softmax would.

:class:`SharedNegatives` draws the ``[k]`` negatives a batch shares for ``sampled_ce`` (uniform or
by popularity, with the matching ``log_q``). Other families of losses (GRU4Rec's) are separate
functions below.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["next_item_loss", "NEXT_ITEM_LOSSES", "SharedNegatives", "softmax_ce"]

NEXT_ITEM_LOSSES = ("bce", "ce", "sampled_ce")


def next_item_loss(kind: str, hidden: torch.Tensor, targets: torch.Tensor, item_weight: torch.Tensor,
                   negatives: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                   n_items: int | None = None, log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-item loss over the rows with a target (module docstring).

    Args:
        kind: ``bce`` | ``ce`` | ``sampled_ce``.
        hidden: ``[N, d]`` hidden states (flatten ``[B, L, d]`` first).
        targets: ``[N]`` seq ids of the next items (0 = no target: ignored).
        item_weight: ``[V, d]`` output table indexed by seq id (``V >= n_items + 1``).
        negatives: ``[N, k]`` per-row or ``[k]`` shared seq ids (``bce``, ``sampled_ce``).
        bias: optional ``[V]`` output bias (BERT4Rec).
        n_items: the number of items (default ``V - 1``); ``ce`` scores ids ``1..n_items``.
        log_q: optional ``[V]`` log sampling probabilities (``sampled_ce``'s logQ correction).
    """
    if kind not in NEXT_ITEM_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(NEXT_ITEM_LOSSES)}, got {kind!r}")
    keep = targets > 0
    if not bool(keep.all()):
        hidden, targets = hidden[keep], targets[keep]
        if negatives is not None and negatives.dim() == 2:
            negatives = negatives[keep]
    if len(targets) == 0:
        return hidden.sum() * 0.0  # no target in the batch: a zero that keeps the graph
    if kind == "ce":
        n = item_weight.shape[0] - 1 if n_items is None else int(n_items)
        return softmax_ce(hidden, item_weight[1:n + 1], targets - 1, None if bias is None else bias[1:n + 1])
    if negatives is None:
        raise ValueError(f"loss {kind!r} needs negatives")
    pos = (hidden * item_weight[targets]).sum(-1)  # [N]
    if negatives.dim() == 1:  # shared by the batch
        neg = hidden @ item_weight[negatives].T  # [N, k]
    else:
        neg = torch.einsum("nd,nkd->nk", hidden, item_weight[negatives])  # [N, k]
    if bias is not None:
        pos, neg = pos + bias[targets], neg + bias[negatives]
    if kind == "bce":
        return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()  # -log s(x) = softplus(-x)
    if log_q is not None:
        pos, neg = pos - log_q[targets], neg - log_q[negatives]
    neg = neg.masked_fill(negatives == targets[:, None], float("-inf"))  # accidental hits
    logits = torch.cat([pos[:, None], neg], 1)  # [N, 1 + k], the target in column 0
    return -torch.log_softmax(logits, -1)[:, 0].mean()


class _SoftmaxCE(torch.autograd.Function):
    """``mean_n [logsumexp(h_n W^T + b) - (h_n W_{t_n} + b_{t_n})]``, fused with its gradient
    (as Liger-Kernel's fused linear cross-entropy): rows are taken ``rows`` at a time, and each
    chunk's logits become ``softmax - onehot`` in place and are multiplied out into the gradients
    of ``h``, ``W`` and ``b`` right away, so the ``[N, V]`` logits never exist whole. On CPU this
    avoids autograd's three ``[N, V]`` tensors (logits, log-softmax, a zero-filled gradient),
    freshly allocated at every step (page faults dominated: half of a SASRec-CE step on ML-1M at
    ``max_len=200``), and bounds the memory for large catalogues. The backward only scales the
    stored gradients, so it runs once (no double backward)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, rows):
        N, V = hidden.shape[0], weight.shape[0]
        grads = ctx.needs_input_grad[:3]
        g_hidden = torch.empty_like(hidden) if grads[0] else None
        g_weight = torch.zeros_like(weight) if grads[1] else None
        g_bias = torch.zeros_like(bias) if bias is not None and grads[2] else None
        buf = hidden.new_empty(min(rows, N), V)
        total = hidden.new_zeros((), dtype=torch.float64)
        for s in range(0, N, rows):
            h, t = hidden[s:s + rows], targets[s:s + rows]
            z = buf[:len(h)]
            torch.mm(h, weight.T, out=z)  # [n, V] logits
            if bias is not None:
                z.add_(bias)
            m = z.amax(1, keepdim=True)
            target_logit = z.gather(1, t[:, None])
            z.sub_(m).exp_()
            total_exp = z.sum(1, keepdim=True)
            total += (m + total_exp.log() - target_logit).sum(dtype=torch.float64)
            if any(grads):
                z.div_(total_exp)  # softmax
                z[torch.arange(len(h), device=z.device), t] -= 1.0  # - onehot
                if g_hidden is not None:
                    torch.mm(z, weight, out=g_hidden[s:s + rows])
                if g_weight is not None:
                    g_weight.addmm_(z.T, h)
                if g_bias is not None:
                    g_bias.add_(z.sum(0))
        ctx.grads, ctx.n = (g_hidden, g_weight, g_bias), N
        return (total / N).to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad):
        if ctx.grads is None:
            raise RuntimeError("softmax_ce supports one backward pass only")
        g_hidden, g_weight, g_bias = ctx.grads
        ctx.grads = None
        scale = grad / ctx.n
        return (None if g_hidden is None else g_hidden.mul_(scale), None if g_weight is None else g_weight.mul_(scale),
                None if g_bias is None else g_bias.mul_(scale), None, None)


def softmax_ce(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None,
               rows: int | None = None) -> torch.Tensor:
    """Full-softmax cross-entropy ``mean_n -log softmax(h_n W^T + b)[t_n]`` (``hidden [N, d]``,
    ``weight [V, d]``, ``targets [N]`` in ``[0, V)``, ``bias [V]``); the same value and
    gradients as ``F.cross_entropy(hidden @ weight.T + bias, targets)`` in about a third of the time
    on CPU (0.12 s against 0.37 s for 14k rows x 3,416 items, forward and backward, 2 threads)
    and with bounded memory (:class:`_SoftmaxCE`). Half precision and autocast fall back
    to ``F.cross_entropy``."""
    if hidden.dtype != torch.float32 or weight.dtype != torch.float32 or torch.is_autocast_enabled():
        logits = hidden @ weight.T
        return F.cross_entropy(logits if bias is None else logits + bias, targets)
    rows = rows or max(64, (1 << 22) // max(1, weight.shape[0]))  # a ~16 MB chunk of logits
    return _SoftmaxCE.apply(hidden, weight, bias, targets, int(rows))


class SharedNegatives(torch.nn.Module):
    """``k`` negatives shared by a batch (``sampled_ce``), drawn from torch's RNG (which the
    trainer seeds and checkpoints): seq ids uniform over ``1..n_items`` or proportional to
    their training popularity. ``forward(device) -> (ids [k], log_q)``: ``log_q [n_items + 1]``
    holds each id's log probability for the logQ correction when sampling by popularity, and is
    ``None`` when uniform (a constant shift of every logit, which changes nothing)."""

    def __init__(self, data, k: int, kind: str = "uniform"):
        super().__init__()
        if kind not in ("uniform", "popularity"):
            raise ValueError(f"negative_sampling must be 'uniform' or 'popularity', got {kind!r}")
        if k < 1:
            raise ValueError(f"n_negatives must be >= 1 for sampled negatives, got {k}")
        self.k, self.kind, self.n_items = int(k), kind, int(data.n_items)
        if kind == "popularity":
            counts = torch.as_tensor(np.asarray(data.train.sum(0)).ravel(), dtype=torch.float64)
            p = torch.cat([torch.zeros(1, dtype=torch.float64), counts / counts.sum()])  # [n_items + 1]
            self.register_buffer("probs", p.float(), persistent=False)
            self.register_buffer("log_q", p.clamp_min(1e-12).log().float(), persistent=False)

    def forward(self, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.kind == "uniform":
            return torch.randint(1, self.n_items + 1, (self.k,), device=device), None
        return torch.multinomial(self.probs, self.k, replacement=True), self.log_q


# ----------------------------------------------------------------------------------------------
# GRU4Rec's session-parallel losses (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018)
# ----------------------------------------------------------------------------------------------
# Both take the score matrix of one session-parallel step, ``logits [S, C]``: row ``i`` is active
# slot ``i``, the columns are the S targets of the step (in-batch negatives) followed by the
# extra sampled items, and row i's positive is column i. ``hits [S, C]`` (optional, bool) marks
# off-diagonal columns holding row i's own target (accidental hits), which are then not used as
# negatives; the official code keeps them (``hits=None``). Both return the SUM over rows: the
# official code divides by the fixed batch size, also when fewer slots are active.


def gru4rec_xe_loss(logits: torch.Tensor, log_q: torch.Tensor | None = None,
                    hits: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the step's columns: ``sum_i -log softmax(r_i)[i]``.

    ``log_q [C]`` (optional): subtracted from every row (the official ``logq`` correction:
    ``logq * log(count)`` for the in-batch columns, ``logq * alpha * log(count)`` for the
    sampled ones)."""
    if log_q is not None:
        logits = logits - log_q
    if hits is not None:
        logits = logits.masked_fill(hits, float("-inf"))
    S = logits.shape[0]
    diag = torch.arange(S, device=logits.device)
    return -torch.log_softmax(logits, 1)[diag, diag].sum()


def bpr_max_loss(logits: torch.Tensor, bpreg: float, elu_param: float = 0.0,
                 hits: torch.Tensor | None = None) -> torch.Tensor:
    """BPR-max (CIKM 2018, Eq. 9-10) with the score regulariser: with ``r = ELU(logits)`` (or the
    logits when ``elu_param == 0``) and ``s_ij`` the softmax of row i over its negatives,

    ``sum_i [ -log sum_j s_ij sigmoid(r_ii - r_ij) + bpreg * sum_j s_ij r_ij^2 ]``.

    Rows without any negative (one active slot, no extra samples) contribute 0."""
    if elu_param > 0:
        logits = F.elu(logits, elu_param)
    S, C = logits.shape
    rows = torch.arange(S, device=logits.device)
    neg = torch.ones(S, C, dtype=torch.bool, device=logits.device)
    neg[rows, rows] = False
    if hits is not None:
        neg &= ~hits
    has_neg = neg.any(1)
    s = torch.softmax(logits.masked_fill(~neg, float("-inf")), 1)  # [S, C]
    s = torch.where(neg, s, torch.zeros_like(s))  # also clears the NaN rows with no negative
    pos = logits[rows, rows][:, None]  # [S, 1]
    ranking = -torch.log((s * torch.sigmoid(pos - logits)).sum(1) + 1e-24)
    reg = bpreg * (s * logits.pow(2)).sum(1)
    return torch.where(has_neg, ranking + reg, torch.zeros_like(ranking)).sum()
