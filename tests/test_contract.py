"""The core contract that every model family builds on: sequences in time order, histories at
ranking time, the one extensible registry, batch builders named by models, split fingerprints,
duplicates refused at the split, and no import cycles (gcf never imports seq or bridges)."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from gcf.data.interactions import Interactions
from gcf.data.sequences import Sequences
from gcf.data.split import Split, leave_one_out, make_split
from gcf.evaluate import evaluate
from gcf.models import MODELS, Recommender, TrainData, build_model, register_model

ROOT = Path(__file__).resolve().parents[1]


def inter(rows, n_users=3, n_items=8, times=True):
    users = np.array([r[0] for r in rows])
    items = np.array([r[1] for r in rows])
    ts = np.array([r[2] for r in rows], dtype=np.float64) if times else None
    return Interactions(users, items, np.arange(n_users).astype(str), np.arange(n_items).astype(str), timestamps=ts,
                        source="hand")


def test_sequences_follow_time_then_file_order():
    # user 0: items 5 (t=3), 1 (t=1), 2 (t=1, later in the file), 7 (t=2.9 -> 2): 1, 2, 7, 5
    seqs = Sequences.from_interactions(inter([(0, 5, 3), (1, 4, 0), (0, 1, 1), (0, 2, 1), (0, 7, 2.9)]))
    assert seqs.of(0).tolist() == [1, 2, 7, 5] and seqs.of(1).tolist() == [4] and len(seqs.of(2)) == 0
    assert seqs.times.dtype == np.int64 and seqs.times[:4].tolist() == [1, 1, 2, 3]
    # no timestamps: file order
    seqs = Sequences.from_interactions(inter([(0, 5, 0), (0, 1, 0), (0, 3, 0)], times=False))
    assert seqs.of(0).tolist() == [5, 1, 3] and seqs.times is None


def test_padded_is_right_aligned_truncated_and_shifted():
    seqs = Sequences.from_interactions(inter([(0, i, i) for i in range(6)] + [(1, 3, 0)]))
    items, times = seqs.padded(np.array([0, 1, 2]), 4)
    assert items.tolist() == [[3, 4, 5, 6], [0, 0, 0, 4], [0, 0, 0, 0]]  # last 4, item i stored as i + 1
    assert times.tolist() == [[2, 3, 4, 5], [0, 0, 0, 0], [0, 0, 0, 0]]
    items, _ = seqs.padded(np.array([0]), 4, drop_last=1)
    assert items.tolist() == [[2, 3, 4, 5]]


def test_history_for_test_includes_the_validation_item(ml_small):
    split = leave_one_out(ml_small)
    valid_hist, test_hist = split.history("valid"), split.history("test")
    for u in range(0, split.n_users, 50):
        v = split.valid.items[split.valid.users == u]
        t = split.test.items[split.test.users == u]
        assert test_hist.of(u).tolist() == valid_hist.of(u).tolist() + v.tolist()  # valid item last
        assert not np.isin(t, test_hist.of(u)).any() and not np.isin(v, valid_hist.of(u)).any()


class LastItemEcho(Recommender):
    """Scores the last history item highest: what a sequence model sees, made visible."""

    batch_kind = None

    def fit(self, data):
        pass

    def score(self, users, history=None):
        items, _ = history.padded(users.numpy(), 1)
        out = torch.zeros(len(users), self.n_items)
        out[torch.arange(len(users)), torch.from_numpy(items[:, 0] - 1).clamp(min=0)] = 1.0
        return out


def test_evaluator_hands_the_part_history_and_masks_by_option():
    # user 0: train 0 -> 1, valid 2, test 2 repeated is impossible; test 3
    train = inter([(0, 0, 0), (0, 1, 1), (1, 4, 0), (1, 5, 1)], n_users=2)
    split = Split(train, inter([(0, 2, 2), (1, 6, 2)], n_users=2), inter([(0, 3, 3), (1, 6 + 1, 3)], n_users=2),
                  "hand")
    model = LastItemEcho(TrainData.from_split(split))
    # unmasked, the echo of the last history item is ranked first: for 'test' that is the valid item
    m = evaluate(model, split, "test", ks=[1], metrics=["hit"], mask_seen=False)
    assert m["hit@1"] == 0.0
    echo = {}
    orig = model.score

    def spy(users, history=None):
        echo["last"] = history.padded(users.numpy(), 1)[0][:, 0] - 1
        return orig(users, history)

    model.score = spy
    evaluate(model, split, "test", ks=[1], metrics=["hit"])
    assert echo["last"].tolist() == [2, 6]  # the validation items are the newest history items
    evaluate(model, split, "valid", ks=[1], metrics=["hit"])
    assert echo["last"].tolist() == [1, 5]


def test_split_refuses_a_pair_in_two_parts_and_make_split_dedups():
    rows = [(0, 1, 1), (0, 2, 2), (0, 1, 9), (1, 3, 1), (1, 4, 2), (1, 5, 3), (0, 6, 4)]  # (0, 1) twice
    with pytest.raises(ValueError, match="in both train and test.*user '0' item '1'"):
        Split(inter([(0, 1, 1), (0, 2, 2)]), inter([]), inter([(0, 1, 9)]), "dup")
    for method in ("random", "loo", "temporal"):
        split = make_split(inter(rows), method, seed=3)  # de-duplicated first: never an error
        keys = [set(zip(p.users.tolist(), p.items.tolist())) for p in (split.train, split.valid, split.test)]
        assert sum(len(k) for k in keys) == len(set.union(*keys)) == 6


def test_fingerprint_names_the_training_part(ml_small):
    a = make_split(ml_small, "random", seed=1)
    assert a.fingerprint() == make_split(ml_small, "random", seed=1).fingerprint()
    assert a.fingerprint() != make_split(ml_small, "random", seed=2).fingerprint()
    assert TrainData.from_split(a).fingerprint == a.fingerprint()


def test_train_data_keeps_ordered_interactions(ml_small):
    split = leave_one_out(ml_small)
    data = TrainData.from_split(split)
    assert data.interactions is split.train and data.interactions.timestamps is not None
    assert data.sequences.n_users == split.n_users and len(data.sequences) == len(split.train)


def test_another_package_registers_a_model(ml_small_split):
    @register_model("test_echo_pop", family=None)
    class EchoPop(Recommender):
        batch_kind = None

        def fit(self, data):
            self.pop = torch.from_numpy(np.asarray(data.train.sum(0)).ravel())

        def score(self, users, history=None):
            return self.pop.float().repeat(len(users), 1)

    try:
        assert MODELS["test_echo_pop"] is EchoPop
        model = build_model("test_echo_pop", {}, ml_small_split, seed=0)
        assert isinstance(model, EchoPop)
        with pytest.raises(ValueError, match="already registered"):
            register_model("test_echo_pop")(type("Other", (Recommender,), {}))
    finally:
        MODELS.pop("test_echo_pop")


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of the gcf/seq/bridges modules that ``path`` imports (any level, any place)."""
    tree = ast.parse(path.read_text())
    mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    pkg = pkg.removesuffix(".__init__")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
    known = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
             for p in ROOT.glob(f"{package}/**/*.py")}
    return {n for n in out if n in known}


def test_gcf_has_no_import_cycles_and_never_imports_seq_or_bridges():
    graph = {}
    for path in ROOT.glob("gcf/**/*.py"):
        mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[mod] = _imports(path, "gcf")
        text = path.read_text()
        assert "import seq" not in text and "from seq" not in text and "bridges" not in _imports(path, "bridges"), path
    # package __init__ re-exports are edges too; a cycle through a package's own __init__ is not a cycle
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in graph.get(m, ()):
            if n == m or m.startswith(n + ".") or n.startswith(m + "."):
                continue
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
