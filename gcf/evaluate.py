"""Batched full-ranking evaluation, the one evaluator of every model.

For each user with at least one held-out item, ``model.score(users, history)`` gives
``[B, n_items]`` scores, where ``history`` (:class:`gcf.data.sequences.Sequences`) holds what
the model may know when that part is ranked, in time order: the train part for 'valid', train
+ validation for 'test' (as cornac's ``NextItemRecommender.score(user_idx, history_items)``).
With ``mask_seen`` (the default) the history's items are set to ``-inf``; the top ``max(ks)``
items are taken with ``torch.topk`` and compared with the held-out set. Memory is bounded by
``batch_size x n_items``, and the per-user metrics do not depend on the batch size.
Under torchrun each rank ranks every N-th user and the sums are all-reduced.
``sampled="uni100"`` (or ``"pop100"``) ranks the held-out items among 100 uniform
(popularity-weighted) negatives instead, each user's drawn from that user's own seeded stream
(so they do not depend on the batch size either); those keys carry the label, e.g.
``ndcg@10[uni100]``.

Labelled rows (``task=ctr``: each held-out row a click or not) are not ranked but scored one
by one: :func:`evaluate_labelled` gives AUC and LogLoss over all rows of the part from
``model.score_rows`` (logits).
"""
from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp
import torch

from . import distributed
from .data.sampler import sample_distinct_negatives
from .data.split import Split
from .metrics import LABELLED_METRICS, METRICS, labelled_metrics, topk_metrics


def _sampled_spec(sampled: str) -> tuple[str, int]:
    m = re.fullmatch(r"(uni|pop)(\d+)", sampled)
    if not m:
        raise ValueError(f"sampled={sampled!r}: expected 'uni<N>' or 'pop<N>', e.g. uni100")
    return m.group(1), int(m.group(2))


@torch.no_grad()
def evaluate(model, split: Split, part: str = "test", ks=(10, 20), metrics=METRICS, batch_size: int = 1024,
             device: str | torch.device = "cpu", sampled: str | None = None, seed: int = 0,
             mask_seen: bool = True, users: np.ndarray | None = None) -> dict:
    """Mean of each metric over users with held-out items in ``part`` ('valid' or 'test');
    ``users`` restricts it to those of them in the given ids (e.g. a timed sample)."""
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    target = split.csr(part)
    history = split.history(part)
    seen = history.csr()
    n_rel_all = np.diff(target.indptr)
    held = np.flatnonzero(n_rel_all > 0)
    users = held if users is None else np.intersect1d(held, np.asarray(users, dtype=np.int64))
    if len(users) == 0:
        raise ValueError(f"the {part} split is empty: nothing to evaluate ({split.method})")
    ks = sorted(set(int(k) for k in ks))
    was_training = model.training
    model.eval()
    sums = {f"{name}@{k}": 0.0 for name in metrics for k in ks}
    stream_seed = 2 * int(seed) + (part == "test")  # valid and test draw from different streams
    pop = np.bincount(split.train.items, minlength=split.n_items).astype(np.float64) if sampled else None
    batch_size = _cpu_batch_cap(batch_size, split.n_items, device)
    mine = users[distributed.rank()::distributed.world()]  # under torchrun: this rank's users
    for start in range(0, len(mine), batch_size):
        batch = mine[start:start + batch_size]
        u = torch.from_numpy(batch).to(device)
        scores = model.score(u, history).float()  # [B, n_items], a fresh tensor (the contract)
        if sampled:
            hits, n_rel = _sampled_hits(scores, batch, target, seen, sampled, pop, stream_seed, device)
        else:
            if mask_seen:
                rows, cols = _coords(seen, batch, device)
                scores[rows, cols] = float("-inf")  # seen items never rank
            top = torch.topk(scores, min(ks[-1], split.n_items), dim=1).indices  # [B, K]
            hits = _membership(top, *_coords(target, batch, device), split.n_items)
            n_rel = torch.from_numpy(n_rel_all[batch]).to(device)
        for name, values in topk_metrics(hits, n_rel, ks, metrics).items():
            sums[name] = sums.get(name, 0.0) + float(values.double().sum())
    model.train(was_training)
    sums = distributed.all_sum(sums, torch.device(device))
    label = f"[{sampled}]" if sampled else ""
    return {f"{name}{label}": total / len(users) for name, total in sums.items()}


# On CPU a score matrix above glibc's largest mmap threshold (32 MB) is mapped and unmapped
# for every batch, and each of its pages faults again when first written: on Gowalla (40,981
# items, batches of 1,024 users: 168 MB) that was a large part of the evaluation. Below it,
# the freed block is reused. Per-user metrics do not depend on the batch size.
CPU_SCORE_BYTES = 24 * 2 ** 20


def _cpu_batch_cap(batch_size: int, n_items: int, device) -> int:
    """``batch_size`` on GPU; on CPU at most as many users as keep ``[B, n_items]`` float32
    scores under :data:`CPU_SCORE_BYTES`."""
    if torch.device(device).type != "cpu":
        return int(batch_size)
    return max(1, min(int(batch_size), CPU_SCORE_BYTES // (4 * max(1, n_items))))


def _coords(csr: sp.csr_matrix, batch: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(row in batch, item) of the non-zeros of ``csr[batch]``, sorted by row then item."""
    sub = csr[batch]
    sub.sort_indices()
    rows = np.repeat(np.arange(len(batch), dtype=np.int64), np.diff(sub.indptr))
    return torch.from_numpy(rows).to(device), torch.from_numpy(sub.indices.astype(np.int64)).to(device)


def _membership(top: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_items: int) -> torch.Tensor:
    """``hits[b, r] = 1.0`` where ``top[b, r]`` is among the (rows, cols) pairs: a sorted-key
    search, so no dense ``[B, n_items]`` target matrix is built."""
    if len(rows) == 0:
        return torch.zeros_like(top, dtype=torch.float32)
    keys = rows * n_items + cols  # sorted
    query = torch.arange(len(top), device=top.device).unsqueeze(1) * n_items + top
    pos = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    return (keys[pos] == query).float()


def _sampled_hits(scores, batch, target: sp.csr_matrix, seen: sp.csr_matrix, sampled: str, pop, seed: int, device):
    """Rank each user's held-out items among N sampled non-interacted items (drawn from the
    user's own stream: see :func:`gcf.data.sampler.sample_distinct_negatives`)."""
    kind, n_neg = _sampled_spec(sampled)
    tgt = target[batch]
    interacted = (seen[batch] + tgt).tocsr()
    negs = sample_distinct_negatives(interacted, n_neg, seed, batch, None if kind == "uni" else pop / pop.sum())
    n_rel = np.diff(tgt.indptr)
    max_p = int(n_rel.max())
    pos = np.zeros((len(batch), max_p), dtype=np.int64)
    valid = np.arange(max_p)[None, :] < n_rel[:, None]
    pos[valid] = tgt.indices
    # negatives first: with a stable sort, a tie is ranked against the held-out item
    cand = torch.from_numpy(np.concatenate([negs, pos], 1)).to(device)
    cand_scores = scores.gather(1, cand)
    no = np.zeros_like(negs, dtype=bool)
    is_pos = torch.from_numpy(np.concatenate([no, valid], 1)).to(device)
    pad = torch.from_numpy(np.concatenate([no, ~valid], 1)).to(device)
    cand_scores = cand_scores.masked_fill(pad, float("-inf"))
    order = torch.argsort(cand_scores, dim=1, descending=True, stable=True)
    return is_pos.gather(1, order).float(), torch.from_numpy(n_rel).to(device)


@torch.no_grad()
def evaluate_labelled(model, split: Split, part: str = "test", metrics=LABELLED_METRICS, batch_size: int = 4096
                      ) -> dict:
    """AUC and LogLoss of ``model.score_rows`` (logits) on the labelled rows of ``part``
    (``task=ctr``); the model is given the part's history as in ranking."""
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    rows = getattr(split, part)
    if rows.labels is None:
        raise ValueError(f"the {part} split has no click labels: labelled evaluation needs task=ctr "
                         "(label_threshold, configs/task/ctr.yaml)")
    if len(rows) == 0:
        raise ValueError(f"the {part} split is empty: nothing to evaluate ({split.method})")
    was_training = model.training
    model.eval()
    logits = model.score_rows(rows, split.history(part), batch_size=batch_size)
    model.train(was_training)
    return labelled_metrics(rows.labels, logits.double().cpu().numpy(), metrics)
