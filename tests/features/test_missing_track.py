"""A missing track is absent, not an error (issue 13): a video without an audio track gives absent
audio, a clip with sound only (no video track) in the video column gives absent video; neither is
an extraction error. And a run whose input is absent in most training rows warns before training."""

from __future__ import annotations

import warnings
from fractions import Fraction

import av
import numpy as np
import pandas as pd

from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.features.cache import load_features
from emofuse.features.extract import extract
from emofuse.labels import LabelSet
from emofuse.media import write_video


def _audio_only_mp4(path, seconds=1.0, sr=16000):
    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("aac", rate=sr, layout="mono")
        t = np.arange(int(seconds * sr)) / sr
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None], format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
        for p in s.encode(frame):
            out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path


def test_missing_tracks_are_absent_not_errors(tmp_path):
    rng = np.random.default_rng(0)
    silent_video = write_video(tmp_path / "mute.mp4", (rng.integers(0, 255, (48, 64, 3), np.uint8) for _ in range(8)), 8)
    sound_only = _audio_only_mp4(tmp_path / "voice.mp4")
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"id": rid, "split": "train", "fold": -1, "label": "happy", "video": str(v)}
            for rid, v in (("mute", silent_video), ("voice", sound_only))]
    m = Manifest("tracks", LabelSet("two", ("happy", "sad")), pd.DataFrame(rows, columns=MANIFEST_COLUMNS), {})
    entries = extract(m, ["mfcc", "hog"], tmp_path / "cache", progress=False)
    assert all(e.meta.get("errors", []) == [] for e in entries), [e.meta.get("errors") for e in entries]
    audio = load_features(tmp_path / "cache", "tracks", "mfcc").lookup(["mute", "voice"])
    video = load_features(tmp_path / "cache", "tracks", "hog").lookup(["mute", "voice"])
    assert audio.present.tolist() == [False, True]  # the mute video has no audio track; the sound-only clip has
    assert video.present.tolist() == [True, False]  # and no video track in the sound-only clip


def test_training_warns_when_an_input_is_mostly_absent(capsys):
    from emofuse.data.dataset import ModalityFeatures
    from emofuse.training.run import _warn_absent

    df = pd.DataFrame({"split": ["train"] * 10 + ["test"] * 2})
    present = np.array([True] * 3 + [False] * 7 + [True, True])

    class Data:
        features = {"audio": ModalityFeatures("egemaps", np.zeros((12, 2)), present),
                    "text": ModalityFeatures("minilm", np.zeros((12, 2)), np.ones(12, bool))}

    class M:
        pass

    m = M()
    m.df = df
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_absent(Data(), m)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "audio (egemaps) is absent in 7 of the 10 training rows (present in 3)" in msgs[0]
    assert "absent in 7 of the 10" in capsys.readouterr().out
