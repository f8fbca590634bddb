"""The generic csv adapter on small users' tables."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofuse.corpora.base import Manifest, PrepareError, prepare
from emofuse.corpora.csv import SplitWarning


def _tiny_wav() -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(800, np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


TINY_WAV = _tiny_wav()  # 50 ms of silence: real audio, as prepare checks


def make_table(folder: Path, n_per_class: int = 5, name: str = "labels.csv", n_speakers: int = 5, **extra_cols) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clips").mkdir(exist_ok=True)
    recs = []
    for c, cls in enumerate(("Happy", "sad", "neutral")):
        for i in range(n_per_class):
            clip = f"clips/{cls.lower()}{i}.wav"
            (folder / clip).write_bytes(TINY_WAV)
            recs.append({"utt": f"{cls.lower()}{i}", "emotion": cls, "wav": clip, "words": f"I feel {cls}, {i}",
                         "who": f"spk{i % n_speakers}"})
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
    assert df.loc["sad3", "speaker"] == "spk3" and df.loc["sad3", "video"] == ""
    assert m.df.groupby("speaker").fold.nunique().eq(1).all()  # by speaker: each speaker in one fold
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
    with pytest.raises(PrepareError, match="1 bad_value: neutral4 \\(split 'bogus'"), pytest.warns(SplitWarning):
        prepare("csv", tmp_path / "d", tmp_path / "m.csv", file="table.tsv", split_col="part",
                label_set="happy,sad,neutral", n_folds=3, **COLS)
    with pytest.warns(SplitWarning, match="speakers have rows in more than one of train/val/test"):
        # the 4 rows left to split have 3 speakers: 3 speaker folds; the given splits share speakers
        m = prepare("csv", tmp_path / "d", tmp_path / "m.csv", file="table.tsv", split_col="part",
                    label_set="happy,sad,neutral", on_error="skip", n_folds=3, **COLS)
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
    with pytest.raises(TypeError, match="valid options: all_test, allow_outside_root, audio_col, check_media, dialogue_col, file, id_col, label_col, label_set"):
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
    with pytest.warns(SplitWarning, match="split into train/val/test by row"):
        m = prepare("csv", table, tmp_path / "m.csv", on_error="skip", soft_label_col="soft",
                    **dict(COLS, id_col=None, speaker_col=None))
    assert m.ids[0] == "row2" and len(m) == 4
    assert m.df.soft_label.iloc[0] == "[0.5, 0.25, 0.25]"
    assert set(pd.read_csv(Manifest.rejects_path(tmp_path / "m.csv")).reason) == {"bad_value"}


def _speaker_table(folder: Path, n_speakers: int = 8, seed: int = 0, speaker_header: str = "speaker") -> Path:
    """Each speaker says each of 4 classes an uneven number of times (2-5), as real corpora do."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    recs = [{"id": f"s{s}_{c}_{k}", "label": c, "text": f"{c} {k}", speaker_header: f"spk{s}"}
            for s in range(n_speakers) for c in ("angry", "happy", "neutral", "sad") for k in range(rng.integers(2, 6))]
    pd.DataFrame(recs).to_csv(folder / "t.csv", index=False)
    return folder / "t.csv"


def test_speaker_column_gives_speaker_disjoint_stratified_folds_for_cross_validation(tmp_path):
    from emofuse.training.plans import plans as _plans

    table = _speaker_table(tmp_path / "d")
    m = prepare("csv", table, tmp_path / "m.csv", text_col="text", speaker_col="speaker", seed=3)
    df = m.df
    assert df.groupby("speaker").fold.nunique().eq(1).all() and sorted(df.fold.unique()) == [0, 1, 2, 3, 4]
    by_split = {s: set(df[df.split == s].speaker) for s in ("train", "val", "test")}
    assert all(by_split.values()) and not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])
    assert set(df[df.fold == 0].split) == {"test"} and set(df[df.fold == 1].split) == {"val"}
    assert df.groupby("fold").label.nunique().eq(4).all()  # stratified: every class in every fold
    for plan in _plans(m, cross_validation=True):  # train.cross_validation: speaker-independent in every fold
        spk = {s: set(df.speaker.iloc[plan[s]]) for s in ("train", "val", "test")}
        assert spk["test"] and not (spk["test"] & spk["train"]) and not (spk["val"] & spk["train"])
    again = prepare("csv", table, tmp_path / "a.csv", text_col="text", speaker_col="speaker", seed=3).df
    other = prepare("csv", table, tmp_path / "o.csv", text_col="text", speaker_col="speaker", seed=4).df
    assert again.fold.tolist() == df.fold.tolist() and other.fold.tolist() != df.fold.tolist()


def test_speaker_folds_need_as_many_speakers_as_folds(tmp_path):
    table = _speaker_table(tmp_path / "d", n_speakers=4)
    with pytest.raises(ValueError, match="4 speakers .* fewer than n_folds=5.*--n-folds"):
        prepare("csv", table, tmp_path / "m.csv", speaker_col="speaker")
    m = prepare("csv", table, tmp_path / "m.csv", speaker_col="speaker", n_folds=4)
    assert m.df.groupby("speaker").fold.nunique().eq(1).all() and m.df.fold.nunique() == 4


def test_no_speaker_column_warns_and_names_the_column_to_give(tmp_path):
    table = _speaker_table(tmp_path / "d", speaker_header="Speaker")
    with pytest.warns(SplitWarning, match=r"by row, not by speaker.*-o speaker_col=Speaker"):
        m = prepare("csv", table, tmp_path / "m.csv")
    assert m.df.groupby("fold").label.nunique().eq(4).all()  # still stratified, by row
    given = pd.read_csv(table).assign(part="train")
    given.to_csv(table, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every split given by the user: nothing drawn, nothing to warn about
        prepare("csv", table, tmp_path / "g.csv", split_col="part")


# ------------------------------------------------------------------ manifests hold only media (issue 13)


def test_media_outside_the_tables_folder_are_rejected_unless_allowed(tmp_path):
    table = make_table(tmp_path / "data", n_per_class=4, n_speakers=4)
    df = pd.read_csv(table)
    df.loc[0, "wav"] = "/etc/hostname"
    df.loc[1, "wav"] = "../../../etc/passwd"
    (tmp_path / "elsewhere.wav").write_bytes(TINY_WAV)
    df.loc[2, "wav"] = str(tmp_path / "elsewhere.wav")  # real audio, but outside the folder
    (tmp_path / "data" / "clips" / "link.wav").symlink_to(tmp_path / "elsewhere.wav")
    df.loc[3, "wav"] = "clips/link.wav"  # inside by name, outside once the link is followed
    df.to_csv(table, index=False)
    m = prepare("csv", table, tmp_path / "m.csv", on_error="skip", n_folds=3, **COLS)
    rejects = pd.read_csv(Manifest.rejects_path(tmp_path / "m.csv"))
    out = rejects[rejects.reason == "outside_root"]
    assert sorted(out.id) == sorted(df.utt[:4]) and "--allow-outside-root" in out.detail.iloc[0]
    assert len(m.df) == 8
    m = prepare("csv", table, tmp_path / "m2.csv", on_error="skip", allow_outside_root=True, n_folds=3, **COLS)
    rejects = pd.read_csv(Manifest.rejects_path(tmp_path / "m2.csv")).set_index("id")
    # allowed outside: the real audio is kept; /etc files are still no media
    assert df.utt[2] in set(m.df.id) and df.utt[3] in set(m.df.id)
    assert rejects.loc[df.utt[0], "reason"] == "not_media"  # /etc/hostname: text, not media
    assert rejects.loc[df.utt[1], "reason"] in ("not_media", "missing_file")  # /etc/passwd from tmp: not there


def test_files_that_are_not_media_are_rejected_by_name(tmp_path):
    table = make_table(tmp_path / "data", n_per_class=4, n_speakers=4)
    clips = tmp_path / "data" / "clips"
    (clips / "happy0.wav").write_text("not audio at all\n" * 10)
    (clips / "happy1.wav").write_bytes(b"")
    import cv2

    cv2.imwrite(str(clips / "face.png"), np.zeros((8, 8, 3), np.uint8))
    df = pd.read_csv(table)
    df.loc[2, "wav"] = "clips/face.png"  # an image is media, but no audio
    df.to_csv(table, index=False)
    prepare("csv", table, tmp_path / "m.csv", on_error="skip", n_folds=3, **COLS)
    rejects = pd.read_csv(Manifest.rejects_path(tmp_path / "m.csv")).set_index("id")
    assert set(rejects.index) == {"happy0", "happy1", "happy2"} and set(rejects.reason) == {"not_media"}
    assert "empty file" in rejects.loc["happy1", "detail"] and "no audio stream" in rejects.loc["happy2", "detail"]
    with pytest.raises(PrepareError, match="3 not_media: happy0"):
        prepare("csv", table, tmp_path / "m2.csv", n_folds=3, **COLS)


def test_mojibake_is_repaired_and_unknown_labels_are_rejects(tmp_path):
    table = make_table(tmp_path / "data", n_per_class=4, n_speakers=4)
    df = pd.read_csv(table)
    df.loc[0, "words"] = "I donâ€™t know"
    df.loc[1, "emotion"] = "hapy"  # a typo: not a new class
    df.to_csv(table, index=False)
    m = prepare("csv", table, tmp_path / "m.csv", on_error="skip", n_folds=3, **COLS)
    assert m.df.set_index("id").loc[df.utt[0], "text"] == "I don\u2019t know"
    assert m.label_set.classes == ("happy", "neutral", "sad")
    rejects = pd.read_csv(Manifest.rejects_path(tmp_path / "m.csv")).set_index("id")
    assert rejects.loc[df.utt[1], "reason"] == "unknown_label"
    assert "'hapy'" in rejects.loc[df.utt[1], "detail"] and "happy, neutral, sad" in rejects.loc[df.utt[1], "detail"]
    df["emotion"] = ["pos", "neg", "mid"] * 4  # no emotion names at all: the classes must be given
    df.to_csv(table, index=False)
    with pytest.raises(ValueError, match="give the classes with -o label_set"):
        prepare("csv", table, tmp_path / "m2.csv", n_folds=3, **COLS)
    m = prepare("csv", table, tmp_path / "m3.csv", label_set="pos,neg,mid", n_folds=3, **COLS)
    assert len(m.df) == 12
