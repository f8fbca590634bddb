"""The ComParE-2016 functionals encoder on real RAVDESS clips (../shared/data through data_root)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofuse.features import build_encoder
from tests.conftest import need

pytestmark = pytest.mark.realdata


def _wave(data_root, **where) -> np.ndarray:
    """The first RAVDESS speech clip whose labels.csv row matches `where` (16 kHz mono)."""
    import soundfile as sf

    root = need(data_root, "ravdess_speech")
    rows = pd.read_csv(root / "labels.csv", dtype=str)
    for k, v in where.items():
        rows = rows[rows[k] == v]
    audio, sr = sf.read(root / rows.iloc[0]["file"], dtype="float32")
    assert sr == 16000
    return audio


def test_compare_gives_6373_functionals_that_tell_angry_from_neutral(data_root):
    import opensmile

    angry = _wave(data_root, actor="01", emotion="angry", intensity="strong", statement="01")
    neutral = _wave(data_root, actor="01", emotion="neutral", statement="01")
    enc = build_encoder("compare")
    assert (enc.modality, enc.dim, enc.gives_sequence) == ("audio", 6373, False)
    a, n = enc.encode([angry, neutral])
    assert a.vector.shape == (6373,) and a.sequence is None
    assert np.isfinite(a.vector).all() and np.isfinite(n.vector).all()
    # Columns in openSMILE's own order: a shouted line has more energy and a higher pitch.
    names = opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016,
                            feature_level=opensmile.FeatureLevel.Functionals).feature_names
    energy, f0 = names.index("pcm_RMSenergy_sma_amean"), names.index("F0final_sma_amean")
    assert a.vector[energy] > 2 * n.vector[energy]
    assert a.vector[f0] > n.vector[f0]
    with pytest.raises(ValueError, match="too short"):
        enc.encode([angry[:400]])


def test_compare_and_egemaps_are_cached_apart():
    compare, egemaps = build_encoder("compare"), build_encoder("egemaps")
    assert compare.config()["feature_set"] == "ComParE_2016"
    # eGeMAPS' config (hence its cache fingerprint) is what it was before the two shared a base class
    assert egemaps.config()["feature_set"] == "eGeMAPSv02" and egemaps.config()["level"] == "Functionals"
    assert compare.fingerprint() != egemaps.fingerprint()
