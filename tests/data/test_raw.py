"""Raw-input batches: dialogue context (order, speakers, limits), lazy media, masks; MELD's real context."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofuse.config import RawInputConfig
from emofuse.corpora.base import Manifest
from emofuse.data.raw import RawDataset, collate_raw, dialogue_context
from emofuse.labels import MELD7
from tests.conftest import need


def _manifest(rows: list[tuple]) -> Manifest:
    df = pd.DataFrame(rows, columns=["id", "text", "speaker", "dialogue", "label"])
    for col, v in (("split", "train"), ("fold", -1), ("video", ""), ("audio", ""), ("soft_label", "")):
        df[col] = v
    return Manifest("meld", MELD7, df)


ROWS = [
    ("d0u0", "Hi.", "Ross", "d0", "neutral"),
    ("d1u0", "Other dialogue.", "Joey", "d1", "joy"),
    ("d0u1", "Hey!", "Rachel", "d0", "joy"),
    ("d0u2", "", "Ross", "d0", "neutral"),  # no text: neither context for others nor present
    ("d0u3", "What?", "Monica", "d0", "surprise"),
    ("x", "Alone.", "", "", "neutral"),  # no dialogue: no context
]


def test_dialogue_context_order_speakers_and_limit():
    texts, ctx = dialogue_context(_manifest(ROWS).df, turns=2)
    assert texts[0] == "Ross: Hi." and ctx[0] == []
    assert ctx[2] == ["Ross: Hi."]  # the other dialogue's row in between does not count
    assert ctx[4] == ["Ross: Hi.", "Rachel: Hey!"]  # oldest first; the empty utterance is skipped
    assert texts[5] == "Alone." and ctx[5] == []
    _, ctx1 = dialogue_context(_manifest(ROWS).df, turns=1)
    assert ctx1[4] == ["Rachel: Hey!"]
    plain, none = dialogue_context(_manifest(ROWS).df, turns=0)
    assert plain[4] == "What?" and none[4] == []  # no context: the bare utterance, no speaker


def test_raw_dataset_text_batches():
    ds = RawDataset.from_manifest(_manifest(ROWS), {"text": "raw"}, RawInputConfig(context=3))
    assert ds.in_dims() == {"text": 0} and ds.fit_standardiser() == {} and ds.standardised({}) is ds
    sub = ds.subset([4, 3])
    batch = collate_raw([sub[0], sub[1]])
    assert batch["text"] == ["Monica: What?", "Ross: "] and batch["text_mask"].tolist() == [True, False]
    assert batch["text_context"][0] == ["Ross: Hi.", "Rachel: Hey!"]
    assert batch["label"].tolist() == [MELD7.index("surprise"), MELD7.index("neutral")]
    with pytest.raises(ValueError, match="to 'raw'"):
        RawDataset.from_manifest(_manifest(ROWS), {"text": "minilm"}, RawInputConfig())


def test_raw_audio_and_video_are_decoded_lazily(tmp_path):
    from emofuse.media.audio import write_wav

    wav = write_wav(tmp_path / "a.wav", 0.1 * np.sin(np.linspace(0, 800, 32000)).astype(np.float32))
    rows = [("a", "x", "", "", "joy"), ("b", "y", "", "", "joy"), ("c", "z", "", "", "joy")]
    m = _manifest(rows)
    m.df["audio"] = [str(wav), "", str(tmp_path / "broken.wav")]
    ds = RawDataset.from_manifest(m, {"audio": "raw"}, RawInputConfig(max_audio_s=1.5))
    batch = collate_raw([ds[0], ds[1], ds[2]])  # a missing and an unreadable clip: absent, not an error
    assert batch["audio"].shape == (3, 24000) and batch["audio_mask"].sum(1).tolist() == [24000, 0, 0]
    m.df["video"] = ["", "", str(tmp_path / "none.mp4")]
    vid = RawDataset.from_manifest(m, {"video": "raw"}, RawInputConfig(face_size=32))
    vb = collate_raw([vid[0], vid[2]])
    assert vb["video"].dtype.is_floating_point is False and not vb["video_mask"].any()


def test_meld_context_on_real_data(data_root, tmp_path):
    from emofuse.corpora.base import prepare

    m = prepare("meld", need(data_root, "meld"), tmp_path / "m.csv")
    ds = RawDataset.from_manifest(m, {"text": "raw"}, RawInputConfig(context=2))
    i = ds.ids.index("train_dia0_utt2")
    item = ds[i]
    assert item["text"] == "Chandler: That I did. That I did."
    assert item["text_context"] == [
        "Chandler: also I was the point person on my company’s transition from the KL-5 to GR-6 system.",
        "The Interviewer: You must’ve had your hands full.",
    ]
    first = [ds[ds.ids.index(f"{s}_dia0_utt0")]["text_context"] for s in ("train", "dev", "test")]
    assert first == [[], [], []]  # each dialogue starts without context, in every split
