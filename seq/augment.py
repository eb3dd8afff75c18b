"""Sequence augmentations of contrastive sequence models (CL4SRec, Xie et al., ICDE 2022,
Sec. III-B; DuoRec and others reuse them) and the NT-Xent loss over the augmented views.

Every function takes a batch of right-aligned histories ``items [B, L]`` (seq ids, 0 = padding
on the left, the newest item at ``L - 1``; ``n`` = the number of real items of a row) and
returns a NEW tensor (the input is never written, so the next-item loss and the other view
still see the original batch), right-aligned again. Randomness comes from ``generator``
(``None``: torch's global RNG, which the trainer seeds and checkpoints), so a seeded call
repeats exactly.

- :func:`crop` (item crop, rate ``eta``): a random contiguous run of ``max(1, floor(eta n))``
  items; the view is shorter (the run is right-aligned, padding in front).
- :func:`mask` (item mask, rate ``gamma``): ``floor(gamma n)`` distinct random real positions
  become the [mask] id; the length and the other items stay.
- :func:`reorder` (item reorder, rate ``beta``): the items of a random window of
  ``floor(beta n)`` positions are shuffled; the multiset of items and the length stay.
- :func:`augment_views`: two views of each row, each made by one operation drawn at random
  (by default two different operations per row, as RecBole-DA's CL4SRec; ``distinct=False``
  lets both be the same). Rows with one item are returned unchanged (every operation is the
  identity on them, or an empty view).

:func:`nt_xent` is the contrastive loss of SimCLR / CL4SRec (Eq. 5): for ``2N`` views, the
partner view is the positive and the other ``2N - 2`` views are negatives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["crop", "mask", "reorder", "augment_views", "nt_xent", "AUGMENTATIONS"]

AUGMENTATIONS = ("crop", "mask", "reorder")


def _lengths(items: torch.Tensor) -> torch.Tensor:
    return (items > 0).sum(1)  # [B]


def _uniform_int(high: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One integer uniform in ``[0, high]`` per row (``high [B] >= 0``)."""
    u = torch.rand(high.shape, generator=generator, device=high.device)
    return torch.minimum((u * (high + 1).to(u.dtype)).long(), high)


def crop(items: torch.Tensor, eta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, L]``: a contiguous run of ``k = max(1, floor(eta * n))`` real items per row (a row
    of ``n = 0`` stays empty), right-aligned with padding in front."""
    B, L = items.shape
    n = _lengths(items)
    k = torch.clamp(torch.floor(eta * n.double()).long(), min=1)
    k = torch.minimum(k, n)
    start = _uniform_int(n - k, generator)  # offset of the run inside the real items
    j = torch.arange(L, device=items.device)[None, :]  # [1, L]
    src = (L - n + start)[:, None] + j - (L - k)[:, None]  # [B, L]: source slot of output slot j
    keep = j >= (L - k)[:, None]
    out = torch.gather(items, 1, src.clamp(0, L - 1))
    return torch.where(keep, out, torch.zeros_like(out))


def mask(items: torch.Tensor, gamma: float, mask_token: int, generator: torch.Generator | None = None
         ) -> torch.Tensor:
    """``[B, L]``: ``floor(gamma * n)`` distinct random real positions of each row set to
    ``mask_token``."""
    n = _lengths(items)
    m = torch.floor(gamma * n.double()).long()
    key = torch.rand(items.shape, generator=generator, device=items.device)
    key = key.masked_fill(items == 0, 2.0)  # padding sorts last, never chosen
    rank = torch.argsort(torch.argsort(key, 1), 1)  # [B, L] rank of each slot's key in its row
    chosen = rank < m[:, None]
    return torch.where(chosen, torch.full_like(items, mask_token), items)


def reorder(items: torch.Tensor, beta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, L]``: the items of a random window of ``w = floor(beta * n)`` consecutive real
    positions shuffled (a uniform permutation); everything else in place."""
    B, L = items.shape
    n = _lengths(items)
    w = torch.floor(beta * n.double()).long()
    start = (L - n) + _uniform_int(n - w, generator)  # first slot of the window
    j = torch.arange(L, device=items.device)[None, :].expand(B, L)
    inside = (j >= start[:, None]) & (j < (start + w)[:, None])
    u = torch.rand(items.shape, generator=generator, device=items.device, dtype=torch.float64)
    # sort keys: slot index outside the window, start + u * w inside (u < 1): the window's
    # slots stay between their neighbours and come out in a uniformly random order
    key = torch.where(inside, start[:, None].double() + u * w[:, None].double(), j.double())
    return torch.gather(items, 1, torch.argsort(key, 1))


def augment_views(items: torch.Tensor, eta: float, gamma: float, beta: float, mask_token: int,
                  operations: tuple[str, ...] = AUGMENTATIONS, distinct: bool = True,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views ``([B, L], [B, L])`` of ``items``: each row draws one operation of
    ``operations`` per view (two different ones when ``distinct`` and more than one is
    allowed), uniformly."""
    bad = [o for o in operations if o not in AUGMENTATIONS]
    if bad or not operations:
        raise ValueError(f"augmentations must be a non-empty subset of {AUGMENTATIONS}, got {list(operations)}")
    ops = list(dict.fromkeys(operations))
    B = items.shape[0]
    k = len(ops)
    first = torch.floor(torch.rand(B, generator=generator, device=items.device) * k).long().clamp(max=k - 1)
    if distinct and k > 1:  # a different second operation: shift by 1..k-1
        shift = 1 + torch.floor(torch.rand(B, generator=generator, device=items.device) * (k - 1)).long()
        second = (first + shift.clamp(max=k - 1)) % k
    else:
        second = torch.floor(torch.rand(B, generator=generator, device=items.device) * k).long().clamp(max=k - 1)
    views = []
    for choice in (first, second):
        out = items.clone()
        for o, name in enumerate(ops):
            rows = choice == o
            if not bool(rows.any()):
                continue
            x = items[rows]
            if name == "crop":
                y = crop(x, eta, generator)
            elif name == "mask":
                y = mask(x, gamma, mask_token, generator)
            else:
                y = reorder(x, beta, generator)
            out[rows] = y
        views.append(out)
    return views[0], views[1]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 1.0, similarity: str = "dot") -> torch.Tensor:
    """NT-Xent over the ``2N`` views ``z1 [N, d]``, ``z2 [N, d]`` (row ``i`` of each: the two
    views of one sequence): ``mean_i -log exp(s(i, i')) / sum_{j != i} exp(s(i, j))`` with
    ``s = sim / temperature``, ``sim`` the dot product or the cosine (``similarity``)."""
    if similarity not in ("dot", "cos"):
        raise ValueError(f"similarity must be 'dot' or 'cos', got {similarity!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    N = z1.shape[0]
    z = torch.cat([z1, z2], 0)  # [2N, d]
    if similarity == "cos":
        z = F.normalize(z, dim=-1)
    logits = (z @ z.T) / temperature  # [2N, 2N]
    eye = torch.eye(2 * N, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))  # a view is not its own negative
    partner = torch.cat([torch.arange(N, 2 * N), torch.arange(0, N)]).to(z.device)
    return F.cross_entropy(logits, partner)
