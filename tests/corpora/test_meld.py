"""MELD adapter: the real text annotations, clip handling and mojibake repair on a tiny fake copy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emofuse.corpora.base import Manifest, PrepareError, prepare
from emofuse.corpora.meld import fix_mojibake
from tests.conftest import need

HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
          "Season", "Episode", "StartTime", "EndTime"]


def write_meld(root: Path, rows: dict[str, list[tuple]], encoding: str = "utf-8") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for subset, recs in rows.items():
        df = pd.DataFrame(
            [[i + 1, utt, spk, emo, "neutral", dia, u, 1, 1, "00:00:01,000", "00:00:02,000"]
             for i, (utt, spk, emo, dia, u) in enumerate(recs)], columns=HEADER)
        (root / f"{subset}_sent_emo.csv").write_bytes(df.to_csv(index=False).encode(encoding))
    return root


def prep(root, out, **kw):
    """prepare on a tiny copy, which is knowingly not the official size."""
    return prepare("meld", root, out, check_counts=False, **kw)


TINY = {
    "train": [("It’s fine, “really”…", "Ross", "joy", 0, 0), ("No!", "Rachel", "anger", 0, 1),
              ("Okay.", "Ross", "neutral", 1, 0)],
    "dev": [("Hi.", "Monica", "surprise", 0, 0)],
    "test": [("Bye.", "Joey", "sadness", 0, 0), ("Hm.", "Joey", "fear", 3, 2)],
}


@pytest.mark.realdata
def test_real_counts_text_only(data_root, tmp_path):
    m = prepare("meld", need(data_root, "meld"), tmp_path / "meld.csv")
    assert m.meta["split_counts"] == {"train": 9989, "val": 1109, "test": 2610}
    assert m.meta["rows_rejected"] == 0 and (m.df.video == "").all()
    assert m.df.id.is_unique and m.ids[0] == "train_dia0_utt0"
    assert set(m.df.label) == set(m.label_set.classes)
    assert not m.df.text.str.contains("â€").any()


def test_ids_splits_and_dialogues(tmp_path):
    m = prep(write_meld(tmp_path / "meld", TINY), tmp_path / "m.csv")
    df = m.df.set_index("id")
    assert list(df.index) == ["train_dia0_utt0", "train_dia0_utt1", "train_dia1_utt0", "dev_dia0_utt0",
                              "test_dia0_utt0", "test_dia3_utt2"]
    assert df.loc["dev_dia0_utt0", "split"] == "val" and df.loc["test_dia3_utt2", "dialogue"] == "test_dia3"
    assert df.loc["train_dia0_utt1", "speaker"] == "Rachel" and df.loc["train_dia0_utt0", "label"] == "joy"
    assert df.loc["train_dia0_utt0", "text"] == "It’s fine, “really”…"


def test_mojibake_copy_reads_like_the_clean_one(tmp_path):
    broken = {k: [(u.encode("utf-8").decode("cp1252", errors="ignore"), *rest) for u, *rest in v]
              for k, v in TINY.items()}
    assert "â€" in broken["train"][0][0]
    clean = prep(write_meld(tmp_path / "a", TINY), tmp_path / "a.csv").df
    fixed = prep(write_meld(tmp_path / "b", broken), tmp_path / "b.csv").df
    assert fixed.text.tolist() == clean.text.tolist()


@pytest.mark.parametrize("bad, good", [
    ("Itâ€™s", "It’s"), ("â€œHi!â€\x9d", "“Hi!”"), ("â€œHi!â€", "“Hi!”"), ("cafÃ©", "café"),
    ("Itâ\x80\x99s", "It’s"), ("It\x92s", "It’s"),
    ("CAFÉ’s", "CAFÉ’s"), ("naïve", "naïve"), ("It’s", "It’s"), ("", ""),
])
def test_fix_mojibake(bad, good):
    assert fix_mojibake(bad) == good


def test_clips(tmp_path):
    root = write_meld(tmp_path / "meld", TINY)
    (root / "train_splits").mkdir()
    for name in ("dia0_utt0", "dia0_utt1"):  # dia1_utt0 missing
        (root / "train_splits" / f"{name}.mp4").touch()
    with pytest.raises(PrepareError, match="1 missing_file: train_dia1_utt0"):
        prep(root, tmp_path / "m.csv")
    m = prep(root, tmp_path / "m.csv", on_error="skip")
    df = m.df.set_index("id")
    assert df.loc["train_dia0_utt0", "video"] == str((root / "train_splits" / "dia0_utt0.mp4").absolute())
    assert df.loc["dev_dia0_utt0", "video"] == ""  # no dev clip folder: text only
    assert len(m) == 5 and m.meta["rows_in"] == 6
    # text_only ignores the clips; clips_root points at them elsewhere
    assert (prep(root, tmp_path / "t.csv", text_only=True).df.video == "").all()
    assert len(prep(write_meld(tmp_path / "csv_only", TINY), tmp_path / "c.csv",
                       clips_root=root, on_error="skip")) == 5


def test_unparsable_ids_are_rejected(tmp_path):
    root = write_meld(tmp_path / "meld", {"train": [("Hi.", "Ross", "joy", "x", 0), ("Yo.", "Joey", "joy", 1, 0)]})
    m = prep(root, tmp_path / "m.csv", on_error="skip")
    assert m.ids == ["train_dia1_utt0"]
    rej = pd.read_csv(Manifest.rejects_path(tmp_path / "m.csv"))
    assert rej.reason.tolist() == ["unreadable_row"]


def test_partial_copy_warns(tmp_path):
    with pytest.warns(UserWarning, match="3 rows, the official release has 9989"):
        prepare("meld", write_meld(tmp_path / "meld", {"train": TINY["train"]}), tmp_path / "m.csv")
