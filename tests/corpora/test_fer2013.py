"""FER2013 adapter: labels.csv and folder layouts, usage splits, seeded folds for a training-only copy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emofuse.corpora.base import prepare
from tests.conftest import need

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _image(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 48), value, np.uint8)).save(path)


def test_labels_csv_usages_and_ids(tmp_path):
    lines = ["path,split,label,fer2013_usage"]
    for usage, folder in (("Training", "train"), ("PublicTest", "test"), ("PrivateTest", "test")):
        for i, lab in enumerate(LABELS):
            rel = f"{folder}/{lab}/{usage}_{i}.jpg"
            _image(tmp_path / rel)
            lines.append(f"{rel},{folder},{lab},{usage}")
    # the same file name under two labels is two images (FER2013 has such pairs)
    _image(tmp_path / "train/sad/Training_0.jpg")
    lines.append("train/sad/Training_0.jpg,train,sad,Training")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning) as caught:  # a partial copy: each usage's count is checked
        m = prepare("fer2013", tmp_path, tmp_path / "m.csv")
    assert any("8 Training images, FER2013 has 28709" in str(w.message) for w in caught)
    df = m.df.set_index("id")
    assert len(df) == 22 and m.meta["split_counts"] == {"train": 8, "val": 7, "test": 7}
    assert df.loc["train/angry/Training_0", "label"] == "angry" and df.loc["train/sad/Training_0", "label"] == "sad"
    assert df.loc["test/happy/PublicTest_3", "split"] == "val" and df.loc["test/happy/PrivateTest_3", "split"] == "test"
    assert df["video"].str.endswith(".jpg").all() and (df["audio"] == "").all()
    # face crops: extract uses them whole at 64 px without being told (features.extract.decoding_for)
    from emofuse.corpora.base import Manifest

    assert Manifest.load(tmp_path / "m.csv").meta["decoding"]["images_are_faces"] is True
    only = prepare("fer2013", tmp_path, tmp_path / "o.csv", usage="PrivateTest", check_counts=False)
    assert set(only.df["split"]) == {"test"} and only.meta["rows_excluded"] == 15


def test_training_only_copy_gets_seeded_stratified_folds(tmp_path):
    for lab in LABELS:
        for i in range(10):
            _image(tmp_path / "train" / lab / f"Training_{lab}{i}.jpg", value=i)
    a = prepare("fer2013", tmp_path, tmp_path / "a.csv", n_folds=10, check_counts=False).df
    b = prepare("fer2013", tmp_path, tmp_path / "b.csv", n_folds=10, check_counts=False).df
    assert a.equals(b) and a["split"].value_counts().to_dict() == {"train": 56, "val": 7, "test": 7}
    assert a.groupby("split")["label"].nunique().eq(7).all()  # every class in every split


@pytest.mark.realdata
def test_real_training_split(data_root, tmp_path):
    m = prepare("fer2013", need(data_root, "fer2013_train"), tmp_path / "f.csv", n_folds=10)
    assert len(m) == 28709 and m.meta["rows_rejected"] == 0 and m.df["id"].is_unique
    assert m.df["label"].value_counts()["disgust"] == 436
    counts = m.meta["split_counts"]
    assert counts["test"] == counts["val"] == pytest.approx(2871, abs=2)
