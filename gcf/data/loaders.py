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
- :func:`load_table` -- any CSV/TSV/Parquet with a column mapping.

Parsing is vectorised (numpy on the raw bytes, pandas for the columns). Every file is
validated first, and a malformed line raises ``ValueError`` naming the file, the 1-based
line number and what was expected, e.g.
``ml-100k.inter line 5: expected 4 tab-separated fields, got 3``.

Raw ids are remapped to dense ids with the rule of :meth:`Interactions.from_raw` (sorted
raw ids, numeric order when all are numbers); :func:`_interactions` does the same with
``pandas.factorize`` so that a million rows take milliseconds rather than seconds.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import os
import pickle
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .interactions import Interactions, _sorted_ids

__all__ = [
    "load_atomic", "load_movielens", "download_movielens", "load_lightgcn_txt", "load_pairs_txt",
    "load_sequence_pairs", "load_sequence_lines", "load_diffurec_pickle", "load_table",
    "MOVIELENS_URL",
]

# ASCII whitespace, as ``bytes.split()`` understands it
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True
_DIGIT_OR_WS = _WS.copy()
_DIGIT_OR_WS[ord("0"):ord("9") + 1] = True


# =========================================================================== raw text
def _read_bytes(path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path.read_bytes()


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

    def token_starts(self) -> np.ndarray:
        """Byte positions where a whitespace-separated token begins."""
        ws = _WS[self.buf]
        prev_ws = np.concatenate([[True], ws[:-1]])
        return np.flatnonzero(~ws & prev_ws)

    def field_counts(self, sep: str | None) -> np.ndarray:
        """Fields per line (0 for blank lines); ``sep=None`` splits on whitespace runs."""
        if sep is None:
            return np.bincount(self.line_of(self.token_starts()), minlength=self.n_lines)
        is_sep = self.buf == ord(sep)
        counts = np.bincount(self.line_of(np.flatnonzero(is_sep)), minlength=self.n_lines) + 1
        # like pandas: a line of whitespace other than the separator is blank
        filled = np.bincount(self.line_of(np.flatnonzero(is_sep | ~_WS[self.buf])), minlength=self.n_lines)
        counts[filled == 0] = 0
        return counts


def _csv_field_counts(text: str, sep: str) -> tuple[np.ndarray, np.ndarray]:
    """Fields per record and each record's first line, honouring CSV quotes."""
    counts, lines, prev_end = [], [], 0
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    for rec in reader:
        counts.append(len(rec) if any(f.strip() for f in rec) or len(rec) > 1 else 0)
        lines.append(prev_end + 1)
        prev_end = reader.line_num
    return np.asarray(counts, dtype=np.int64), np.asarray(lines, dtype=np.int64)


def _sep_name(sep: str | None) -> str:
    return {None: "whitespace", "\t": "tab", ",": "comma", "::": "'::'"}.get(sep, repr(sep))


# ====================================================================== delimited tables
@dataclass
class _Table:
    """A parsed delimited file: string columns plus the file line of every row."""

    df: pd.DataFrame
    lines: np.ndarray  # 1-based line number of each row of ``df``
    path: str

    def column(self, name) -> np.ndarray:
        return self.df[name].to_numpy()

    def ids(self, name, label: str | None = None) -> np.ndarray:
        """Column ``name`` as raw ids (strings); an empty id names its line."""
        values = self.column(name)
        empty = np.flatnonzero(values == "") if values.dtype == object else []
        if len(empty):
            raise ValueError(f"{self.path} line {self.lines[empty[0]]}: empty {label or name!r} id")
        return values

    def numeric(self, name, label: str | None = None) -> np.ndarray:
        """Column ``name`` as float64; a value that is not a number names its line."""
        values = pd.to_numeric(self.df[name], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(values))
        if len(bad):
            row = bad[0]
            raise ValueError(f"{self.path} line {self.lines[row]}: expected a number in column "
                             f"{label or name!r}, got {self.df[name].iloc[row]!r}")
        return values

    def require(self, names) -> None:
        missing = [n for n in names if n not in self.df.columns]
        if missing:
            raise ValueError(f"{self.path}: missing required column {missing[0]!r}; "
                             f"columns present: {', '.join(map(str, self.df.columns))}")


def _read_delimited(path, sep: str | None, n_fields: int | None = None, header: bool = False,
                    quoted: bool = False, min_fields: int = 1) -> _Table:
    """Read a delimited text file as strings, after checking every line's field count.

    ``sep=None`` splits on runs of whitespace; ``'::'`` (GroupLens ``.dat``) is accepted.
    ``n_fields=None`` takes the count of the first non-blank line. Blank lines are skipped.
    ``quoted`` enables CSV double quotes (a field may then hold the separator).
    """
    if sep is not None and sep != "::" and len(sep) != 1:
        raise ValueError(f"{path}: sep must be one character, '::' or None (whitespace), got {sep!r}")
    raw = _read_bytes(path)
    if sep == "::":
        raw = raw.replace(b"::", b"\t")
        sep_used = "\t"
    else:
        sep_used = sep
    text = _decode(raw)
    quoted = quoted and b'"' in raw
    if quoted:
        counts, line_no = _csv_field_counts(text, sep_used)
    else:
        counts = _Lines(raw).field_counts(sep_used)
        line_no = np.arange(1, len(counts) + 1)
    records = np.flatnonzero(counts > 0)
    if len(records) == 0:
        raise ValueError(f"{path}: the file is empty")
    expected = counts[records[0]] if n_fields is None else n_fields
    if expected < min_fields:
        raise ValueError(f"{path} line {line_no[records[0]]}: expected at least {min_fields} "
                         f"{_sep_name(sep)}-separated fields, got {expected}")
    bad = records[counts[records] != expected]
    if len(bad):
        raise ValueError(f"{path} line {line_no[bad[0]]}: expected {expected} {_sep_name(sep)}-separated "
                         f"fields, got {counts[bad[0]]}: {_line_text(raw, line_no[bad[0]])!r}")
    df = _parse_csv(path, text, sep_used, header, quoted)
    rows = line_no[records[1:] if header else records]
    if len(df) != len(rows):  # only on exotic input (quotes in an unquoted format ...)
        raise ValueError(f"{path}: could not parse the file consistently "
                         f"({len(df)} rows read, {len(rows)} non-blank lines)")
    return _Table(df, rows, str(path))


def _parse_csv(path, text: str, sep: str | None, header: bool, quoted: bool) -> pd.DataFrame:
    """Columns as strings; the field counts were checked by :func:`_read_delimited`."""
    try:
        df = pd.read_csv(io.StringIO(text), engine="c", sep=r"\s+" if sep is None else sep,
                         header=0 if header else None, dtype=str, keep_default_na=False, na_filter=False,
                         skip_blank_lines=True, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    except (pd.errors.ParserError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    if header:
        df.columns = [str(c).strip() for c in df.columns]
    return df


# ================================================================== building Interactions
def _encode(raw, id_space: np.ndarray | None = None, what: str = "user", source: str = ""):
    """Dense codes of a raw id column and the id space (``Interactions.from_raw``'s order)."""
    codes, uniques = pd.factorize(np.asarray(raw))
    uniques = np.asarray(uniques).astype(str)
    if id_space is None:
        id_space = _sorted_ids(uniques)
    order = np.argsort(id_space)
    pos = np.clip(np.searchsorted(id_space, uniques, sorter=order), 0, max(len(id_space) - 1, 0))
    found = order[pos] if len(id_space) else np.zeros(len(uniques), dtype=np.int64)
    bad = id_space[found] != uniques if len(id_space) else np.ones(len(uniques), dtype=bool)
    if bad.any():
        raise ValueError(f"{source}: unknown {what} id {uniques[bad][0]!r} (not in the id map)")
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
    with open(path, "rb") as f:
        first = _decode(f.readline()).rstrip("\r\n")
    fields = []
    for col in first.split("\t"):
        name, _, typ = col.strip().partition(":")
        if not name or typ not in _ATOMIC_TYPES:
            raise ValueError(f"{path} line 1: expected a header of tab-separated 'name:type' fields with type "
                             f"in {', '.join(_ATOMIC_TYPES)}, got {col!r}")
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
    try:
        return [float(x) for x in tokens]
    except ValueError:
        raise ValueError(f"{table.path} line {table.lines[row]}: expected numbers separated by spaces "
                         f"in column {name!r}, got {' '.join(tokens)!r}") from None


def _atomic_features(path, key: str, ids: np.ndarray) -> dict:
    table, types = _read_atomic(path)
    table.require([key])
    keys = table.column(key)
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
    (token_seq split on spaces). Entities absent from a side file get None / [] / NaN.
    """
    prefix = str(prefix)
    for ext in (".inter", ".item", ".user"):  # accept the .inter path itself
        if prefix.endswith(ext) and not Path(prefix + ".inter").exists():
            prefix = prefix[: -len(ext)]
    inter_path = Path(prefix + ".inter")
    table, types = _read_atomic(inter_path)
    table.require(["user_id", "item_id"])
    ratings = table.numeric("rating") if "rating" in types else None
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
            table.numeric(cols[2], labels[2]), table.numeric(cols[3], labels[3]))


def _movielens_items(folder: Path, ids: np.ndarray) -> tuple[dict, list[Path]]:
    """``genres``/``title`` from movies.csv, movies.dat or u.item; ``tags`` from tags.csv."""
    feats, used = {}, []
    if (folder / "movies.csv").exists():
        t = _read_delimited(folder / "movies.csv", ",", header=True, quoted=True)
        t.require(["movieId", "title", "genres"])
        keys, titles, genres = t.column("movieId"), t.column("title"), t.column("genres")
        used.append(folder / "movies.csv")
    elif (folder / "movies.dat").exists():
        t = _read_delimited(folder / "movies.dat", "::", n_fields=3)
        keys, titles, genres = t.column(0), t.column(1), t.column(2)
        used.append(folder / "movies.dat")
    elif (folder / "u.item").exists():
        t = _read_delimited(folder / "u.item", "|", n_fields=24)
        names = _ml100k_genre_names(folder)
        flags = np.stack([t.numeric(5 + g, f"genre flag {g}") for g in range(19)], axis=1) > 0
        keys, titles = t.column(0), t.column(1)
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
        keys, gender, age, occ, zips = (t.column(i) for i in range(5))
        occ = [_ML1M_OCCUPATIONS[int(o)] if o.isdigit() and int(o) < len(_ML1M_OCCUPATIONS) else o for o in occ]
    elif (folder / "u.user").exists():
        path = folder / "u.user"
        t = _read_delimited(path, "|", n_fields=5)
        keys, age, gender, occ, zips = (t.column(i) for i in range(5))
    else:
        return {}, []
    ages = t.numeric(2 if path.name == "users.dat" else 1, "age").astype(np.int64).tolist()
    return ({"age": _aligned(ids, keys, ages), "gender": _aligned(ids, keys, gender),
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
def _id_lines(path) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer tokens of a ``head id id ...`` file, the 0-based line of each, and the line count."""
    raw = _read_bytes(path)
    lines = _Lines(raw)
    bad = np.flatnonzero(~_DIGIT_OR_WS[lines.buf])
    if len(bad):
        line = int(lines.line_of(bad[:1])[0]) + 1
        token = next(t for t in _line_text(raw, line, None).split() if not t.isdigit())
        raise ValueError(f"{path} line {line}: expected non-negative integer ids separated by spaces, "
                         f"got {token!r}")
    starts = lines.token_starts()
    values = np.array(raw.split(), dtype=np.int64) if len(starts) else np.zeros(0, dtype=np.int64)
    if len(values) != len(starts):  # cannot happen after the byte check; guard anyway
        raise ValueError(f"{path}: could not parse the integer tokens consistently")
    return values, lines.line_of(starts), lines.n_lines


def _head_and_rest(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(line_users, pair_users, pair_items, pair_position)`` of a ``uid iid iid ...`` file:
    the head of every non-blank line, and one (user, item) pair per further token with its
    position (0, 1, ...) on the line."""
    values, line_of, _ = _id_lines(path)
    is_head = np.concatenate([[True], line_of[1:] != line_of[:-1]]) if len(values) else np.zeros(0, bool)
    head_idx = np.flatnonzero(is_head)
    owner = np.cumsum(is_head) - 1  # which head each token follows
    rest = ~is_head
    position = np.arange(len(values)) - head_idx[owner] - 1
    return values[head_idx], values[head_idx][owner[rest]], values[rest], position[rest]


def load_lightgcn_txt(directory, train_name: str = "train.txt", test_name: str = "test.txt"
                      ) -> tuple[Interactions, Interactions]:
    """NGCF/LightGCN ``train.txt`` and ``test.txt``: ``uid iid iid ...`` per line (0-based,
    space-separated; a line with only the uid is a user without items). Returns
    ``(train, test)`` over one id space: the union of the ids of both files, numeric order."""
    directory = Path(directory)
    train_path, test_path = directory / train_name, directory / test_name
    tr_heads, tr_u, tr_i, _ = _head_and_rest(train_path)
    te_heads, te_u, te_i, _ = _head_and_rest(test_path)
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
    ``timestamps`` = position of the item within the user's sequence (0, 1, ...)."""
    heads, users, items, position = _head_and_rest(path)
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
        weights = t.numeric(2, "weight") if t.df.shape[1] == 3 else None
        src = _source(train_path, test_path) if k == 0 else t.path
        parts.append(_interactions(t.column(0), t.column(1), weights, source=src,
                                   user_ids=user_ids, item_ids=item_ids))
    return parts[0], (parts[1] if len(parts) > 1 else None)


def _pairs_table(path, sep) -> _Table:
    table = _read_delimited(path, sep, min_fields=2)
    if table.df.shape[1] > 3:
        raise ValueError(f"{path} line {table.lines[0]}: expected 2 or 3 {_sep_name(sep)}-separated fields "
                         f"(user item [weight]), got {table.df.shape[1]}")
    return table


# ========================================================================= DiffuRec pickle
class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain data (dicts, lists, ints, str): a data file must not run code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: the file must hold plain data only")


def load_diffurec_pickle(path) -> Interactions:
    """DiffuRec's ``dataset.pkl``: ``{'train': {u: [items]}, 'val': {u: [item]}, 'test': {u: [item]},
    'umap': {raw_user: u}, 'smap': {raw_item: item}}``. Each user's sequence is train + val +
    test; ``timestamps`` = position in it, so leave-one-out gives back the file's val/test.
    Raw ids are the original ones (via ``umap``/``smap``); ``movies.dat``/``users.dat`` beside
    the file add side features as in :func:`load_movielens`."""
    path = Path(path)
    with open(_existing(path), "rb") as f:
        try:
            data = _PlainUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise ValueError(f"{path}: not a DiffuRec dataset pickle: {e}") from None
    for key in ("train", "val", "test"):
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise ValueError(f"{path}: missing key {key!r} (a dict user -> item list)")
    users = sorted(data["train"])
    seqs = [list(data["train"][u]) + list(data["val"].get(u, [])) + list(data["test"].get(u, [])) for u in users]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    user_col = np.repeat(np.asarray(users, dtype=np.int64), lengths)
    item_col = np.fromiter((i for s in seqs for i in s), dtype=np.int64, count=int(lengths.sum()))
    position = np.arange(len(item_col)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    user_col = _to_raw(user_col, data.get("umap"), path, "umap")
    item_col = _to_raw(item_col, data.get("smap"), path, "smap")
    inter = _interactions(user_col, item_col, timestamps=position, source=str(path))
    inter.item_features, item_files = _movielens_items(path.parent, inter.item_ids)
    inter.user_features, user_files = _movielens_users(path.parent, inter.user_ids)
    inter.source = _source(path, *item_files, *user_files)
    return inter


def _to_raw(dense: np.ndarray, raw_to_dense: dict | None, path, key: str) -> np.ndarray:
    """Map the pickle's indices back to the raw ids with the inverse of ``raw_to_dense``."""
    if not raw_to_dense:
        return dense
    inverse = pd.Series(list(raw_to_dense.keys()), index=list(raw_to_dense.values()))
    idx = inverse.index.get_indexer(dense)
    if (idx < 0).any():
        raise ValueError(f"{path}: index {dense[idx < 0][0]} is missing from {key!r}")
    return inverse.to_numpy()[idx]


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


# =================================================================================== tables
def load_table(path, user_col: str, item_col: str, rating_col: str | None = None,
               time_col: str | None = None, sep: str = ",") -> Interactions:
    """A CSV/TSV/Parquet file with a header, chosen by extension (``.parquet``/``.pq`` via
    pandas, needs pyarrow or fastparquet; ``.tsv``/``.tab`` are tab-separated unless ``sep`` says
    otherwise). Columns are picked by name; a missing one is an error listing those present."""
    path = Path(path)
    wanted = [c for c in (user_col, item_col, rating_col, time_col) if c is not None]
    if path.suffix.lower() in (".parquet", ".pq"):
        table = _parquet_table(path)
    else:
        if path.suffix.lower() in (".tsv", ".tab") and sep == ",":
            sep = "\t"
        table = _read_delimited(path, sep, header=True, quoted=True)
    table.require(wanted)
    ratings = None if rating_col is None else table.numeric(rating_col)
    times = None if time_col is None else _time_column(table, time_col)
    return _interactions(table.ids(user_col), table.ids(item_col), ratings, times, str(path))


def _time_column(table: _Table, name: str) -> np.ndarray:
    """Numbers as they are; date-time strings as seconds since the epoch."""
    values = pd.to_numeric(table.df[name], errors="coerce")
    if values.isna().any() and not pd.api.types.is_numeric_dtype(table.df[name]):
        try:
            stamps = pd.to_datetime(table.df[name], errors="raise", utc=True)
            return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        except (ValueError, TypeError):
            pass
    return table.numeric(name)


def _parquet_table(path: Path) -> _Table:
    if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
        raise ImportError(f"{path}: reading Parquet needs pyarrow or fastparquet "
                          "(pip install pyarrow)")
    df = pd.read_parquet(_existing(path))
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].astype(str)
    return _ParquetTable(df, np.arange(1, len(df) + 1), str(path))


class _ParquetTable(_Table):
    """Rows of a Parquet file are named 'row N' instead of 'line N'."""

    def numeric(self, name, label: str | None = None) -> np.ndarray:
        values = pd.to_numeric(self.df[name], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(values))
        if len(bad):
            raise ValueError(f"{self.path} row {bad[0] + 1}: expected a number in column "
                             f"{label or name!r}, got {self.df[name].iloc[bad[0]]!r}")
        return values

    def column(self, name) -> np.ndarray:
        return self.df[name].to_numpy()
