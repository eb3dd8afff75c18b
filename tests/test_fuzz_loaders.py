"""Property-based fuzzing of every loader in :mod:`gcf.data.loaders` (with hypothesis).

Each test draws malformed or hostile inputs for one format -- truncated lines, wrong field
counts, non-numeric ids and ratings, NaN/inf, huge numbers, empty files, BOMs, CRLF and stray
CRs, non-UTF-8 and NUL bytes, repeated or duplicated headers, corrupt Parquet and pickle
files -- writes them to a temporary folder and calls the loader. Every input must end in one
of two ways:

- the loader returns a valid :class:`Interactions` (equal lengths, dense ids in range, unique
  raw ids, finite ratings and timestamps, side features aligned) whose rows are exactly the
  data lines of the file as a plain reference reader splits them: nothing dropped, merged or
  altered;
- or it raises :class:`loaders.DataFormatError` whose message names the file and where in it
  the problem is (line, row, column, key or byte).

Anything else -- an IndexError from numpy, a pandas ParserError, a UnicodeDecodeError, a
pickle error, a silently shortened result -- fails the test and hypothesis prints the input.
Runs are deterministic (``derandomize=True``, no example database). Together the tests try
well over 1,000 inputs; :func:`test_fuzz_count` checks and prints the count.
"""
from __future__ import annotations

import codecs
import collections
import csv
import io
import pickle
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcf.data import loaders
from gcf.data.interactions import Interactions

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TRIED: collections.Counter = collections.Counter()  # inputs tried, per fuzz test
MIN_INPUTS = 1000

# where in the file a DataFormatError must point
WHERE = re.compile(r"\b(line|row|byte) \d+|\b(column|key) '|the file is empty|"
                   r"not a readable Parquet file")


# =========================================================================== contract
def outcome(name: str, load, files):
    """Call ``load()``; return its result, or None after a well-formed DataFormatError.

    Any other exception propagates and fails the test."""
    TRIED[name] += 1
    try:
        return load()
    except loaders.DataFormatError as e:
        msg = str(e)
        assert any(str(f) in msg for f in files), f"the message does not name the file: {msg}"
        assert WHERE.search(msg), f"the message does not say where: {msg}"
        return None


def assert_valid(inter: Interactions) -> None:
    """The invariants every loaded :class:`Interactions` must satisfy."""
    assert isinstance(inter, Interactions)
    n = len(inter.users)
    assert inter.users.dtype == np.int64 and inter.items.dtype == np.int64 and len(inter.items) == n
    assert inter.user_ids.dtype.kind == "U" and inter.item_ids.dtype.kind == "U"
    assert len(set(inter.user_ids.tolist())) == inter.n_users, "raw user ids are not unique"
    assert len(set(inter.item_ids.tolist())) == inter.n_items, "raw item ids are not unique"
    if n:
        assert 0 <= inter.users.min() and inter.users.max() < inter.n_users
        assert 0 <= inter.items.min() and inter.items.max() < inter.n_items
    for col in (inter.ratings, inter.timestamps):
        if col is not None:
            assert len(col) == n and np.isfinite(col).all(), "ratings/timestamps not finite"
    for feats, size in ((inter.user_features, inter.n_users), (inter.item_features, inter.n_items)):
        for name, values in feats.items():
            assert len(values) == size, f"feature {name!r} is not aligned with the ids"


def assert_rows(inter: Interactions, rows: list[list[str]], user: int, item: int,
                rating: int | None = None, time: int | None = None) -> None:
    """The loaded rows are exactly ``rows`` (raw string fields of the reference reader)."""
    assert_valid(inter)
    assert len(inter) == len(rows), f"{len(rows)} data lines, {len(inter)} interactions"
    assert inter.user_ids[inter.users].tolist() == [r[user] for r in rows]
    assert inter.item_ids[inter.items].tolist() == [r[item] for r in rows]
    if rating is not None:
        expected = np.array([float(r[rating]) for r in rows], dtype=np.float32)
        assert np.array_equal(inter.ratings, expected)
    if time is not None:
        numeric = [_number(r[time]) for r in rows]
        if all(v is not None for v in numeric):
            assert np.array_equal(inter.timestamps, np.array(numeric, dtype=np.float64))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# ================================================================== reference readers
def decode(data: bytes) -> str:
    """Text as the loaders read it: a leading UTF-8 BOM dropped, UTF-8 else Latin-1."""
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def reference_rows(data: bytes, sep: str | None) -> list[list[str]]:
    """Fields of every non-blank line, read the plain way: lines end at '\\n' (a '\\r' before
    it is dropped); fields are split on ``sep``, or on runs of spaces/tabs when it is None.
    A line of spaces and tabs only (without ``sep``) is blank."""
    rows = []
    for line in decode(data).split("\n"):
        line = line.removesuffix("\r")
        if line.strip(" \t") == "" and (sep is None or sep not in line):
            continue
        rows.append(re.split(r"[ \t]+", line.strip(" \t")) if sep is None else line.split(sep))
    return rows


def reference_csv_rows(data: bytes, sep: str) -> list[list[str]]:
    """Records of a CSV file with double quotes, as Python's csv module reads them."""
    rows = []
    for rec in csv.reader(io.StringIO(decode(data), newline=""), delimiter=sep):
        if len(rec) > 1 or (rec and rec[0].strip(" \t")):
            rows.append(rec)
    return rows


def reference_id_lines(data: bytes) -> list[list[str]]:
    """Tokens of every non-blank line of a ``head id id ...`` file (ASCII whitespace)."""
    rows = []
    for line in data.removeprefix(codecs.BOM_UTF8).split(b"\n"):
        tokens = line.split()
        if tokens:
            rows.append([str(int(t)) for t in tokens])
    return rows


# ======================================================================== generators
HOSTILE = [
    "", " ", "  ", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "3.5e38", "1e39",
    "abc", "1.5", "-3", "+4", "0x1F", "1_000", "1e3", ".5", "5.", "\u0663", "\u00b2", "9" * 25,
    "18446744073709551616", "9223372036854775808", "9223372036854775807", "00", "007",
    "\x00", "\x001", "\ufeff", "\ufeff1", "\u00a0", "\u2028", "\x85", "\x0b", "\x0c", "\x1c", "\r", "\r\r",
    '"', '"a,b"', '"x""y"', "'", "::", ":", "|", ",", "\t", ";", "NULL", "None", "NaT", "true", "1 2",
    "\u00e9", "\udcff", "\udce9", "\udcc3\udca9", "user_id:token", "userId", "#", "2024-01-01", "2024-02-30",
]
IDS = st.integers(0, 30).map(str)
RATINGS = st.sampled_from(["1", "2", "3.5", "4", "5", "0.5"])
TIMES = st.integers(0, 2_000_000_000).map(str)
WORDS = st.sampled_from(["a", "b c", "Comedy", "x y z", "", "1"])
FLOATS = st.sampled_from(["1", "2.5 3", "", "0.25 1 2"])


def token(valid: st.SearchStrategy, hostile_percent: int = 10) -> st.SearchStrategy:
    """A ``valid`` token, or with ``hostile_percent`` % chance a hostile one or random text."""
    hostile = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=4))
    return st.integers(0, 99).flatmap(lambda k: hostile if k < hostile_percent else valid)


# per file: how often a token is hostile (4 files in 7 are clean, so that loaded values get checked)
HOSTILE_PERCENT = st.sampled_from([0, 0, 0, 0, 2, 5, 20])


def encode(text: str) -> bytes:
    """UTF-8; the escapes \\udc80-\\udcff become single raw (non-UTF-8) bytes."""
    return text.encode("utf-8", "surrogateescape")


@st.composite
def damaged(draw, lines: list[str], header: str | None = None) -> bytes:
    """``lines`` (plus ``header``) as a file, with damage: blank, whitespace-only, repeated,
    truncated and joined lines; a repeated header; CRLF or CR line ends; a BOM; Latin-1
    bytes; a cut at a random byte; NUL bytes; random bytes; an empty file."""
    lines = list(lines)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        kind = draw(st.sampled_from(["blank", "spaces", "header", "cut", "join", "repeat"]))
        at = draw(st.integers(0, len(lines)))
        if kind == "blank":
            lines.insert(at, "")
        elif kind == "spaces":
            lines.insert(at, draw(st.sampled_from([" ", "\t", " \t ", "\x0b", "\r"])))
        elif kind == "header" and header is not None:
            lines.insert(at, header)
        elif kind in ("cut", "join", "repeat") and at < len(lines):
            if kind == "cut":
                lines[at] = lines[at][:draw(st.integers(0, max(len(lines[at]) - 1, 0)))]
            elif kind == "join" and at + 1 < len(lines):
                lines[at:at + 2] = [lines[at] + lines[at + 1]]
            elif kind == "repeat":
                lines.insert(at, lines[at])
    if header is not None:
        lines.insert(0, header)
    eol = draw(st.sampled_from(["\n"] * 8 + ["\r\n"] * 3 + ["\r"]))
    text = eol.join(lines) + draw(st.sampled_from([eol, "", eol + eol]))
    data = encode(text)
    kind = draw(st.sampled_from(["none"] * 14 + ["bom", "bom", "latin1", "cut", "nul", "random", "empty"]))
    if kind == "bom":
        data = codecs.BOM_UTF8 + data
    elif kind == "latin1":
        data = text.encode("latin-1", "replace") + b"\xe9\xff\n"
    elif kind == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif kind == "nul":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\x00" + data[at:]
    elif kind == "random":
        data = draw(st.binary(max_size=60))
    elif kind == "empty":
        data = draw(st.sampled_from([b"", b"\n", b"\r\n", codecs.BOM_UTF8, b" \n\t\n"]))
    return data


@st.composite
def rows_of(draw, columns: list[st.SearchStrategy], max_rows: int = 8) -> list[list[str]]:
    """Rows of tokens, one strategy per column; a few rows lose or gain a field."""
    rows, hostile = [], draw(HOSTILE_PERCENT)
    for _ in range(draw(st.integers(1, max_rows))):
        row = [draw(token(c, hostile)) for c in columns]
        kind = draw(st.integers(0, 19)) if hostile else -1
        if kind == 0 and row:
            row.pop(draw(st.integers(0, len(row) - 1)))
        elif kind == 1:
            row.append(draw(token(IDS)))
        rows.append(row)
    return rows


@st.composite
def delimited(draw, columns, sep: str, header: str | None = None, quote: bool = False) -> bytes:
    """A ``sep``-separated file of rows drawn from ``columns``, damaged by :func:`damaged`;
    with ``quote`` some fields are CSV-quoted."""
    rows = draw(rows_of(columns))
    if quote:
        rows = [[f'"{f}"' if draw(st.integers(0, 5)) == 0 else f for f in row] for row in rows]
    return draw(damaged([sep.join(r) for r in rows], header))


@st.composite
def whitespace_separated(draw, columns) -> bytes:
    """Rows joined by runs of spaces and tabs, damaged by :func:`damaged`."""
    rows = draw(rows_of(columns))
    lines = [draw(st.sampled_from([" ", "\t", "  ", " \t"])).join(r) for r in rows]
    lines = [draw(st.sampled_from(["", "", "", " ", "\t"])) + line for line in lines]
    return draw(damaged(lines))


@st.composite
def id_lines(draw) -> bytes:
    """``head id id ...`` lines (LightGCN, S3-Rec), damaged by :func:`damaged`."""
    lines, hostile = [], draw(HOSTILE_PERCENT)
    for _ in range(draw(st.integers(1, 6))):
        tokens = [draw(token(IDS, hostile)) for _ in range(draw(st.integers(1, 5)))]
        lines.append(draw(st.sampled_from([" ", " ", "\t", "  "])).join(tokens))
    return draw(damaged(lines))


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def folder():
    """A fresh temporary folder per example."""
    return tempfile.TemporaryDirectory(prefix="gcf-fuzz-")


# ============================================================================ atomic
ATOMIC_VALUES = {"token": IDS, "float": RATINGS, "token_seq": WORDS, "float_seq": FLOATS}


@st.composite
def atomic_header(draw) -> list[tuple[str, str]]:
    """``(name, type)`` fields of a ``.inter`` header, now and then damaged."""
    fields = [("user_id", "token"), ("item_id", "token")]
    for extra in (("rating", "float"), ("timestamp", "float"), ("tags", "token_seq"), ("w", "float_seq")):
        if draw(st.booleans()):
            fields.append(extra)
    fields = draw(st.permutations(fields))
    kind = draw(st.sampled_from(["none"] * 12 + ["type", "drop", "duplicate", "empty"]))
    if kind == "type":
        at = draw(st.integers(0, len(fields) - 1))
        fields[at] = (fields[at][0], draw(st.sampled_from(["number", "", "Token", "float "])))
    elif kind == "drop":
        fields.pop(draw(st.integers(0, len(fields) - 1)))
    elif kind == "duplicate":
        fields.append(draw(st.sampled_from(fields)))
    elif kind == "empty":
        fields.append(("", ""))
    return fields


@given(st.data())
@settings(FUZZ, max_examples=200)
def test_fuzz_atomic(data):
    fields = data.draw(atomic_header())
    header = "\t".join(f"{n}:{t}" if n else "" for n, t in fields)
    columns = [ATOMIC_VALUES.get(t, IDS) for _, t in fields]
    inter_bytes = data.draw(delimited(columns, "\t", header=header))
    with folder() as tmp:
        tmp = Path(tmp)
        files = [write(tmp, "d.inter", inter_bytes)]
        if data.draw(st.booleans()):
            side = "item_id:token\tclass:token_seq\tprice:float"
            files.append(write(tmp, "d.item", data.draw(delimited([IDS, WORDS, RATINGS], "\t", header=side))))
        if data.draw(st.integers(0, 3)) == 0:
            side = "user_id:token\tage:float\tgender:token"
            files.append(write(tmp, "d.user", data.draw(delimited([IDS, TIMES, WORDS], "\t", header=side))))
        inter = outcome("atomic", lambda: loaders.load_atomic(tmp / "d"), files)
        if inter is not None:
            rows = reference_rows(inter_bytes, "\t")
            names = [c.strip().partition(":")[0] for c in rows[0]]
            col = {n: k for k, n in enumerate(names)}
            assert_rows(inter, rows[1:], col["user_id"], col["item_id"], col.get("rating"), col.get("timestamp"))


# ========================================================================= MovieLens
TITLES = st.sampled_from(["Heat (1995)", '"Heat, The (1995)"', "X", ""])
GENRES = st.sampled_from(["Action|Comedy", "Drama", "(no genres listed)", ""])
FLAG = st.sampled_from(["0", "1"])
ML_HEADERS = ["userId,movieId,rating,timestamp"] * 6 + [
    "userId,movieId,rating", "userId,userId,rating,timestamp", "movieId,userId,timestamp,rating",
    " userId , movieId ,rating,timestamp", "userId,movieId,rating,timestamp,userId", "userId;movieId;rating"]


@st.composite
def movielens_side_files(draw, kind: str) -> dict[str, bytes]:
    """Side files of the same release as ratings file ``kind`` (each drawn or left out)."""
    files = {}
    if kind == "ratings.csv":
        if draw(st.booleans()):
            files["movies.csv"] = draw(delimited([IDS, TITLES, GENRES], ",", "movieId,title,genres", quote=True))
        if draw(st.integers(0, 3)) == 0:
            files["tags.csv"] = draw(delimited([IDS, IDS, WORDS, TIMES], ",", "userId,movieId,tag,timestamp",
                                               quote=True))
    elif kind == "ratings.dat":
        if draw(st.booleans()):
            files["movies.dat"] = draw(delimited([IDS, TITLES, GENRES], "::"))
        if draw(st.booleans()):
            occupation = st.integers(0, 22).map(str)
            files["users.dat"] = draw(delimited([IDS, st.sampled_from("MF"), IDS, occupation, IDS], "::"))
    else:
        if draw(st.booleans()):
            cols = [IDS, TITLES, st.just("01-Jan-1995"), st.just(""), st.just("http://x")] + [FLAG] * 19
            files["u.item"] = draw(delimited(cols, "|"))
        if draw(st.integers(0, 3)) == 0:
            files["u.genre"] = draw(delimited([WORDS, st.integers(0, 18).map(str)], "|"))
        if draw(st.booleans()):
            files["u.user"] = draw(delimited([IDS, IDS, st.sampled_from("MF"), WORDS, IDS], "|"))
    return files


@pytest.mark.parametrize("kind", ["u.data", "ratings.dat", "ratings.csv"])
@given(data=st.data())
@settings(FUZZ, max_examples=100)
def test_fuzz_movielens(kind, data):
    columns = [IDS, IDS, RATINGS, TIMES]
    if kind == "ratings.csv":
        ratings = data.draw(delimited(columns, ",", data.draw(st.sampled_from(ML_HEADERS)), quote=True))
    else:
        ratings = data.draw(delimited(columns, "\t" if kind == "u.data" else "::"))
    with folder() as tmp:
        tmp = Path(tmp)
        files = [write(tmp, kind, ratings)]
        files += [write(tmp, name, raw) for name, raw in data.draw(movielens_side_files(kind)).items()]
        inter = outcome(f"movielens:{kind}", lambda: loaders.load_movielens(tmp / kind), files)
    if inter is None:
        return
    if kind == "ratings.csv":
        rows = reference_csv_rows(ratings, ",") if b'"' in ratings else reference_rows(ratings, ",")
        col = {name.strip(): k for k, name in enumerate(rows[0])}
        assert_rows(inter, rows[1:], col["userId"], col["movieId"], col["rating"], col["timestamp"])
    else:
        assert_rows(inter, reference_rows(ratings, "\t" if kind == "u.data" else "::"), 0, 1, 2, 3)


# ====================================================================== line formats
@given(st.data())
@settings(FUZZ, max_examples=130)
def test_fuzz_lightgcn_txt(data):
    train_bytes, test_bytes = data.draw(id_lines()), data.draw(id_lines())
    with folder() as tmp:
        tmp = Path(tmp)
        files = [write(tmp, "train.txt", train_bytes), write(tmp, "test.txt", test_bytes)]
        result = outcome("lightgcn_txt", lambda: loaders.load_lightgcn_txt(tmp), files)
    if result is None:
        return
    lines = [reference_id_lines(train_bytes), reference_id_lines(test_bytes)]
    heads = {line[0] for part in lines for line in part}
    for inter, part in zip(result, lines):
        rows = [[line[0], i] for line in part for i in line[1:]]
        assert_rows(inter, rows, 0, 1)
        assert set(inter.user_ids.tolist()) == heads  # users without items are kept
    assert np.array_equal(result[0].item_ids, result[1].item_ids)


@given(st.data())
@settings(FUZZ, max_examples=110)
def test_fuzz_sequence_lines(data):
    raw = data.draw(id_lines())
    with folder() as tmp:
        path = write(Path(tmp), "Beauty.txt", raw)
        inter = outcome("sequence_lines", lambda: loaders.load_sequence_lines(path), [path])
    if inter is None:
        return
    lines = reference_id_lines(raw)
    rows = [[line[0], item, str(k)] for line in lines for k, item in enumerate(line[1:])]
    assert_rows(inter, rows, 0, 1, time=2)
    assert len({line[0] for line in lines}) == len(lines), "a user with two sequences was accepted"


SEPARATORS = st.sampled_from([None, "\t", ","])


@st.composite
def pairs_file(draw, sep: str | None, weights: bool) -> bytes:
    columns = [IDS, IDS, RATINGS] if weights else [IDS, IDS]
    return draw(whitespace_separated(columns) if sep is None else delimited(columns, sep))


@given(st.data())
@settings(FUZZ, max_examples=140)
def test_fuzz_pairs_txt(data):
    sep = data.draw(SEPARATORS)
    train_bytes = data.draw(pairs_file(sep, data.draw(st.booleans())))
    test_bytes = data.draw(st.none() | pairs_file(sep, data.draw(st.booleans())))
    with folder() as tmp:
        tmp = Path(tmp)
        files = [write(tmp, "data1.txt", train_bytes)]
        if test_bytes is not None:
            files.append(write(tmp, "test1.txt", test_bytes))
        result = outcome("pairs_txt", lambda: loaders.load_pairs_txt(*files, sep=sep), files)
    if result is None:
        return
    for inter, raw in zip(result, (train_bytes, test_bytes)):
        if raw is not None:
            rows = reference_rows(raw, sep)
            assert_rows(inter, rows, 0, 1, 2 if len(rows[0]) == 3 else None)
    assert (result[1] is None) == (test_bytes is None)


@given(st.data())
@settings(FUZZ, max_examples=110)
def test_fuzz_sequence_pairs(data):
    sep = data.draw(SEPARATORS)
    raw = data.draw(pairs_file(sep, weights=False))
    with folder() as tmp:
        path = write(Path(tmp), "beauty.txt", raw)
        inter = outcome("sequence_pairs", lambda: loaders.load_sequence_pairs(path, sep=sep), [path])
    if inter is None:
        return
    rows, seen = [], collections.Counter()
    for user, item in reference_rows(raw, sep):
        rows.append([user, item, str(seen[user])])
        seen[user] += 1
    assert_rows(inter, rows, 0, 1, time=2)


# =========================================================================== tables
TABLE_HEADERS = ["user,item,score,ts"] * 8 + ["item,user,ts,score", "user,item,score", "user,user,score,ts",
                                              "user,item,score,ts,", ",,,"]
DATES = st.sampled_from(["2024-01-01", "2024-01-02 10:00:00", "2023-12-31T23:59:59"])


@given(st.data())
@settings(FUZZ, max_examples=140)
def test_fuzz_table_csv(data):
    ext = data.draw(st.sampled_from([".csv", ".tsv"]))
    sep = "," if ext == ".csv" else "\t"
    header = data.draw(st.sampled_from(TABLE_HEADERS)).replace(",", sep)
    stamps = data.draw(st.sampled_from([TIMES, DATES]))
    raw = data.draw(delimited([IDS, IDS, RATINGS, stamps], sep, header, quote=True))
    with folder() as tmp:
        path = write(Path(tmp), "x" + ext, raw)
        inter = outcome("table_csv", lambda: loaders.load_table(path, "user", "item", "score", "ts"), [path])
    if inter is None:
        return
    rows = reference_csv_rows(raw, sep) if b'"' in raw else reference_rows(raw, sep)
    col = {name.strip(): k for k, name in enumerate(rows[0])}
    assert_rows(inter, rows[1:], col["user"], col["item"], col["score"], col["ts"])
    stamps = [r[col["ts"]] for r in rows[1:]]
    if all(_number(t) is None for t in stamps):  # date-times: seconds since the epoch
        assert inter.timestamps.tolist() == [pd.Timestamp(t, tz="UTC").timestamp() for t in stamps]


PARQUET_VALUES = {
    "int": st.integers(-5, 30),
    "big": st.sampled_from([2 ** 63 - 1, -(2 ** 63), 0]),
    "float": st.sampled_from([1.0, 2.5, float("nan"), float("inf"), -float("inf"), 1e39, 7.0]),
    "str": st.one_of(IDS, st.sampled_from(["", " ", "nan", "None", "\x00", "\u00e9", "2024-01-01"])),
    "optional_str": st.one_of(IDS, st.none()),
    "bool": st.booleans(),
    "datetime": st.sampled_from([pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02 10:00"), pd.NaT]),
}


@st.composite
def parquet_bytes(draw) -> bytes:
    """A Parquet file with columns uid, iid, stars, when of drawn types, sometimes damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = draw(st.integers(0, 6))
    names = ["uid", "iid", "stars", "when"]
    kind = draw(st.sampled_from(["none"] * 6 + ["rename", "duplicate", "cut", "flip", "random", "empty"]))
    if kind == "rename":
        names[draw(st.integers(0, 3))] = "other"
    elif kind == "duplicate":
        names[1] = "uid"
    columns = []
    for _ in names:
        values = draw(st.lists(PARQUET_VALUES[draw(st.sampled_from(sorted(PARQUET_VALUES)))], min_size=n, max_size=n))
        columns.append(pa.array(pd.Series(values, dtype=object), from_pandas=True)
                       if values and isinstance(values[0], pd.Timestamp) else pa.array(values, from_pandas=True))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(columns, names=names), buf)
    raw = buf.getvalue()
    if kind == "cut":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:]
    elif kind == "random":
        raw = b"PAR1" + draw(st.binary(max_size=40)) + b"PAR1"
    elif kind == "empty":
        raw = b""
    return raw


@given(st.data())
@settings(FUZZ, max_examples=100)
def test_fuzz_table_parquet(data):
    pytest.importorskip("pyarrow")
    raw = data.draw(parquet_bytes())
    with folder() as tmp:
        path = write(Path(tmp), "x.parquet", raw)
        inter = outcome("table_parquet", lambda: loaders.load_table(path, "uid", "iid", "stars", "when"), [path])
        if inter is None:
            return
        df = pd.read_parquet(path)
    assert_valid(inter)
    assert len(inter) == len(df)
    for ids, col in ((inter.user_ids[inter.users], "uid"), (inter.item_ids[inter.items], "iid")):
        assert ids.tolist() == [parquet_id(v) for v in df[col]]
    assert np.array_equal(inter.ratings, df["stars"].to_numpy(dtype=np.float32))


def parquet_id(value) -> str:
    """The raw id a Parquet cell must give: integral floats as integers."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ==================================================================== DiffuRec pickle
ITEM = st.integers(0, 9).flatmap(lambda k: st.integers(1, 20) if k else st.sampled_from(
    [-1, 0, 2 ** 63, 2 ** 70, 1.5, "3", None, True, [1], b"\x01"]))
USER = st.integers(0, 9).flatmap(lambda k: st.integers(0, 8) if k else st.sampled_from(
    ["u1", None, 2 ** 70, 1.5, (1, 2), False, -3]))
SEQUENCE = st.integers(0, 14).flatmap(lambda k: st.lists(ITEM, max_size=5) if k else st.sampled_from(
    [5, "12", None, {1: 2}, (1, 2), b"\x01\x02"]))


@st.composite
def diffurec_data(draw):
    """The dict of a DiffuRec ``dataset.pkl``, now and then damaged."""
    train = draw(st.dictionaries(USER, SEQUENCE, max_size=5))
    users = list(train)
    data = {"train": train,
            "val": {u: draw(st.lists(ITEM, max_size=1)) for u in users if draw(st.booleans())},
            "test": {u: draw(st.lists(ITEM, max_size=1)) for u in users if draw(st.booleans())}}
    if draw(st.booleans()):
        data["umap"] = {f"U{u}": u for u in users}
    if draw(st.booleans()):
        items = {i for part in ("train", "val", "test") for seq in data[part].values()
                 if isinstance(seq, list) for i in seq if isinstance(i, int)}
        data["smap"] = {f"M{i}": i for i in items}
    kind = draw(st.sampled_from(["none"] * 6 + ["drop", "retype", "extra_user", "map_dup", "map_miss",
                                                 "map_type", "map_same_raw", "map_odd_raw", "top"]))
    if kind == "drop":
        data.pop(draw(st.sampled_from(["train", "val", "test", "umap", "smap"])), None)
    elif kind == "retype":
        data[draw(st.sampled_from(["train", "val", "test", "umap"]))] = draw(st.sampled_from([[1, 2], "x", None, 3]))
    elif kind == "extra_user":
        data[draw(st.sampled_from(["val", "test"]))][99] = [1]
    elif kind == "map_dup" and data.get("umap"):
        data["umap"]["dup"] = next(iter(data["umap"].values()))
    elif kind == "map_miss" and data.get("smap"):
        data["smap"].popitem()
    elif kind == "map_type" and data.get("umap"):
        data["umap"]["bad"] = draw(st.sampled_from(["1", 1.5, None, 2 ** 70]))
    elif kind == "map_odd_raw" and data.get("smap"):  # raw ids that are not plain strings
        raw = draw(st.sampled_from([None, float("nan"), (1, 2), 1.5, True, "", "a\x00"]))
        data["smap"][raw] = data["smap"].pop(next(iter(data["smap"])))
    elif kind == "map_same_raw":
        data["smap"] = {1: 1, "1": 2, **{str(i + 3): i + 3 for i in range(20)}}
    elif kind == "top":
        data = draw(st.sampled_from([[data], "train", None, 42, {}]))
    return data


HOSTILE_PICKLES = [
    b"", b"\x80", b"\x80\x04\x95", b"\x80\x05\x95\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"\x80\x04\x8e" + (2 ** 62).to_bytes(8, "little"),  # BINBYTES8 claiming 4 EiB
    b"\x80\x04B\xff\xff\xff\x7f", b"cos\nsystem\n(S'true'\ntR.", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00",
    b"L" + b"9" * 5000 + b"L\n.", b"(" * 1000 + b".", b"]" * 1000 + b".", b"}q\x00h\x01.", b"K\x01K\x02s.",
    b"\x80\x02}q\x00(X\x05\x00\x00\x00trainq\x01}q\x02K\x01]q\x03(K\x01K\x02eesu.",
    pickle.dumps({"train": {1: [1]}, "val": {}, "test": {}}, protocol=0)[:-3],
]


@st.composite
def pickle_bytes(draw) -> tuple[bytes, object]:
    """Pickle bytes and the object they hold (None when damaged beyond a plain load)."""
    kind = draw(st.sampled_from(["plain"] * 6 + ["cut", "flip", "random", "hostile"]))
    if kind == "hostile":
        return draw(st.sampled_from(HOSTILE_PICKLES)), None
    if kind == "random":
        return draw(st.sampled_from([b"", b"\x80\x04", b"\x80\x02"])) + draw(st.binary(max_size=60)), None
    obj = draw(diffurec_data())
    raw = pickle.dumps(obj, protocol=draw(st.integers(0, 5)))
    if kind == "cut":
        return raw[:draw(st.integers(0, len(raw) - 1))], None
    if kind == "flip":
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1:], None
    return raw, obj


@given(pickle_bytes())
@settings(FUZZ, max_examples=200)
def test_fuzz_diffurec_pickle(case):
    raw, obj = case
    with folder() as tmp:
        path = write(Path(tmp), "dataset.pkl", raw)
        inter = outcome("diffurec_pickle", lambda: loaders.load_diffurec_pickle(path), [path])
    if inter is None:
        return
    assert_valid(inter)
    if obj is None:
        return
    umap = {v: k for k, v in (obj.get("umap") or {}).items()}
    smap = {v: k for k, v in (obj.get("smap") or {}).items()}
    rows = []
    for u in sorted(obj["train"]):
        seq = obj["train"][u] + obj["val"].get(u, []) + obj["test"].get(u, [])
        rows += [[str(umap.get(u, u)), str(smap.get(i, i)), str(k)] for k, i in enumerate(seq)]
    assert_rows(inter, rows, 0, 1, time=2)


# ============================================================================= count
FUZZ_TESTS = {"atomic", "movielens:u.data", "movielens:ratings.dat", "movielens:ratings.csv", "lightgcn_txt",
              "sequence_lines", "pairs_txt", "sequence_pairs", "table_csv", "table_parquet", "diffurec_pickle"}


def test_fuzz_count(capsys):
    """Runs last (file order): the fuzz tests above tried at least MIN_INPUTS inputs."""
    missing = FUZZ_TESTS - set(TRIED)
    if missing:
        pytest.skip(f"not every fuzz test ran (missing: {', '.join(sorted(missing))})")
    total = sum(TRIED.values())
    with capsys.disabled():
        detail = ", ".join(f"{name} {n}" for name, n in sorted(TRIED.items()))
        print(f"\nloader fuzzing: {total} inputs tried ({detail})")
    assert total >= MIN_INPUTS
