"""CK+ adapter: labels.csv and folder layouts, subject-grouped folds, contempt and the FER2013 label map."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emofuse.corpora.base import prepare
from tests.conftest import need

CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


def _corpus(root, n_subjects=12, frames=3, table=True):
    """Each subject posed every class once, `frames` peak frames per sequence."""
    lines = ["path,label,subject,sequence"]
    for s in range(n_subjects):
        subject = f"S{100 + s:03d}"
        for q, lab in enumerate(CLASSES):
            seq = f"{subject}_{q + 1:03d}"
            for f in range(frames):
                rel = f"{lab}/{seq}_{f + 10:08d}.png"
                (root / lab).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((48, 48), 10 * s + f, np.uint8)).save(root / rel)
                lines.append(f"{rel},{lab},{subject},{seq}")
    if table:
        (root / "labels.csv").write_text("\n".join(lines) + "\n")


def test_subjects_never_straddle_splits_and_folds_are_seeded(tmp_path):
    _corpus(tmp_path)
    m = prepare("ckplus", tmp_path, tmp_path / "m.csv", n_folds=4)
    df = m.df
    assert len(df) == 12 * 7 * 3 and m.label_set.name == "ckplus7" and set(df["label"]) == set(CLASSES)
    assert df.groupby("speaker")["split"].nunique().eq(1).all()  # a subject's images share one split
    assert df.groupby("speaker")["fold"].nunique().eq(1).all() and sorted(df["fold"].unique()) == [0, 1, 2, 3]
    assert set(df.loc[df["fold"] == 0, "split"]) == {"test"} and set(df.loc[df["fold"] == 1, "split"]) == {"val"}
    assert (df["dialogue"] == df["id"].str.split("/").str[1].str.rsplit("_", n=1).str[0]).all()
    # face crops: the saved manifest tells extract to use them whole at 64 px (features.extract.decoding_for)
    from emofuse.corpora.base import Manifest

    assert Manifest.load(tmp_path / "m.csv").meta["decoding"] == {"images_are_faces": True, "face_size": 64,
                                                                   "video_sampling": None}
    again = prepare("ckplus", tmp_path, tmp_path / "a.csv", n_folds=4).df
    other = prepare("ckplus", tmp_path, tmp_path / "b.csv", n_folds=4, seed=1).df
    assert again.equals(df) and not other["fold"].equals(df["fold"])


def test_six_classes_and_the_fer2013_map_exclude_contempt(tmp_path):
    _corpus(tmp_path)
    six = prepare("ckplus", tmp_path, tmp_path / "six.csv", labels="ckplus6")
    assert "contempt" not in six.label_set.classes and len(six.df) == 12 * 6 * 3
    assert six.meta["rows_excluded"] == 12 * 3 and (tmp_path / "six.rejects.csv").is_file()
    fer = prepare("ckplus", tmp_path, tmp_path / "fer.csv", labels="fer7", all_test=True)
    assert fer.label_set.name == "fer7" and set(fer.df["split"]) == {"test"}
    assert set(fer.df["label"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise"}
    with pytest.raises(ValueError, match="labels must be one of"):
        prepare("ckplus", tmp_path, tmp_path / "x.csv", labels="meld7")


def test_folder_layout_without_labels_csv(tmp_path):
    _corpus(tmp_path, n_subjects=6, table=False)
    m = prepare("ckplus", tmp_path, tmp_path / "m.csv", n_folds=3)
    assert len(m.df) == 6 * 7 * 3 and m.df["speaker"].nunique() == 6
    assert m.df.groupby("speaker")["split"].nunique().eq(1).all()
    with pytest.raises(ValueError, match="subjects cannot fill"):
        prepare("ckplus", tmp_path, tmp_path / "n.csv", n_folds=7)


@pytest.mark.realdata
def test_real_ckplus(data_root, tmp_path):
    m = prepare("ckplus", need(data_root, "ckplus48"), tmp_path / "c.csv")
    assert len(m) == 981 and m.df["speaker"].nunique() == 118 and m.df["dialogue"].nunique() == 327
    assert m.df.groupby("speaker")["split"].nunique().eq(1).all()
    fer = prepare("ckplus", need(data_root, "ckplus48"), tmp_path / "f.csv", labels="fer7", all_test=True)
    assert len(fer) == 927 and fer.meta["rows_excluded"] == 54
