"""GoEmotions adapter: TSV without quoting, single-label selection, multi-hot soft labels, variants."""

from __future__ import annotations

import json

import pytest

from emofuse.corpora.base import prepare
from tests.conftest import need

EKMAN = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]


def _variant(root, name, labels, rows_by_split):
    d = root / name
    d.mkdir(parents=True)
    (d / "labels.txt").write_text("\n".join(labels) + "\n")
    for split, rows in rows_by_split.items():
        (d / f"{split}.tsv").write_text("".join(f"{t}\t{ls}\t{i}\n" for t, ls, i in rows))
    return d


ROWS = {
    "train": [('He said "wow', "3", "a1"), ("so sad and angry", "0,5", "a2"), ("meh", "4", "a3")],
    "dev": [("scary", "2", "b1")],
    "test": [("gross", "1", "c1"), ("bad ids", "9", "c2")],
}


def test_single_and_multi_label(tmp_path):
    _variant(tmp_path, "ekman", EKMAN, ROWS)
    with pytest.warns(UserWarning, match="rows, the release has"):
        m = prepare("goemotions", tmp_path, tmp_path / "s.csv", on_error="skip")
    df = m.df.set_index("id")
    assert m.label_set.name == "goemotions-ekman" and list(m.label_set.classes) == EKMAN
    assert list(df.index) == ["a1", "a3", "b1", "c1"] and df.loc["a1", "text"] == 'He said "wow'
    assert df.loc["b1", "split"] == "val" and df.loc["a1", "label"] == "joy"
    assert m.meta["rejects_by_reason"] == {"excluded": 1, "unknown_label": 1}
    multi = prepare("goemotions", tmp_path, tmp_path / "m.csv", multi_label=True, on_error="skip", check_counts=False)
    row = multi.df.set_index("id").loc["a2"]
    assert row.label == "anger" and json.loads(row.soft_label) == [1, 0, 0, 0, 0, 1, 0]
    assert multi.soft_labels()[list(multi.df.id).index("a2")].tolist() == pytest.approx([0.5, 0, 0, 0, 0, 0.5, 0])


def test_variant_choice(tmp_path):
    _variant(tmp_path, "ekman", EKMAN, ROWS)
    _variant(tmp_path, "original", [f"e{i}" for i in range(27)] + ["neutral"], ROWS)
    with pytest.raises(FileNotFoundError, match="give variant="):
        prepare("goemotions", tmp_path, tmp_path / "x.csv", check_counts=False)
    m = prepare("goemotions", tmp_path, tmp_path / "o.csv", variant="original", on_error="skip", check_counts=False)
    assert m.label_set.name == "goemotions-original" and len(m.label_set) == 28
    assert prepare("goemotions", tmp_path / "ekman", tmp_path / "e.csv", on_error="skip",
                   check_counts=False).label_set.name == "goemotions-ekman"


@pytest.mark.realdata
def test_real_counts(data_root, tmp_path):
    root = need(data_root, "goemotions")
    m = prepare("goemotions", root, tmp_path / "e.csv", variant="ekman")
    assert m.meta["split_counts"] == {"train": 39555, "val": 4946, "test": 4968} and m.df["id"].is_unique
    o = prepare("goemotions", root, tmp_path / "o.csv", variant="original", multi_label=True)
    assert o.meta["split_counts"] == {"train": 43410, "val": 5426, "test": 5427} and o.meta["rows_rejected"] == 0
