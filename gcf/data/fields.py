"""Declared feature fields: what feature models (LR, FM, DeepFM, AFN) see of a row.

A dataset config lists its fields under ``fields:`` (as FuxiCTR's ``feature_cols`` and
DeepCTR's ``SparseFeat``/``VarLenSparseFeat``/``DenseFeat`` do); each is a mapping::

    fields:
      - {name: user_id, source: user}                              # the raw user id
      - {name: item_id, source: item}
      - {name: age, source: user, type: numeric, buckets: [18, 25, 35, 45, 56]}
      - {name: zip3, source: user, column: zip_code, pattern: '^(\\d{3})'}
      - {name: genres, source: item, type: sequence, column: class, max_len: 6}
      - {name: year, source: item, column: title, pattern: '\\((\\d{4})\\)\\s*$'}
      - {name: hour, source: context, time: hour}

Keys: ``name`` (required, unique), ``source`` (required: ``user`` | ``item`` | ``context``),
``type`` (``categorical``, the default | ``sequence`` | ``numeric``), ``column`` (the side
feature it reads, default ``name``; ``user_id`` / ``item_id`` are the raw ids), ``min_count``
(categories seen in fewer training rows map to the out-of-vocabulary index; default 1),
``pattern`` (categorical/sequence: a regular expression whose first group is the value),
``sep`` (sequence stored as one string: the separator, default ``|``), ``max_len``
(sequence: the first ``max_len`` values are kept; default: the longest), ``normalize``
(numeric: ``standard`` (default) or ``minmax``, statistics of the training rows), ``buckets``
(numeric: sorted boundaries; the bucket number becomes a categorical value) and ``time``
(context: ``hour`` | ``weekday`` (Monday = 0) | ``month`` (January = 0) of the row's UTC timestamp).
An unknown key, type, source or time part is an error naming the field and the key; a column
that the data lacks is an error naming it and the columns there are (at fit time).

The vocabulary is fitted on the training rows (a category counts once per training row it
occurs in): its values sorted as strings get local indices ``1..n``; ``0`` is the field's
out-of-vocabulary index (unseen, rare or missing values). Fields share one global index space
(``offset[f] + local``; global 0 is the padding of sequences, an all-zero row), so a model
needs one embedding table. A numeric field owns one row (its vector, scaled by the value).

:class:`FieldEncoder` is an ``nn.Module`` holding the per-user and per-item index tables as
buffers (they follow the model to its device); the vocabulary and the numeric statistics are
its ``extra state``, so they are saved with the model's weights (``best.pt``, ``last.pt``) and
a reloaded model encodes with the saved vocabulary, not a refitted one. Encoding a batch is
a handful of gathers (:meth:`FieldEncoder.forward`); batch builders hand out raw rows
``{"users", "items", "context", "label"}`` (:class:`FieldBatches`), where ``context`` holds
the rows' raw time parts (hour 0-23, ...; -1 when missing).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields as dc_fields

import numpy as np
import pandas as pd
import torch
from torch import nn

from .sampler import register_batch_kind, sample_negatives

__all__ = ["FieldSpec", "parse_fields", "DEFAULT_FIELDS", "FieldEncoder", "FieldBatches", "time_parts",
           "FIELD_TYPES", "SOURCES", "TIME_PARTS"]

FIELD_TYPES = ("categorical", "sequence", "numeric")
SOURCES = ("user", "item", "context")
TIME_PARTS = {"hour": 24, "weekday": 7, "month": 12}
NORMALIZE = ("standard", "minmax")


@dataclass(frozen=True)
class FieldSpec:
    """One declared field (see the module docstring for the keys)."""

    name: str
    source: str
    type: str = "categorical"
    column: str | None = None
    min_count: int = 1
    pattern: str | None = None
    sep: str = "|"
    max_len: int | None = None
    normalize: str | None = None
    buckets: tuple | None = None
    time: str | None = None

    @property
    def kind(self) -> str:
        """How the field is encoded: ``cat`` (one index: categorical, bucketised numeric,
        context), ``seq`` (a padded list of indices, mean-pooled) or ``num`` (a value)."""
        if self.type == "sequence":
            return "seq"
        if self.type == "numeric" and self.buckets is None:
            return "num"
        return "cat"

    @property
    def col(self) -> str:
        return self.column or self.name

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        if "buckets" in d:
            d["buckets"] = list(d["buckets"])
        return d


_KEYS = tuple(f.name for f in dc_fields(FieldSpec))
DEFAULT_FIELDS = (FieldSpec("user_id", "user"), FieldSpec("item_id", "item"))


def parse_fields(declared, where: str = "fields") -> list[FieldSpec] | None:
    """Check a ``fields:`` list; ``None`` stays ``None`` (models then use the two ids)."""
    if declared is None:
        return None
    if not isinstance(declared, (list, tuple)):
        raise ValueError(f"{where}: expected a list of field mappings, got {declared!r}")
    out, seen = [], set()
    for i, d in enumerate(declared):
        if isinstance(d, FieldSpec):
            d = d.to_dict()
        if not isinstance(d, dict):
            raise ValueError(f"{where}[{i}]: expected a mapping like {{name: age, source: user}}, got {d!r}")
        name = d.get("name")
        at = f"{where}[{i}] ({name!r})" if name else f"{where}[{i}]"
        unknown = sorted(set(d) - set(_KEYS))
        if unknown:
            raise ValueError(f"{at}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(_KEYS)}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{at}: missing key 'name'")
        if name in seen:
            raise ValueError(f"{at}: field name {name!r} declared twice")
        seen.add(name)
        spec = FieldSpec(**{k: (tuple(v) if k == "buckets" and v is not None else v) for k, v in d.items()})
        _check_spec(spec, at)
        out.append(spec)
    if not out:
        raise ValueError(f"{where}: the list is empty (declare at least one field, or null for the ids)")
    return out


def _check_spec(s: FieldSpec, at: str) -> None:
    if s.source not in SOURCES:
        raise ValueError(f"{at}: unknown source {s.source!r}; expected one of {', '.join(SOURCES)}")
    if s.type not in FIELD_TYPES:
        raise ValueError(f"{at}: unknown type {s.type!r}; expected one of {', '.join(FIELD_TYPES)}")
    if not isinstance(s.min_count, int) or isinstance(s.min_count, bool) or s.min_count < 1:
        raise ValueError(f"{at}: min_count must be an integer >= 1, got {s.min_count!r}")
    if s.source == "context":
        if s.time not in TIME_PARTS:
            raise ValueError(f"{at}: a context field needs time: one of {', '.join(TIME_PARTS)} (got {s.time!r})")
        if s.type != "categorical" or s.column is not None:
            raise ValueError(f"{at}: a context field is categorical and reads the timestamp (no type/column)")
    elif s.time is not None:
        raise ValueError(f"{at}: key 'time' is for source: context only")
    if s.max_len is not None and (s.type != "sequence" or not isinstance(s.max_len, int) or s.max_len < 1):
        raise ValueError(f"{at}: max_len is a positive integer of a sequence field, got {s.max_len!r}")
    if (s.normalize is not None or s.buckets is not None) and s.type != "numeric":
        raise ValueError(f"{at}: normalize/buckets are keys of a numeric field (type is {s.type!r})")
    if s.normalize is not None and (s.normalize not in NORMALIZE or s.buckets is not None):
        raise ValueError(f"{at}: normalize must be one of {', '.join(NORMALIZE)} (and not with buckets), "
                         f"got {s.normalize!r}")
    if s.buckets is not None and (len(s.buckets) == 0 or list(s.buckets) != sorted(s.buckets)
                                  or not all(isinstance(b, (int, float)) for b in s.buckets)):
        raise ValueError(f"{at}: buckets must be a non-empty sorted list of numbers, got {list(s.buckets)!r}")
    if s.pattern is not None:
        if s.type == "numeric":
            raise ValueError(f"{at}: pattern is for categorical and sequence fields")
        try:
            if re.compile(s.pattern).groups < 1:
                raise ValueError(f"{at}: pattern {s.pattern!r} needs a group, e.g. '^(\\d{{3}})'")
        except re.error as e:
            raise ValueError(f"{at}: pattern {s.pattern!r} is not a regular expression ({e})") from None


# ------------------------------------------------------------------ raw values
def time_parts(specs, timestamps, n: int) -> np.ndarray:
    """``[n, n_context_fields]`` int64: each context field's time part of each row (UTC), -1
    where there is no timestamp."""
    ctx = [s for s in specs if s.source == "context"]
    out = np.full((n, len(ctx)), -1, dtype=np.int64)
    if timestamps is None or not ctx:
        return out
    t = np.asarray(timestamps, dtype=np.float64)
    ok = np.isfinite(t)
    sec = np.where(ok, t, 0).astype(np.int64)
    for j, s in enumerate(ctx):
        if s.time == "hour":
            v = (sec // 3600) % 24
        elif s.time == "weekday":
            v = (sec // 86400 + 3) % 7  # 1970-01-01 was a Thursday
        else:
            v = sec.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12
        out[:, j] = np.where(ok, v, -1)
    return out


def _strings(values, pattern: str | None) -> np.ndarray:
    """Per-entity values as strings (object array); ``None`` where missing."""
    s = pd.Series(values if isinstance(values, np.ndarray) else list(values), dtype=object)
    s = s.map(_text)
    if pattern is not None:
        s = s.str.extract(pattern, expand=False)
    out = s.to_numpy(dtype=object)
    out[pd.isna(out)] = None
    return out


def _text(v):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))  # 1995.0 -> "1995"
    v = str(v)
    return v if v != "" else None


def _numbers(values) -> np.ndarray:
    try:
        return pd.to_numeric(pd.Series(values if isinstance(values, np.ndarray) else list(values)),
                             errors="coerce").to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        return np.full(len(values), np.nan)


def _flatten(values, sep: str, pattern: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A list-valued column as ``(lengths [n], flat strings)``."""
    lists = [[] if v is None or (isinstance(v, float) and np.isnan(v)) else
             (v.split(sep) if isinstance(v, str) else list(v)) for v in values]
    lengths = np.array([len(v) for v in lists], dtype=np.int64)
    flat = _strings(np.array([x for v in lists for x in v], dtype=object), pattern) if lengths.sum() else \
        np.array([], dtype=object)
    return lengths, flat


# --------------------------------------------------------------------- encoder
class FieldEncoder(nn.Module):
    """Fitted fields of one dataset: ``encoder(users, items, context)`` -> the model's inputs.

    Built as ``FieldEncoder(specs, data)`` from a :class:`gcf.data.train_data.TrainData`
    (entity columns from its side features, the vocabulary from its training rows). Outputs
    (global indices, see the module docstring):

    - ``cat``: ``[B, F_cat]`` int64, one index per categorical field;
    - ``seq``: ``[B, F_seq, L]`` int64, 0-padded lists of indices;
    - ``num``: ``[B, F_num]`` float32 normalised values; ``num_index`` ``[F_num]`` their rows.

    Field order: categorical user, item, context fields in declaration order, then sequence,
    then numeric fields (``self.order`` names them).
    """

    def __init__(self, specs, data):
        super().__init__()
        self.specs = list(parse_fields(list(specs)) if specs is not None else DEFAULT_FIELDS)
        self.n_users, self.n_items = data.n_users, data.n_items
        inter = data.interactions
        if inter is None:
            raise ValueError("feature fields need the ordered training interactions (TrainData.interactions)")
        self._raw = {s.name: self._read(s, data) for s in self.specs if s.source != "context"}
        if any(s.source == "context" for s in self.specs) and inter.timestamps is None:
            name = next(s.name for s in self.specs if s.source == "context")
            raise ValueError(f"field {name!r}: a context field needs timestamps, and {inter.source} has none")
        self.vocab, self.stats = self._fit(inter)
        self._build()

    # -------------------------------------------------------------- reading
    @staticmethod
    def _read(s: FieldSpec, data):
        """The entity column of ``s``: strings, ``(lengths, flat)`` or floats per entity."""
        n = data.n_users if s.source == "user" else data.n_items
        ids = data.user_ids if s.source == "user" else data.item_ids
        feats = (data.user_features if s.source == "user" else data.item_features) or {}
        id_col = f"{s.source}_id"
        if s.col == id_col:
            values = np.asarray(ids, dtype=object) if ids is not None else np.arange(n).astype(str).astype(object)
        elif s.col in feats:
            values = feats[s.col]
        else:
            have = ", ".join([id_col] + sorted(feats)) if feats else f"{id_col} (no {s.source} side features loaded)"
            raise ValueError(f"field {s.name!r}: unknown {s.source} column {s.col!r}; the {s.source} columns "
                             f"of this dataset: {have}")
        if len(values) != n:
            raise ValueError(f"field {s.name!r}: column {s.col!r} has {len(values)} values for {n} {s.source}s")
        if s.kind == "seq":
            return _flatten(values, s.sep, s.pattern)
        if s.type == "numeric":
            v = _numbers(values)
            if s.buckets is not None:
                b = np.digitize(v, np.asarray(s.buckets, dtype=np.float64)).astype(object)
                b[np.isnan(v)] = None
                return np.array([None if x is None else str(x) for x in b], dtype=object)
            return v
        return _strings(values, s.pattern)

    # ------------------------------------------------------------------ fit
    def _fit(self, inter) -> tuple[dict, dict]:
        rows = {"user": np.bincount(inter.users, minlength=self.n_users),
                "item": np.bincount(inter.items, minlength=self.n_items)}  # training rows per entity
        ctx = time_parts(self.specs, inter.timestamps, len(inter))
        vocab, stats, j = {}, {}, 0
        for s in self.specs:
            if s.source == "context":
                values, counts = np.unique(ctx[:, j][ctx[:, j] >= 0], return_counts=True)
                j += 1
                vocab[s.name] = [str(v) for v in values[counts >= s.min_count]]
                continue
            w = rows[s.source].astype(np.float64)
            raw = self._raw[s.name]
            if s.kind == "num":
                ok = np.isfinite(raw) & (w > 0)
                v, ww = raw[ok], w[ok]
                if s.normalize == "minmax":
                    lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
                    stats[s.name] = [lo, (hi - lo) or 1.0]
                else:
                    mean = float(np.average(v, weights=ww)) if len(v) else 0.0
                    std = float(np.sqrt(np.average((v - mean) ** 2, weights=ww))) if len(v) else 1.0
                    stats[s.name] = [mean, std or 1.0]
                continue
            if s.kind == "seq":
                lengths, flat = raw
                w = np.repeat(w, lengths)
                raw = flat
            ok = np.array([x is not None for x in raw], dtype=bool)
            uniq, inv = np.unique(raw[ok].astype(str), return_inverse=True)
            counts = np.bincount(inv, weights=w[ok], minlength=len(uniq))
            vocab[s.name] = uniq[counts >= s.min_count].tolist()
        return vocab, stats

    # ---------------------------------------------------------------- tables
    def _lookup(self, name: str, values) -> np.ndarray:
        """Local indices (1..n; 0 = out of vocabulary or missing) of string values."""
        idx = pd.Index(self.vocab[name]).get_indexer(pd.Index([v if v is not None else "\x00missing"
                                                               for v in values], dtype=object))
        return (idx + 1).astype(np.int64)

    def _build(self) -> None:
        """Offsets and the per-entity index tables from the vocabulary and statistics."""
        sizes = [1 if s.kind == "num" else len(self.vocab[s.name]) + 1 for s in self.specs]
        offsets = np.concatenate([[1], 1 + np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.offset = {s.name: int(o) for s, o in zip(self.specs, offsets)}
        self.n_features = int(1 + sum(sizes))
        self.field_size = {s.name: n for s, n in zip(self.specs, sizes)}
        group = lambda kind, src: [s for s in self.specs if s.kind == kind and s.source == src]  # noqa: E731
        cat = {src: group("cat", src) for src in SOURCES}
        seq = group("seq", "user") + group("seq", "item")
        num = group("num", "user") + group("num", "item")
        self.order = [s.name for s in cat["user"] + cat["item"] + cat["context"] + seq + num]
        self.n_cat, self.n_seq, self.n_num = len(self.order) - len(seq) - len(num), len(seq), len(num)
        self.max_len = max([self._seq_len(s) for s in seq], default=1)
        for src, n in (("user", self.n_users), ("item", self.n_items)):
            c = np.stack([self.offset[s.name] + self._lookup(s.name, self._raw[s.name]) for s in cat[src]], 1) \
                if cat[src] else np.zeros((n, 0), dtype=np.int64)
            sq = [s for s in seq if s.source == src]
            q = np.stack([self._seq_table(s, n) for s in sq], 1) if sq else np.zeros((n, 0, self.max_len), np.int64)
            nm = [s for s in num if s.source == src]
            v = np.stack([self._normalised(s) for s in nm], 1) if nm else np.zeros((n, 0))
            self.register_buffer(f"{src}_cat", torch.from_numpy(c), persistent=False)
            self.register_buffer(f"{src}_seq", torch.from_numpy(q), persistent=False)
            self.register_buffer(f"{src}_num", torch.from_numpy(v.astype(np.float32)), persistent=False)
        # context: raw time part -> global index, one row per context field (-1 reads the last column: OOV)
        width = max(TIME_PARTS.values()) + 1
        table = np.zeros((len(cat["context"]), width), dtype=np.int64)
        for j, s in enumerate(cat["context"]):
            table[j, :] = self.offset[s.name]
            table[j, :TIME_PARTS[s.time]] += self._lookup(s.name, [str(v) for v in range(TIME_PARTS[s.time])])
        self.register_buffer("context_table", torch.from_numpy(table), persistent=False)
        self.register_buffer("num_index", torch.tensor([self.offset[s.name] for s in num], dtype=torch.int64),
                             persistent=False)

    def _seq_len(self, s: FieldSpec) -> int:
        lengths = self._raw[s.name][0]
        return int(s.max_len if s.max_len is not None else max(int(lengths.max(initial=0)), 1))

    def _seq_table(self, s: FieldSpec, n: int) -> np.ndarray:
        """``[n, max_len]`` global indices of each entity's first values, 0-padded."""
        lengths, flat = self._raw[s.name]
        idx = self.offset[s.name] + self._lookup(s.name, flat)
        pos = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position in its list
        keep = pos < self._seq_len(s)
        out = np.zeros((n, self.max_len), dtype=np.int64)
        out[np.repeat(np.arange(n), lengths)[keep], pos[keep]] = idx[keep]
        return out

    def _normalised(self, s: FieldSpec) -> np.ndarray:
        shift, scale = self.stats[s.name]
        v = (self._raw[s.name] - shift) / scale
        return np.where(np.isfinite(v), v, 0.0)  # missing: the mean (standard) or the minimum (minmax)

    # --------------------------------------------------------------- encode
    def forward(self, users: torch.Tensor, items: torch.Tensor, context: torch.Tensor) -> dict:
        """Inputs of ``B`` rows: ``users``, ``items`` ``[B]`` and raw time parts ``[B, F_ctx]``."""
        ctx = self.context_table[torch.arange(self.context_table.shape[0], device=users.device), context]
        return {"cat": torch.cat([self.user_cat[users], self.item_cat[items], ctx], 1),  # [B, F_cat]
                "seq": torch.cat([self.user_seq[users], self.item_seq[items]], 1),  # [B, F_seq, L]
                "num": torch.cat([self.user_num[users], self.item_num[items]], 1),  # [B, F_num]
                "num_index": self.num_index}  # [F_num]: the numeric fields' rows

    def encode_values(self, name: str, values) -> np.ndarray:
        """Global indices of raw values of categorical field ``name`` (out of vocabulary -> its 0)."""
        return self.offset[name] + self._lookup(name, _strings(values, next(s for s in self.specs
                                                                              if s.name == name).pattern))

    @property
    def n_fields(self) -> int:
        return len(self.order)

    # ----------------------------------------------------- saved with weights
    def get_extra_state(self) -> dict:
        return {"fields": [s.to_dict() for s in self.specs], "vocab": {k: list(v) for k, v in self.vocab.items()},
                "stats": {k: list(v) for k, v in self.stats.items()}}

    def set_extra_state(self, state: dict) -> None:
        saved = [FieldSpec(**{k: (tuple(v) if k == "buckets" else v) for k, v in d.items()})
                 for d in state["fields"]]
        if saved != self.specs:
            raise ValueError(f"the saved fields {[s.name for s in saved]} differ from this model's "
                             f"{[s.name for s in self.specs]}")
        self.vocab = {k: list(v) for k, v in state["vocab"].items()}
        self.stats = {k: list(v) for k, v in state["stats"].items()}
        device = self.user_cat.device
        self._build()
        self.to(device)


# ------------------------------------------------------------- batch builder
@register_batch_kind("fields")
class FieldBatches:
    """Training rows of a feature model: ``{"users", "items", "context", "label"}`` batches.

    With click labels (``task=ctr``: ``data.interactions.labels``) one epoch is every labelled
    training row once, shuffled, ``batch_size`` rows a batch. Without (``task=ranking``) it is
    every training interaction once as a positive (label 1), shuffled, ``batch_size`` of them a
    batch, each followed in its batch by ``neg_samples`` uniform items the user never interacted
    with (label 0), which share the positive's user and context (the same moment, another
    item): RecBole's pointwise training of context-aware models for ranking.
    """

    def __init__(self, data, batch_size: int, neg_samples: int = 1):
        inter = data.interactions
        self.batch_size, self.neg_samples, self.train = batch_size, int(neg_samples), data.train
        self.users = torch.from_numpy(inter.users.astype(np.int64))
        self.items = torch.from_numpy(inter.items.astype(np.int64))
        specs = parse_fields(data.fields) or list(DEFAULT_FIELDS)
        self.context = torch.from_numpy(time_parts(specs, inter.timestamps, len(inter)))
        self.labels = None if inter.labels is None else torch.from_numpy(inter.labels.astype(np.float32))
        if self.labels is None and self.neg_samples < 1:
            raise ValueError("neg_samples must be >= 1 to train on implicit feedback (task=ranking)")

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def epoch(self, rng: np.random.Generator):
        order = torch.from_numpy(rng.permutation(len(self.users)))
        users, items, context = self.users[order], self.items[order], self.context[order]
        if self.labels is not None:
            labels = self.labels[order]
            for start in range(0, len(order), self.batch_size):
                sl = slice(start, start + self.batch_size)
                yield {"users": users[sl], "items": items[sl], "context": context[sl], "label": labels[sl]}
            return
        k = self.neg_samples
        neg = torch.from_numpy(sample_negatives(self.train, users.numpy(), k, rng))  # [N, k]
        for start in range(0, len(order), self.batch_size):
            sl = slice(start, start + self.batch_size)
            b = len(users[sl])
            yield {"users": users[sl].repeat(k + 1), "items": torch.cat([items[sl], neg[sl].T.reshape(-1)]),
                   "context": context[sl].repeat(k + 1, 1),
                   "label": torch.cat([torch.ones(b), torch.zeros(b * k)])}
