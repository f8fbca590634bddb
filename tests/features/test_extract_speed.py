"""What makes extraction fast (issue 14) must not change what it computes: rows pooled and sorted by
length before batching, one batch in flight, shards written in the background, wavs read through
libsndfile; the cache then holds what encoding each item alone gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofuse.corpora.base import MANIFEST_COLUMNS, Manifest
from emofuse.features import extract, load_features
from emofuse.features.encoders.base import Encoded
from emofuse.features.encoders.hf import build_encoder
from emofuse.media.audio import ffmpeg_audio, read_pcm_wav
from emofuse.labels import MER6
from emofuse.media.audio import load_audio, write_wav
from tests.features import tiny_hf
from tests.features.test_cache import CountingEncoder, make_manifest

WORDS = "I am so happy today what a joyful day the table is brown she was angry and sad kids dogs door".split()


def _manifest(rows: list[dict]) -> Manifest:
    full = [{c: "" for c in MANIFEST_COLUMNS} | {"id": f"u{i:03d}", "split": "train", "fold": -1, "label": "neutral"} | r
            for i, r in enumerate(rows)]
    return Manifest("speed", MER6, pd.DataFrame(full, columns=MANIFEST_COLUMNS))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("speed")
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(40)]
    wavs = [write_wav(d / f"a{i}.wav", (0.1 * rng.standard_normal(int(rng.integers(2000, 16000)))).astype(np.float32))
            for i in range(9)]
    return d, texts, wavs


def _per_item(enc, items) -> list[Encoded]:
    return [enc.encode([x])[0] for x in items]


def _check(table, ids, expected: list[Encoded]) -> None:
    sub = table.lookup(ids)
    assert sub.present.all()
    for v, s, e in zip(sub.vectors, sub.sequences or [None] * len(ids), expected):
        np.testing.assert_allclose(v, e.vector, rtol=1e-5, atol=1e-6)
        if s is not None:
            assert s.shape == e.sequence.shape
            np.testing.assert_allclose(s, e.sequence, rtol=1e-5, atol=1e-5)


def test_text_extraction_equals_encoding_each_item_alone(media, tmp_path):
    _, texts, _ = media
    m = _manifest([{"text": t} for t in texts])
    bert = build_encoder(f"hf:{tiny_hf.build('bert', tmp_path / 'bert')}")
    # minilm: the real model (unit-length vectors); tiny bert: the `hf:` path with sequences
    for spec in ("minilm", bert):
        enc = build_encoder(spec)
        (entry,) = extract(m, [enc], tmp_path / "cache", batch_size=8, progress=False)  # 5 length-sorted batches
        _check(load_features(tmp_path / "cache", "speed", enc.name), m.ids, _per_item(enc, texts))
        assert entry.stats["computed"] == 40


@pytest.mark.parametrize("spec", ["mfcc", "hubert", "wav2vec2"])
def test_audio_extraction_equals_encoding_each_item_alone(media, tmp_path, spec):
    """hubert pads with an attention mask; wav2vec2-base style models get one clip per pass."""
    _, _, wavs = media
    enc = build_encoder(spec if spec == "mfcc" else f"hf:{tiny_hf.build(spec, tmp_path / spec)}")
    m = _manifest([{"audio": str(w)} for w in wavs])
    extract(m, [enc], tmp_path / "cache", batch_size=4, progress=False)
    _check(load_features(tmp_path / "cache", "speed", enc.name), m.ids,
           _per_item(enc, [load_audio(w, sr=16000) for w in wavs]))


def test_wavs_read_through_libsndfile_are_what_load_audio_decodes(tmp_path):
    rng = np.random.default_rng(1)
    w = write_wav(tmp_path / "a.wav", (0.3 * rng.standard_normal(5000)).astype(np.float32))
    np.testing.assert_array_equal(read_pcm_wav(str(w)), ffmpeg_audio(w, sr=16000))
    import soundfile as sf

    sf.write(tmp_path / "stereo.wav", rng.standard_normal((800, 2)) * 0.1, 16000, subtype="PCM_16")
    sf.write(tmp_path / "hi.wav", rng.standard_normal(800) * 0.1, 44100, subtype="PCM_16")
    sf.write(tmp_path / "float.wav", rng.standard_normal(800) * 0.1, 16000, subtype="FLOAT")
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    for name in ("stereo.wav", "hi.wav", "float.wav", "bad.wav"):  # FFmpeg's (load_audio's) business
        assert read_pcm_wav(str(tmp_path / name)) is None


class Recording(CountingEncoder):
    """Records the order of submits and of the waits for their results."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple[str, list[int]]] = []

    def submit(self, items):
        lengths = [len(t) for t in items]
        self.events.append(("submit", lengths))
        out = self.encode(items)

        def done():
            self.events.append(("wait", lengths))
            return out

        return done


def test_rows_are_sorted_by_length_and_one_batch_stays_in_flight(tmp_path):
    m = make_manifest(30)
    rng = np.random.default_rng(0)
    m.df["text"] = [" ".join(["word"] * int(k)) for k in rng.integers(1, 20, len(m.df))]
    enc = Recording()
    extract(m, [enc], tmp_path, batch_size=4, sort_window=16, progress=False)
    submitted = [lengths for what, lengths in enc.events if what == "submit"]
    assert sum(map(len, submitted)) == 30
    # the pool of 16 rows is sorted, then cut into 4 batches; the last 14 rows likewise (4 + 4 + 4 + 2)
    assert [len(b) for b in submitted] == [4] * 7 + [2]
    for window in (submitted[:4], submitted[4:]):
        flat = [k for b in window for k in b]
        assert flat == sorted(flat)
    assert [e[0] for e in enc.events[:4]] == ["submit", "submit", "wait", "submit"]  # the next one starts first
    (entry,) = extract(m, [CountingEncoder()], tmp_path, progress=False)
    assert entry.stats["computed"] == 0 and entry.complete
