"""Per-item attribute matrices and per-interaction time context, aligned to gcf's item ids.

Row ``j`` of every matrix here belongs to gcf item ``j`` (``data.item_ids[j]`` is its raw id in
the source file); sequence models that keep 0 for padding add a zero row in front themselves.
Everything is built from what a model is handed, a :class:`gcf.data.train_data.TrainData`:

- its ``item_features`` (the loaders' side columns: ml-100k's ``.item`` gives ``class`` (genres)
  and ``release_year``; MovieLens ``movies.csv``/``tags.csv`` give ``genres``, ``title`` (the
  year is read from ``"Title (1995)"``) and ``tags``);
- its ``item_ids`` (raw ids), to match files keyed by raw id: S3-Rec's
  ``<Name>_item2attributes.json`` (``{"raw item": [attribute id, ...]}``, found beside the
  interactions file named in ``data.interactions.source`` when no path is given) and dense latent
  files (``.npz``/``.npy``);
- its ``interactions.timestamps``, for CARCA's context features.

A model chooses its attribute input with one config string, :func:`item_feature_matrix`'s
``spec``: ``+``-joined parts, each one of

- ``genres``: multi-hot genres (``genres``, or ml-100k's ``class``);
- ``year``: the release year, min-max scaled to ``[0, 1]`` over the items, plus a 0/1 column
  "year unknown" (the unknown ones get 0);
- ``tags``: multi-hot user tags (MovieLens ``tags.csv``), keeping tags on at least
  ``tag_min_items`` items (default 2);
- ``attributes`` or ``attributes:PATH``: multi-hot S3-Rec attributes (category and brand ids);
- ``latent:PATH``: a dense vector per item (:func:`load_item_latents`);
- ``none`` (or an empty string): no attributes, a ``[n_items, 0]`` matrix.

For example ``genres+year`` (ml-100k), ``genres+year+tags`` (ml-latest-small), ``attributes``
(Beauty in S3-Rec form), ``latent:runs/bivae-ml-100k/latents.npz`` or
``attributes+latent:latents.npz`` (BiTVAE-Rec: CF latents in CARCA's attribute slot). Item
metadata is not interaction data: the vocabularies cover every listed item, which leaks nothing
about held-out interactions. A latent file written by a gcf run is refused when it was trained on
another split (:func:`gcf.latents.item_vectors_for`).

:func:`time_context` gives CARCA's six context features of a timestamp (Rashed et al., RecSys
2022; official ``CARCA.py``, ``PreprocessData``): year (min-max over the dataset), month / 12,
day of month / 31, day of week / 7 (Monday = 0), day of year / 365 and ISO week / ``week_scale``
(the official code divides the week of the year by 4, giving values up to ~13; the default
here divides by 53, so every feature lies in ``[0, 1]``; ``week_scale=4`` is the official one).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["ItemAttributes", "load_item2attributes", "find_item2attributes", "multi_hot", "release_years",
           "load_item_latents", "item_feature_matrix", "item_attribute_lists", "time_context",
           "CONTEXT_SIZE", "FEATURE_PARTS", "epoch_seconds", "year_range"]

FEATURE_PARTS = ("genres", "year", "tags", "attributes", "latent", "none")
CONTEXT_SIZE = 6


@dataclass
class ItemAttributes:
    """Ragged attribute ids per gcf item: the ids of item ``j`` are
    ``values[indptr[j]:indptr[j + 1]]``, in ``1..n_attributes`` (0 is free for padding, as in
    S3-Rec, whose attribute table has ``n_attributes + 1`` rows)."""

    indptr: np.ndarray  # [n_items + 1] int64
    values: np.ndarray  # [N] int64, 1-based attribute ids
    n_attributes: int
    names: list | None = None  # names[a - 1] = the value attribute id a stands for, when known

    @property
    def n_items(self) -> int:
        return len(self.indptr) - 1

    def of(self, item: int) -> np.ndarray:
        return self.values[self.indptr[item]:self.indptr[item + 1]]

    def multi_hot(self) -> np.ndarray:
        """``[n_items, n_attributes]`` float32, column ``a - 1`` for attribute id ``a``."""
        out = np.zeros((self.n_items, self.n_attributes), dtype=np.float32)
        rows = np.repeat(np.arange(self.n_items), np.diff(self.indptr))
        out[rows, self.values - 1] = 1.0
        return out

    def padded(self, max_len: int | None = None) -> np.ndarray:
        """``[n_items, max_len]`` int64 attribute ids, left-aligned, 0 = padding (S3-Rec's AAP/MAP
        targets); ``max_len`` defaults to the most attributes of any item."""
        lens = np.diff(self.indptr)
        width = int(lens.max(initial=0)) if max_len is None else int(max_len)
        j = np.arange(width)
        keep = j[None, :] < lens[:, None]
        src = np.where(keep, self.indptr[:-1, None] + j[None, :], 0)
        return np.where(keep, self.values[src] if len(self.values) else 0, 0).astype(np.int64)

    @classmethod
    def from_lists(cls, lists, names=None) -> "ItemAttributes":
        """From a list (one per item) of lists of 1-based attribute ids."""
        lens = np.array([len(v) for v in lists], dtype=np.int64)
        values = np.array([a for v in lists for a in v], dtype=np.int64)
        n = int(values.max(initial=0)) if names is None else len(names)
        return cls(np.concatenate([[0], np.cumsum(lens)]).astype(np.int64), values, n, names)


# ------------------------------------------------------------------------------ S3-Rec json
def load_item2attributes(path, item_ids) -> ItemAttributes:
    """S3-Rec's ``{"raw item": [attribute id, ...]}`` (``Beauty_item2attributes.json``) aligned to
    ``item_ids`` (raw ids, row ``j`` = gcf item ``j``). Attribute ids keep their values (S3-Rec's
    ``attribute_size = max id + 1``); an item missing from the file gets none; a key or value that
    is not an id is an error naming the file and the item."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such attributes file (S3-Rec's <Name>_item2attributes.json)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object {{item: [attribute ids]}}, got {type(raw).__name__}")
    table = {}
    for key, attrs in raw.items():
        if not isinstance(attrs, list) or not all(isinstance(a, int) and not isinstance(a, bool) and a >= 1
                                                  for a in attrs):
            raise ValueError(f"{path}: item {key!r}: expected a list of attribute ids >= 1, got {attrs!r}")
        table[str(key)] = attrs
    lists = [table.get(str(i), []) for i in item_ids]
    if not any(lists):
        raise ValueError(f"{path}: none of the dataset's {len(item_ids)} items is in the file (e.g. item "
                         f"{str(item_ids[0])!r}); is it the attributes file of this dataset?")
    n_attr = max((max(a) for a in table.values() if a), default=0)
    attrs = ItemAttributes.from_lists(lists)
    attrs.n_attributes = n_attr  # ids the dataset's items lack still get a column
    return attrs


def find_item2attributes(data) -> Path:
    """S3-Rec's convention: ``<Name>_item2attributes.json`` beside the interactions file
    ``<Name>.txt`` named in ``data.interactions.source``."""
    source = getattr(getattr(data, "interactions", None), "source", "") or ""
    tried = []
    for p in re.split(r"[,;\s]+", source):
        if not p:
            continue
        candidate = Path(p).with_name(f"{Path(p).stem}_item2attributes.json")
        tried.append(str(candidate))
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("item_features 'attributes': no <Name>_item2attributes.json beside the interactions "
                            f"file (tried {', '.join(tried) or 'nothing: the data names no source file'}); "
                            "give the path: attributes:PATH")


# ------------------------------------------------------------------------------ MovieLens side columns
def _column(data, names: tuple, part: str):
    feats = data.item_features or {}
    for name in names:
        if name in feats:
            return feats[name]
    raise ValueError(f"item_features '{part}': the dataset has no item column {' or '.join(map(repr, names))} "
                     f"(its item columns: {', '.join(sorted(feats)) or 'none'})")


def multi_hot(lists, min_items: int = 1) -> tuple[np.ndarray, list]:
    """``([n, V], vocabulary)``: one column per value on at least ``min_items`` rows, values sorted
    as strings; ``None``/NaN rows are empty."""
    clean = [[] if v is None or (isinstance(v, float) and np.isnan(v)) else
             ([v] if isinstance(v, str) else list(v)) for v in lists]
    counts: dict = {}
    for v in clean:
        for x in set(v):
            counts[x] = counts.get(x, 0) + 1
    vocab = sorted((x for x, c in counts.items() if c >= min_items), key=str)
    col = {x: k for k, x in enumerate(vocab)}
    out = np.zeros((len(clean), len(vocab)), dtype=np.float32)
    for r, v in enumerate(clean):
        for x in v:
            if x in col:
                out[r, col[x]] = 1.0
    return out, vocab


def release_years(data) -> np.ndarray:
    """``[n_items]`` float64 release year, NaN where unknown: ``release_year`` (ml-100k's .item)
    or the ``(1995)`` at the end of ``title`` (MovieLens movies.csv)."""
    feats = data.item_features or {}
    if "release_year" in feats:
        vals = feats["release_year"]
        return np.array([_number(v) for v in vals], dtype=np.float64)
    titles = _column(data, ("title",), "year")
    pattern = re.compile(r"\((\d{4})\)\s*$")
    out = np.full(len(titles), np.nan)
    for j, t in enumerate(titles):
        m = pattern.search(t) if isinstance(t, str) else None
        if m:
            out[j] = float(m.group(1))
    return out


def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


def _year_matrix(data) -> np.ndarray:
    years = release_years(data)
    known = ~np.isnan(years)
    if not known.any():
        raise ValueError("item_features 'year': no item has a release year")
    lo, hi = years[known].min(), years[known].max()
    scaled = np.where(known, (years - lo) / max(hi - lo, 1.0), 0.0)
    return np.stack([scaled, (~known).astype(np.float64)], 1).astype(np.float32)


# ------------------------------------------------------------------------------ dense latents
def load_item_latents(path, data) -> np.ndarray:
    """``[n_items, d]`` float32 item vectors from a file, in gcf item order:

    - a gcf ``latents.npz`` (arrays ``item`` and ``item_ids``): matched by raw id, refused when
      written for another split (:func:`gcf.latents.item_vectors_for`);
    - an ``.npz`` with ``vectors [m, d]`` and ``ids [m]`` (raw item ids): matched by raw id;
    - an ``.npy`` ``[n_items, d]``: taken as already in gcf item order.

    Every item of the data needs a vector: a missing one, a file of the wrong shape or with
    non-finite values is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such latent file (.npz or .npy)")
    n = data.n_items
    if path.suffix == ".npy":
        vec = np.load(path, allow_pickle=False)
        if vec.ndim != 2 or vec.shape[0] != n:
            raise ValueError(f"{path}: expected an array [n_items={n}, d] in gcf item order, got shape "
                             f"{tuple(vec.shape)}; for vectors keyed by raw id use an .npz with 'ids' and 'vectors'")
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if {"item", "item_ids"} <= keys:
                vec = None
            elif {"vectors", "ids"} <= keys:
                vec, ids = f["vectors"], f["ids"]
            else:
                raise ValueError(f"{path}: expected arrays 'item' + 'item_ids' (a gcf latents.npz) or 'vectors' + "
                                 f"'ids', found {', '.join(sorted(keys)) or 'none'}")
        if vec is None:
            from gcf.latents import item_vectors_for

            vec = item_vectors_for(path, data)
        else:
            if vec.ndim != 2 or len(ids) != len(vec):
                raise ValueError(f"{path}: 'vectors' must be [m, d] with one id per row, got {tuple(vec.shape)} and "
                                 f"{len(ids)} ids")
            row = {str(i): r for r, i in enumerate(ids)}
            if data.item_ids is None:
                raise ValueError(f"{path}: matching items by raw id needs the data's raw ids, which it lacks")
            missing = [str(i) for i in data.item_ids if str(i) not in row]
            if missing:
                raise ValueError(f"{path}: {len(missing)} of the data's {n} items have no vector (e.g. item "
                                 f"{missing[0]!r})")
            vec = vec[[row[str(i)] for i in data.item_ids]]
    else:
        raise ValueError(f"{path}: latent files are .npz or .npy, got {path.suffix or 'no suffix'}")
    vec = np.asarray(vec, dtype=np.float32)
    if not np.isfinite(vec).all():
        raise ValueError(f"{path}: the item vectors hold NaN or infinite values")
    return vec


# ------------------------------------------------------------------------------ the config string
def _parts(spec) -> list[tuple[str, str | None]]:
    if spec is None:
        return []
    out = []
    for part in str(spec).split("+"):
        part = part.strip()
        if not part or part == "none":
            continue
        name, _, arg = part.partition(":")
        if name not in FEATURE_PARTS:
            raise ValueError(f"item_features: unknown part {name!r} in {spec!r}; expected '+'-joined parts of "
                             f"{', '.join(FEATURE_PARTS[:-1])} (attributes[:PATH], latent:PATH) or none")
        if name == "latent" and not arg:
            raise ValueError(f"item_features: 'latent' needs a file, latent:PATH (in {spec!r})")
        if arg and name not in ("attributes", "latent"):
            raise ValueError(f"item_features: part {name!r} takes no argument (in {spec!r})")
        out.append((name, arg or None))
    return out


def item_attribute_lists(data, path=None) -> ItemAttributes:
    """S3-Rec's attributes of ``data``'s items (from ``path``, else found beside the data file)."""
    return load_item2attributes(path or find_item2attributes(data), data.item_ids)


def item_feature_matrix(data, spec, tag_min_items: int = 2) -> np.ndarray:
    """``[n_items, F]`` float32 attribute matrix of ``data``'s items for the config string ``spec``
    (module docstring); ``F = 0`` for ``none``."""
    blocks = []
    for name, arg in _parts(spec):
        if name == "genres":
            blocks.append(multi_hot(_column(data, ("genres", "class"), name))[0])
        elif name == "tags":
            blocks.append(multi_hot(_column(data, ("tags",), name), min_items=tag_min_items)[0])
        elif name == "year":
            blocks.append(_year_matrix(data))
        elif name == "attributes":
            blocks.append(item_attribute_lists(data, arg).multi_hot())
        else:
            blocks.append(load_item_latents(arg, data))
    for b in blocks:
        if b.shape[0] != data.n_items:
            raise ValueError(f"item_features {spec!r}: a part has {b.shape[0]} rows, expected {data.n_items}")
    return np.concatenate(blocks, 1).astype(np.float32) if blocks else np.zeros((data.n_items, 0), np.float32)


# ------------------------------------------------------------------------------ time context
def epoch_seconds(timestamps) -> bool:
    """Whether timestamps look like unix seconds (after 1973) rather than positions in a sequence
    (the sequence formats' 0, 1, 2, ...): context features only mean something for the former."""
    t = np.asarray(timestamps)
    return len(t) > 0 and float(np.nanmax(t)) > 1e8


def time_context(seconds: torch.Tensor, year_min: float, year_max: float, week_scale: float = 53.0
                 ) -> torch.Tensor:
    """CARCA's six context features ``[..., 6]`` (float32) of unix ``seconds`` (any shape, UTC):
    ``(year - year_min) / (year_max - year_min)``, month / 12, day / 31, day of week / 7
    (Monday = 0), day of year / 365, ISO week / ``week_scale`` (module docstring). Vectorised
    with the civil-from-days algorithm, so it runs on the model's device."""
    s = seconds.to(torch.float64)
    days = torch.floor(s / 86400.0).to(torch.int64)  # days since 1970-01-01
    dow = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    # civil date from days (H. Hinnant's algorithm), integer arithmetic
    z = days + 719468
    era = torch.div(z, 146097, rounding_mode="floor")
    doe = z - era * 146097
    yoe = torch.div(doe - torch.div(doe, 1460, rounding_mode="floor") + torch.div(doe, 36524, rounding_mode="floor")
                    - torch.div(doe, 146096, rounding_mode="floor"), 365, rounding_mode="floor")
    doy_mar = doe - (365 * yoe + torch.div(yoe, 4, rounding_mode="floor") - torch.div(yoe, 100, rounding_mode="floor"))
    mp = torch.div(5 * doy_mar + 2, 153, rounding_mode="floor")
    day = doy_mar - torch.div(153 * mp + 2, 5, rounding_mode="floor") + 1
    month = torch.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2).to(torch.int64)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    cum = torch.tensor([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], device=s.device)
    doy = cum[month - 1] + day + (leap & (month > 2)).to(torch.int64)  # 1..366
    # ISO week: the week (Monday-based) holding this day's Thursday, counted in that Thursday's year
    thursday_doy = doy - dow + 3  # day of year of this week's Thursday (may fall outside 1..366)
    year_len = 365 + leap.to(torch.int64)
    prev_leap = (((year - 1) % 4 == 0) & ((year - 1) % 100 != 0)) | ((year - 1) % 400 == 0)
    thursday_doy = torch.where(thursday_doy < 1, thursday_doy + 365 + prev_leap.to(torch.int64),
                               torch.where(thursday_doy > year_len, thursday_doy - year_len, thursday_doy))
    week = torch.div(thursday_doy - 1, 7, rounding_mode="floor") + 1
    span = max(float(year_max) - float(year_min), 1.0)
    feats = [(year.to(torch.float64) - float(year_min)) / span, month / 12.0, day / 31.0, dow / 7.0,
             doy / 365.0, week / float(week_scale)]
    return torch.stack([f.to(torch.float64) for f in feats], -1).to(torch.float32)


def year_range(timestamps) -> tuple[float, float]:
    """The first and last calendar year (UTC) of unix ``timestamps``: the official min-max of the
    year feature."""
    t = np.asarray(timestamps, dtype=np.float64)
    years = (np.array([t.min(), t.max()]).astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970)
    return float(years[0]), float(years[1])
