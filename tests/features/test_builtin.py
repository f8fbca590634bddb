"""The built-in encoders on real samples (../shared/data through the data_root fixture)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofuse.features import build_encoder
from emofuse.features.encoders.builtin import FER2013_CLASSES
from tests.conftest import need

pytestmark = pytest.mark.realdata


def test_minilm_puts_happy_sentences_together():
    enc = build_encoder("minilm")
    assert (enc.modality, enc.dim) == ("text", 384)
    happy, joyful, table = enc.encode(["I am so happy", "what a joyful day", "the table is brown"])
    for e in (happy, joyful, table):
        assert np.isclose(np.linalg.norm(e.vector), 1.0, atol=1e-5)  # sentence-transformers normalises
        assert e.sequence.shape[1] == 384
    assert happy.sequence.shape[0] == 6  # [CLS] i am so happy [SEP]
    assert happy.vector @ joyful.vector > happy.vector @ table.vector + 0.3
    # Golden slice, equal to what sentence-transformers gives for this model (checked once by
    # hand; it is not a dependency): guards pooling, tokenisation and the packaged weights.
    np.testing.assert_allclose(happy.vector[:4], [-0.032527, 0.010308, 0.049285, -0.003784], atol=1e-5)


def _read_ravdess(data_root):
    import soundfile as sf

    root = need(data_root, "ravdess_speech")
    labels = pd.read_csv(root / "labels.csv", dtype=str)

    def wave(**where):
        rows = labels
        for k, v in where.items():
            rows = rows[rows[k] == v]
        audio, sr = sf.read(root / rows.iloc[0]["file"], dtype="float32")
        assert sr == 16000
        return audio

    return wave


def test_fer2013_cnn_knows_fer2013_faces(data_root):
    from PIL import Image

    root = need(data_root, "fer2013_train")
    labels = pd.read_csv(root / "labels.csv").sample(100, random_state=0)
    faces = [np.asarray(Image.open(root / p).convert("RGB"))[None] for p in labels["path"]]  # (1, 48, 48, 3) each
    enc = build_encoder("fer2013")
    assert (enc.modality, enc.dim) == ("video", 7 + 128)
    out = enc.encode(faces)
    probs = np.stack([e.vector[:7] for e in out])  # (100, 7)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    truth = np.array([FER2013_CLASSES.index(lab) for lab in labels["label"]])
    true_p = probs[np.arange(len(truth)), truth].mean()
    # Chance is 1/7; the CNN was trained on these images and gives ~0.64 (accuracy ~0.73).
    assert true_p > 0.45, true_p
    assert (probs.argmax(1) == truth).mean() > 0.55
    # The embedding part is the CNN's last feature map pooled: informative, not constant.
    assert np.stack([e.vector[7:] for e in out]).std(0).mean() > 0.01
    # A clip: per-frame sequence, vector = mean over frames; grey input gives the same as RGB.
    clip = np.concatenate(faces[:3])  # (3, 48, 48, 3)
    e = enc.encode([clip])[0]
    assert e.sequence.shape == (3, 135)
    np.testing.assert_allclose(e.vector, e.sequence.mean(0), atol=1e-6)
    np.testing.assert_allclose(enc.encode([clip[..., 0]])[0].vector, e.vector, atol=1e-6)


def test_egemaps_separates_angry_from_neutral(data_root):
    wave = _read_ravdess(data_root)
    angry = wave(actor="01", emotion="angry", intensity="strong", statement="01")
    neutral = wave(actor="01", emotion="neutral", statement="01")
    enc = build_encoder("egemaps")
    a, n = enc.encode([angry, neutral])
    assert a.vector.shape == (88,) and a.sequence is None
    assert np.isfinite(a.vector).all() and np.isfinite(n.vector).all()
    assert np.abs(a.vector - n.vector).max() > 1.0
    # The 25 low-level descriptors every 10 ms, as a sequence.
    lld = build_encoder("egemaps_lld").encode([angry])[0]
    assert lld.sequence.shape[1] == 25 and abs(len(lld.sequence) - len(angry) // 160) < 10
    # Too short for openSMILE's windows: a clear error, not NaNs.
    with pytest.raises(ValueError, match="too short"):
        enc.encode([angry[:400]])


def test_mfcc_gives_40_coefficients_per_10ms(data_root):
    wave = _read_ravdess(data_root)
    audio = wave(actor="02", emotion="happy")
    enc = build_encoder("mfcc")
    e = enc.encode([audio])[0]
    assert e.sequence.shape == (1 + len(audio) // 160, 40)  # centred frames, 10 ms hop at 16 kHz
    np.testing.assert_allclose(e.vector, e.sequence.mean(0), rtol=1e-5, atol=1e-4)
    ms = build_encoder("mfcc@stats=mean_std").encode([audio])[0]
    assert ms.vector.shape == (80,) and ms.sequence is None
    np.testing.assert_allclose(ms.vector[40:], e.sequence.std(0), rtol=1e-4, atol=1e-4)
