"""Top-k ranking metrics as pure functions of a hit matrix.

``hits[u, r]`` is 1 when the item ranked at position ``r`` (0-based) for user ``u`` is one
of the user's held-out items, and ``n_relevant[u]`` is how many held-out items the user has.
Each function returns one value per user (``[B]``); the evaluator averages over users with at
least one held-out item. The definitions are RecBole's, so numbers are comparable:

- ``recall@k    = |hits in top k| / n_relevant``
- ``precision@k = |hits in top k| / k``
- ``hit@k       = 1 if any hit in top k``
- ``mrr@k       = 1 / rank of the first hit in top k (0 if none)``
- ``ndcg@k      = DCG@k / IDCG@k``, ``DCG = sum_r hits[r] / log2(r + 2)``, IDCG over
  ``min(k, n_relevant)`` ideal hits
- ``map@k       = sum_r precision@(r+1) * hits[r] / min(k, n_relevant)``

Sampled variants rank the held-out items among N sampled negatives; the evaluator labels
them ``ndcg@10[uni100]`` / ``ndcg@10[pop100]`` so they are never mistaken for full ranking.

Labelled rows (``task=ctr``) are scored with :func:`roc_auc` and :func:`log_loss` over all
rows of a part at once (RecBole's AUC and LogLoss, scikit-learn's ``roc_auc_score`` and
``log_loss``; a test checks both against scikit-learn on the same arrays).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.special import expit
from scipy.stats import rankdata

METRICS = ("recall", "ndcg", "precision", "hit", "mrr", "map")


def recall(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].sum(1) / n_relevant.clamp(min=1)


def precision(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k].sum(1) / k


def hit(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    return (hits[:, :k].sum(1) > 0).to(hits.dtype)


def mrr(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    h = hits[:, :k]
    first = h.argmax(1)  # position of the first hit (0 when none: masked below)
    return torch.where(h.sum(1) > 0, 1.0 / (first + 1).to(h.dtype), torch.zeros_like(first, dtype=h.dtype))


def _discounts(k: int, device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


def ndcg(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    h = hits[:, :k].to(torch.float64)
    disc = _discounts(h.shape[1], h.device)
    dcg = (h * disc).sum(1)
    ideal = torch.cumsum(disc, 0)  # ideal[n-1] = IDCG with n relevant items in the top
    n = n_relevant.clamp(min=1, max=h.shape[1]).long()
    return (dcg / ideal[n - 1]).to(hits.dtype)


def average_precision(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    h = hits[:, :k].to(torch.float64)
    prec = torch.cumsum(h, 1) / torch.arange(1, h.shape[1] + 1, device=h.device)
    denom = n_relevant.clamp(min=1, max=h.shape[1]).to(torch.float64)
    return ((prec * h).sum(1) / denom).to(hits.dtype)


FUNCTIONS = {"recall": recall, "ndcg": ndcg, "precision": precision, "hit": hit, "mrr": mrr,
             "map": average_precision}


def topk_metrics(hits: torch.Tensor, n_relevant: torch.Tensor, ks, names=METRICS) -> dict[str, torch.Tensor]:
    """``{"recall@20": per-user values [B], ...}`` for every metric name and cut-off."""
    hits = hits.to(torch.float32)
    out = {}
    for name in names:
        if name not in FUNCTIONS:
            raise ValueError(f"unknown metric {name!r}; expected one of {sorted(FUNCTIONS)}")
        for k in ks:
            out[f"{name}@{k}"] = FUNCTIONS[name](hits, n_relevant, k)
    return out


def auc(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Per-row AUC of positive vs negative scores (ties count one half): ``[B, P]``, ``[B, N]``."""
    diff = pos_scores.unsqueeze(2) - neg_scores.unsqueeze(1)  # [B, P, N]
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean((1, 2))


LABELLED_METRICS = ("auc", "logloss")


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: ``(sum of the positives' ranks - P(P+1)/2) / (P N)``, the
    Mann-Whitney form, ties sharing their mean rank (so a tie counts one half)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    ranks = rankdata(np.asarray(scores, dtype=np.float64).ravel())
    n_pos = float(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {int(n_pos)} positive and {int(n_neg)} negative labels")
    return float((ranks[y > 0].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels, probs) -> float:
    """Mean binary cross-entropy ``-[y log p + (1 - y) log(1 - p)]``, ``p`` clipped to
    ``[eps, 1 - eps]`` with float64's machine epsilon (as scikit-learn)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    eps = np.finfo(np.float64).eps
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


LOWER_IS_BETTER = frozenset({"logloss"})


def monitor_terms(spec: str) -> list[tuple[float, str]]:
    """The signed terms of a ``valid_metric``: ``"ndcg@20"`` -> ``[(1, "ndcg@20")]``,
    ``"auc-logloss"`` (FuxiCTR's ``monitor: {AUC: 1, logloss: -1}``) -> ``[(1, "auc"), (-1, "logloss")]``.
    A lone metric that is better when lower (``logloss``) gets the sign -1, so the monitor is
    always maximised."""
    text = str(spec).replace(" ", "")
    if not text or text[-1] in "+-":
        raise ValueError(f"valid_metric={spec!r}: expected a metric name or terms joined by + and -, "
                         f"e.g. 'auc' or 'auc-logloss'")
    terms, sign, name = [], 1.0, ""
    for ch in text + "+":
        if ch in "+-" and name:
            terms.append((sign, name))
            sign, name = (1.0 if ch == "+" else -1.0), ""
        elif ch in "+-":
            if terms or ch == "+":
                raise ValueError(f"valid_metric={spec!r}: two signs in a row")
            sign = -1.0
        else:
            name += ch
    if len(terms) == 1 and terms[0][0] > 0 and terms[0][1].split("[")[0] in LOWER_IS_BETTER:
        terms = [(-1.0, terms[0][1])]
    return terms


def monitor_score(valid: dict, spec: str) -> float:
    """The value early stopping maximises: the signed sum of ``valid_metric``'s terms
    (:func:`monitor_terms`); a term the validation did not compute is an error naming it."""
    missing = [name for _, name in monitor_terms(spec) if name not in valid]
    if missing:
        raise ValueError(f"valid_metric={spec!r}: {', '.join(map(repr, missing))} not computed; "
                         f"available: {sorted(valid)}")
    return float(sum(sign * float(valid[name]) for sign, name in monitor_terms(spec)))


def labelled_metrics(labels, logits, names=LABELLED_METRICS) -> dict[str, float]:
    """``{"auc": ..., "logloss": ...}`` of scores given as logits (probability = sigmoid)."""
    logits = np.asarray(logits, dtype=np.float64)
    out = {}
    for name in names:
        if name == "auc":
            out["auc"] = roc_auc(labels, logits)  # monotone in the probability
        elif name == "logloss":
            out["logloss"] = log_loss(labels, expit(logits))
        else:
            raise ValueError(f"unknown metric {name!r} for labelled rows (task=ctr); expected one of "
                             f"{', '.join(LABELLED_METRICS)}")
    return out
