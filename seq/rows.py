"""Datasets of (history, next item) rows split by sequence: DreamRec's protocol (Zhihu, YooChoose,
KuaiRec as released with DreamRec, ``../shared/data/zhihu-dreamrec``).

Each of ``train_data.df``, ``val_data.df``, ``test_data.df`` (pandas pickles) holds one row per
position of its sequences: ``seq`` = the last 10 items before the position, padded on the right
with ``item_num`` (from ``data_statis.df``), ``tgt`` (or ``next``) = the item at the position.
The sequences of the three files are disjoint (8:1:1 by sequence), so a model never trains on a
validation or test sequence, and every validation/test row is ranked from its own history.

:func:`load_row_split` turns this into a :class:`RowSplit` that the toolkit's trainer and
evaluator use unchanged:

- train: the training *sequences*, rebuilt from the sliding-window rows (a row whose history
  is the previous row's history plus its target continues that sequence; any other row starts
  one). Every (prefix, next item) of them, with the last 10 items as the prefix, is then
  exactly one training row of the file (:class:`seq.data.PrefixBatches`); models with
  per-position losses (SASRec, GRU4Rec) train on the same sequences.
- valid / test: one evaluation "user" per row, whose held-out item is the row's target and
  whose history (:meth:`RowSplit.history`) is the row's own history, never the training part.

:func:`fit_rows` trains and evaluates any registered model on such a split with the usual
config keys. Item ids are the files' (0-based); users are ``train:<k>`` (rebuilt sequence k),
``valid:<row>``, ``test:<row>``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gcf.data.interactions import Interactions
from gcf.data.sequences import Sequences
from gcf.data.split import Split

__all__ = ["RowSplit", "read_rows", "load_row_split", "fit_rows"]

PARTS = {"train": "train_data.df", "valid": "val_data.df", "test": "test_data.df"}


@dataclass
class RowSplit(Split):
    """A :class:`Split` whose validation/test users carry their own histories (``contexts``:
    part -> :class:`Interactions` in time order) instead of the training part."""

    contexts: dict = field(default_factory=dict)

    def history(self, part: str) -> Sequences:
        if part not in ("valid", "test"):
            raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
        key = f"history:{part}"
        if key not in self._csr:
            self._csr[key] = Sequences.from_interactions(self.contexts[part])
        return self._csr[key]


def read_rows(path: str | Path, n_items: int, seq_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(history [N, S] int64 with -1 as padding, left-aligned; target [N])`` of one rows file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    df = pd.read_pickle(path)
    tgt_col = "tgt" if "tgt" in df.columns else "next" if "next" in df.columns else None
    if "seq" not in df.columns or tgt_col is None:
        raise ValueError(f"{path}: expected columns 'seq' and 'tgt' (or 'next'), got {list(df.columns)}")
    hist = np.array(df["seq"].tolist(), dtype=np.int64)
    if hist.ndim != 2 or (seq_size is not None and hist.shape[1] != seq_size):
        raise ValueError(f"{path}: 'seq' must hold lists of {seq_size or 'equal'} items, got shape {hist.shape}")
    target = df[tgt_col].to_numpy().astype(np.int64)
    for name, arr, hi in (("seq", hist, n_items), (tgt_col, target, n_items - 1)):
        if arr.size and (arr.min() < 0 or arr.max() > hi):
            bad = int(np.flatnonzero(((arr < 0) | (arr > hi)).reshape(len(arr), -1).any(1))[0])
            raise ValueError(f"{path}: row {bad}: column {name!r} has an id outside 0..{hi} (item_num {n_items})")
    hist = np.where(hist == n_items, -1, hist)
    # histories are left-aligned (right-padded); move any stray padding to the right, order kept
    order = np.argsort(hist < 0, axis=1, kind="stable")
    return np.take_along_axis(hist, order, 1), target


def _sequence_starts(hist: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``[N]`` bool: row r starts a new sequence unless its history is row r-1's history plus
    row r-1's target, cut to the last ``S`` items."""
    N, S = hist.shape
    lens = (hist >= 0).sum(1)
    ext = np.concatenate([hist, np.full((N, 1), -1)], 1)  # [N, S + 1]
    ext[np.arange(N), lens] = target  # history followed by the target
    start = np.ones(N, dtype=bool)
    if N > 1:
        prev_len = lens[:-1] + 1  # items in ext of row r-1
        cur_len = lens[1:]
        shift = prev_len - cur_len  # 0 or 1 when row r continues row r-1
        ok = (cur_len == np.minimum(prev_len, S)) & (shift >= 0)
        j = np.arange(S)[None, :]
        src = np.clip(shift[:, None] + j, 0, S)
        expected = np.take_along_axis(ext[:-1], src, 1)
        expected = np.where(j < cur_len[:, None], expected, -1)
        ok &= (expected == hist[1:]).all(1)
        start[1:] = ~ok
    return start


def _sequences_from_rows(hist: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sequence id, item)`` per interaction of the sequences rebuilt from sliding-window rows,
    in order: a starting row gives its history and target, a continuing row its target."""
    start = _sequence_starts(hist, target)
    seq_of_row = np.cumsum(start) - 1
    lens = (hist >= 0).sum(1)
    n_from_row = np.where(start, lens + 1, 1)
    rows = np.repeat(np.arange(len(target)), n_from_row)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(n_from_row) - n_from_row, n_from_row)  # index within the row
    ext = np.concatenate([hist, np.full((len(hist), 1), -1)], 1)
    ext[np.arange(len(hist)), lens] = target
    items = np.where(start[rows], ext[rows, np.minimum(k, hist.shape[1])], target[rows])
    return seq_of_row[rows], items


def load_row_split(directory: str | Path) -> RowSplit:
    """The :class:`RowSplit` of a DreamRec data folder (module docstring)."""
    directory = Path(directory)
    stats_path = directory / "data_statis.df"
    if not stats_path.is_file():
        raise FileNotFoundError(f"{stats_path} not found (a DreamRec data folder holds data_statis.df and "
                                f"{', '.join(PARTS.values())})")
    stats = pd.read_pickle(stats_path)
    for key in ("item_num", "seq_size"):
        if key not in stats.columns:
            raise ValueError(f"{stats_path}: missing column {key!r}")
    n_items, seq_size = int(stats["item_num"].iloc[0]), int(stats["seq_size"].iloc[0])
    parts = {p: read_rows(directory / f, n_items, seq_size) for p, f in PARTS.items()}
    train_users, train_items = _sequences_from_rows(*parts["train"])
    n_seq = int(train_users.max()) + 1
    n_valid, n_test = len(parts["valid"][1]), len(parts["test"][1])
    user_ids = np.array([f"train:{k}" for k in range(n_seq)] + [f"valid:{r}" for r in range(n_valid)]
                        + [f"test:{r}" for r in range(n_test)])
    item_ids = np.arange(n_items).astype(str)
    offsets = {"valid": n_seq, "test": n_seq + n_valid}
    src = str(directory)

    def inter(users, items, part):
        return Interactions(users, items, user_ids, item_ids, source=f"{src} ({part})")

    held, contexts = {}, {}
    for part in ("valid", "test"):
        hist, target = parts[part]
        users = offsets[part] + np.arange(len(target))
        held[part] = inter(users, target, part)
        real = hist >= 0  # row-major: each row's history in order
        contexts[part] = inter(np.repeat(users, real.sum(1)), hist[real], f"{part} histories")
    train = Interactions(train_users, train_items, user_ids, item_ids, source=str(directory / PARTS["train"]))
    return RowSplit(train, held["valid"], held["test"], method="rows(train/val/test files, by sequence)",
                    contexts=contexts)


def fit_rows(model: str, split: RowSplit, overrides=(), out_dir: str | Path | None = None) -> dict:
    """Train ``model`` on ``split`` with the config keys of ``python -m seq.train`` (its defaults,
    ``overrides`` as ``key=value``) and return the metrics (as ``metrics.json`` holds them).
    ``dataset``/``data_dir`` are not used: the split is given."""
    import time

    import seq.models  # noqa: F401  (registers the sequence models)
    from gcf.config import resolve_config
    from gcf.models import build_model, model_family
    from gcf.trainer import Trainer

    overrides = [o for o in overrides if not o.startswith(("dataset=", "data_dir="))]
    cfg, kwargs = resolve_config(model, overrides, family=model_family(model))
    cfg["dataset"] = "rows"
    t0 = time.perf_counter()
    net = build_model(cfg["model"], kwargs, split, int(cfg["seed"]))
    trainer = Trainer(net, split, cfg, out_dir)
    metrics = trainer.fit()
    metrics["history"] = trainer.history
    metrics["model"], metrics["kwargs"], metrics["wall_sec"] = cfg["model"], kwargs, time.perf_counter() - t0
    metrics["_model"], metrics["_trainer"] = net, trainer
    return metrics
