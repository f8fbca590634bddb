"""RAVDESS adapter: the real speech set, and a tiny fake tree of empty files named by the official code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emofuse.corpora.base import Manifest, PrepareError, prepare
from tests.conftest import need


@pytest.mark.realdata
def test_real_speech_set(data_root, tmp_path):
    m = prepare("ravdess", need(data_root, "ravdess_speech"), tmp_path / "r.csv")
    df = m.df
    assert len(df) == 720 and m.meta["rows_rejected"] == 0 and df.id.is_unique
    speakers = df.groupby("split").speaker.apply(set)
    assert speakers["test"] == {"Actor_11", "Actor_12"} and speakers["val"] == {"Actor_09", "Actor_10"}
    assert not (speakers["train"] & speakers["val"]) and not (speakers["train"] & speakers["test"])
    assert df.groupby("speaker").fold.nunique().eq(1).all()  # a fold never splits an actor
    assert set(df.text) == {"Kids are talking by the door", "Dogs are sitting by the door"}
    assert df.label.value_counts().to_dict() == {c: 48 if c == "neutral" else 96 for c in m.label_set.classes}
    assert (df.video == "").all() and df.audio.str.endswith(".wav").all()


def touch(root: Path, *names: str) -> None:
    for name in names:
        actor = name.split(".")[0].split("-")[-1]
        path = root / f"Actor_{actor}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def make_tree(root: Path, actors=range(1, 9)) -> Path:
    for a in actors:
        for emo in ("01", "03", "05"):
            touch(root, f"03-01-{emo}-01-01-01-{a:02d}.wav")
    return root


def test_codes_pairing_and_splits(tmp_path):
    root = make_tree(tmp_path / "rav")
    touch(root, "01-01-03-01-01-01-02.mp4", "02-01-03-01-01-01-02.mp4",  # AV + video-only of a wav's code
          "02-01-05-01-01-01-03.mp4",  # video only
          "01-02-04-02-02-02-04.mp4")  # a song clip with no wav
    m = prepare("ravdess", root, tmp_path / "m.csv")
    df = m.df.set_index("id")
    assert len(df) == 24 + 1
    row = df.loc["01-03-01-01-01-02"]
    assert row.label == "happy" and row.speaker == "Actor_02" and row.text == "Kids are talking by the door"
    assert row.audio.endswith("Actor_02/03-01-03-01-01-01-02.wav") and row.video.endswith("01-01-03-01-01-01-02.mp4")
    assert df.loc["01-05-01-01-01-03", "video"].endswith("02-01-05-01-01-01-03.mp4")
    song = df.loc["02-04-02-02-02-04"]
    assert song.audio == "" and song.label == "sad" and song.text == "Dogs are sitting by the door"
    # default: last two actors test, two before val; fold 0 test, 1 val, 2.. the rest
    assert set(df[df.split == "test"].speaker) == {"Actor_07", "Actor_08"}
    assert set(df[df.split == "val"].speaker) == {"Actor_05", "Actor_06"}
    assert set(df[df.split == "test"].fold) == {0} and set(df[df.split == "val"].fold) == {1}
    assert set(df[df.split == "train"].fold) == {2, 3, 4}
    assert prepare("ravdess", root, tmp_path / "s.csv", vocal_channel="speech").meta["rows_excluded"] == 1


def test_actor_options(tmp_path):
    root = make_tree(tmp_path / "rav")
    df = prepare("ravdess", root, tmp_path / "m.csv", test_actors="1,2", val_actors=["Actor_03"]).df
    assert set(df[df.split == "test"].speaker) == {"Actor_01", "Actor_02"}
    assert set(df[df.split == "val"].speaker) == {"Actor_03"}
    with pytest.raises(ValueError, match=r"actors \[20\] are not in the corpus; actors present: \[1, 2, 3"):
        prepare("ravdess", root, tmp_path / "m.csv", test_actors=20)
    with pytest.raises(ValueError, match="overlap"):
        prepare("ravdess", root, tmp_path / "m.csv", test_actors="1,2", val_actors="2")


def test_bad_files_are_rejected(tmp_path):
    root = make_tree(tmp_path / "rav")
    touch(root, "03-01-09-01-01-01-01.wav",  # emotion 09
          "03-01-01-01-01-01-01.mp4")  # audio-only modality in an mp4
    (root / "Actor_01" / "notes.wav").touch()
    (root / "copy").mkdir()
    (root / "copy" / "03-01-01-01-01-01-01.wav").touch()  # a second copy of one recording
    (root / "Actor_01" / "._03-01-01-01-01-01-01.wav").touch()  # macOS metadata file: not a recording
    with pytest.raises(PrepareError) as e:
        prepare("ravdess", root, tmp_path / "m.csv")
    msg = str(e.value)
    for part in ("1 unknown_label: 03-01-09-01-01-01-01", "1 bad_value: 03-01-01-01-01-01-01", "1 unreadable_row: notes.wav",
                 "1 duplicate_id: 01-01-01-01-01-01"):
        assert part in msg
    m = prepare("ravdess", root, tmp_path / "m.csv", on_error="skip")
    assert len(m) == 24 and m.meta["rows_in"] == 28


def test_labels_csv_cross_check(tmp_path):
    root = make_tree(tmp_path / "rav")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))
    emotions = {"01": "neutral", "03": "happy", "05": "angry"}
    table = pd.DataFrame({"file": files, "emotion": [emotions[Path(f).stem.split("-")[2]] for f in files],
                          "actor": [Path(f).stem.split("-")[-1] for f in files]})
    table.loc[0, "emotion"] = "sad"  # disagrees with its file name
    table.loc[len(table)] = ["Actor_01/03-01-04-01-01-01-01.wav", "sad", "01"]  # listed, not on disk
    table.to_csv(root / "labels.csv", index=False)
    m = prepare("ravdess", root, tmp_path / "m.csv", on_error="skip")
    rej = pd.read_csv(Manifest.rejects_path(tmp_path / "m.csv")).set_index("id")
    assert rej.loc[Path(files[0]).stem, "reason"] == "bad_value" and "labels.csv 'sad'" in rej.loc[Path(files[0]).stem, "detail"]
    assert rej.loc["01-04-01-01-01-01", "reason"] == "missing_file"
    assert len(m) == 23 and m.meta["rows_in"] == 25


def test_all_test_for_an_evaluation_folder(tmp_path):
    root = make_tree(tmp_path / "rav", actors=(13, 14))  # two actors: too few for a speaker split
    with pytest.raises(ValueError, match="need actors for train, val and test"):
        prepare("ravdess", root, tmp_path / "m.csv")
    df = prepare("ravdess", root, tmp_path / "e.csv", all_test=True).df
    assert set(df.split) == {"test"} and set(df.fold) == {0} and len(df) == 6
