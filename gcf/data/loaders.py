"""Readers for the public interaction-file formats; each returns :class:`Interactions`.

Formats:

- :func:`load_atomic` -- RecBole atomic files (``.inter`` + optional ``.item``/``.user``).
- :func:`load_movielens` -- GroupLens files (``u.data``, ``ratings.dat``, ``ratings.csv``)
  with the side files found beside them; :func:`download_movielens` fetches the zips.
- :func:`load_lightgcn_txt` -- NGCF/LightGCN ``train.txt``/``test.txt`` (``uid iid iid ...``).
- :func:`load_pairs_txt` -- ``user item [weight]`` per line (LightGCN's lastfm).
- :func:`load_sequence_pairs` -- ``user item`` per line, chronological (BERT4Rec).
- :func:`load_sequence_lines` -- ``user i1 i2 ...`` per line, chronological (S3-Rec).
- :func:`load_diffurec_pickle` -- DiffuRec's ``dataset.pkl`` (ML-1M sequences).
- :func:`load_diffrec_npy` -- DiffRec's ``train_list.npy``/``valid_list.npy``/``test_list.npy``
  (``[n, 2]`` integer (user, item) pairs); :func:`download_diffrec` fetches and unpacks the
  official ``.rar`` archives (needs ``unar``, ``unrar`` or ``7z``).
- :func:`load_table` -- any CSV/TSV/Parquet with a column mapping.

Parsing is vectorised (numpy on the raw bytes, pandas for the columns). Every file is
validated first, and a malformed file raises :class:`DataFormatError` (a ``ValueError``)
naming the file and where in it the problem is -- the 1-based line (``row`` for Parquet),
the column, the pickle key or the 1-based ``row`` of a ``.npy`` array -- and what was expected, e.g.
``ml-100k.inter line 5: expected 4 tab-separated fields, got 3``. Nothing is skipped
silently except blank lines. Text is read as UTF-8 (a leading byte-order mark is dropped),
falling back to Latin-1; lines end with ``\\n`` or ``\\r\\n``. Ids must be non-empty and
free of surrounding spaces; ratings and timestamps must be finite numbers.

Raw ids are remapped to dense ids with the rule of :meth:`Interactions.from_raw` (sorted
raw ids, numeric order when all are numbers); :func:`_interactions` does the same with
``pandas.factorize`` so that a million rows take milliseconds rather than seconds.
"""
from __future__ import annotations

import codecs
import csv
import importlib.util
import io
import itertools
import os
import pickle
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .interactions import Interactions, _sorted_ids

__all__ = [
    "load_atomic", "load_movielens", "download_movielens", "load_lightgcn_txt", "load_pairs_txt",
    "load_sequence_pairs", "load_sequence_lines", "load_diffurec_pickle", "load_diffrec_npy", "download_diffrec",
    "load_table", "DataFormatError", "MOVIELENS_URL", "DIFFREC_URL",
]


class DataFormatError(ValueError):
    """A data file that does not follow its format.

    The message names the file and where in it the problem is (line, Parquet row, column or
    pickle key), e.g. ``ml-100k.inter line 5: expected 4 tab-separated fields, got 3``.
    """


# ASCII whitespace, as ``bytes.split()`` understands it (the ``uid iid iid ...`` formats)
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True
_DIGIT_OR_WS = _WS.copy()
_DIGIT_OR_WS[ord("0"):ord("9") + 1] = True
# what pandas' C parser treats as blank space between fields: space and tab (and the CR of CRLF)
_BLANK = np.zeros(256, dtype=bool)
_BLANK[[9, 13, 32]] = True
_INT64_MAX = np.iinfo(np.int64).max


# =========================================================================== raw text
def _read_bytes(path) -> bytes:
    """The bytes of a text file, without a leading UTF-8 byte-order mark."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path.read_bytes().removeprefix(codecs.BOM_UTF8)


def _decode(raw: bytes) -> str:
    """UTF-8, else Latin-1 (the older GroupLens files, e.g. ``u.item`` and ``movies.dat``)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _line_text(raw: bytes, line: int, limit: int | None = 80) -> str:
    """The text of 1-based ``line`` for error messages (cut at ``limit`` characters)."""
    lines = raw.split(b"\n")
    text = _decode(lines[line - 1]).rstrip("\r") if 0 < line <= len(lines) else ""
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


class _Lines:
    """Line structure of a byte buffer: which line each byte position belongs to."""

    def __init__(self, raw: bytes):
        self.buf = np.frombuffer(raw, dtype=np.uint8)
        ends = np.flatnonzero(self.buf == 10)
        if len(self.buf) and self.buf[-1] != 10:
            ends = np.append(ends, len(self.buf))
        self.ends = ends  # position of each line's '\n' (or of the end of the buffer)

    @property
    def n_lines(self) -> int:
        return len(self.ends)

    def line_of(self, positions: np.ndarray) -> np.ndarray:
        """0-based line index of byte ``positions``."""
        return np.searchsorted(self.ends, positions)

    def token_starts(self, space: np.ndarray = _WS) -> np.ndarray:
        """Byte positions where a token begins; ``space`` flags the separating bytes."""
        ws = space[self.buf]
        prev_ws = np.concatenate([[True], ws[:-1] | (self.buf[:-1] == 10)])
        return np.flatnonzero(~ws & (self.buf != 10) & prev_ws)

    def field_counts(self, sep: str | None) -> np.ndarray:
        """Fields per line as pandas splits them (0 for blank lines); ``sep=None`` splits on
        runs of spaces and tabs."""
        if sep is None:
            return np.bincount(self.line_of(self.token_starts(_BLANK)), minlength=self.n_lines)
        is_sep = self.buf == ord(sep)
        counts = np.bincount(self.line_of(np.flatnonzero(is_sep)), minlength=self.n_lines) + 1
        # like pandas: a line of spaces and tabs (other than the separator) is blank
        filled = np.bincount(self.line_of(np.flatnonzero(is_sep | ~_BLANK[self.buf] & (self.buf != 10))),
                             minlength=self.n_lines)
        counts[filled == 0] = 0
        return counts

    def check_line_ends(self, path) -> None:
        """A carriage return must end its line (CRLF): pandas would split the line there."""
        cr = np.flatnonzero(self.buf[:-1] == 13)
        stray = cr[self.buf[cr + 1] != 10]
        if len(stray):
            line = int(self.line_of(stray[:1])[0]) + 1
            raise DataFormatError(f"{path} line {line}: carriage return (\\r) inside the line; "
                                  "lines must end with \\n or \\r\\n")


def _token_at(raw: bytes, pos: int) -> str:
    """The whitespace-separated token around byte ``pos`` (for error messages)."""
    start, end = pos, pos
    while start > 0 and not _WS[raw[start - 1]]:
        start -= 1
    while end < len(raw) and not _WS[raw[end]]:
        end += 1
    return _decode(raw[start:end])


def _csv_records(path, text: str, sep: str) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """Records of a CSV text with double quotes (a field may hold the separator or a line
    break): ``(records, fields per record (0 if blank), first line of each record)``."""
    records, counts, lines, prev_end = [], [], [], 0
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        for rec in reader:
            records.append(rec)
            counts.append(len(rec) if len(rec) > 1 or (rec and rec[0].strip(" \t")) else 0)
            lines.append(prev_end + 1)
            prev_end = reader.line_num
    except csv.Error as e:
        raise DataFormatError(f"{path} line {reader.line_num}: {e}") from None
    return records, np.asarray(counts, dtype=np.int64), np.asarray(lines, dtype=np.int64)


def _shown(value):
    """A cell value for a message: numpy scalars as plain Python values."""
    return value.item() if isinstance(value, np.generic) else value


def _sep_name(sep: str | None) -> str:
    return {None: "whitespace", "\t": "tab", ",": "comma", "::": "'::'"}.get(sep, repr(sep))


# ====================================================================== delimited tables
@dataclass
class _Table:
    """A parsed delimited file: string columns plus the file line of every row."""

    df: pd.DataFrame
    lines: np.ndarray  # 1-based line number of each row of ``df``
    path: str
    plain_ids: bool = False  # no field can be empty, padded or hold a NUL (whitespace-separated, no NUL)

    def where(self, row: int) -> str:
        """``'<path> line N'`` for row ``row`` of ``df``."""
        return f"{self.path} line {self.lines[row]}"

    def column(self, name) -> np.ndarray:
        return self.df[name].to_numpy()

    def _id_values(self, name, label: str) -> np.ndarray:
        return self.df[name].to_numpy(dtype=object)

    def ids(self, name, label: str | None = None) -> np.ndarray:
        """Column ``name`` as raw ids (strings, or integers from a typed column). An id that
        is empty, has spaces or tabs around it or holds a NUL character names its line."""
        label = label or name
        values = self._id_values(name, label)
        if values.dtype != object or self.plain_ids:
            return values
        bad = {v for v in pd.unique(values) if v == "" or v.strip(" \t") != v or "\x00" in v}
        if bad:
            row = np.flatnonzero(pd.Series(values).isin(bad).to_numpy())[0]
            value = values[row]
            if value == "":
                raise DataFormatError(f"{self.where(row)}: empty {label!r} id")
            problem = "holds a NUL character" if "\x00" in value else "has spaces around it"
            raise DataFormatError(f"{self.where(row)}: {label!r} id {value!r} {problem}")
        return values

    def keys(self, name, label: str | None = None) -> np.ndarray:
        """Column ``name`` as ids that must be unique (the key of a side file)."""
        keys = self.ids(name, label)
        repeated = np.flatnonzero(pd.Series(keys).duplicated().to_numpy())
        if len(repeated):
            row = repeated[0]
            first = np.flatnonzero(keys == keys[row])[0]
            raise DataFormatError(f"{self.where(row)}: {label or name!r} id {keys[row]!r} is listed twice "
                                  f"(first at {self.where(first)})")
        return keys

    def numeric(self, name, label: str | None = None, float32: bool = False) -> np.ndarray:
        """Column ``name`` as float64; a value that is not a finite number (within float32
        range with ``float32``) names its line."""
        values = pd.to_numeric(self.df[name], errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(over="ignore"):
            ok = np.isfinite(values.astype(np.float32) if float32 else values)
        bad = np.flatnonzero(~ok)
        if len(bad):
            row = bad[0]
            hint = " (too large for float32)" if float32 and np.isfinite(values[row]) else ""
            raise DataFormatError(f"{self.where(row)}: expected a number in column {label or name!r}, "
                                  f"got {_shown(self.df[name].iloc[row])!r}{hint}")
        return values

    def integers(self, name, label: str | None = None) -> np.ndarray:
        """Column ``name`` as int64; a value that is not a whole number names its line."""
        values = self.numeric(name, label)
        bad = np.flatnonzero((values != np.round(values)) | (np.abs(values) > 2 ** 53))
        if len(bad):
            raise DataFormatError(f"{self.where(bad[0])}: expected a whole number in column "
                                  f"{label or name!r}, got {_shown(self.df[name].iloc[bad[0]])!r}")
        return values.astype(np.int64)

    def require(self, names) -> None:
        missing = [n for n in names if n not in self.df.columns]
        if missing:
            raise DataFormatError(f"{self.path}: missing required column {missing[0]!r}; "
                                  f"columns present: {', '.join(map(str, self.df.columns))}")


def _read_delimited(path, sep: str | None, n_fields: int | None = None, header: bool = False,
                    quoted: bool = False, min_fields: int = 1) -> _Table:
    """Read a delimited text file as strings, after checking every line's field count.

    ``sep=None`` splits on runs of spaces and tabs; ``'::'`` (GroupLens ``.dat``) is accepted.
    ``n_fields=None`` takes the count of the first non-blank line. Blank lines are skipped.
    ``quoted`` enables CSV double quotes (a field may then hold the separator). With
    ``header``, the first non-blank line names the columns (stripped of spaces).
    """
    if sep is not None and sep != "::" and len(sep) != 1:
        raise ValueError(f"{path}: sep must be one character, '::' or None (whitespace), got {sep!r}")
    raw = _read_bytes(path)
    lines = _Lines(raw)
    lines.check_line_ends(path)
    if sep == "::":
        tabs = np.flatnonzero(lines.buf == 9)
        if len(tabs):
            raise DataFormatError(f"{path} line {int(lines.line_of(tabs[:1])[0]) + 1}: "
                                  "a tab in a '::'-separated file")
        raw = raw.replace(b"::", b"\t")
        lines = _Lines(raw)
        sep_used = "\t"
    else:
        sep_used = sep
    text = _decode(raw)
    records = None
    if quoted and b'"' in raw:
        records, counts, line_no = _csv_records(path, text, sep_used)
    else:
        counts = lines.field_counts(sep_used)
        line_no = np.arange(1, len(counts) + 1)
    filled = np.flatnonzero(counts > 0)
    if len(filled) == 0:
        raise DataFormatError(f"{path}: the file is empty")
    expected = counts[filled[0]] if n_fields is None else n_fields
    if expected < min_fields:
        raise DataFormatError(f"{path} line {line_no[filled[0]]}: expected at least {min_fields} "
                              f"{_sep_name(sep)}-separated fields, got {expected}")
    bad = filled[counts[filled] != expected]
    if len(bad):
        raise DataFormatError(f"{path} line {line_no[bad[0]]}: expected {expected} {_sep_name(sep)}-separated "
                              f"fields, got {counts[bad[0]]}: {_line_text(raw, line_no[bad[0]])!r}")
    if records is None:
        df = _parse_csv(path, text, sep_used)
    else:
        df = pd.DataFrame([records[k] for k in filled], dtype=object)
    rows = line_no[filled]
    if df.shape != (len(rows), expected):  # cannot happen after the checks above; guard anyway
        raise DataFormatError(f"{path} line {rows[0]}: could not parse the file consistently "
                              f"({df.shape[0]} rows of {df.shape[1]} fields read, {len(rows)} non-blank lines "
                              f"of {expected} fields)")
    if header:
        df, rows = _take_header(df, rows, path)
    return _Table(df, rows, str(path), plain_ids=sep is None and b"\x00" not in raw)


def _parse_csv(path, text: str, sep: str | None) -> pd.DataFrame:
    """Columns as strings, no header; the field counts were checked by :func:`_read_delimited`."""
    try:
        return pd.read_csv(io.StringIO(text), engine="c", sep=r"\s+" if sep is None else sep, header=None,
                           dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=True,
                           quoting=csv.QUOTE_NONE)
    except (pd.errors.ParserError, ValueError) as e:  # cannot happen after the checks; guard anyway
        raise DataFormatError(f"{path}: {e}") from None


def _take_header(df: pd.DataFrame, rows: np.ndarray, path) -> tuple[pd.DataFrame, np.ndarray]:
    """The first row as column names: distinct after stripping spaces, and not repeated as a
    data row (two files concatenated)."""
    raw_names = df.iloc[0].tolist()
    names = [str(c).strip() for c in raw_names]
    for k, name in enumerate(names):
        if name in names[:k]:
            raise DataFormatError(f"{path} line {rows[0]}: duplicate column {name!r} in the header")
    body = df.iloc[1:]
    repeated = np.flatnonzero((body.to_numpy(dtype=object) == np.array(raw_names, dtype=object)).all(axis=1))
    if len(repeated):
        raise DataFormatError(f"{path} line {rows[1 + repeated[0]]}: the header line repeated as data")
    body = body.reset_index(drop=True)
    body.columns = names
    return body, rows[1:]


# ================================================================== building Interactions
def _encode(raw, id_space: np.ndarray | None = None, what: str = "user", source: str = ""):
    """Dense codes of a raw id column and the id space (``Interactions.from_raw``'s order)."""
    codes, uniques = pd.factorize(np.asarray(raw), use_na_sentinel=False)  # None/NaN ids stay ids
    uniques = np.asarray(uniques).astype(str)
    if id_space is None:
        id_space = _sorted_ids(uniques)
    order = np.argsort(id_space)
    pos = np.clip(np.searchsorted(id_space, uniques, sorter=order), 0, max(len(id_space) - 1, 0))
    found = order[pos] if len(id_space) else np.zeros(len(uniques), dtype=np.int64)
    bad = id_space[found] != uniques if len(id_space) else np.ones(len(uniques), dtype=bool)
    if bad.any():
        raise DataFormatError(f"{source}: unknown {what} id {uniques[bad][0]!r} (not in the id map)")
    return found.astype(np.int64)[codes], id_space


def _id_space(*columns) -> np.ndarray:
    """Sorted union of raw ids over several columns."""
    uniques = [np.asarray(pd.unique(np.asarray(c))).astype(str) for c in columns]
    return _sorted_ids(np.concatenate(uniques) if uniques else np.array([], dtype=str))


def _interactions(raw_users, raw_items, ratings=None, timestamps=None, source: str = "",
                  user_ids=None, item_ids=None) -> Interactions:
    """Same result as :meth:`Interactions.from_raw`, vectorised with ``pandas.factorize``."""
    users, u_ids = _encode(raw_users, None if user_ids is None else np.asarray(user_ids).astype(str),
                           "user", source)
    items, i_ids = _encode(raw_items, None if item_ids is None else np.asarray(item_ids).astype(str),
                           "item", source)
    return Interactions(users, items, u_ids, i_ids,
                        None if ratings is None else np.asarray(ratings, dtype=np.float32),
                        None if timestamps is None else np.asarray(timestamps, dtype=np.float64),
                        source=source)


def _source(*paths) -> str:
    return "; ".join(str(p) for p in paths if p is not None)


def _aligned(ids: np.ndarray, keys, values, default=None, empty_list: bool = False) -> list:
    """``values`` (given for raw ``keys``) re-ordered to the dense ids ``ids``."""
    table = dict(zip(np.asarray(keys).astype(str), values))
    if empty_list:
        return [list(table[k]) if k in table else [] for k in ids]
    return [table.get(k, default) for k in ids]


def _positions(users: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each user, in row order (a clock for leave-one-out)."""
    codes = pd.factorize(users)[0]
    return pd.Series(codes).groupby(codes).cumcount().to_numpy(dtype=np.float64)


# ============================================================================ RecBole atomic
_ATOMIC_TYPES = ("token", "float", "token_seq", "float_seq")


def _atomic_header(path) -> list[tuple[str, str]]:
    """``(name, type)`` of each field of the header (line 1); names must be distinct."""
    with open(path, "rb") as f:
        first = _decode(f.readline().removeprefix(codecs.BOM_UTF8)).rstrip("\r\n")
    fields = []
    for col in first.split("\t"):
        name, _, typ = col.strip().partition(":")
        if not name or typ not in _ATOMIC_TYPES:
            raise DataFormatError(f"{path} line 1: expected a header of tab-separated 'name:type' fields with "
                                  f"type in {', '.join(_ATOMIC_TYPES)}, got {col!r}")
        if name in dict(fields):
            raise DataFormatError(f"{path} line 1: duplicate column {name!r} in the header")
        fields.append((name, typ))
    return fields


def _read_atomic(path) -> tuple[_Table, dict]:
    fields = _atomic_header(path)
    table = _read_delimited(path, "\t", n_fields=len(fields), header=True)
    table.df.columns = [name for name, _ in fields]
    return table, dict(fields)


def _atomic_values(table: _Table, name: str, typ: str):
    if typ == "float":
        return table.numeric(name)
    if typ == "token":
        return table.column(name).tolist()
    parts = [s.split() for s in table.column(name)]
    if typ == "float_seq":
        return [_floats(p, table, name, row) for row, p in enumerate(parts)]
    return parts


def _floats(tokens: list[str], table: _Table, name: str, row: int) -> list[float]:
    """Finite numbers, or an error naming the line."""
    try:
        values = [float(x) for x in tokens]
    except ValueError:
        values = [np.nan]
    if not np.isfinite(values).all():
        raise DataFormatError(f"{table.where(row)}: expected numbers separated by spaces "
                              f"in column {name!r}, got {' '.join(tokens)!r}")
    return values


def _atomic_features(path, key: str, ids: np.ndarray) -> dict:
    table, types = _read_atomic(path)
    table.require([key])
    keys = table.keys(key)
    out = {}
    for name, typ in types.items():
        if name == key:
            continue
        values = _atomic_values(table, name, typ)
        if typ == "float":
            aligned = np.full(len(ids), np.nan)
            idx, found = _index_in(ids, keys)
            aligned[idx[found]] = values[found]
            out[name] = aligned
        else:
            out[name] = _aligned(ids, keys, values, empty_list=typ.endswith("_seq"))
    return out


def _index_in(ids: np.ndarray, keys) -> tuple[np.ndarray, np.ndarray]:
    """For each key: its position in ``ids`` and whether it is there."""
    lookup = pd.Index(ids)
    idx = lookup.get_indexer(np.asarray(keys).astype(str))
    return idx, idx >= 0


def load_atomic(prefix) -> Interactions:
    """RecBole atomic files ``prefix.inter`` (+ ``prefix.item``, ``prefix.user`` when present).

    The header is tab-separated ``name:type`` (type: token, float, token_seq, float_seq).
    ``user_id`` and ``item_id`` are required; ``rating`` and ``timestamp`` are used when present.
    Side-file columns become ``item_features``/``user_features`` aligned with the dense ids:
    token -> list of str, float -> float64 array (NaN where absent), *_seq -> list of lists
    (token_seq split on spaces). Entities absent from a side file get None / [] / NaN; an
    entity listed twice in a side file is an error.
    """
    prefix = str(prefix)
    for ext in (".inter", ".item", ".user"):  # accept the .inter path itself
        if prefix.endswith(ext) and not Path(prefix + ".inter").exists():
            prefix = prefix[: -len(ext)]
    inter_path = Path(prefix + ".inter")
    table, types = _read_atomic(inter_path)
    table.require(["user_id", "item_id"])
    ratings = table.numeric("rating", float32=True) if "rating" in types else None
    times = table.numeric("timestamp") if "timestamp" in types else None
    side = {kind: Path(f"{prefix}.{kind}") for kind in ("item", "user")}
    inter = _interactions(table.ids("user_id"), table.ids("item_id"), ratings, times,
                          _source(inter_path, *(p for p in side.values() if p.exists())))
    if side["item"].exists():
        inter.item_features = _atomic_features(side["item"], "item_id", inter.item_ids)
    if side["user"].exists():
        inter.user_features = _atomic_features(side["user"], "user_id", inter.user_ids)
    return inter


# ================================================================================ MovieLens
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens"
MOVIELENS_NAMES = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest")
_RATING_FILES = ("u.data", "ratings.dat", "ratings.csv")
_ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western"]
_ML1M_OCCUPATIONS = ["other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                     "customer service", "doctor/health care", "executive/managerial", "farmer",
                     "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
                     "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
                     "unemployed", "writer"]


def _movielens_ratings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(users, items, ratings, timestamps)`` of one of the three GroupLens rating files."""
    name = path.name
    if name == "ratings.csv":
        table = _read_delimited(path, ",", header=True, quoted=True)
        cols = ("userId", "movieId", "rating", "timestamp")
        table.require(cols)
    elif name in ("u.data", "ratings.dat"):
        table = _read_delimited(path, "\t" if name == "u.data" else "::", n_fields=4)
        cols = (0, 1, 2, 3)
    else:
        raise ValueError(f"{path}: not a MovieLens ratings file; expected one of {', '.join(_RATING_FILES)}")
    labels = ("user", "item", "rating", "timestamp")
    return (table.ids(cols[0], labels[0]), table.ids(cols[1], labels[1]),
            table.numeric(cols[2], labels[2], float32=True), table.numeric(cols[3], labels[3]))


def _movielens_items(folder: Path, ids: np.ndarray) -> tuple[dict, list[Path]]:
    """``genres``/``title`` from movies.csv, movies.dat or u.item; ``tags`` from tags.csv."""
    feats, used = {}, []
    if (folder / "movies.csv").exists():
        t = _read_delimited(folder / "movies.csv", ",", header=True, quoted=True)
        t.require(["movieId", "title", "genres"])
        keys, titles, genres = t.keys("movieId"), t.column("title"), t.column("genres")
        used.append(folder / "movies.csv")
    elif (folder / "movies.dat").exists():
        t = _read_delimited(folder / "movies.dat", "::", n_fields=3)
        keys, titles, genres = t.keys(0, "movie"), t.column(1), t.column(2)
        used.append(folder / "movies.dat")
    elif (folder / "u.item").exists():
        t = _read_delimited(folder / "u.item", "|", n_fields=24)
        names = _ml100k_genre_names(folder)
        flags = np.stack([t.numeric(5 + g, f"genre flag {g}") for g in range(19)], axis=1) > 0
        keys, titles = t.keys(0, "movie"), t.column(1)
        genres = ["|".join(np.asarray(names)[f]) for f in flags]
        used.append(folder / "u.item")
    else:
        keys = None
    if keys is not None:
        genre_lists = [[] if g in ("", "(no genres listed)") else g.split("|") for g in genres]
        feats["title"] = _aligned(ids, keys, titles)
        feats["genres"] = _aligned(ids, keys, genre_lists, empty_list=True)
    if (folder / "tags.csv").exists():
        t = _read_delimited(folder / "tags.csv", ",", header=True, quoted=True)
        t.require(["movieId", "tag"])
        t.ids("movieId")
        grouped = t.df.groupby("movieId", sort=False)["tag"].agg(lambda s: list(dict.fromkeys(s)))
        feats["tags"] = _aligned(ids, grouped.index.to_numpy(), grouped.tolist(), empty_list=True)
        used.append(folder / "tags.csv")
    return feats, used


def _ml100k_genre_names(folder: Path) -> list[str]:
    if (folder / "u.genre").exists():
        t = _read_delimited(folder / "u.genre", "|", n_fields=2)
        order = np.argsort(t.numeric(1, "genre index"))
        names = t.column(0)[order].tolist()
        if len(names) == 19:
            return names
    return list(_ML100K_GENRES)


def _movielens_users(folder: Path, ids: np.ndarray) -> tuple[dict, list[Path]]:
    """``age``, ``gender``, ``occupation``, ``zip_code`` from users.dat or u.user."""
    if (folder / "users.dat").exists():
        path = folder / "users.dat"
        t = _read_delimited(path, "::", n_fields=5)
        keys, gender, occ, zips = t.keys(0, "user"), t.column(1), t.column(3), t.column(4)
        ages = t.integers(2, "age")
        occ = [_ML1M_OCCUPATIONS[int(o)] if o.isascii() and o.isdigit() and int(o) < len(_ML1M_OCCUPATIONS)
               else o for o in occ]
    elif (folder / "u.user").exists():
        path = folder / "u.user"
        t = _read_delimited(path, "|", n_fields=5)
        keys, gender, occ, zips = t.keys(0, "user"), t.column(2), t.column(3), t.column(4)
        ages = t.integers(1, "age")
    else:
        return {}, []
    return ({"age": _aligned(ids, keys, ages.tolist()), "gender": _aligned(ids, keys, gender),
             "occupation": _aligned(ids, keys, occ), "zip_code": _aligned(ids, keys, zips)}, [path])


def _find_ratings_file(path: Path) -> Path:
    if path.is_dir():
        for name in _RATING_FILES:
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"{path}: no MovieLens ratings file in this folder "
                                f"(looked for {', '.join(_RATING_FILES)})")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def load_movielens(path) -> Interactions:
    """A GroupLens MovieLens ratings file, chosen by name: ``u.data`` (tab-separated
    ``user item rating ts``), ``ratings.dat`` (``::``-separated) or ``ratings.csv`` (header
    ``userId,movieId,rating,timestamp``); a folder holding one of them works too.

    Files beside it add side features: ``movies.csv``/``movies.dat``/``u.item`` -> item
    ``title`` and ``genres`` (list of str); ``tags.csv`` -> item ``tags`` (distinct tags in file
    order); ``users.dat``/``u.user`` -> user ``age``, ``gender``, ``occupation``, ``zip_code``.
    """
    path = _find_ratings_file(Path(path))
    users, items, ratings, times = _movielens_ratings(path)
    inter = _interactions(users, items, ratings, times, str(path))
    inter.item_features, item_files = _movielens_items(path.parent, inter.item_ids)
    inter.user_features, user_files = _movielens_users(path.parent, inter.user_ids)
    inter.source = _source(path, *item_files, *user_files)
    return inter


def download_movielens(name: str = "ml-latest-small", dest_dir=".", base_url: str = MOVIELENS_URL,
                       force: bool = False, timeout: float = 60.0) -> Path:
    """Download ``{base_url}/{name}.zip`` from GroupLens into ``dest_dir``, check that it is a
    zip archive, extract it and return the path of its ratings file (for :func:`load_movielens`).

    An archive already in ``dest_dir`` is reused unless ``force``. ``base_url`` may be a
    ``file://`` URL (a local mirror).
    """
    if name not in MOVIELENS_NAMES:
        raise ValueError(f"unknown MovieLens dataset {name!r}; known: {', '.join(MOVIELENS_NAMES)}")
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"{name}.zip"
    url = f"{base_url.rstrip('/')}/{name}.zip"
    if force or not (archive.exists() and zipfile.is_zipfile(archive)):
        _download(url, archive, timeout)
    if not zipfile.is_zipfile(archive):
        archive.unlink()
        raise ValueError(f"{url}: the download is not a zip archive")
    with zipfile.ZipFile(archive) as zf:
        member = _ratings_member(zf, url)
        target = dest / member
        if force or not target.exists():
            _safe_extract(zf, dest, url)
    return target


def _download(url: str, archive: Path, timeout: float) -> None:
    part = archive.with_name(archive.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise OSError(f"could not download {url}: {e}") from None
    os.replace(part, archive)


def _ratings_member(zf: zipfile.ZipFile, url: str) -> str:
    members = [m for m in zf.namelist() if Path(m).name in _RATING_FILES]
    if not members:
        raise ValueError(f"{url}: the archive holds no ratings file ({', '.join(_RATING_FILES)})")
    return min(members, key=lambda m: (m.count("/"), _RATING_FILES.index(Path(m).name)))


def _safe_extract(zf: zipfile.ZipFile, dest: Path, url: str) -> None:
    root = dest.resolve()
    for member in zf.namelist():
        target = (root / member).resolve()
        if target != root and root not in target.parents:
            raise ValueError(f"{url}: archive member {member!r} would be written outside {dest}")
    zf.extractall(dest)


# ============================================================ LightGCN / sequence line files
def _id_lines(path) -> tuple[np.ndarray, np.ndarray]:
    """Integer tokens of a ``head id id ...`` file and the 0-based line of each. Tokens are
    separated by ASCII whitespace; a token that is not a non-negative int64 names its line."""
    raw = _read_bytes(path)
    lines = _Lines(raw)
    bad = np.flatnonzero(~_DIGIT_OR_WS[lines.buf])
    if len(bad):
        line = int(lines.line_of(bad[:1])[0]) + 1
        raise DataFormatError(f"{path} line {line}: expected non-negative integer ids separated by spaces, "
                              f"got {_token_at(raw, int(bad[0]))!r}")
    starts = lines.token_starts()
    if len(starts) == 0:
        raise DataFormatError(f"{path}: the file is empty")
    tokens = raw.split()
    try:
        values = np.array(tokens, dtype=np.int64)
    except OverflowError:
        k = next(k for k, t in enumerate(tokens) if int(t) > _INT64_MAX)
        raise DataFormatError(f"{path} line {int(lines.line_of(starts[k:k + 1])[0]) + 1}: id {_decode(tokens[k])!r} "
                              f"is larger than {_INT64_MAX}") from None
    if len(values) != len(starts):  # cannot happen after the byte check; guard anyway
        raise DataFormatError(f"{path} line 1: could not parse the integer tokens consistently")
    return values, lines.line_of(starts)


def _head_and_rest(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(line_users, head_lines, pair_users, pair_items, pair_position)`` of a ``uid iid iid ...``
    file: the head of every non-blank line and its 1-based line number, and one (user, item)
    pair per further token with its position (0, 1, ...) on the line."""
    values, line_of = _id_lines(path)
    is_head = np.concatenate([[True], line_of[1:] != line_of[:-1]])
    head_idx = np.flatnonzero(is_head)
    owner = np.cumsum(is_head) - 1  # which head each token follows
    rest = ~is_head
    position = np.arange(len(values)) - head_idx[owner] - 1
    heads = values[head_idx]
    return heads, line_of[head_idx] + 1, heads[owner[rest]], values[rest], position[rest]


def load_lightgcn_txt(directory, train_name: str = "train.txt", test_name: str = "test.txt"
                      ) -> tuple[Interactions, Interactions]:
    """NGCF/LightGCN ``train.txt`` and ``test.txt``: ``uid iid iid ...`` per line (0-based,
    space-separated; a line with only the uid is a user without items). Returns
    ``(train, test)`` over one id space: the union of the ids of both files, numeric order."""
    directory = Path(directory)
    train_path, test_path = directory / train_name, directory / test_name
    tr_heads, _, tr_u, tr_i, _ = _head_and_rest(train_path)
    te_heads, _, te_u, te_i, _ = _head_and_rest(test_path)
    user_ids = _sorted_ints(tr_heads, te_heads)
    item_ids = _sorted_ints(tr_i, te_i)
    src = _source(train_path, test_path)
    train = _interactions(tr_u, tr_i, source=src, user_ids=user_ids, item_ids=item_ids)
    test = _interactions(te_u, te_i, source=str(test_path), user_ids=user_ids, item_ids=item_ids)
    return train, test


def _sorted_ints(*arrays) -> np.ndarray:
    return np.unique(np.concatenate(arrays)).astype(str)


def load_sequence_lines(path) -> Interactions:
    """``user i1 i2 i3 ...`` per line, items in chronological order (S3-Rec's ``Beauty.txt``).
    ``timestamps`` = position of the item within the user's sequence (0, 1, ...); a user with
    two lines is an error."""
    heads, head_lines, users, items, position = _head_and_rest(path)
    repeated = np.flatnonzero(pd.Series(heads).duplicated().to_numpy())
    if len(repeated):
        k = repeated[0]
        first = head_lines[np.flatnonzero(heads == heads[k])[0]]
        raise DataFormatError(f"{path} line {head_lines[k]}: user {heads[k]} already has a sequence "
                              f"on line {first}")
    user_ids = _sorted_ints(heads)
    return _interactions(users, items, timestamps=position, source=str(path), user_ids=user_ids)


def load_sequence_pairs(path, sep: str | None = None) -> Interactions:
    """``user item`` per line, grouped by user and chronological (BERT4Rec's ``beauty.txt``).
    ``timestamps`` = position of the item within the user's sequence (0, 1, ...)."""
    table = _read_delimited(path, sep, n_fields=2)
    users = table.ids(0, "user")
    return _interactions(users, table.ids(1, "item"), timestamps=_positions(users), source=str(path))


def load_pairs_txt(train_path, test_path=None, sep: str | None = None
                   ) -> tuple[Interactions, Interactions | None]:
    """``user item [weight]`` per line (whitespace-separated unless ``sep``; CRLF is fine), e.g.
    LightGCN's lastfm ``data1.txt``/``test1.txt``. The weight becomes ``ratings``. Returns
    ``(train, test)`` over one id space (the union of both files), ``test`` None without a file."""
    tables = [_pairs_table(p, sep) for p in (train_path, test_path) if p is not None]
    user_ids = _id_space(*(t.ids(0, "user") for t in tables))
    item_ids = _id_space(*(t.ids(1, "item") for t in tables))
    parts = []
    for k, t in enumerate(tables):
        weights = t.numeric(2, "weight", float32=True) if t.df.shape[1] == 3 else None
        src = _source(train_path, test_path) if k == 0 else t.path
        parts.append(_interactions(t.column(0), t.column(1), weights, source=src,
                                   user_ids=user_ids, item_ids=item_ids))
    return parts[0], (parts[1] if len(parts) > 1 else None)


def _pairs_table(path, sep) -> _Table:
    table = _read_delimited(path, sep, min_fields=2)
    if table.df.shape[1] > 3:
        raise DataFormatError(f"{table.where(0)}: expected 2 or 3 {_sep_name(sep)}-separated fields "
                              f"(user item [weight]), got {table.df.shape[1]}")
    return table


# ========================================================================= DiffuRec pickle
class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain data (dicts, lists, ints, str): a data file must not run code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: the file must hold plain data only")


def _load_plain_pickle(path: Path):
    """The object in a pickle of plain data. Read from memory, so that a damaged length field
    cannot make the unpickler allocate or read beyond the file."""
    stream = io.BytesIO(_existing(path).read_bytes())
    try:
        data = _PlainUnpickler(stream).load()
    except Exception as e:  # a damaged pickle fails in many ways: EOFError, KeyError, MemoryError, ...
        raise DataFormatError(f"{path} byte {stream.tell()}: not a pickle of plain data "
                              f"({type(e).__name__}: {e})") from None
    if stream.tell() != len(stream.getbuffer()):
        raise DataFormatError(f"{path} byte {stream.tell()}: unexpected data after the end of the pickle")
    return data


def _is_index(value) -> bool:
    """A plain int within int64 (bool is not an index)."""
    return type(value) is int and -_INT64_MAX - 1 <= value <= _INT64_MAX


def _all_indices(values: list) -> bool:
    """Whether every value is an index (fast for long lists: no Python-level loop)."""
    return set(map(type, values)) <= {int} and (not values or (_is_index(min(values)) and _is_index(max(values))))


def _sequences(data: dict, key: str, path) -> dict:
    """``data[key]``, checked to be a dict int user -> list of int items."""
    part = data.get(key)
    if not isinstance(part, dict):
        raise DataFormatError(f"{path}: key {key!r} must be a dict user -> item list, got {type(part).__name__}")
    for user, items in part.items():
        if not _is_index(user):
            raise DataFormatError(f"{path}: key {key!r}: user {user!r} is not an integer index")
        if not isinstance(items, list):
            raise DataFormatError(f"{path}: key {key!r}: user {user}: expected a list of items, "
                                  f"got {type(items).__name__}")
    if not _all_indices(list(itertools.chain.from_iterable(part.values()))):
        user, bad = next((u, i) for u, items in part.items() for i in items if not _is_index(i))
        raise DataFormatError(f"{path}: key {key!r}: user {user}: item {bad!r} is not an integer index")
    return part


def load_diffurec_pickle(path) -> Interactions:
    """DiffuRec's ``dataset.pkl``: ``{'train': {u: [items]}, 'val': {u: [item]}, 'test': {u: [item]},
    'umap': {raw_user: u}, 'smap': {raw_item: item}}``. Each user's sequence is train + val +
    test; ``timestamps`` = position in it, so leave-one-out gives back the file's val/test.
    Raw ids are the original ones (via ``umap``/``smap``); ``movies.dat``/``users.dat`` beside
    the file add side features as in :func:`load_movielens`."""
    path = Path(path)
    data = _load_plain_pickle(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: key 'train': expected a dict with keys 'train', 'val', 'test', "
                              f"got {type(data).__name__}")
    train, val, test = (_sequences(data, key, path) for key in ("train", "val", "test"))
    for key, part in (("val", val), ("test", test)):
        orphans = [u for u in part if u not in train]
        if orphans:
            raise DataFormatError(f"{path}: key {key!r}: user {orphans[0]} has no 'train' sequence")
    users = sorted(train)
    seqs = [train[u] + val.get(u, []) + test.get(u, []) for u in users]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    user_col = np.repeat(np.asarray(users, dtype=np.int64), lengths)
    item_col = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
    position = np.arange(len(item_col)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    user_col = _to_raw(user_col, data.get("umap"), path, "umap")
    item_col = _to_raw(item_col, data.get("smap"), path, "smap")
    inter = _interactions(user_col, item_col, timestamps=position, source=str(path))
    inter.item_features, item_files = _movielens_items(path.parent, inter.item_ids)
    inter.user_features, user_files = _movielens_users(path.parent, inter.user_ids)
    inter.source = _source(path, *item_files, *user_files)
    return inter


def _to_raw(dense: np.ndarray, raw_to_dense, path, key: str) -> np.ndarray:
    """Map the pickle's indices back to the raw ids with the inverse of ``raw_to_dense``, which
    must be one-to-one (also once the raw ids are written as text); no map (None or empty)
    keeps the indices."""
    if raw_to_dense is None or (isinstance(raw_to_dense, dict) and not raw_to_dense):
        return dense
    if not isinstance(raw_to_dense, dict):
        raise DataFormatError(f"{path}: key {key!r} must be a dict raw id -> index, got {type(raw_to_dense).__name__}")
    for raw, index in raw_to_dense.items():
        if not _is_index(index):
            raise DataFormatError(f"{path}: key {key!r}: raw id {raw!r} maps to {index!r}, not an integer index")
    raw_ids = pd.Series(list(raw_to_dense), dtype=None if _all_indices(list(raw_to_dense)) else object)
    indices = pd.Index(np.fromiter(raw_to_dense.values(), dtype=np.int64, count=len(raw_to_dense)))
    text = pd.Index(raw_ids.to_numpy().astype(str))  # as the raw ids will be stored
    for labels, what in ((indices, "index"), (text, "raw id (as text)")):
        if not labels.is_unique:
            raise DataFormatError(f"{path}: key {key!r}: {what} {_shown(labels[labels.duplicated()][0])!r} "
                                  "appears more than once")
    if any("\x00" in raw for raw in raw_ids if isinstance(raw, str)):
        raise DataFormatError(f"{path}: key {key!r}: a raw id holds a NUL character")
    idx = indices.get_indexer(dense)
    if (idx < 0).any():
        raise DataFormatError(f"{path}: key {key!r}: index {dense[idx < 0][0]} is missing")
    return raw_ids.to_numpy()[idx]


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


# ===================================================================== DiffRec .npy splits
DIFFREC_URL = "https://github.com/YiyanXu/DiffRec/raw/main/datasets"
DIFFREC_NAMES = ("ml-1m_clean", "ml-1m_noisy", "yelp_clean", "yelp_noisy", "amazon-book_clean", "amazon-book_noisy")
DIFFREC_PARTS = ("train", "valid", "test")
_RAR_MAGIC = b"Rar!\x1a\x07"
# extraction commands, tried in this order: (executable, argv builder(archive, out_dir))
_RAR_TOOLS = (
    ("unar", lambda archive, out: ["unar", "-q", "-f", "-D", "-o", str(out), str(archive)]),
    ("unrar", lambda archive, out: ["unrar", "x", "-o+", "-y", "-idq", str(archive), str(out) + os.sep]),
    ("7z", lambda archive, out: ["7z", "x", "-y", "-bd", f"-o{out}", str(archive)]),
    ("7zz", lambda archive, out: ["7zz", "x", "-y", "-bd", f"-o{out}", str(archive)]),
)


def _pairs_npy(path: Path) -> np.ndarray:
    """The ``[n, 2]`` int64 (user, item) array of one DiffRec ``.npy`` file, checked: a plain
    (no pickle) non-empty integer array of shape ``[n, 2]`` with non-negative int64 ids."""
    path = Path(path)
    raw = _existing(path).read_bytes()
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as e:  # a damaged header or body fails as ValueError, EOFError, OSError, ...
        raise DataFormatError(f"{path}: not a readable .npy array without pickled objects "
                              f"({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray):
        raise DataFormatError(f"{path}: expected a single .npy array, got {type(arr).__name__}")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DataFormatError(f"{path}: expected an array of shape [n, 2] (user, item) rows, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataFormatError(f"{path}: expected integer (user, item) ids, got dtype {arr.dtype}")
    if len(arr) == 0:
        raise DataFormatError(f"{path}: the file holds no (user, item) rows")
    if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8:
        big = np.flatnonzero((arr > _INT64_MAX).any(1))
        if len(big):
            r = int(big[0])
            raise DataFormatError(f"{path} row {r + 1}: id {int(arr[r].max())} is larger than {_INT64_MAX}")
    arr = arr.astype(np.int64)
    negative = np.flatnonzero((arr < 0).any(1))
    if len(negative):
        r = int(negative[0])
        what = "user" if arr[r, 0] < 0 else "item"
        raise DataFormatError(f"{path} row {r + 1}: negative {what} id {int(arr[r].min())} "
                              f"(expected 0-based ids, got ({arr[r, 0]}, {arr[r, 1]}))")
    return arr


def _first_shared_pair(a: np.ndarray, b: np.ndarray) -> tuple[int, int] | None:
    """0-based rows ``(in a, in b)`` of the first (in ``a``'s order) pair present in both, else None."""
    ka = pd.MultiIndex.from_arrays([a[:, 0], a[:, 1]])
    kb = pd.MultiIndex.from_arrays([b[:, 0], b[:, 1]])
    in_b = ka.isin(kb)
    if not in_b.any():
        return None
    ra = int(np.flatnonzero(in_b)[0])
    rb = int(np.flatnonzero((b[:, 0] == a[ra, 0]) & (b[:, 1] == a[ra, 1]))[0])
    return ra, rb


def load_diffrec_npy(directory, train_name: str = "train_list.npy", valid_name: str = "valid_list.npy",
                     test_name: str = "test_list.npy") -> tuple[Interactions, Interactions, Interactions]:
    """DiffRec's split (YiyanXu/DiffRec ``datasets/<name>/``): ``train_list.npy``,
    ``valid_list.npy`` and ``test_list.npy``, each an ``[n, 2]`` integer array of 0-based
    (user, item) pairs. Returns ``(train, valid, test)`` over one id space, the union of the
    ids of the three files in numeric order (dense 0-based files keep their ids in place).

    A file that is not a plain integer ``[n, 2]`` array, an empty one, a negative id, or a
    (user, item) pair found in two of the files raises :class:`DataFormatError` naming the
    file(s) and the 1-based row(s). A pair repeated within one file is kept (the split merges
    repeats, :meth:`Interactions.dedup`)."""
    directory = Path(directory)
    paths = [directory / n for n in (train_name, valid_name, test_name)]
    arrays = [_pairs_npy(p) for p in paths]
    for (i, a), (j, b) in itertools.combinations(enumerate(arrays), 2):
        shared = _first_shared_pair(a, b)
        if shared is not None:
            ra, rb = shared
            raise DataFormatError(
                f"{paths[i]} row {ra + 1}: (user, item) pair ({a[ra, 0]}, {a[ra, 1]}) is also in {paths[j]} "
                f"row {rb + 1}; the {DIFFREC_PARTS[i]} and {DIFFREC_PARTS[j]} parts must be disjoint")
    user_ids = _sorted_ints(*(a[:, 0] for a in arrays))
    item_ids = _sorted_ints(*(a[:, 1] for a in arrays))
    parts = []
    for k, (path, arr) in enumerate(zip(paths, arrays)):
        src = _source(*paths) if k == 0 else str(path)
        parts.append(_interactions(arr[:, 0], arr[:, 1], source=src, user_ids=user_ids, item_ids=item_ids))
    return parts[0], parts[1], parts[2]


def download_diffrec(name: str = "ml-1m_clean", dest_dir=".", base_url: str = DIFFREC_URL, force: bool = False,
                     timeout: float = 60.0) -> Path:
    """Download ``{base_url}/{name}.rar`` (the official DiffRec split) into ``dest_dir``, check
    that it is a RAR archive, unpack it with an external tool (``unar``, else ``unrar``, else
    ``7z``/``7zz``: Python cannot read RAR) and return the folder ``dest_dir/name`` holding
    ``train_list.npy``, ``valid_list.npy`` and ``test_list.npy`` (for :func:`load_diffrec_npy`;
    ``data_dir=dest_dir`` for the named dataset). An archive or folder already there is reused
    unless ``force``. ``base_url`` may be a ``file://`` URL (a local mirror). Without any of the
    tools: ``FileNotFoundError`` saying what to install and where to put the unpacked folder."""
    if name not in DIFFREC_NAMES:
        raise ValueError(f"unknown DiffRec dataset {name!r}; known: {', '.join(DIFFREC_NAMES)}")
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / name
    needed = [target / f"{part}_list.npy" for part in DIFFREC_PARTS]
    if not force and all(p.is_file() for p in needed):
        return target
    archive = dest / f"{name}.rar"
    url = f"{base_url.rstrip('/')}/{name}.rar"
    if force or not (archive.exists() and _is_rar(archive)):
        _download(url, archive, timeout)
    if not _is_rar(archive):
        archive.unlink()
        raise ValueError(f"{url}: the download is not a RAR archive")
    _extract_rar(archive, dest, name, needed)
    return target


def _is_rar(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(_RAR_MAGIC)) == _RAR_MAGIC


def _extract_rar(archive: Path, dest: Path, name: str, needed: list[Path]) -> None:
    """Unpack ``archive`` into a fresh folder inside ``dest`` with the first tool that works, then
    move the folder holding ``train_list.npy`` to ``dest/name``."""
    tools = [(exe, argv) for exe, argv in _RAR_TOOLS if shutil.which(exe)]
    hint = (f"install unar (Debian/Ubuntu: sudo apt-get install unar; macOS: brew install unar), or unpack "
            f"{archive} yourself so that {needed[0]} exists (the archive's folder {name}/ goes into {dest}; "
            f"then pass data_dir={dest} or set GCF_DATA_DIR={dest})")
    if not tools:
        raise FileNotFoundError(f"{archive}: unpacking a RAR archive needs unar, unrar or 7z, and none is "
                                f"installed: {hint}")
    failures = []
    for exe, argv in tools:
        with tempfile.TemporaryDirectory(dir=dest, prefix=f".{name}-unpack-") as tmp:
            out = Path(tmp)
            try:
                done = subprocess.run(argv(archive.resolve(), out.resolve()), capture_output=True, text=True,
                                      stdin=subprocess.DEVNULL, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as e:
                failures.append(f"{exe}: {e}")
                continue
            found = sorted(p.parent for p in out.rglob("train_list.npy")
                           if all((p.parent / f"{part}_list.npy").is_file() for part in DIFFREC_PARTS))
            tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
            if not found:
                failures.append(f"{exe}: exit status {done.returncode}, no train/valid/test_list.npy unpacked "
                                f"({tail[0]})")
                continue
            keep = None  # everything the tool unpacked
            if done.returncode != 0:
                # unar 1.10 fails on the item_emb.npy (L-DiffRec's LightGCN vectors, unused here) of the
                # official ml-1m_clean.rar and unpacks the three lists: keep them if they read back whole.
                try:
                    for part in DIFFREC_PARTS:
                        _pairs_npy(found[0] / f"{part}_list.npy")
                except DataFormatError as e:
                    failures.append(f"{exe}: exit status {done.returncode}, {e}")
                    continue
                keep = {f"{part}_list.npy" for part in DIFFREC_PARTS}
                warnings.warn(f"{archive}: {exe} failed on part of the archive ({tail[0]}); kept the three "
                              f"*_list.npy files, which read back whole", stacklevel=3)
            target = dest / name
            target.mkdir(exist_ok=True)
            for child in found[0].iterdir():  # replaces what an earlier (partial) unpacking left there
                if keep is not None and child.name not in keep:
                    continue
                if (target / child.name).is_dir() and not (target / child.name).is_symlink():
                    shutil.rmtree(target / child.name)
                elif (target / child.name).exists() or (target / child.name).is_symlink():
                    (target / child.name).unlink()
                shutil.move(str(child), str(target / child.name))
            return
    raise OSError(f"{archive}: could not unpack it ({'; '.join(failures)}): {hint}")


# =================================================================================== tables
def load_table(path, user_col: str, item_col: str, rating_col: str | None = None,
               time_col: str | None = None, sep: str = ",") -> Interactions:
    """A CSV/TSV/Parquet file with a header, chosen by extension (``.parquet``/``.pq`` via
    pandas, needs pyarrow or fastparquet; ``.tsv``/``.tab`` are tab-separated unless ``sep`` says
    otherwise). Columns are picked by name; a missing one is an error listing those present.
    The time column holds numbers, or else date-times (turned into seconds since the epoch)."""
    path = Path(path)
    wanted = [c for c in (user_col, item_col, rating_col, time_col) if c is not None]
    if path.suffix.lower() in (".parquet", ".pq"):
        table = _parquet_table(path)
    else:
        if path.suffix.lower() in (".tsv", ".tab") and sep == ",":
            sep = "\t"
        table = _read_delimited(path, sep, header=True, quoted=True)
    table.require(wanted)
    ratings = None if rating_col is None else table.numeric(rating_col, float32=True)
    times = None if time_col is None else _time_column(table, time_col)
    return _interactions(table.ids(user_col), table.ids(item_col), ratings, times, str(path))


def _time_column(table: _Table, name: str) -> np.ndarray:
    """Numbers as they are; date-times (a datetime column, or a text column in which no value
    is a number) as seconds since the epoch. A value that is neither names its line."""
    col = table.df[name]
    if not pd.api.types.is_datetime64_any_dtype(col):
        if pd.api.types.is_numeric_dtype(col) or pd.to_numeric(col, errors="coerce").notna().any() or col.empty:
            return table.numeric(name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "could not infer format": the values are checked below
                col = pd.to_datetime(col, errors="raise", utc=True)
        except (ValueError, TypeError, OverflowError):
            return table.numeric(name)  # names the first value that is not a number
    if col.dt.tz is None:
        col = col.dt.tz_localize("UTC")
    seconds = (col - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(seconds))
    if len(bad):
        raise DataFormatError(f"{table.where(bad[0])}: expected a date-time in column {name!r}, "
                              f"got {_shown(table.df[name].iloc[bad[0]])!r}")
    return seconds


def _parquet_table(path: Path) -> _Table:
    if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
        raise ImportError(f"{path}: reading Parquet needs pyarrow or fastparquet "
                          "(pip install pyarrow)")
    try:
        df = pd.read_parquet(_existing(path))
    except FileNotFoundError:
        raise
    except Exception as e:  # the engines raise many types for a damaged file (ArrowInvalid, OSError, ...)
        raise DataFormatError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    repeated = df.columns[df.columns.duplicated()]
    if len(repeated):
        raise DataFormatError(f"{path}: duplicate column {repeated[0]!r}")
    return _ParquetTable(df, np.arange(1, len(df) + 1), str(path))


class _ParquetTable(_Table):
    """Typed Parquet columns; rows are named 'row N' instead of 'line N'."""

    def where(self, row: int) -> str:
        return f"{self.path} row {row + 1}"

    def _id_values(self, name, label: str) -> np.ndarray:
        """Integer columns as they are (floats must be whole numbers), others as text; a
        missing value names its row."""
        col = self.df[name]
        missing = np.flatnonzero(col.isna().to_numpy())
        if len(missing):
            raise DataFormatError(f"{self.where(missing[0])}: missing {label!r} id")
        if pd.api.types.is_float_dtype(col):
            values = col.to_numpy(dtype=np.float64)
            bad = np.flatnonzero((values != np.round(values)) | (np.abs(values) >= 2.0 ** 63))
            if len(bad):
                raise DataFormatError(f"{self.where(bad[0])}: expected a whole number as {label!r} id, "
                                      f"got {_shown(values[bad[0]])!r}")
            return values.astype(np.int64)
        if pd.api.types.is_integer_dtype(col):
            return col.to_numpy()
        return col.astype(str).to_numpy(dtype=object)
