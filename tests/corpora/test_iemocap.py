"""IEMOCAP adapter on a tiny fake release tree written in the real file formats (empty wavs)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from emofuse.corpora.base import Manifest, PrepareError, prepare

# (utterance suffix, gold code, evaluator lines, transcript); every dialogue gets these turns
TURNS = [
    ("F000", "neu", ["Neutral state;", "Neutral state;", "Neutral state;"], "Excuse me."),
    ("M000", "exc", ["Excited;", "Happiness;", "Neutral state;"], "Yeah, great!"),
    ("F001", "fru", ["Frustration;", "Frustration;", "Anger;"], "Whatever."),
    ("M001", "ang", ["Frustration; Anger;", "Anger;", "Other:annoyed;"], "Stop it, now."),
    ("F002", "sad", ["Frustration;", "Fear;", "Other:tired;"], "I know..."),
    ("M002", "xxx", ["Sadness;", "Anger;", "Neutral state;"], "Hm."),
]


def write_dialog(session_dir: Path, dialog: str, turns=TURNS, skip_wav: tuple[str, ...] = ()) -> None:
    d = session_dir / "dialog"
    (d / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
    (d / "transcriptions").mkdir(parents=True, exist_ok=True)
    wav_dir = session_dir / "sentences" / "wav" / dialog
    wav_dir.mkdir(parents=True, exist_ok=True)
    ev = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    tr = []
    for i, (suffix, code, votes, text) in enumerate(turns):
        utt = f"{dialog}_{suffix}"
        start, end = 2.0 * i + 0.29, 2.0 * i + 1.83
        ev.append(f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[2.5000, 3.0000, 2.5000]")
        ev += [f"C-E{k + 1}:\t{v}\t()" for k, v in enumerate(votes)]
        ev.append("C-F1:\tAnger;\t(self-assessment: must not vote)")
        ev += ["A-E1:\tval 3; act 2; dom  2;\t()", "A-F1:\tval 2; act 3; dom  3;\t(calm)", ""]
        tr.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {text}")
        if suffix not in skip_wav:
            (wav_dir / f"{utt}.wav").touch()
    tr.insert(2, f"{dialog}_MXX0 [000.0000-000.5000]: [BREATHING]")  # non-utterance lines exist
    (d / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(ev) + "\n")
    (d / "transcriptions" / f"{dialog}.txt").write_text("\n".join(tr) + "\n")


def make_tree(root: Path, skip_wav=()) -> Path:
    for k in range(1, 6):
        write_dialog(root / f"Session{k}", f"Ses0{k}F_impro01", skip_wav=skip_wav if k == 2 else ())
    write_dialog(root / "Session1", "Ses01M_script01_1")
    (root / "Session1" / "dialog" / "EmoEvaluation" / "Categorical").mkdir()  # per-evaluator folder: ignored
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "IEMOCAP_full_release")


def test_excluded_categories_are_counted_not_errors(tree, tmp_path):
    out = tmp_path / "m.csv"
    m = prepare("iemocap", tree, out)  # on_error="raise" by default: exclusions must not raise
    # 6 dialogues x 6 turns: fru and xxx excluded, 4 kept per dialogue
    assert m.meta["rows_in"] == 36 and len(m) == 24 and m.meta["rows_excluded"] == 12
    assert m.meta["rows_kept"] + m.meta["rows_rejected"] == m.meta["rows_in"]
    assert m.meta["rejects_by_reason"] == {"excluded": 12}
    rej = pd.read_csv(Manifest.rejects_path(out))
    assert set(rej.reason) == {"excluded"} and rej.detail.str.contains("4-class protocol").all()
    assert sorted(set(m.df.label)) == ["angry", "happy", "neutral", "sad"]  # exc merged into happy


def test_soft_labels_from_evaluator_votes(tree, tmp_path):
    m = prepare("iemocap", tree, tmp_path / "m.csv")
    soft = {i: s for i, s in zip(m.df.id, m.df.soft_label)}
    order = list(m.label_set.classes)
    assert order == ["neutral", "happy", "sad", "angry"]
    assert json.loads(soft["Ses01F_impro01_F000"]) == [1.0, 0.0, 0.0, 0.0]
    assert json.loads(soft["Ses01F_impro01_M000"]) == pytest.approx([1 / 3, 2 / 3, 0, 0], abs=1e-6)
    # "Frustration; Anger;" is half a vote for angry, "Anger;" a whole one, Other none (C-F1 never votes)
    assert json.loads(soft["Ses01F_impro01_M001"]) == [0.0, 0.0, 0.0, 1.0]
    assert soft["Ses01F_impro01_F002"] == ""  # no vote falls in the 4 classes
    probs = m.soft_labels()
    assert probs.shape == (24, 4) and probs.sum(1) == pytest.approx(1.0)


def test_session_splits_folds_speakers_text(tree, tmp_path):
    df = prepare("iemocap", tree, tmp_path / "m.csv").df
    by_session = df.groupby(df.id.str[:5]).agg({"split": set, "fold": set})
    assert by_session.loc["Ses05", "split"] == {"test"} and by_session.loc["Ses04", "split"] == {"val"}
    assert by_session.loc["Ses01", "split"] == {"train"}
    assert [by_session.loc[f"Ses0{k}", "fold"] for k in range(1, 6)] == [{k - 1} for k in range(1, 6)]
    speakers = df.groupby("split").speaker.apply(set)
    assert speakers["test"] == {"Ses05F", "Ses05M"} and not speakers["test"] & speakers["train"]
    row = df.set_index("id").loc["Ses01M_script01_1_M001"]
    assert row.text == "Stop it, now." and row.dialogue == "Ses01M_script01_1" and row.speaker == "Ses01M"
    assert row.audio == str((tree / "Session1/sentences/wav/Ses01M_script01_1/Ses01M_script01_1_M001.wav").absolute())

    other = prepare("iemocap", tree, tmp_path / "o.csv", test_session=1).df
    assert set(other[other.id.str.startswith("Ses01")].split) == {"test"}
    assert set(other[other.id.str.startswith("Ses05")].split) == {"val"}  # the session before, wrapping


def test_options(tree, tmp_path):
    m = prepare("iemocap", tree, tmp_path / "m.csv", include_scripted=False)
    assert len(m) == 20 and not m.df.id.str.contains("script").any() and m.meta["rows_excluded"] == 16
    with pytest.raises(ValueError, match="two different sessions"):
        prepare("iemocap", tree, tmp_path / "m.csv", test_session=4, val_session=4)
    with pytest.raises(TypeError, match="valid options: include_scripted, n_folds, seed, test_session, val_session"):
        prepare("iemocap", tree, tmp_path / "m.csv", test_sessions=4)


def test_missing_wav_raises_and_mentions_exclusions(tmp_path):
    root = make_tree(tmp_path / "iemocap", skip_wav=("M000",))
    with pytest.raises(PrepareError, match=r"1 of 36 rows rejected \(12 more excluded.*missing_file: Ses02F_impro01_M000"):
        prepare("iemocap", root, tmp_path / "m.csv")
    m = prepare("iemocap", root, tmp_path / "m.csv", on_error="skip")
    assert len(m) == 23 and m.meta["rows_rejected"] == 13
