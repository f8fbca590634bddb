"""nEMO and URDU adapters: the real folders (counts, speakers, label mapping, speaker-independent
splits), and tiny fake folders of empty files that run without the data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emofuse.corpora.base import PrepareError, prepare
from emofuse.labels import SPEECH7
from tests.conftest import need


def _disjoint_speakers(df: pd.DataFrame) -> None:
    by_split = df.groupby("split").speaker.apply(set)
    assert set(by_split.index) == {"train", "val", "test"}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])


@pytest.mark.realdata
def test_real_nemo(data_root, tmp_path):
    m = prepare("nemo", need(data_root, "nemo"), tmp_path / "n.csv")
    df = m.df
    assert len(df) == 4481 and m.meta["rows_rejected"] == 0 and df.id.is_unique
    assert m.label_set == SPEECH7 and df.speaker.nunique() == 9
    assert df.label.value_counts().to_dict() == {"neutral": 809, "sad": 769, "angry": 749, "happy": 749,
                                                 "fearful": 736, "surprised": 669}
    assert "disgust" not in set(df.label)  # nEMO has none: never invented
    assert (df.text == "").all()  # the Polish sentence carries no emotion: out of the text modality by default
    assert df.audio.str.endswith(".opus").all() and (df.video == "").all()
    _disjoint_speakers(df)
    assert df.groupby("speaker").fold.nunique().eq(1).all()
    # the same seed gives the same manifest (re-runnable), the text comes back on request
    again = prepare("nemo", data_root / "nemo", tmp_path / "n2.csv", text=True).df
    assert again[["id", "split", "fold", "label"]].equals(df[["id", "split", "fold", "label"]])
    assert (again.text != "").all()


@pytest.mark.realdata
def test_real_urdu(data_root, tmp_path):
    m = prepare("urdu", need(data_root, "urdu"), tmp_path / "u.csv")
    df = m.df
    assert len(df) == 400 and m.meta["rows_rejected"] == 0 and df.id.is_unique
    assert df.label.value_counts().to_dict() == {"angry": 100, "happy": 100, "neutral": 100, "sad": 100}
    assert df.speaker.nunique() == 29
    assert df.loc[df.id == "SM1_F10_A010", "speaker"].item() == "SM1"
    _disjoint_speakers(df)


def fake_table(root: Path, rows: list[tuple[str, str, str]], extra: dict[str, str] | None = None) -> Path:
    """labels.csv of (path, label, speaker) and an empty file per path."""
    root.mkdir(parents=True, exist_ok=True)
    cols = ["path", "label", "speaker", *(extra or {})]
    lines = [",".join(cols)]
    for path, label, speaker in rows:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).touch()
        lines.append(",".join([path, label, speaker, *(extra or {}).values()]))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def _nemo_rows(speakers=6, labels=("angry", "fear", "neutral")) -> list[tuple[str, str, str]]:
    return [(f"samples/S{s}_{lab}_{i}.opus", lab, f"S{s}") for s in range(speakers) for lab in labels for i in range(2)]


def test_fake_nemo_maps_labels_and_splits_by_speaker(tmp_path):
    root = fake_table(tmp_path / "nemo", _nemo_rows(), {"gender": "f", "age": "30", "text": "Lubię czytać."})
    with pytest.raises(ValueError, match="not the release.*rows: 36 .the release has 4481.*check_counts=false"):
        prepare("nemo", root, tmp_path / "m.csv")
    m = prepare("nemo", root, tmp_path / "m.csv", check_counts=False)
    df = m.df
    assert len(df) == 36 and set(df.label) == {"angry", "fearful", "neutral"}  # "fear" is SPEECH7's fearful
    assert df.loc[df.id == "S0_fear_0", "label"].item() == "fearful"
    _disjoint_speakers(df)
    assert (df.text == "").all()
    fixed = prepare("nemo", root, tmp_path / "f.csv", check_counts=False, test_speakers="S0,S1", val_speakers=["S2"]).df
    assert set(fixed[fixed.split == "test"].speaker) == {"S0", "S1"} and set(fixed[fixed.split == "val"].speaker) == {"S2"}
    with pytest.raises(ValueError, match=r"speakers \['S9'\] are not in the corpus"):
        prepare("nemo", root, tmp_path / "f.csv", check_counts=False, test_speakers="S9")
    every = prepare("nemo", root, tmp_path / "a.csv", check_counts=False, all_test=True).df
    assert set(every.split) == {"test"}


def test_fake_urdu_rejects_unknown_labels_and_missing_files(tmp_path):
    rows = [(f"{lab.title()}/SM{s}_F{i}_{lab[0].upper()}{i}.opus", lab, f"SM{s}")
            for s in range(5) for lab in ("angry", "happy", "neutral", "sad") for i in range(2)]
    root = fake_table(tmp_path / "urdu", rows + [("Calm/SM0_F9_C9.opus", "calm", "SM0")])
    (root / "Sad" / "SM4_F1_S1.opus").unlink()
    with pytest.raises(PrepareError, match="unknown_label.*calm"):
        prepare("urdu", root, tmp_path / "u.csv", check_counts=False)
    m = prepare("urdu", root, tmp_path / "u.csv", check_counts=False, on_error="skip")
    assert m.meta["rejects_by_reason"] == {"missing_file": 1, "unknown_label": 1}
    assert len(m.df) == 39 and set(m.df.label) == {"angry", "happy", "neutral", "sad"}
    _disjoint_speakers(m.df)
