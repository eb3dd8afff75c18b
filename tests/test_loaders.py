"""Loaders and named datasets on the real files, malformed input, and the download path."""
from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gcf.data import datasets, loaders
from gcf.data.interactions import Interactions
from gcf.data.split import leave_one_out

EMBEDDED = Path(loaders.__file__).resolve().parent / "ml-latest-small"
DATA = Path(os.environ.get("GCF_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not (DATA / "ml-100k").is_dir(), reason=f"real datasets not found in {DATA}")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------ embedded default
def test_embedded_ml_latest_small():
    inter = loaders.load_movielens(EMBEDDED / "ratings.csv")
    assert (inter.n_users, inter.n_items, len(inter)) == (610, 9724, 100836)
    assert inter.ratings.min() == 0.5 and inter.ratings.max() == 5.0
    toy = inter.item_map()["1"]
    assert inter.item_features["title"][toy] == "Toy Story (1995)"
    assert inter.item_features["genres"][toy] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert "pixar" in inter.item_features["tags"][toy]
    assert len(inter.item_features["genres"]) == inter.n_items
    assert (EMBEDDED / "README.txt").is_file()


def test_load_dataset_embedded_without_data_dir(monkeypatch):
    monkeypatch.delenv("GCF_DATA_DIR", raising=False)
    inter, test = datasets.load_dataset("ml-latest-small")
    assert test is None and len(inter) == 100836
    assert str(EMBEDDED / "ratings.csv") in inter.source


def test_fast_remap_matches_from_raw():
    inter = loaders.load_movielens(EMBEDDED / "ratings.csv")
    raw_u, raw_i = inter.user_ids[inter.users], inter.item_ids[inter.items]
    ref = Interactions.from_raw(raw_u, raw_i)
    assert np.array_equal(ref.users, inter.users) and np.array_equal(ref.items, inter.items)
    assert np.array_equal(ref.item_ids, inter.item_ids)


# ------------------------------------------------------------------ real datasets
@needs_data
def test_ml100k_atomic():  # load times: benchmarks/bench_loaders.py
    inter = loaders.load_atomic(DATA / "ml-100k" / "ml-100k")
    assert (inter.n_users, inter.n_items, len(inter)) == (943, 1682, 100000)
    toy = inter.item_map()["1"]
    assert inter.item_features["class"][toy] == ["Animation", "Children's", "Comedy"]
    assert inter.user_features["occupation"][inter.user_map()["1"]] == "technician"
    assert inter.timestamps is not None and inter.ratings.max() == 5


@needs_data
def test_gowalla_lightgcn_txt():
    train, test = loaders.load_lightgcn_txt(DATA / "gowalla")
    assert (train.n_users, train.n_items) == (29858, 40981)
    assert (test.n_users, test.n_items) == (29858, 40981)
    assert (len(train), len(test)) == (810128, 217242)
    assert train.user_ids[0] == "0" and train.item_ids[-1] == "40980"  # 0-based ids kept in place
    assert np.array_equal(train.users, train.user_ids[train.users].astype(int))


@needs_data
def test_lastfm_pairs_txt():
    train, test = loaders.load_pairs_txt(DATA / "lastfm" / "data1.txt", DATA / "lastfm" / "test1.txt")
    assert (len(train), len(test)) == (42135, 10533)
    assert (train.n_users, train.n_items) == (1880, 4489)
    assert test.n_items == train.n_items and train.ratings is not None


@needs_data
def test_beauty_sequence_lines():
    inter = loaders.load_sequence_lines(DATA / "amazon-beauty" / "s3rec" / "Beauty.txt")
    assert (inter.n_users, inter.n_items, len(inter)) == (22363, 12101, 198502)
    u = inter.user_map()["1"]  # first line: "1 1 2 3 4 5"
    rows = inter.users == u
    assert list(inter.item_ids[inter.items[rows]]) == ["1", "2", "3", "4", "5"]
    assert list(inter.timestamps[rows]) == [0, 1, 2, 3, 4]


@needs_data
def test_ml1m_diffurec_pickle():
    inter = loaders.load_diffurec_pickle(DATA / "ml-1m" / "dataset.pkl")
    assert (inter.n_users, inter.n_items, len(inter)) == (6040, 3706, 1000209)
    assert inter.item_features["genres"][inter.item_map()["1"]] == ["Animation", "Children's", "Comedy"]
    assert inter.user_features["gender"][inter.user_map()["1"]] == "F"
    split = leave_one_out(inter)  # gives back the pickle's own val/test
    assert len(split.test) == 6040 and len(split.valid) == 6040


@needs_data
def test_named_datasets_from_data_dir():
    inter, test = datasets.load_dataset("ml-100k", DATA)
    assert test is None and len(inter) == 100000
    train, test = datasets.load_dataset("lastfm", DATA)
    assert len(test) == 10533
    inter, _ = datasets.load_dataset("beauty", DATA)
    assert len(inter) == 198502


# ------------------------------------------------------------------ named-dataset errors
def test_dataset_config_and_unknown_name():
    cfg = datasets.dataset_config("gowalla")
    assert cfg["format"] == "lightgcn_txt" and cfg["split"] == "fixed"
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'.*known datasets: .*ml-100k"):
        datasets.load_dataset("nope")


def test_missing_files_name_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv("GCF_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"needs a data directory.*GCF_DATA_DIR"):
        datasets.load_dataset("gowalla")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "gowalla" / "train.txt"))):
        datasets.load_dataset("gowalla", tmp_path)
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'bogus'"):
        datasets.load_dataset("ml-latest-small", bogus=1)


def test_load_dataset_override_path(tmp_path):
    write(tmp_path / "r.csv", "user,item\na,x\nb,y\n")
    inter, _ = datasets.load_dataset("ml-latest-small", tmp_path, format="table", path="r.csv",
                                     user_col="user", item_col="item")
    assert (inter.n_users, inter.n_items) == (2, 2)


# ------------------------------------------------------------------ malformed lines
def test_atomic_wrong_field_count(tmp_path):
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    write(tmp_path / "d.inter", header + "1\t2\t3\t4\n\n1\t3\t4\t5\n2\t3\t4\n")
    with pytest.raises(ValueError, match=r"d\.inter line 5: expected 4 tab-separated fields, got 3"):
        loaders.load_atomic(tmp_path / "d")


def test_atomic_non_numeric_rating(tmp_path):
    header = "user_id:token\titem_id:token\trating:float\n"
    write(tmp_path / "d.inter", header + "1\t2\t3\n1\t3\tgood\n")
    with pytest.raises(ValueError, match=r"d\.inter line 3: expected a number in column 'rating', got 'good'"):
        loaders.load_atomic(tmp_path / "d")


def test_atomic_missing_column_and_bad_header(tmp_path):
    write(tmp_path / "d.inter", "user_id:token\tthing:token\n1\t2\n")
    with pytest.raises(ValueError, match=r"d\.inter: missing required column 'item_id'"):
        loaders.load_atomic(tmp_path / "d")
    write(tmp_path / "e.inter", "user_id:token\titem_id:number\n1\t2\n")
    with pytest.raises(ValueError, match=r"e\.inter line 1: expected a header"):
        loaders.load_atomic(tmp_path / "e")


def test_atomic_side_features_absent_entities(tmp_path):
    write(tmp_path / "d.inter", "user_id:token\titem_id:token\n1\ta\n2\tb\n")
    write(tmp_path / "d.item", "item_id:token\tclass:token_seq\tprice:float\na\tx y\t2.5\n")
    inter = loaders.load_atomic(tmp_path / "d")
    assert inter.item_features["class"] == [["x", "y"], []]
    assert inter.item_features["price"][0] == 2.5 and np.isnan(inter.item_features["price"][1])


def test_movielens_dat_bad_line(tmp_path):
    write(tmp_path / "ratings.dat", "1::10::5::978300760\n1::11::4::978300761\n2::12::3\n")
    with pytest.raises(ValueError, match=r"ratings\.dat line 3: expected 4 '::'-separated fields, got 3"):
        loaders.load_movielens(tmp_path / "ratings.dat")


def test_movielens_csv_non_numeric_rating_and_quotes(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.5,1\n\n1,11,five,2\n")
    with pytest.raises(ValueError, match=r"ratings\.csv line 4: expected a number in column 'rating', got 'five'"):
        loaders.load_movielens(tmp_path / "ratings.csv")
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.5,1\n2,11,3,2\n")
    write(tmp_path / "movies.csv", 'movieId,title,genres\n10,"Heat, The (1995)",Action|Crime\n')
    inter = loaders.load_movielens(tmp_path)
    assert inter.item_features["title"] == ["Heat, The (1995)", None]
    assert inter.item_features["genres"] == [["Action", "Crime"], []]


def test_lightgcn_txt_bad_token(tmp_path):
    write(tmp_path / "train.txt", "0 1 2\n1 2\n2 3 x4 5\n")
    write(tmp_path / "test.txt", "0 3\n3\n")
    with pytest.raises(ValueError, match=r"train\.txt line 3: expected non-negative integer ids.*'x4'"):
        loaders.load_lightgcn_txt(tmp_path)
    write(tmp_path / "train.txt", "0 1 2\n1 2\n2 3 4 5\n")
    train, test = loaders.load_lightgcn_txt(tmp_path)
    assert train.n_users == 4 and len(train) == 6 and len(test) == 1  # user 3 has no items


def test_pairs_txt_crlf_and_bad_line(tmp_path):
    write(tmp_path / "a.txt", "1\t10\t5\r\n2\t11\t3\r\n")
    write(tmp_path / "b.txt", "3\t12\t1\r\n")
    train, test = loaders.load_pairs_txt(tmp_path / "a.txt", tmp_path / "b.txt")
    assert train.n_users == test.n_users == 3 and list(train.ratings) == [5, 3]
    write(tmp_path / "c.txt", "1\t10\t5\r\n2\t11\tlots\r\n")
    with pytest.raises(ValueError, match=r"c\.txt line 2: expected a number in column 'weight', got 'lots'"):
        loaders.load_pairs_txt(tmp_path / "c.txt")
    write(tmp_path / "d.txt", "1 10\n2 11\n3\n")
    with pytest.raises(ValueError, match=r"d\.txt line 3: expected 2 whitespace-separated fields, got 1"):
        loaders.load_pairs_txt(tmp_path / "d.txt")


def test_sequence_pairs_positions(tmp_path):
    write(tmp_path / "s.txt", "1 5\n1 3\n2 3\n1 9\n")
    inter = loaders.load_sequence_pairs(tmp_path / "s.txt")
    assert list(inter.timestamps) == [0, 1, 0, 2]
    split = leave_one_out(inter)
    assert list(split.test.item_ids[split.test.items]) == ["9"]  # user 2 has one row: stays in train
    write(tmp_path / "t.txt", "1 5\n1 3 4\n")
    with pytest.raises(ValueError, match=r"t\.txt line 2: expected 2 whitespace-separated fields, got 3"):
        loaders.load_sequence_pairs(tmp_path / "t.txt")


def test_table_missing_column_and_bad_value(tmp_path):
    write(tmp_path / "x.csv", "user,item,score\na,b,1\n")
    with pytest.raises(ValueError, match=r"x\.csv: missing required column 'rating'; columns present: user, item, score"):
        loaders.load_table(tmp_path / "x.csv", "user", "item", rating_col="rating")
    write(tmp_path / "y.tsv", "user\titem\tscore\tts\na\tb\t1\t2024-01-01\nc\td\t2\t2024-01-02\n")
    inter = loaders.load_table(tmp_path / "y.tsv", "user", "item", "score", "ts")
    assert inter.timestamps[1] - inter.timestamps[0] == 86400
    write(tmp_path / "z.csv", 'user,item,score\na,"b,c",1\nd,e,\n')
    with pytest.raises(ValueError, match=r"z\.csv line 3: expected a number in column 'score', got ''"):
        loaders.load_table(tmp_path / "z.csv", "user", "item", "score")


def test_table_parquet_round_trip_and_errors(tmp_path):
    pytest.importorskip("pyarrow")  # installed by the dev extra
    df = pd.DataFrame({"uid": [7, 7, 9], "iid": ["a", "b", "a"], "stars": [4.0, 2.5, 5.0],
                       "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"])})
    df.to_parquet(tmp_path / "x.parquet")
    inter = loaders.load_table(tmp_path / "x.parquet", "uid", "iid", "stars", "when")
    assert inter.n_users == 2 and inter.n_items == 2 and list(inter.ratings) == [4.0, 2.5, 5.0]
    assert list(inter.user_ids[inter.users]) == ["7", "7", "9"]
    assert inter.timestamps[1] - inter.timestamps[0] == 86400
    with pytest.raises(ValueError, match=r"x\.parquet: missing required column 'rating'"):
        loaders.load_table(tmp_path / "x.parquet", "uid", "iid", "rating")
    df.assign(stars=["4", "bad", "5"]).to_parquet(tmp_path / "y.parquet")
    with pytest.raises(ValueError, match=r"y\.parquet row 2: expected a number in column 'stars', got 'bad'"):
        loaders.load_table(tmp_path / "y.parquet", "uid", "iid", "stars")


def test_table_parquet_without_engine_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    path = write(tmp_path / "x.parquet", "")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match=r"x\.parquet: reading Parquet needs pyarrow"):
        loaders.load_table(path, "user", "item")


# ------------------------------------------------- hostile input (found by test_fuzz_loaders.py)
def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf)
    return buf.getvalue()


BAD_INPUTS = [  # (id, files, load(folder), message): each must raise DataFormatError naming file and place
    ("stray CR", {"p.txt": b"1 2\r3 4\r"}, lambda d: loaders.load_pairs_txt(d / "p.txt"),
     r"p\.txt line 1: carriage return"),
    ("vertical tab between fields", {"s.txt": b"1\x0b2\n"}, lambda d: loaders.load_sequence_pairs(d / "s.txt"),
     r"s\.txt line 1: expected 2 whitespace-separated fields, got 1"),
    ("csv field over the csv module's limit", {"x.csv": b'u,i\n"' + b"a" * 140000 + b'",1\n'},
     lambda d: loaders.load_table(d / "x.csv", "u", "i"), r"x\.csv line 2: field larger than field limit"),
    ("id beyond int64", {"train.txt": b"0 18446744073709551616\n", "test.txt": b"0 1\n"},
     loaders.load_lightgcn_txt, r"train\.txt line 1: id '18446744073709551616' is larger than"),
    ("non-ASCII digit", {"train.txt": "0 1 \u00b2\n".encode(), "test.txt": b"0 1\n"},
     loaders.load_lightgcn_txt, r"train\.txt line 1: expected non-negative integer ids.*'\u00b2'"),
    ("user on two lines", {"B.txt": b"1 5 6\n1 7\n"}, lambda d: loaders.load_sequence_lines(d / "B.txt"),
     r"B\.txt line 2: user 1 already has a sequence on line 1"),
    ("empty sequence file", {"B.txt": b"\n"}, lambda d: loaders.load_sequence_lines(d / "B.txt"),
     r"B\.txt: the file is empty"),
    ("empty date-time", {"x.csv": b"u,i,ts\na,b,2024-01-01\nc,d,\n"},
     lambda d: loaders.load_table(d / "x.csv", "u", "i", time_col="ts"),
     r"x\.csv line 3: expected a date-time in column 'ts'"),
    ("infinite rating", {"u.data": b"1\t10\tinf\t1\n"}, lambda d: loaders.load_movielens(d / "u.data"),
     r"u\.data line 1: expected a number in column 'rating', got 'inf'"),
    ("rating beyond float32", {"u.data": b"1\t10\t1e39\t1\n"}, lambda d: loaders.load_movielens(d / "u.data"),
     r"u\.data line 1: .*got '1e39' \(too large for float32\)"),
    ("id with a NUL", {"u.data": b"1\t10\t5\t1\n1\x00\t11\t4\t2\n"}, lambda d: loaders.load_movielens(d / "u.data"),
     r"u\.data line 2: 'user' id '1\\x00' holds a NUL character"),
    ("id with spaces", {"u.data": b"1 \t10\t5\t1\n"}, lambda d: loaders.load_movielens(d / "u.data"),
     r"u\.data line 1: 'user' id '1 ' has spaces around it"),
    ("duplicate column", {"ratings.csv": b"userId,movieId,rating,timestamp, userId\n1,10,4,1,2\n"},
     lambda d: loaders.load_movielens(d / "ratings.csv"), r"ratings\.csv line 1: duplicate column 'userId'"),
    ("duplicate atomic column", {"d.inter": b"user_id:token\titem_id:token\tuser_id:token\n1\t2\t3\n"},
     lambda d: loaders.load_atomic(d / "d"), r"d\.inter line 1: duplicate column 'user_id'"),
    ("header repeated", {"d.inter": b"user_id:token\titem_id:token\n1\t2\nuser_id:token\titem_id:token\n"},
     lambda d: loaders.load_atomic(d / "d"), r"d\.inter line 3: the header line repeated"),
    ("tab in a .dat file", {"ratings.dat": b"1\t10::5::1\n"}, lambda d: loaders.load_movielens(d / "ratings.dat"),
     r"ratings\.dat line 1: a tab in a '::'-separated file"),
    ("fractional age", {"ratings.dat": b"1::10::5::1\n", "users.dat": b"1::F::2.5::1::12345\n"},
     lambda d: loaders.load_movielens(d / "ratings.dat"),
     r"users\.dat line 1: expected a whole number in column 'age'"),
    ("side-file key twice", {"d.inter": b"user_id:token\titem_id:token\n1\ta\n",
                             "d.item": b"item_id:token\tprice:float\na\t1\na\t2\n"},
     lambda d: loaders.load_atomic(d / "d"), r"d\.item line 3: 'item_id' id 'a' is listed twice"),
    ("NaN in float_seq", {"d.inter": b"user_id:token\titem_id:token\n1\ta\n",
                          "d.item": b"item_id:token\tw:float_seq\na\t1 nan\n"},
     lambda d: loaders.load_atomic(d / "d"), r"d\.item line 2: expected numbers .* got '1 nan'"),
    ("corrupt Parquet", {"x.parquet": b"PAR1garbagePAR1"}, lambda d: loaders.load_table(d / "x.parquet", "u", "i"),
     r"x\.parquet: not a readable Parquet file"),
    ("damaged pickle", {"p.pkl": b"]K\x01K\x02s."}, lambda d: loaders.load_diffurec_pickle(d / "p.pkl"),
     r"p\.pkl byte \d+: not a pickle of plain data \(IndexError"),
    ("pickle length field of 4 EiB", {"p.pkl": b"\x80\x04\x8e" + (2 ** 62).to_bytes(8, "little")},
     lambda d: loaders.load_diffurec_pickle(d / "p.pkl"), r"p\.pkl byte \d+: not a pickle of plain data"),
    ("float item in pickle", {"p.pkl": pickle.dumps({"train": {1: [1.5]}, "val": {}, "test": {}})},
     lambda d: loaders.load_diffurec_pickle(d / "p.pkl"), r"key 'train': user 1: item 1\.5 is not an integer index"),
    ("val user without train", {"p.pkl": pickle.dumps({"train": {1: [1]}, "val": {2: [3]}, "test": {}})},
     lambda d: loaders.load_diffurec_pickle(d / "p.pkl"), r"key 'val': user 2 has no 'train' sequence"),
    ("umap index twice", {"p.pkl": pickle.dumps({"train": {1: [1]}, "val": {}, "test": {}, "umap": {"a": 1, "b": 1}})},
     lambda d: loaders.load_diffurec_pickle(d / "p.pkl"), r"key 'umap': index 1 appears more than once"),
    ("smap raw ids 1 and '1'",
     {"p.pkl": pickle.dumps({"train": {1: [1, 2]}, "val": {}, "test": {}, "smap": {1: 1, "1": 2}})},
     lambda d: loaders.load_diffurec_pickle(d / "p.pkl"), r"key 'smap': raw id \(as text\) '1' appears more than once"),
    ("data after the pickle", {"p.pkl": pickle.dumps({"train": {}, "val": {}, "test": {}}) + b"junk"},
     lambda d: loaders.load_diffurec_pickle(d / "p.pkl"), r"p\.pkl byte \d+: unexpected data after the end"),
]


@pytest.mark.parametrize("files, load, message", [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_hostile_input_raises_data_format_error(tmp_path, files, load, message):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(loaders.DataFormatError, match=message):
        load(tmp_path)


def test_bom_is_dropped(tmp_path):
    write(tmp_path / "d.inter", "\ufeffuser_id:token\titem_id:token\n1\t2\n")
    assert loaders.load_atomic(tmp_path / "d").user_ids.tolist() == ["1"]
    (tmp_path / "u.data").write_bytes(b"\xef\xbb\xbf1\t10\t5\t1\n1\t11\t4\t2\n")
    assert loaders.load_movielens(tmp_path / "u.data").user_ids.tolist() == ["1"]  # not '\ufeff1' and '1'


def test_parquet_ids_nulls_and_whole_floats(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "a.parquet").write_bytes(_parquet(pd.DataFrame({"u": [7.0, 9.0], "i": ["x", "y"]})))
    assert loaders.load_table(tmp_path / "a.parquet", "u", "i").user_ids.tolist() == ["7", "9"]
    (tmp_path / "b.parquet").write_bytes(_parquet(pd.DataFrame({"u": ["a", None], "i": ["x", "y"]})))
    with pytest.raises(loaders.DataFormatError, match=r"b\.parquet row 2: missing 'u' id"):
        loaders.load_table(tmp_path / "b.parquet", "u", "i")
    times = pd.to_datetime(["2024-01-01", None])
    (tmp_path / "c.parquet").write_bytes(_parquet(pd.DataFrame({"u": [1, 2], "i": [3, 4], "t": times})))
    with pytest.raises(loaders.DataFormatError, match=r"c\.parquet row 2: expected a date-time in column 't'"):
        loaders.load_table(tmp_path / "c.parquet", "u", "i", time_col="t")


# ------------------------------------------------------------------ download
def _zip_bytes(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_download_movielens_from_file_url(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ml-latest-small.zip").write_bytes(_zip_bytes({
        "ml-latest-small/ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,3,2.5,964982704\n",
        "ml-latest-small/movies.csv": "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n",
    }))
    dest = tmp_path / "data"
    path = loaders.download_movielens("ml-latest-small", dest, base_url=mirror.as_uri())
    assert path == dest / "ml-latest-small" / "ratings.csv" and (dest / "ml-latest-small.zip").is_file()
    inter = loaders.load_movielens(path)
    assert len(inter) == 2 and inter.item_features["genres"][0] == ["Animation", "Comedy"]
    # a second call reuses the archive: works with the mirror gone
    (mirror / "ml-latest-small.zip").unlink()
    assert loaders.download_movielens("ml-latest-small", dest, base_url=mirror.as_uri()) == path


def test_download_movielens_rejects_non_zip_and_unknown(tmp_path):
    (tmp_path / "ml-100k.zip").write_text("<html>not found</html>")
    with pytest.raises(ValueError, match=r"ml-100k\.zip: the download is not a zip archive"):
        loaders.download_movielens("ml-100k", tmp_path / "out", base_url=tmp_path.as_uri())
    with pytest.raises(OSError, match=r"could not download .*ml-1m\.zip"):
        loaders.download_movielens("ml-1m", tmp_path / "out", base_url=tmp_path.as_uri())
    with pytest.raises(ValueError, match=r"unknown MovieLens dataset 'ml-7'"):
        loaders.download_movielens("ml-7", tmp_path)
