"""MER2025 Track 1 adapter and the common checks of `prepare`, on a tiny fake tree (empty media files)."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from emofuse.corpora.base import Manifest, PrepareError, prepare
from emofuse.registry import CORPORA

CLASSES = ("neutral", "angry", "happy", "sad", "worried", "surprise")


def make_tree(root: Path, n_per_class: int = 5, extra_labels=(), candidates=(), no_video=(), with_audio=True) -> Path:
    """ROOT/video/<name>.mp4, ROOT/audio/<name>.wav (empty files), the three CSVs."""
    (root / "video").mkdir(parents=True)
    (root / "audio").mkdir()
    labels = [(f"s{c}_{i}", cls) for c, cls in enumerate(CLASSES) for i in range(n_per_class)]
    labels += list(extra_labels)
    names = [n for n, _ in labels] + list(candidates)
    for n in names:
        if n not in no_video:
            (root / "video" / f"{n}.mp4").touch()
        if with_audio:
            (root / "audio" / f"{n}.wav").touch()
    with open(root / "track1_train_disdim.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "discrete", "valence"])
        w.writerows([n, lab, "0.5"] for n, lab in labels)
    with open(root / "subtitle_chieng.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "chinese", "english"])
        for n in names:
            w.writerow([n, "你好，世界", f'He said "hi, {n}", then left.'])
    with open(root / "track_all_candidates.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name"])
        w.writerows([n] for n in list(candidates) + [labels[0][0]])  # one labelled name among them
    return root


def test_registered_and_options_listed():
    assert "mer2025" in CORPORA.names()
    with pytest.raises(TypeError, match="valid options: .*include_unlabeled.*n_folds.*seed.*test_fold"):
        CORPORA.get("mer2025")(not_an_option=1)


def test_clean_tree(tmp_path):
    root = make_tree(tmp_path / "mer", candidates=("u1", "u2"))
    m = prepare("mer2025", root, tmp_path / "m.csv")
    df = m.df
    assert len(df) == 30 + 2 and m.meta["rows_in"] == 32 and m.meta["rows_rejected"] == 0
    un = df[df.split == "unlabeled"]
    assert sorted(un.id) == ["u1", "u2"] and (un.label == "").all() and (un.fold == -1).all()
    lab = df[df.split != "unlabeled"]
    assert set(lab.fold) == set(range(5))
    # fold 0 test, fold 1 val, the rest train; stratified: one of each class per fold
    assert (lab[lab.fold == 0].split == "test").all() and (lab[lab.fold == 1].split == "val").all()
    assert (lab[lab.fold >= 2].split == "train").all()
    assert lab.groupby("fold").label.nunique().eq(6).all()
    row = df.set_index("id").loc["s0_0"]
    assert row.text == 'He said "hi, s0_0", then left.'  # quoted commas read as one field
    assert row.video == str((root / "video" / "s0_0.mp4").absolute())
    assert row.audio == str((root / "audio" / "s0_0.wav").absolute())
    assert m.meta["synthetic"] is False
    assert not Manifest.rejects_path(tmp_path / "m.csv").exists()


def test_audio_optional_text_fallback_and_synthetic_marker(tmp_path):
    root = make_tree(tmp_path / "mer", with_audio=False)
    (root / "SYNTHETIC").write_text("synthetic\n")
    pd.DataFrame({"name": ["s0_0"], "chinese": ["只有中文"], "english": [""]}).to_csv(
        root / "subtitle_chieng.csv", index=False)
    m = prepare("mer2025", root, tmp_path / "m.csv")
    assert (m.df.audio == "").all()  # the video's own audio track is used later
    by_id = m.df.set_index("id")
    assert by_id.loc["s0_0", "text"] == "只有中文" and by_id.loc["s1_0", "text"] == ""
    assert m.meta["synthetic"] is True


def test_problems_raise_with_counts_and_names(tmp_path):
    root = make_tree(tmp_path / "mer", extra_labels=[("s0_1", "happy"), ("odd1", "bored")], no_video=("s2_3",))
    with pytest.raises(PrepareError) as e:
        prepare("mer2025", root, tmp_path / "m.csv")
    msg = str(e.value)
    assert "3 of 32 rows rejected" in msg
    assert "1 duplicate_id: s0_1" in msg and "1 unknown_label: odd1" in msg and "1 missing_file: s2_3" in msg
    assert not (tmp_path / "m.csv").exists()


def test_skip_writes_rejects_and_accounts_for_every_row(tmp_path):
    root = make_tree(tmp_path / "mer", extra_labels=[("s0_1", "happy"), ("odd1", "bored")], no_video=("s2_3",))
    with open(root / "track1_train_disdim.csv", "a", encoding="utf-8") as f:
        f.write("broken,neutral,0.1,surplus,fields\n,happy,0.2\n")  # unparsable line, then an empty name
    m = prepare("mer2025", root, tmp_path / "m.csv", on_error="skip")
    rej = pd.read_csv(Manifest.rejects_path(tmp_path / "m.csv"), dtype=str, keep_default_na=False)
    assert sorted(rej.reason) == ["duplicate_id", "missing_file", "unknown_label", "unreadable_row", "unreadable_row"]
    assert set(rej.id) >= {"s0_1", "odd1", "s2_3", "broken"}
    meta = m.meta
    assert meta["rows_in"] == 34 == meta["rows_kept"] + meta["rows_rejected"]
    assert len(m) == 29 and "s2_3" not in m.ids and "odd1" not in m.ids
    # the kept s0_1 is the first one (label neutral), not the duplicate
    assert m.df.set_index("id").loc["s0_1", "label"] == "neutral"


def test_rejected_rows_do_not_shift_folds(tmp_path):
    clean = prepare("mer2025", make_tree(tmp_path / "a"), tmp_path / "a.csv").df
    dirty = prepare("mer2025", make_tree(tmp_path / "b", extra_labels=[("odd1", "bored"), ("s0_1", "sad")]),
                    tmp_path / "b.csv", on_error="skip").df
    assert clean[["id", "fold", "split"]].equals(dirty[["id", "fold", "split"]])


def test_seeded_folds_stable_and_seed_dependent(tmp_path):
    root = make_tree(tmp_path / "mer", n_per_class=10)
    a = prepare("mer2025", root, tmp_path / "a.csv", seed=1).df
    b = prepare("mer2025", root, tmp_path / "b.csv", seed=1).df
    c = prepare("mer2025", root, tmp_path / "c.csv", seed=2).df
    assert a.fold.tolist() == b.fold.tolist()
    assert a.fold.tolist() != c.fold.tolist()
    assert c.groupby("fold").label.value_counts().eq(2).all()  # still stratified under another seed


def test_rerun_gives_identical_manifest(tmp_path):
    root = make_tree(tmp_path / "mer", candidates=("u1",))
    out = tmp_path / "m.csv"
    prepare("mer2025", root, out, seed=3)
    first = out.read_bytes(), Manifest.meta_path(out).read_bytes()
    prepare("mer2025", root, out, seed=3)
    assert (out.read_bytes(), Manifest.meta_path(out).read_bytes()) == first
    loaded = Manifest.load(out)
    assert loaded.label_set.name == "mer6" and len(loaded) == 31


def test_missing_layout_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="track1_train_disdim.csv"):
        prepare("mer2025", tmp_path, tmp_path / "m.csv")
