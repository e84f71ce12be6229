"""The datasets each loss trains on (ragtune.train.data)."""

from __future__ import annotations

from ragtune.pairs.schema import Pair
from ragtune.train.data import build_dataset


def _pair(i: int, negatives: int) -> Pair:
    return Pair(
        query=f"q{i}", positive=f"passage {i}", positive_id=f"c{i}",
        negatives=[{"id": f"n{i}{k}", "text": f"near miss {i}.{k}"} for k in range(negatives)],
    )


def test_mined_negatives_survive_when_some_pairs_have_none():
    # The miner finds no close-but-wrong passage for some pairs; the others'
    # negatives must still reach the loss (they used to be dropped for all).
    pairs = [_pair(0, 2), _pair(1, 0), _pair(2, 1), _pair(3, 2)]
    ds = build_dataset(pairs, "mnrl")
    assert ds.column_names == ["anchor", "positive", "negative_1"]
    neg = ds["negative_1"]
    assert neg[0] == "near miss 0.0" and neg[2] == "near miss 2.0" and neg[3] == "near miss 3.0"
    assert neg[1] == "passage 2"  # another pair's positive, never its own


def test_a_pair_without_negatives_never_gets_its_own_passage():
    pairs = [_pair(0, 1), Pair(query="a", positive="same", positive_id="s"),
             Pair(query="b", positive="same", positive_id="s"), _pair(3, 1)]
    neg = build_dataset(pairs, "mnrl")["negative_1"]
    assert neg[1] == "passage 3" and neg[2] == "passage 3"


def test_no_negatives_anywhere_trains_on_in_batch_negatives():
    ds = build_dataset([_pair(0, 0), _pair(1, 0)], "mnrl")
    assert ds.column_names == ["anchor", "positive"]
