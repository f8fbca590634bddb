"""The generic csv adapter on small users' tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emofuse.corpora.base import Manifest, PrepareError, prepare


def make_table(folder: Path, n_per_class: int = 5, name: str = "labels.csv", **extra_cols) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clips").mkdir(exist_ok=True)
    recs = []
    for c, cls in enumerate(("Happy", "sad", "neutral")):
        for i in range(n_per_class):
            clip = f"clips/{cls.lower()}{i}.wav"
            (folder / clip).touch()
            recs.append({"utt": f"{cls.lower()}{i}", "emotion": cls, "wav": clip, "words": f"I feel {cls}, {i}",
                         "who": f"spk{i % 2}"})
    df = pd.DataFrame(recs)
    for k, v in extra_cols.items():
        df[k] = v
    path = folder / name
    df.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return path


COLS = dict(id_col="utt", label_col="emotion", audio_col="wav", text_col="words", speaker_col="who")


def test_table_as_root_with_seeded_stratified_splits(tmp_path):
    table = make_table(tmp_path / "data")
    m = prepare("csv", table, tmp_path / "out" / "m.csv", **COLS)
    df = m.df.set_index("id")
    assert len(df) == 15 and m.meta["rows_rejected"] == 0
    assert m.label_set.name == "custom" and m.label_set.classes == ("happy", "neutral", "sad")  # inferred, sorted
    assert df.loc["happy0", "label"] == "happy" and df.loc["happy0", "text"] == "I feel Happy, 0"
    assert df.loc["sad3", "audio"] == str((tmp_path / "data" / "clips" / "sad3.wav").absolute())
    assert df.loc["sad3", "speaker"] == "spk1" and df.loc["sad3", "video"] == ""
    assert m.df.groupby("fold").label.nunique().eq(3).all()  # stratified: every class in every fold
    assert (m.df[m.df.fold == 0].split == "test").all() and (m.df[m.df.fold == 1].split == "val").all()
    other = prepare("csv", table, tmp_path / "out" / "o.csv", seed=7, **COLS).df
    again = prepare("csv", table, tmp_path / "out" / "a.csv", **COLS).df
    assert other.fold.tolist() != m.df.fold.tolist() and again.fold.tolist() == m.df.fold.tolist()


def test_folder_root_file_option_label_set_and_given_splits(tmp_path):
    splits = ["train", "dev", "Test", ""] * 3 + ["validation", "", "bogus"]
    make_table(tmp_path / "d", name="table.tsv", part=splits)
    (tmp_path / "d" / "other.csv").write_text("x\n1\n")
    with pytest.raises(FileNotFoundError, match="give the table with file= .*other.csv, table.tsv"):
        prepare("csv", tmp_path / "d", tmp_path / "m.csv", **COLS)
    with pytest.raises(PrepareError, match="1 bad_value: neutral4 \\(split 'bogus'"):
        prepare("csv", tmp_path / "d", tmp_path / "m.csv", file="table.tsv", split_col="part",
                label_set="happy,sad,neutral", **COLS)
    m = prepare("csv", tmp_path / "d", tmp_path / "m.csv", file="table.tsv", split_col="part",
                label_set="happy,sad,neutral", on_error="skip", **COLS)
    assert m.label_set.classes == ("happy", "sad", "neutral")
    df = m.df.set_index("id")
    assert df.loc["happy0", "split"] == "train" and df.loc["happy1", "split"] == "val"
    assert df.loc["happy2", "split"] == "test" and df.loc["neutral2", "split"] == "val"
    assert sorted(df[df.fold >= 0].index) == ["happy3", "neutral1", "neutral3", "sad2"]  # the empty splits
    assert (df.fold == -1).sum() == 10  # given splits keep fold -1


def test_registered_label_set_unknown_labels_and_unlabelled_rows(tmp_path):
    table = make_table(tmp_path / "d")
    with open(table, "a") as f:
        f.write("x1,,clips/happy0.wav,no label,spk0\n")  # no label, no split: unlabeled
        f.write("x2,bored,clips/happy0.wav,odd label,spk0\n")
        f.write("x3,sad,clips/gone.wav,missing clip,spk0\n")
    m = prepare("csv", table, tmp_path / "m.csv", label_set="meld7", on_error="skip", **COLS)
    assert m.label_set.name == "meld7" and set(m.df.label) == {"joy", "sadness", "neutral", ""}  # aliases
    assert m.df.set_index("id").loc["x1", "split"] == "unlabeled"
    rej = pd.read_csv(Manifest.rejects_path(tmp_path / "m.csv")).set_index("id")
    assert rej.reason.to_dict() == {"x2": "unknown_label", "x3": "missing_file"}
    assert m.meta["rows_in"] == 18 == m.meta["rows_kept"] + m.meta["rows_rejected"]


def test_option_errors(tmp_path):
    table = make_table(tmp_path / "d")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label'\].*'emotion'"):
        prepare("csv", table, tmp_path / "m.csv", id_col="utt")
    with pytest.raises(KeyError, match="unknown label set 'nope'; valid: .*meld7"):
        prepare("csv", table, tmp_path / "m.csv", label_set="nope", **COLS)
    with pytest.raises(TypeError, match="valid options: audio_col, dialogue_col, file, id_col, label_col, label_set"):
        prepare("csv", table, tmp_path / "m.csv", labels="x")
    with pytest.raises(FileNotFoundError, match="not a folder or a table file"):
        prepare("csv", tmp_path / "nowhere.csv", tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        prepare("mer2025", table, tmp_path / "m.csv")  # only csv takes a file as root


def test_row_ids_and_soft_labels(tmp_path):
    table = make_table(tmp_path / "d", n_per_class=2)
    df = pd.read_csv(table)
    df["soft"] = ['[0.5, 0.25, 0.25]', "", "[1, 0]", "", "", "not json"]
    df.to_csv(table, index=False)
    m = prepare("csv", table, tmp_path / "m.csv", on_error="skip", soft_label_col="soft",
                **dict(COLS, id_col=None))
    assert m.ids[0] == "row2" and len(m) == 4
    assert m.df.soft_label.iloc[0] == "[0.5, 0.25, 0.25]"
    assert set(pd.read_csv(Manifest.rejects_path(tmp_path / "m.csv")).reason) == {"bad_value"}
