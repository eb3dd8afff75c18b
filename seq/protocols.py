"""ComiRec's evaluation protocol (Cen et al., KDD 2020, Sec. 4.1; THUDM/ComiRec
``src/data_iterator.py``, ``src/train.py``) on our data pipeline, trainer and evaluator.

- **Users, not interactions, are split**: a seeded permutation puts ``8:1:1`` of the users
  (those with >= 2 interactions; a user with one stays in training) into disjoint train,
  validation and test sets. Training sees only the training users' sequences; validation
  and test users are never trained on (inductive).
- An evaluation user with ``n`` interactions in time order gives the first
  ``int(0.8 n)`` (``history_share``) as the history the model infers from, and the rest as
  the targets.
- Full ranking of all items with the history's items masked, top-N; early stopping on
  validation ``recall@50`` (the official code follows validation recall).
- Metrics (per user, averaged over the part's users; ``T`` = the user's targets):
  ``Recall@N = |top-N ∩ T| / |T|``, ``HitRate@N = 1[|top-N ∩ T| > 0]`` (both as the official
  code), and ``NDCG@N = DCG / IDCG`` with ``DCG = sum_{r <= N} 1[item at rank r in T] /
  log2(r + 1)`` and ``IDCG`` the DCG of ``min(N, |T|)`` hits: the standard definition
  (:mod:`gcf.metrics`), not the official code's (which divides by the ideal DCG of the hits
  found and discounts by the position in the target list; its authors advise reporting only
  Recall and HitRate).

For a multi-interest model the ranking score is ``max_j v_j . e_i``, whose top N is exactly
the official retrieval (top N per interest, merged by score, de-duplicated; see
:mod:`seq.multi_interest`). Any other model (SASRec, GRU4Rec, Pop, ...) runs on the same
split, trained on the training users only.

Departures from the official code: the history's items are masked (the official retrieval
leaves them in; our interactions are de-duplicated, so they can never be targets and masking
them only removes certain misses); N = 20 and 50 come from one ranking (the official code
needs one run per N); users with one interaction are training users.

``python -m seq.protocols MODEL [key=value ...]`` runs one model under it (the keys of
``python -m seq.train``; ``history_share`` is an argument of :func:`run_comirec`).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from gcf.config import resolve_config
from gcf.data.datasets import load_dataset
from gcf.data.interactions import Interactions
from gcf.data.sequences import Sequences
from gcf.data.split import Split
from gcf.models import build_model, model_family
from gcf.trainer import Trainer

__all__ = ["HeldOutUsersSplit", "held_out_users", "load_comirec_split", "run_comirec", "COMIREC_DEFAULTS"]

# the protocol's keys, before the caller's overrides
COMIREC_DEFAULTS = ["topk=[20, 50]", "metrics=[recall, hit, ndcg]", "valid_metric=recall@50"]


@dataclass
class HeldOutUsersSplit(Split):
    """A :class:`Split` whose validation and test users are not in training: ``train`` holds the
    training users' interactions, ``valid``/``test`` the targets of the validation/test users,
    and ``eval_history`` their histories, which :meth:`history` adds to what a model may know."""

    eval_history: Interactions | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.eval_history is None:
            raise ValueError("HeldOutUsersSplit needs eval_history (the evaluation users' histories)")
        trained = np.unique(self.train.users)
        for part in ("valid", "test"):
            both = np.intersect1d(trained, getattr(self, part).users)
            if len(both):
                raise ValueError(f"split {self.method}: {len(both)} {part} user(s) are also training users, e.g. "
                                 f"{self.train.user_ids[both[0]]!r}")
        if len(np.intersect1d(self.valid.users, self.test.users)):
            raise ValueError(f"split {self.method}: a user is in both valid and test")

    def history(self, part: str) -> Sequences:
        """The training sequences and the evaluation users' histories (the same for both
        parts: their users are disjoint)."""
        if part not in ("valid", "test"):
            raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
        if "history" not in self._csr:
            self._csr["history"] = Sequences.from_interactions(self.train, self.eval_history)
        return self._csr["history"]

    def user_sets(self) -> dict[str, np.ndarray]:
        """The users of each set: ``train`` (trained on), ``valid``, ``test`` (evaluated)."""
        return {"train": np.unique(self.train.users), "valid": np.unique(self.valid.users),
                "test": np.unique(self.test.users)}


def held_out_users(inter: Interactions, ratios=(0.8, 0.1, 0.1), history_share: float = 0.8,
                   seed: int = 2020) -> HeldOutUsersSplit:
    """ComiRec's split of de-duplicated ``inter`` (module docstring): users with >= 2
    interactions go ``ratios`` to train/valid/test by a seeded permutation; an evaluation
    user's first ``int(history_share * n)`` interactions in time order (timestamp, then file
    order) are the history, the rest (at least one) the targets."""
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"split_ratios must be three non-negative numbers (train, valid, test), got {ratios}")
    if not 0 < history_share < 1:
        raise ValueError(f"history_share must be in (0, 1), got {history_share}")
    counts = np.bincount(inter.users, minlength=inter.n_users)
    candidates = np.flatnonzero(counts >= 2)
    order = np.random.default_rng(seed).permutation(candidates)
    r = np.asarray(ratios, dtype=np.float64) / np.sum(ratios)
    n_valid, n_test = int(round(r[1] * len(order))), int(round(r[2] * len(order)))
    role = np.zeros(inter.n_users, dtype=np.int64)  # 0 train, 1 valid, 2 test
    role[order[len(order) - n_valid - n_test:len(order) - n_test]] = 1
    role[order[len(order) - n_test:]] = 2
    # rank of each row inside its user, in time order (ties: file order)
    pos = np.arange(len(inter))
    keys = (pos,) if inter.timestamps is None else (pos, np.asarray(inter.timestamps).astype(np.int64))
    rows = np.lexsort(keys + (inter.users,))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(inter), dtype=np.int64)
    rank[rows] = np.arange(len(inter)) - starts[inter.users[rows]]
    n_hist = np.floor(history_share * counts + 1e-9).astype(np.int64).clip(1, None)  # int(0.8 n) >= 1 for n >= 2
    n_hist = np.minimum(n_hist, counts - 1)  # and at least one target
    user_role = role[inter.users]
    is_history = rank < n_hist[inter.users]
    method = f"held_out_users{tuple(ratios)} history_share={history_share} seed={seed}"
    return HeldOutUsersSplit(inter.subset(user_role == 0), inter.subset((user_role == 1) & ~is_history),
                             inter.subset((user_role == 2) & ~is_history), method,
                             eval_history=inter.subset((user_role > 0) & is_history))


def load_comirec_split(cfg: dict, history_share: float = 0.8) -> HeldOutUsersSplit:
    """Load ``cfg['dataset']``, apply ``rating_threshold`` and ``user_k``/``item_k`` (ComiRec's
    data is 5-core), de-duplicate, and split with :func:`held_out_users` (``split_ratios``, ``seed``)."""
    inter, test = load_dataset(cfg["dataset"], cfg.get("data_dir"),
                               **{k: cfg[k] for k in ("format", "path") if cfg.get(k) is not None})
    if test is not None:
        raise ValueError(f"dataset {cfg['dataset']!r} comes with its own test file; ComiRec's protocol splits "
                         "users itself and needs a dataset in one piece")
    inter = inter.implicit(cfg.get("rating_threshold"))
    inter = inter.k_core(int(cfg.get("user_k") or 0), int(cfg.get("item_k") or 0)).dedup()
    return held_out_users(inter, tuple(cfg["split_ratios"]), history_share, int(cfg["seed"]))


def run_comirec(model: str, overrides=(), history_share: float = 0.8, quiet: bool = False) -> dict:
    """Train ``model`` on the training users and rank the held-out users (module docstring);
    writes ``config.yaml`` and ``metrics.json`` (``valid``, ``test``, timings, the user counts)
    to ``out_dir`` (default ``runs/<model>-<dataset>-comirec``) and returns the metrics."""
    import logging

    from gcf.train import setup_logging

    family = model_family(model)
    cfg, kwargs = resolve_config(model, [*COMIREC_DEFAULTS, *overrides], family=family)
    out_dir = Path(cfg["out_dir"] or f"runs/{cfg['model']}-{cfg['dataset']}-comirec")
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg["out_dir"] = str(out_dir)
    setup_logging(out_dir)
    if quiet:
        logging.getLogger("gcf").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    split = load_comirec_split(cfg, history_share)
    sets = {k: int(len(v)) for k, v in split.user_sets().items()}
    with open(out_dir / "config.yaml", "w") as f:
        yaml.safe_dump({"config": cfg, "protocol": "comirec", "history_share": history_share,
                        "split": split.summary(), "users": sets}, f, sort_keys=False)
    load_sec = time.perf_counter() - t0
    net = build_model(cfg["model"], kwargs, split, int(cfg["seed"]))
    metrics = Trainer(net, split, cfg, out_dir).fit()
    metrics.update(model=cfg["model"], dataset=cfg["dataset"], protocol="comirec", users=sets,
                   load_sec=load_sec, out_dir=str(out_dir))
    with open(out_dir / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def main(argv=None) -> int:
    import seq.models  # noqa: F401  (registers the sequence models)
    from gcf.train import format_table

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        m = run_comirec(argv[0], argv[1:])
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"\n{m['model']} on {m['dataset']}, ComiRec protocol ({m['users']}): test metrics "
          f"(best epoch {m['best_epoch']} of {m['epochs']}, {m['sec_per_epoch']:.2f} s/epoch)")
    print(format_table(m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
