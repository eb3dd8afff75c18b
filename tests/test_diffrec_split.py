"""DiffRec's own split (``train_list.npy``/``valid_list.npy``/``test_list.npy``): the loader, the
named dataset ``ml-1m-diffrec`` whose ``split: fixed`` keeps the given validation part, malformed
files, and the ``.rar`` download path (no network: ``file://`` mirrors, a stand-in for the
external unpacking tool)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gcf.config import resolve_config
from gcf.data import datasets, loaders
from gcf.data.loaders import DataFormatError
from gcf.data.prepare import load_split
from gcf.data.split import fixed, make_split

# a hand-made split: user 10 and item 7 only in test (ids need not be contiguous), int32 valid
TRAIN = np.array([[0, 0], [0, 1], [1, 2], [2, 0], [2, 2], [10, 1]], dtype=np.int64)
VALID = np.array([[0, 2], [1, 0], [2, 1]], dtype=np.int32)
TEST = np.array([[1, 1], [2, 7], [10, 0], [0, 3]], dtype=np.int64)


def write_split(folder: Path, train=TRAIN, valid=VALID, test=TEST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in (("train", train), ("valid", valid), ("test", test)):
        np.save(folder / f"{name}_list.npy", arr)
    return folder


def pairs(inter) -> list[tuple[int, int]]:
    """The (raw user, raw item) pairs of ``inter`` in row order, as ints."""
    return list(zip(inter.user_ids[inter.users].astype(int).tolist(), inter.item_ids[inter.items].astype(int).tolist()))


def as_pairs(arr) -> list[tuple[int, int]]:
    return [tuple(map(int, row)) for row in arr]


# ------------------------------------------------------------------ the loader
def test_load_diffrec_npy_reads_the_split_exactly(tmp_path):
    train, valid, test = loaders.load_diffrec_npy(write_split(tmp_path / "s"))
    assert pairs(train) == as_pairs(TRAIN) and pairs(valid) == as_pairs(VALID) and pairs(test) == as_pairs(TEST)
    assert (len(train), len(valid), len(test)) == (6, 3, 4)
    for part in (train, valid, test):  # one id space: the union of the three files, numeric order
        assert list(part.user_ids) == ["0", "1", "2", "10"]
        assert list(part.item_ids) == ["0", "1", "2", "3", "7"]
    assert (train.n_users, train.n_items) == (4, 5)
    assert str(tmp_path / "s" / "train_list.npy") in train.source
    assert str(tmp_path / "s" / "test_list.npy") in test.source
    assert train.ratings is None and train.timestamps is None


def test_dense_ids_stay_in_place(tmp_path):
    train = np.array([[0, 1], [1, 0], [2, 2]])
    train_i, _, _ = loaders.load_diffrec_npy(write_split(tmp_path, train, np.array([[0, 0]]), np.array([[2, 0]])))
    assert np.array_equal(train_i.users, train[:, 0]) and np.array_equal(train_i.items, train[:, 1])


def test_named_dataset_split_keeps_the_given_valid_and_test(tmp_path):
    write_split(tmp_path / "ml-1m_clean")
    cfg = datasets.dataset_config("ml-1m-diffrec")
    assert (cfg["format"], cfg["path"], cfg["split"]) == ("diffrec_npy", "ml-1m_clean", "fixed")
    with pytest.raises(ValueError, match=r"comes with its own validation file.*with_valid=True"):
        datasets.load_dataset("ml-1m-diffrec", tmp_path)
    inter, test, valid = datasets.load_dataset("ml-1m-diffrec", tmp_path, with_valid=True)
    assert pairs(valid) == as_pairs(VALID) and pairs(test) == as_pairs(TEST) and pairs(inter) == as_pairs(TRAIN)
    for ratio in ("0.1", "0.5"):  # valid_ratio plays no part: nothing is carved out of train
        run_cfg, _ = resolve_config("diffrec", ["dataset=ml-1m-diffrec", f"data_dir={tmp_path}",
                                                f"valid_ratio={ratio}"])
        split = load_split(run_cfg)
        assert split.method == "fixed(own valid file)"
        assert sorted(pairs(split.train)) == sorted(as_pairs(TRAIN))
        assert sorted(pairs(split.valid)) == sorted(as_pairs(VALID))
        assert sorted(pairs(split.test)) == sorted(as_pairs(TEST))
        assert (split.n_users, split.n_items) == (4, 5)
    # other datasets without a validation file: load_dataset still gives (interactions, test)
    inter, test = datasets.load_dataset("ml-latest-small")
    assert test is None and len(inter) == 100836


def test_fixed_with_and_without_a_valid_file(tmp_path):
    train, valid, test = loaders.load_diffrec_npy(write_split(tmp_path))
    split = fixed(train, test, valid_ratio=0.5, seed=3, valid=valid)
    assert split.valid is valid and split.train is train and split.test is test
    carved = fixed(train, test, valid_ratio=0.5, seed=3)  # Gowalla's way: valid carved out of train
    assert len(carved.valid) > 0 and len(carved.train) + len(carved.valid) == len(train)
    assert make_split(train, "fixed", test=test, valid=valid).method == "fixed(own valid file)"
    other = valid.subset(np.ones(len(valid), dtype=bool))
    other.item_ids = other.item_ids[:-1]
    with pytest.raises(ValueError, match="train, valid and test files must share one id space"):
        fixed(train, test, valid=other)


# ------------------------------------------------------------------ malformed files
def _npy_bytes(arr, allow_pickle=False) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


MALFORMED = [
    ("three columns", "train", np.zeros((3, 3), dtype=np.int64),
     r"train_list\.npy: expected an array of shape \[n, 2\] \(user, item\) rows, got shape \(3, 3\)"),
    ("one dimension", "test", np.arange(4), r"test_list\.npy: expected an array of shape \[n, 2\].*got shape \(4,\)"),
    ("floats", "valid", np.array([[0.0, 1.0]]),
     r"valid_list\.npy: expected integer \(user, item\) ids, got dtype float64"),
    ("bools", "valid", np.array([[True, False]]), r"valid_list\.npy: expected integer .* got dtype bool"),
    ("negative item", "test", np.array([[1, 1], [2, -3]]), r"test_list\.npy row 2: negative item id -3"),
    ("negative user", "train", np.array([[0, 0], [0, 1], [-1, 2]]), r"train_list\.npy row 3: negative user id -1"),
    ("huge uint64", "train", np.array([[0, 0], [2 ** 63, 1]], dtype=np.uint64),
     r"train_list\.npy row 2: id 9223372036854775808 is larger than 9223372036854775807"),
    ("empty", "valid", np.zeros((0, 2), dtype=np.int64), r"valid_list\.npy: the file holds no \(user, item\) rows"),
    ("object array", "train", b"pickle", r"train_list\.npy: not a readable \.npy array without pickled objects"),
    ("not npy", "test", b"text", r"test_list\.npy: not a readable \.npy array"),
    ("truncated", "valid", b"truncated", r"valid_list\.npy: not a readable \.npy array"),
]


@pytest.mark.parametrize("what,part,content,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files_name_the_file_and_row(tmp_path, what, part, content, message):
    write_split(tmp_path)
    target = tmp_path / f"{part}_list.npy"
    if isinstance(content, np.ndarray):
        np.save(target, content)
    elif content == b"pickle":
        target.write_bytes(_npy_bytes(np.array([[0, "a"]], dtype=object), allow_pickle=True))
    elif content == b"truncated":
        target.write_bytes(_npy_bytes(VALID)[:-5])
    else:
        target.write_text("0 1\n2 3\n")
    with pytest.raises(DataFormatError, match=message):
        loaders.load_diffrec_npy(tmp_path)


def test_a_pair_in_two_parts_names_both_files_and_rows(tmp_path):
    write_split(tmp_path, test=np.vstack([TEST, [[2, 2]]]))  # (2, 2) is train row 5
    with pytest.raises(DataFormatError, match=re.escape(str(tmp_path / "train_list.npy")) +
                       r" row 5: \(user, item\) pair \(2, 2\) is also in .*test_list\.npy row 5; the train and "
                       r"test parts must be disjoint"):
        loaders.load_diffrec_npy(tmp_path)
    write_split(tmp_path, valid=np.array([[9, 9], [1, 1]]))  # (1, 1) is test row 1
    with pytest.raises(DataFormatError, match=r"valid_list\.npy row 2: .*pair \(1, 1\) is also in .*test_list\.npy "
                                              r"row 1; the valid and test parts"):
        loaders.load_diffrec_npy(tmp_path)
    assert issubclass(DataFormatError, ValueError)


def test_missing_file_names_the_path(tmp_path):
    write_split(tmp_path)
    (tmp_path / "valid_list.npy").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "valid_list.npy"))):
        loaders.load_diffrec_npy(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "ml-1m_clean" / "train_list.npy"))):
        datasets.load_dataset("ml-1m-diffrec", tmp_path, with_valid=True)


# ------------------------------------------------------------------ download and unpacking
def _mirror(tmp_path: Path, body: bytes = b"Rar!\x1a\x07\x01\x00 not really compressed") -> Path:
    mirror = tmp_path / "mirror"
    mirror.mkdir(exist_ok=True)
    (mirror / "ml-1m_clean.rar").write_bytes(body)
    return mirror


def test_download_without_an_unpacking_tool_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    dest = tmp_path / "data"
    with pytest.raises(FileNotFoundError) as err:
        loaders.download_diffrec("ml-1m_clean", dest, base_url=_mirror(tmp_path).as_uri())
    text = str(err.value)
    assert "needs unar, unrar or 7z" in text and "apt-get install unar" in text
    assert str(dest / "ml-1m_clean" / "train_list.npy") in text and f"data_dir={dest}" in text
    assert (dest / "ml-1m_clean.rar").is_file()  # the download itself happened


def test_download_rejects_non_rar_and_unknown_names(tmp_path):
    mirror = _mirror(tmp_path, b"<html>not found</html>")
    with pytest.raises(ValueError, match=r"ml-1m_clean\.rar: the download is not a RAR archive"):
        loaders.download_diffrec("ml-1m_clean", tmp_path / "out", base_url=mirror.as_uri())
    assert not (tmp_path / "out" / "ml-1m_clean.rar").exists()
    with pytest.raises(OSError, match=r"could not download .*yelp_clean\.rar"):
        loaders.download_diffrec("yelp_clean", tmp_path / "out", base_url=mirror.as_uri())
    with pytest.raises(ValueError, match=r"unknown DiffRec dataset 'ml-7m'"):
        loaders.download_diffrec("ml-7m", tmp_path)


def test_download_unpacks_with_the_first_tool_that_works(tmp_path, monkeypatch):
    """``unar`` is "installed" but fails; ``7z`` unpacks (a stand-in writing the archive's folder)."""
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}" if name in ("unar", "7z") else None)
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv[0])
        if argv[0] == "unar":
            return subprocess.CompletedProcess(argv, 1, "", "unar: unsupported archive\n")
        out = Path(next(a[2:] for a in argv if a.startswith("-o")))
        write_split(out / "ml-1m_clean")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    dest = tmp_path / "data"
    (dest / "ml-1m_clean").mkdir(parents=True)
    (dest / "ml-1m_clean" / "train_list.npy").write_bytes(b"half-unpacked")  # an earlier, broken attempt
    folder = loaders.download_diffrec("ml-1m_clean", dest, base_url=_mirror(tmp_path).as_uri())
    assert folder == dest / "ml-1m_clean" and calls == ["unar", "7z"]
    train, valid, test = loaders.load_diffrec_npy(folder)
    assert pairs(valid) == as_pairs(VALID) and len(train) == len(TRAIN)
    assert not list(dest.glob(".ml-1m_clean-unpack-*"))  # the scratch folder is gone
    (tmp_path / "mirror" / "ml-1m_clean.rar").unlink()  # a second call reuses the folder
    assert loaders.download_diffrec("ml-1m_clean", dest, base_url=(tmp_path / "mirror").as_uri()) == folder
    assert calls == ["unar", "7z"]


def test_download_when_every_tool_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/unar" if name == "unar" else None)
    monkeypatch.setattr(subprocess, "run", lambda argv, **k: subprocess.CompletedProcess(argv, 0, "", ""))
    with pytest.raises(OSError, match=r"could not unpack it \(unar: exit status 0, no train/valid/test_list\.npy "
                                      r"unpacked .*apt-get install unar"):
        loaders.download_diffrec("ml-1m_clean", tmp_path / "data", base_url=_mirror(tmp_path).as_uri())


def test_a_tool_failing_on_another_member_keeps_the_lists(tmp_path, monkeypatch):
    """unar on the official ml-1m_clean.rar: the three lists unpack, item_emb.npy fails (exit status 1)."""
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/unar" if name == "unar" else None)
    broken = {"part": None}

    def fake_unar(argv, **kwargs):
        out = Path(argv[argv.index("-o") + 1]) / "ml-1m_clean"
        write_split(out)
        (out / "item_emb.npy").write_bytes(b"half")
        if broken["part"]:
            (out / f"{broken['part']}_list.npy").write_bytes((out / f"{broken['part']}_list.npy").read_bytes()[:-8])
        return subprocess.CompletedProcess(argv, 1, "", 'Extraction to directory "x" failed (1 file failed.)\n')

    monkeypatch.setattr(subprocess, "run", fake_unar)
    with pytest.warns(UserWarning, match=r"unar failed on part of the archive .*kept the three \*_list\.npy"):
        folder = loaders.download_diffrec("ml-1m_clean", tmp_path / "data", base_url=_mirror(tmp_path).as_uri())
    assert sorted(p.name for p in folder.iterdir()) == ["test_list.npy", "train_list.npy", "valid_list.npy"]
    broken["part"] = "valid"  # a list cut short is not kept
    with pytest.raises(OSError, match=r"could not unpack it \(unar: exit status 1, .*valid_list\.npy: not a readable"):
        loaders.download_diffrec("ml-1m_clean", tmp_path / "data2", base_url=_mirror(tmp_path).as_uri())
